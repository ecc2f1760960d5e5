"""How the port is split across ranks: `--port-parallel tp=2,ulysses=2` as one `Degrees` value.

Pure (no torch, no library): parsed and checked with the case, before anything is imported.
SGLang's own degrees are set from it explicitly, every one of them: left unset, SGLang picks for
itself (`sp_degree=2` alone means K/V-gather, not Ulysses; CFG-parallel turns itself on with two
GPUs), and the run would not be the configuration the report names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from parity.errors import ParityError

# The names a user writes, in the order the report lists them.
NAMES = ("tp", "ulysses", "ring", "kvgather", "cfg")
# Ring attention needs an attention backend that returns the softmax LSE (SGLang: fa, sage_attn),
# none of which runs on a CPU.
GPU_ONLY = ("ring",)


@dataclass(frozen=True)
class Degrees:
    """Tensor parallel, Ulysses / ring / K/V-gather sequence parallel and CFG-parallel degrees."""

    tp: int = 1
    ulysses: int = 1
    ring: int = 1
    kvgather: int = 1
    cfg: int = 1

    @property
    def sp(self) -> int:
        """SGLang's sequence-parallel degree: Ulysses x ring, or the K/V-gather degree."""
        return self.ulysses * self.ring * self.kvgather

    @property
    def world_size(self) -> int:
        return self.tp * self.sp * self.cfg

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        """`tp=2,ulysses=2`, the degrees above 1 (`1` for a one-rank run)."""
        return ",".join(f"{name}={value}" for name, value in asdict(self).items() if value > 1) or "1"

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "sp": self.sp, "world_size": self.world_size}

    def server_args(self) -> dict[str, object]:
        """SGLang's ServerArgs keywords for these degrees, every one explicit."""
        return {
            "num_gpus": self.world_size,
            "tp_size": self.tp,
            "sp_degree": self.sp,
            "ulysses_degree": self.ulysses if self.kvgather == 1 else None,  # SGLang aliases it for K/V-gather
            "ring_degree": self.ring,
            "kv_gather_degree": self.kvgather,
            "enable_cfg_parallel": self.cfg > 1,
            "cfg_parallel_degree": self.cfg,
        }


ONE_RANK = Degrees()


def parse(text: str, device: str = "cpu") -> Degrees:
    """`tp=2,ulysses=2` -> Degrees; ParityError naming the problem. Empty or "1": one rank."""
    values: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if part in ("", "1"):
            continue
        name, _, number = part.partition("=")
        name = name.strip().lower()
        if name not in NAMES:
            raise ParityError(f"--port-parallel {text!r}: unknown degree {name!r}; known: {', '.join(NAMES)}")
        if name in values:
            raise ParityError(f"--port-parallel {text!r}: {name} given twice")
        try:
            value = int(number)
        except ValueError:
            value = 0
        if value < 1:
            raise ParityError(f"--port-parallel {text!r}: {name} must be an integer >= 1, got {number.strip()!r}")
        values[name] = value
    degrees = Degrees(**values)
    check(degrees, device, text)
    return degrees


def check(degrees: Degrees, device: str, text: str | None = None) -> None:
    """The combinations SGLang runs, and the ones this device can."""
    shown = f"--port-parallel {text or degrees.describe()!r}"
    if degrees.cfg > 2:
        raise ParityError(f"{shown}: cfg splits the two CFG branches: cfg=2 at most")
    if degrees.kvgather > 1 and (degrees.ulysses > 1 or degrees.ring > 1):
        raise ParityError(f"{shown}: K/V-gather does not compose with ulysses or ring in SGLang; set one of them")
    gpu_only = [name for name in GPU_ONLY if getattr(degrees, name) > 1]
    if gpu_only and device != "cuda":
        raise ParityError(
            f"{shown}: {gpu_only[0]} attention needs a GPU attention backend that returns the softmax LSE "
            "(SGLang: fa or sage_attn); run it with --device cuda"
        )


def check_run(degrees: Degrees, mode: str, port_ops: str) -> None:
    """What a multi-rank run can be asked for: the port runs on its own (`--mode full`; its comparison
    with the one-rank port is how it localizes, and shards are not teacher-forced) in one op mode."""
    if not degrees.parallel:
        return
    if mode != "full":
        raise ParityError(f"--port-parallel {degrees.describe()} runs in --mode full only (got --mode {mode})")
    if port_ops == "both":
        raise ParityError(f"--port-parallel {degrees.describe()} runs one op mode: --port-ops kernels, native or auto")
