"""One exception hierarchy. The CLI turns a UserError into one line and an exit code."""

from __future__ import annotations


class BenchError(Exception):
    """Base of every error the harness raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class UserError(BenchError):
    """Bad input: a scenario typo, an unknown mode, a missing prerequisite. Exit 2."""

    exit_code = 2


class ScenarioError(UserError):
    pass


class PrerequisiteError(UserError):
    """Something the machine lacks (root, a binary, a kernel feature)."""


class ProvisionError(BenchError):
    """The backend could not build or check a mode."""


class CellFailed(BenchError):
    """One (mode, level, repetition) cell failed; the run records it and goes on."""


class StorageError(BenchError):
    """The results directory could not be written (disk full, read-only, gone): the run
    stops, torn down, and keeps what was written before."""


class ModeBroken(BenchError):
    """A process of a mode's deployment died: that mode's remaining cells and experiments
    of this repetition are skipped; the run goes on with the next mode."""
