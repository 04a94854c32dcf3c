"""Progress bars for long CLI commands: on stderr, never mixed into what goes to stdout.

Shown when stderr is a terminal; ``MIAOPI_PROGRESS=1`` forces them (for instance in a CI log
that renders terminal codes), ``MIAOPI_PROGRESS=0`` turns them off.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Protocol

__all__ = ["Bar", "enabled", "progress"]

_ON = {"1", "always", "yes", "true", "on"}
_OFF = {"0", "never", "no", "false", "off"}


class Bar(Protocol):
    """What a command tells its bar: how far it is (and, between steps, what it does now)."""

    def __call__(
        self, completed: int, *, total: int | None = None, description: str | None = None
    ) -> None: ...


def enabled() -> bool:
    """``MIAOPI_PROGRESS`` if set, else whether stderr is a terminal."""
    mode = os.environ.get("MIAOPI_PROGRESS", "").strip().lower()
    if mode in _ON:
        return True
    if mode in _OFF:
        return False
    return sys.stderr.isatty()


def _quiet(completed: int, *, total: int | None = None, description: str | None = None) -> None:
    """The bar when bars are off: nothing at all."""


@contextlib.contextmanager
def progress(description: str, *, total: int | None = None) -> Iterator[Bar]:
    """A bar on stderr for the duration of the block (nothing when bars are off)."""
    if not enabled():
        yield _quiet
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=sys.stderr, force_terminal=True if not sys.stderr.isatty() else None)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        # rich would otherwise send what the command prints to stdout through this console,
        # i.e. to stderr: data must stay on stdout, untouched.
        redirect_stdout=False,
        redirect_stderr=False,
    ) as bar:
        task = bar.add_task(description, total=total)

        def update(
            completed: int, *, total: int | None = None, description: str | None = None
        ) -> None:
            fields: dict[str, object] = {"completed": completed}
            if total is not None:
                fields["total"] = total
            if description is not None:
                fields["description"] = description
            bar.update(task, **fields)  # type: ignore[arg-type]

        yield update
        task_state = bar.tasks[0]
        if task_state.total is not None:
            bar.update(task, completed=task_state.total)
