"""Ctrl-C at safe points (parity.interrupts): the first SIGINT waits for a checkpoint, a second one
raises at once, an ignored SIGINT stays ignored, and the handler is put back."""

import os
import signal

import pytest

from parity import interrupts


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own Ctrl-C handler, as in a terminal: a test run started in the background by a shell
    without job control inherits SIGINT ignored, which `deferred` leaves alone (the last test)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_the_first_ctrl_c_waits_for_a_checkpoint():
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)  # the handler only notes it
        reached = True
        interrupts.checkpoint()
    assert reached


def test_a_second_ctrl_c_raises_at_once():
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("not reached: the second Ctrl-C raises in the handler")


def test_a_ctrl_c_still_pending_at_the_end_is_raised_there_and_the_handler_restored():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    interrupts.checkpoint()  # nothing pending afterwards


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.deferred():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            interrupts.checkpoint()
    finally:
        signal.signal(signal.SIGINT, previous)
