"""The float64 audit's pure parts (parity.audit), its float64 replay (parity.runners.replay), and how its
checks enter the verdict and the hints. Synthetic tensors: no pipeline runs here."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import audit, hints, stages
from parity.compare import Check
from parity.referee import FP64
from parity.runners.replay import promoted_to_float64, replay_fp64
from parity.tolerance import Policy, Tolerance
from parity.verdict import decide
from parity.vocab import Role, Status

G = torch.Generator().manual_seed(0)
OUT = torch.randn(2, 16, 8, generator=G, dtype=torch.float64)
POLICY = Policy("float32")


def component(port: torch.Tensor | None, block: str | None = "transformer_blocks.0") -> audit.Component:
    return audit.Component("hidden_states" if block else "noise_pred", block, OUT, port)


def test_float64_rounding_passes_and_a_logic_difference_below_the_float32_tolerance_is_flagged():
    rounding = OUT * (1 + 1e-15)
    assert audit.check(component(rounding), 0, POLICY, 0).passed
    # eps 1e-6 -> 1e-5 in a norm moves its output by ~5e-6 relative: far inside the float32 tolerance
    # (rel L2 5e-5), far outside float64's rounding
    off = OUT * (1 + 5e-6)
    flagged = audit.check(component(off), 0, POLICY, 0)
    assert not flagged.passed and flagged.status is Status.MISMATCH and flagged.stage == stages.AUDIT
    assert math.isclose(flagged.metrics.rel_l2, 5e-6, rel_tol=1e-3)
    tol = POLICY.for_tensor(stages.DENOISING, "hidden_states")
    assert tol.rel_l2 > 5e-6  # what the float32 check would have let through
    assert tol.describe() in flagged.message and "transformer_blocks.0 hidden_states at step 0" in flagged.message
    assert flagged.evidence == {"hides_under": tol.describe(), "kind": "block", "floor": 0.0, "limit": 1e-12}


def test_the_limit_follows_the_floor_what_float32_rounding_of_the_blocks_other_inputs_explains():
    direction = torch.randn(OUT.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    moved = OUT + 1e-9 * direction / direction.norm() * OUT.norm()  # the reference, other inputs moved: 1e-9

    def at(size: float) -> Check:
        port = OUT + size * direction.flip(0) / direction.norm() * OUT.norm()
        found = audit.Component("hidden_states", "transformer_blocks.0", OUT, port, floor=moved)
        return audit.check(found, 0, POLICY, 0)

    assert at(5e-9).passed and not at(5e-8).passed  # limit: 10 x floor = 1e-8
    assert math.isclose(at(5e-8).evidence["floor"], 1e-9, rel_tol=1e-3)
    assert "floor 1e-09" in at(5e-8).tolerance.describe()


def test_a_missing_replay_or_another_shape_is_flagged_not_skipped():
    missing = audit.check(component(None), 0, POLICY, 0)
    assert not missing.passed and missing.status is Status.MISSING_PORT and "port's float64 replay" in missing.message
    shaped = audit.check(component(OUT[:1]), 0, POLICY, 0)
    assert not shaped.passed and shaped.status is Status.SHAPE
    nan = OUT.clone()
    nan[0, 0, 0] = math.nan
    assert audit.check(component(nan), 0, POLICY, 0).status is Status.NONFINITE


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=-12, max_value=-2))
def test_flagged_exactly_when_the_relative_difference_exceeds_the_threshold(exponent):
    size = 10.0**exponent
    direction = torch.randn(OUT.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    port = OUT + size * direction / direction.norm() * OUT.norm()
    found = audit.check(component(port), 0, POLICY, 0)
    assert found.passed == (found.metrics.rel_l2 <= audit.FLOAT64_ROUNDING)  # no floor: float64 rounding alone
    assert math.isclose(found.metrics.rel_l2, size, rel_tol=1e-3)  # float64 rounding of the sum itself


def test_components_are_the_float64_records_named_without_the_suffix_and_kinds_follow_the_block():
    pairs = [
        ("hidden_states" + FP64, "embedders", OUT, OUT),
        ("hidden_states", "transformer_blocks.0", OUT, OUT),  # the run dtype's record: not audited
        ("hidden_states" + FP64, "transformer_blocks.0", OUT, OUT),
        ("noise_pred_cond" + FP64, None, OUT, OUT),
    ]
    found = audit.components(pairs)
    assert [(c.tensor, c.block, c.kind) for c in found] == [
        ("hidden_states", "embedders", "embedders"),
        ("hidden_states", "transformer_blocks.0", "block"),
        ("noise_pred_cond", None, "dit_call"),
    ]


def test_summary_lists_the_flags_and_the_largest_difference_per_kind():
    checks = audit.checks(
        [component(OUT * (1 + 1e-14)), component(OUT * (1 + 1e-6), "transformer_blocks.1"), component(OUT, None)],
        0,
        POLICY,
    )
    found = audit.summary(checks, seconds=1.5, plain_seconds=3.0)
    assert found["components"] == 3 and found["flagged"] == ["audit/hidden_states step 0 block transformer_blocks.1"]
    assert math.isclose(found["largest_by_kind"]["block"]["rel_l2"], 1e-6, rel_tol=1e-6)
    assert found["largest_by_kind"]["block"]["at"] == "hidden_states step 0 block transformer_blocks.1"
    assert found["largest_by_kind"]["dit_call"]["rel_l2"] == 0.0
    assert found["rule"] == audit.RULE and found["not_audited"]


def _failing(stage: str, tensor: str, step: int | None, block: str | None = None) -> Check:
    return Check(stage, tensor, step, block, False, Status.MISMATCH, Tolerance(rel_l2=1e-4))


def test_an_audit_flag_is_a_cause_even_after_an_earlier_divergence_and_gets_its_own_hint():
    earlier = _failing(stages.DENOISING, "noise_pred", 0)
    flag = audit.check(component(OUT * (1 + 1e-6)), 0, POLICY, 1)
    verdict = decide([earlier, flag])
    assert verdict.role(flag) is Role.CAUSE and verdict.first is earlier  # the audit orders after decoding
    assert stages.rank(stages.AUDIT) > stages.rank(stages.DECODING)
    hint = hints.for_causes([flag], [earlier, flag])[0]
    assert "transformer_blocks.0" in hint["symptom"] and "1e-06" in hint["symptom"]
    assert "constant slightly off" in hint["likely_cause"]


class TwoCasts(torch.nn.Module):
    """A module that hard-codes float32 as libraries do in RoPE tables and time embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table = torch.arange(4, dtype=torch.float32) / 3
        return self.linear(x.float()) + table.to(torch.float32) + x.to(dtype=torch.float32).type(torch.float32)


def test_replay_promotes_hard_coded_float32_casts_and_leaves_the_module_and_torch_as_they_were():
    module = TwoCasts()
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(2))
    out = replay_fp64(module, (x,), {})
    assert out.dtype == torch.float64
    with torch.no_grad():
        exact = torch.nn.functional.linear(x.double(), module.linear.weight.double(), module.linear.bias.double())
    exact = exact + torch.arange(4, dtype=torch.float64) / 3 + x.double()
    assert torch.equal(out, exact)  # every step in float64: no float32 rounding of the table or the casts
    assert module.linear.weight.dtype == torch.float32  # cast back
    assert x.float().dtype == torch.float32 and torch.arange(2, dtype=torch.float32).dtype == torch.float32
    assert torch.get_default_dtype() == torch.float32


def test_promotion_is_undone_when_the_replay_raises():
    try:
        with promoted_to_float64():
            assert torch.ones(1).float().dtype == torch.float64
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert torch.ones(1).float().dtype == torch.float32 and torch.zeros(1, dtype=torch.float16).dtype == torch.float16


class AssertsFloat32(torch.nn.Module):
    """As SGLang's Wan block: a float32 modulation table added to a float32 cast, and an assert on it."""

    def __init__(self) -> None:
        super().__init__()
        self.scale_shift_table = torch.nn.Parameter(torch.randn(4, generator=torch.Generator().manual_seed(4)))
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        modulation = self.scale_shift_table + x.float()
        assert modulation.dtype == torch.float32
        return self.linear(x) * modulation


def test_kept_parameters_and_casts_stay_float32_and_the_rest_replays_in_float64():
    module = AssertsFloat32()
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(5))
    out = replay_fp64(module, (x,), {}, keep=("scale_shift_table",))
    assert out.dtype == torch.float64
    with torch.no_grad():
        linear = torch.nn.functional.linear(x.double(), module.linear.weight.double(), module.linear.bias.double())
    assert torch.equal(out, linear * (module.scale_shift_table + x).double())  # the table's sum rounded to float32
    assert module.linear.weight.dtype == module.scale_shift_table.dtype == torch.float32
