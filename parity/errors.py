"""Errors that end a run with exit code 2 (bad input, setup, or a side that could not run)."""


class ParityError(Exception):
    """A problem with the inputs or the environment, not a parity result.

    The message is shown to the user as one line, so keep it short and say what to do.
    """

    exit_code = 2

    def one_line(self) -> str:
        """The message on one line: its line breaks become spaces; runs of spaces inside stay (a key named
        "  " must be named as it is)."""
        return " ".join(line.strip() for line in str(self).splitlines() if line.strip())
