"""The one error hierarchy: every failure genies explains to a user derives from `GeniesError`.

The command line catches `GeniesError` once (in `genies.cli`) and prints its message as a single
line, exit status 2; anything else is a bug and keeps its traceback. Each subclass also derives
from the built-in exception it used to be (`ValueError`, `LookupError`, ...), so library callers
that caught those keep working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class GeniesError(Exception):
    """A problem the user can fix: the message says what and, where it can, how."""


class FileError(GeniesError):
    """A file genies reads or writes is unusable; the message is `<file>: <problem>`."""

    def __init__(self, file: str | Path, problem: str) -> None:
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{file}: {problem}")


class ConfigError(GeniesError, ValueError):
    """A run, intervention or hyperparameter setting is invalid; the message lists valid choices."""


class UnknownNameError(ConfigError, LookupError):
    """A name (intervention, preset, model, template, distribution...) that is not one of the
    known choices. The message suggests the closest ones."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], hint: str = "") -> None:
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(unknown_name_message(kind, name, self.choices, hint))

    def __str__(self) -> str:  # LookupError would quote the message like a KeyError
        return str(self.args[0])


def unknown_name_message(kind: str, name: str, choices: Iterable[str], hint: str = "") -> str:
    """`unknown intervention 'mmss'; did you mean 'mms'? (choices: ccs, lora, mms)`."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=2, cutoff=0.6)
    guess = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    listed = f" (choices: {', '.join(choices)})" if choices else ""
    return f"unknown {kind} {name!r}{guess}{listed}{hint}"


class JobError(GeniesError, RuntimeError):
    """One job of a run failed for a reason its own message explains (a legacy script without
    per-pair probabilities, an example the tokenizer cannot encode): the run goes on without it."""
