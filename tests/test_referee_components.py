import math

import torch

from parity import components, referee, stages
from parity.align import Pair
from parity.compare import compare
from parity.tolerance import Policy
from parity.trace import Key

G = torch.Generator().manual_seed(0)
TRUTH = torch.randn(64, 64, generator=G, dtype=torch.float64)
NOISE = torch.randn(64, 64, generator=G, dtype=torch.float64)


def test_port_within_twice_the_reference_error_is_equivalent():
    reference = TRUTH + 1e-3 * NOISE
    port = TRUTH - 1.5e-3 * NOISE.flip(0)
    j = referee.judge("noise_pred", 0, None, reference, port, TRUTH, TRUTH)
    assert j.equivalent and j.closer == "reference"
    assert math.isclose(j.port_error / j.reference_error, 1.5, rel_tol=0.05)


def test_port_far_from_fp64_is_not_equivalent_and_logic_gap_shows():
    reference = TRUTH + 1e-3 * NOISE
    port = TRUTH * 1.02
    j = referee.judge("noise_pred", 0, None, reference, port, TRUTH, TRUTH * 1.02)
    assert not j.equivalent
    assert math.isclose(j.port_fp64_vs_reference_fp64, 0.02, rel_tol=1e-6)  # wrong even in fp64: logic
    assert "2 x" in j.as_dict()["rule"]


def test_component_table_aggregates_worst_metrics_per_component():
    x = torch.ones(8)
    pairs = [
        Pair(Key("input_ids.1"), stages.TEXT_ENCODING, x.long(), x.long()),
        Pair(Key("noise_pred", 0), stages.DENOISING, x, x),
        Pair(Key("noise_pred", 1), stages.DENOISING, x, x * 1.1),
        Pair(Key("hidden_states", 0, "transformer_blocks.0"), stages.DENOISING, x, x),
        Pair(Key("prompt_embeds"), stages.TEXT_ENCODING, x, x),
    ]
    rows = {r["component"]: r for r in components.table(compare(pairs, Policy("float32")), cfg=False)}
    assert list(rows) == ["tokenizers", "text encoders", "DiT block transformer_blocks.0", "DiT"]
    dit = rows["DiT"]
    assert dit["checks"] == 2 and dit["failed"] == 1 and not dit["passed"]
    assert math.isclose(dit["max_abs"], 0.1, rel_tol=1e-6) and math.isclose(dit["rel_l2"], 0.1, rel_tol=1e-6)
    assert rows["text encoders"]["passed"] and rows["text encoders"]["sqnr_db"] == math.inf


def test_guided_prediction_is_the_cfg_component_only_under_cfg():
    check = compare([Pair(Key("noise_pred", 0), stages.DENOISING, torch.ones(2), torch.ones(2))], Policy("float32"))[0]
    assert components.component_of(check, cfg=True) == "CFG combine"
    assert components.component_of(check, cfg=False) == "DiT"


class _Block(torch.nn.Linear):
    """A DiT block that notes, when it runs, the dtypes of every block's weights."""

    def forward(self, h):
        self.seen.append([b.weight.dtype for b in self.siblings])
        return h + torch.tanh(super().forward(h))


class _Dit(torch.nn.Module):
    """A small DiT: an embedder, a list of blocks, an output layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Linear(8, 16)
        self.blocks = torch.nn.ModuleList(_Block(16, 16) for _ in range(4))
        self.out = torch.nn.Linear(16, 8)
        self.seen: list[list[torch.dtype]] = []
        for block in self.blocks:
            block.seen, block.siblings = self.seen, list(self.blocks)

    def forward(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


def test_fp64_replay_casts_one_block_at_a_time_and_matches_the_whole_model_in_fp64():
    from parity.runners.replay import replay_fp64

    dit = _Dit().to(torch.bfloat16)
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    whole = _Dit().to(torch.bfloat16).double()(x.double())  # the same seeded weights, all in float64
    replayed = replay_fp64(dit, (x,), {}, parts=list(dit.blocks), whole=False)  # as for a DiT too big in float64
    assert replayed.dtype == torch.float64
    assert torch.equal(replayed, whole)
    # while a block ran, it alone held float64 weights; afterwards everything is back in bf16
    assert [dtypes.count(torch.float64) for dtypes in dit.seen] == [1, 1, 1, 1]
    assert all(p.dtype == torch.bfloat16 for p in dit.parameters())
