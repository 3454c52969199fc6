"""One exception hierarchy, and the one error path of every command line: `fail` turns a
BenchError into one line on stderr and its exit code (a UserError: 2)."""

from __future__ import annotations

import sys


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


def fail(e: BenchError, prog: str = "meshbench") -> int:
    """The one error path of every command line (meshbench and its subcommands, the
    analysis modules run alone): "<prog>: error: <what is wrong> (hint: <how to fix it>)"
    on stderr; returns the exit code of the error's kind."""
    print(f"{prog}: error: {e.one_line()}", file=sys.stderr)
    return e.exit_code
