"""Console progress: the step line's text (pure, synthetic calls) and what progress.step / say write."""

import io
import sys

import pytest

from parity import progress
from parity.progress import StepLine


def test_a_log_gets_one_line_per_completed_step_and_nothing_for_a_repeated_count():
    line = StepLine()
    first = line.update("Diffusers (reference)", 1, 4, 2.5, tty=False)
    assert first == "[parity     2.5s] Diffusers (reference) step 1/4\n"
    assert line.update("Diffusers (reference)", 1, 4, 2.6, tty=False) == ""  # the same count: not again
    assert line.update("Diffusers (reference)", 2, 4, 3.0, tty=False).endswith("Diffusers (reference) step 2/4\n")
    assert line.close() == ""  # nothing was left open in a log


def test_a_terminal_gets_one_line_rewritten_in_place_with_every_side_in_turn():
    line = StepLine()
    first = line.update("Diffusers (reference)", 1, 4, 1.0, tty=True)
    assert first == "\r[parity     1.0s] Diffusers (reference) step 1/4"
    both = line.update("SGLang (port)", 1, 4, 1.5, tty=True)  # the online comparison: both sides on the line
    assert both == "\r[parity     1.5s] Diffusers (reference) step 1/4 · SGLang (port) step 1/4"
    assert "\n" not in first + both
    assert line.close() == "\n"  # ends the line before the next phase's
    assert line.close() == ""
    again = line.update("SGLang (port)", 1, 4, 9.0, tty=True)  # a new run counts afresh
    assert again == "\r[parity     9.0s] SGLang (port) step 1/4"


@pytest.mark.parametrize(("step", "total", "shown"), [(3, 4, "step 3/4"), (5, 4, "step 5"), (2, 0, "step 2")])
def test_a_count_beyond_the_cases_steps_is_shown_without_a_total(step, total, shown):
    assert StepLine().update("s", step, total, 0.0, tty=False).endswith(f" s {shown}\n")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def console(monkeypatch):
    stream = Terminal()
    monkeypatch.setattr(progress, "_steps", StepLine())
    previous = progress.use_console(stream)
    yield stream
    progress.use_console(previous)


def test_steps_are_labelled_by_side_and_a_phase_line_starts_on_a_line_of_its_own(console, monkeypatch):
    monkeypatch.setattr(progress, "quiet", False)
    progress.step("reference", 1, 2)
    progress.step("port", 1, 2)
    progress.say("comparing (full)")
    text = console.getvalue()
    assert "Diffusers (reference) step 1/2 · SGLang (port) step 1/2\n[parity" in text
    assert text.endswith("] comparing (full)\n")


def test_quiet_silences_steps_and_phases(console, monkeypatch):
    monkeypatch.setattr(progress, "quiet", True)
    progress.step("reference", 1, 2)
    progress.say("comparing (full)")
    assert console.getvalue() == ""


def test_what_a_library_prints_through_a_replaced_sys_stderr_goes_to_the_log_too(tmp_path, capsys):
    from parity import library_output

    log = tmp_path / "libraries.log"
    with library_output.to_log(log):  # capsys has replaced sys.stdout/sys.stderr, as pytest's capture does
        print("a library's line")
        sys.stderr.write("  0%|          | 0/4\r")  # a tqdm bar writes to sys.stderr
    assert capsys.readouterr() == ("", "")
    assert log.read_bytes() == b"a library's line\n  0%|          | 0/4\r"
