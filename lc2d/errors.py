"""Errors a command-line user can meet: printed as one line, exit code 2."""


class UsageError(Exception):
    """A user error: bad argument, missing or malformed file. The CLI prints it and exits 2."""

    exit_code = 2
