"""Progress for the long commands (simulate, whatif, calibrate, cost_report, rollup_usage,
train_router): a bar (or a spinner, for one long call) on standard error when it is a
terminal; nothing in a pipe, a log or CI (settings.PROGRESS_BARS is off when CI is set), so
their output there stays what it was."""

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO, TypeVar

from django.conf import settings

T = TypeVar("T")


def progress_shown(stream: TextIO | None = None) -> bool:
    """True when progress is drawn on `stream` (default standard error)."""
    stream = stream or sys.stderr
    return settings.PROGRESS_BARS and hasattr(stream, "isatty") and stream.isatty()


def progress(
    items: Iterable[T], *, description: str, total: int | None = None, stream: TextIO | None = None
) -> Iterator[T]:
    """Yield `items`, drawing a bar with a count, elapsed and remaining time as they go."""
    stream = stream or sys.stderr
    if not progress_shown(stream):
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with _display(stream, columns) as display:
        yield from display.track(items, total=total, description=description)


@contextmanager
def progress_spinner(description: str, *, stream: TextIO | None = None) -> Iterator[None]:
    """Show a spinner and the elapsed time while the block runs (one call, nothing to count)."""
    stream = stream or sys.stderr
    if not progress_shown(stream):
        yield
        return
    from rich.progress import TimeElapsedColumn

    with _display(stream, (TimeElapsedColumn(),)) as display:
        display.add_task(description, total=None)
        yield


@contextmanager
def _display(stream: TextIO, columns: tuple):
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    console = Console(file=stream, force_terminal=True)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), *columns)
    with Progress(*columns, console=console) as display:
        yield display
