"""parity.verdict on random sets of synthetic checks, against a hand-written model of a run: the
stages each stage consumes, and the order in which a pipeline produces its tensors."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import stages
from parity.compare import Check
from parity.tolerance import Tolerance
from parity.verdict import classify, decide

CONTRACT, TEXT, LATENT, TIMESTEP = (
    stages.CONTRACT,
    stages.TEXT_ENCODING,
    stages.LATENT_PREPARATION,
    stages.TIMESTEP_PREPARATION,
)
DENOISING, DECODING = stages.DENOISING, stages.DECODING
# The stages whose tensors a stage's tensors depend on (itself included): the Req contract feeds every
# stage (the port's tensors are read from its fields); text encoding, latent and timestep preparation
# are independent roots beside it; denoising consumes all three; decoding all four.
INPUTS = {
    CONTRACT: {CONTRACT},
    TEXT: {CONTRACT, TEXT},
    LATENT: {CONTRACT, LATENT},
    TIMESTEP: {CONTRACT, TIMESTEP},
    DENOISING: {CONTRACT, TEXT, LATENT, TIMESTEP, DENOISING},
    DECODING: {CONTRACT, TEXT, LATENT, TIMESTEP, DENOISING, DECODING},
}
# Execution order by hand: groups in the order a pipeline runs them; within a group, the trace order
# (Check.order) decides. (stage, tensor, step, block). The contract's checks are named by Req field, as
# tensors of other stages are (`prompt_embeds`, `latents`): a check is told apart by its stage too.
GROUPS: list[list[tuple]] = [
    [
        (CONTRACT, "prompt_embeds", None, None),
        (CONTRACT, "latents", None, None),
        (CONTRACT, "latents_seed", None, None),
    ],
    [
        (TEXT, "input_ids.0", None, None),
        (TEXT, "prompt_embeds", None, None),
        (TEXT, "pooled_prompt_embeds", None, None),
    ],
    [(LATENT, "latents", None, None)],
    [(TIMESTEP, "timesteps", None, None), (TIMESTEP, "sigmas", None, None)],
]
for _step in range(2):
    GROUPS += [
        [(DENOISING, "dit_input", _step, None), (DENOISING, "dit_timestep", _step, None)],
        [(DENOISING, "hidden_states", _step, f"transformer_blocks.{i}") for i in range(2)]
        + [(DENOISING, "encoder_hidden_states", _step, "transformer_blocks.0")],
        [(DENOISING, "noise_pred_cond", _step, None), (DENOISING, "noise_pred_uncond", _step, None)],
        [(DENOISING, "noise_pred", _step, None)],
        [(DENOISING, "latents", _step, None)],
    ]
GROUPS.append([(DECODING, "vae_input", None, None), (DECODING, "frames", None, None)])
SLOTS = [(group, slot) for group, members in enumerate(GROUPS) for slot in members]
TOL = Tolerance(atol=1e-4, rtol=1e-5)


@st.composite
def runs(draw):
    """(checks in a random input order, their hand execution order): a random subset of the slots,
    a random trace order, each passing or failing."""
    chosen = draw(st.lists(st.sampled_from(range(len(SLOTS))), min_size=1, max_size=len(SLOTS), unique=True))
    orders = draw(st.permutations(range(len(chosen))))
    checks = []
    for index, order in zip(chosen, orders, strict=True):
        stage, tensor, step, block = SLOTS[index][1]
        passed = draw(st.booleans())
        status = "ok" if passed else draw(st.sampled_from(["mismatch", "shape", "nonfinite", "missing_port"]))
        checks.append(Check(stage, tensor, step, block, passed, status, TOL, min_atol=math.nan, order=order))
    executed = sorted(checks, key=lambda c: (SLOTS[chosen[checks.index(c)]][0], c.order))
    return draw(st.permutations(checks)), executed


def expected_roles(executed: list[Check], isolated: bool) -> dict:
    roles, failed = {}, []
    for check in executed:
        if check.passed:
            continue
        fed = not isolated and any(earlier.stage in INPUTS[check.stage] for earlier in failed)
        roles[check.ident] = "downstream" if fed else "cause"
        failed.append(check)
    return roles


@settings(max_examples=200, deadline=None)
@given(runs(), st.booleans())
def test_roles_causes_and_first_divergence_follow_the_model(run, isolated):
    checks, executed = run
    verdict = decide(checks, isolated=isolated)
    roles = expected_roles(executed, isolated)
    assert dict(verdict.roles) == roles
    assert dict(classify(checks, isolated)) == roles
    if not isolated:
        assert dict(classify(checks)) == roles
    # every failing check has exactly one role, a passing one none
    for check in checks:
        assert (verdict.role(check) is None) == check.passed
    failing = [c for c in executed if not c.passed]
    # causes: the failing checks no earlier failure feeds, in execution order
    assert list(verdict.causes) == [c for c in failing if roles[c.ident] == "cause"]
    assert verdict.cause_list == [c.where() for c in verdict.causes]
    if isolated:
        assert list(verdict.causes) == failing
    # the first divergence is the earliest failing check in execution order, always a cause
    assert verdict.first is (failing[0] if failing else None)
    assert verdict.first_divergence == (failing[0].where() if failing else None)
    assert verdict.outcome == ("fail" if failing else "pass")
    assert verdict.exit_code == (1 if failing else 0)
    assert verdict.error is None


@settings(max_examples=50, deadline=None)
@given(runs(), st.booleans(), st.text(min_size=1, max_size=20))
def test_an_error_keeps_the_roles_and_causes_and_overrides_the_outcome(run, isolated, error):
    checks, executed = run
    verdict, clean = decide(checks, error, isolated), decide(checks, isolated=isolated)
    assert verdict.outcome == "error" and verdict.exit_code == 2 and verdict.error == error
    assert verdict.causes == clean.causes and dict(verdict.roles) == dict(clean.roles)


@pytest.mark.parametrize("isolated", [False, True])
def test_nothing_compared_is_an_error_in_both_modes(isolated):
    verdict = decide([], isolated=isolated)
    assert verdict.outcome == "error" and verdict.causes == () and dict(verdict.roles) == {}
    assert verdict.error == "nothing was compared: neither side recorded a tensor"
    assert decide([], "SGLang failed", isolated).error == "SGLang failed"
