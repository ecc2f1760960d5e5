"""Errors that end a run with exit code 2 (bad input, setup, or a side that could not run)."""


class ParityError(Exception):
    """A problem with the inputs or the environment, not a parity result.

    The message is shown to the user as one line, so keep it short and say what to do.
    """

    exit_code = 2

    def one_line(self) -> str:
        return " ".join(str(self).split())
