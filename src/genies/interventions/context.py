"""What the pipeline lends a method while it fits or scores: the seed, the activation store, a
folder for extra files, and progress reporting."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genies.models.activations import ActivationStore


@dataclass
class FitContext:
    """Shared services for `Intervention.fit` and `Intervention.scorer`.

    `state_dir` is the fitted state's folder: while fitting, the staging folder that becomes
    the state (methods that leave files beside their dataclass, such as a legacy script's model,
    write there); while scoring, the stored state. `progress` is set when a pipeline owns the
    screen; otherwise `progress_bar` draws its own bar on a terminal.
    """

    seed: int = 0
    activation_store: ActivationStore | None = None
    progress: Callable[[str], None] | None = None
    state_dir: Path | None = None

    def report(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def activations(self) -> ActivationStore:
        """The pipeline's shared store, or the default one under GENIES_HOME."""
        if self.activation_store is None:
            from genies.models.activations import ActivationStore

            self.activation_store = ActivationStore()
        return self.activation_store

    def artifact_dir(self) -> Path:
        """The folder for a state's extra files (created on demand)."""
        if self.state_dir is None:
            raise RuntimeError("this method leaves files beside its fitted state; it needs FitContext.state_dir")
        Path(self.state_dir).mkdir(parents=True, exist_ok=True)
        return Path(self.state_dir)

    @contextlib.contextmanager
    def progress_bar(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """Progress of a long step; yields `advance(n)`. With a `progress` callback the callback
        gets "description done/total" messages; otherwise a rich bar is drawn on stderr when
        stderr is a terminal (never in tests or logs)."""
        if self.progress is not None:
            done = 0

            def report(n: int = 1) -> None:
                nonlocal done
                done += n
                self.report(f"{description} {done}/{total}")

            self.report(f"{description} 0/{total}")
            yield report
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)
