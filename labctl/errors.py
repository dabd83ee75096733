"""The error every `lab` command reports the same way (labctl/cli.py), in a module of its own
so that a command can raise it without importing what the others need."""

from __future__ import annotations


class LabError(RuntimeError):
    """A failure the user can act on; printed as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
