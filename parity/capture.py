"""Which denoising steps get per-block capture: memory must not grow with the step count.

Default policy: the first step, the last step and the first step that fails (found after the
first pass; when it is neither, both sides run again capturing only that step's blocks).
"""

from __future__ import annotations

from dataclasses import dataclass

from parity.errors import ParityError


@dataclass(frozen=True)
class BlockCapture:
    mode: str = "default"  # default | all | none | steps
    steps: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> BlockCapture:
        """`default`, `all`, `none`, or a comma-separated list of step indices."""
        if text in ("default", "all", "none"):
            return cls(text)
        try:
            steps = frozenset(int(part) for part in text.split(","))
        except ValueError:
            raise ParityError(
                f"--block-steps must be default, all, none or step indices like 0,3; got {text!r}"
            ) from None
        if any(s < 0 for s in steps):
            raise ParityError(f"--block-steps: step indices must be >= 0, got {text!r}")
        return cls("steps", steps)

    def first_pass(self, num_steps: int) -> frozenset[int]:
        if self.mode == "all":
            return frozenset(range(num_steps))
        if self.mode == "none":
            return frozenset()
        if self.mode == "steps":
            return frozenset(s for s in self.steps if s < num_steps)
        return frozenset({0, num_steps - 1})

    def second_pass(self, captured: frozenset[int], first_failing_step: int | None) -> frozenset[int]:
        """Steps to capture in a rerun (empty: no rerun needed)."""
        if self.mode != "default" or first_failing_step is None or first_failing_step in captured:
            return frozenset()
        return frozenset({first_failing_step})

    def describe(self) -> str:
        return {
            "default": "first step, last step and the first failing step",
            "all": "every step",
            "none": "no blocks",
        }.get(self.mode, f"steps {sorted(self.steps)}")
