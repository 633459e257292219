"""The live progress display of a training run (rank 0, on a terminal)."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """A rich progress bar with loss, tokens/s and data-wait share (rank 0 only)."""

    def __init__(self, *, enabled: bool, total: int, start: int) -> None:
        self._p: Any = None
        self._task: Any = None
        if enabled:
            from rich.progress import (  # noqa: PLC0415 - only when shown
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._p = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
            )
            self._task = self._p.add_task("train", total=total, completed=start, stats="")

    @property
    def shown(self) -> bool:
        """Whether a live display is on (else the loop prints plain progress lines)."""
        return self._p is not None

    def __enter__(self) -> ProgressBar:
        if self._p is not None:
            self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.stop()

    def update(self, step: int, loss: float, tps: float, wait: float) -> None:
        if self._p is not None:
            stats = f"loss {loss:.4f}  {tps:,.0f} tok/s  data-wait {wait:.0%}"
            self._p.update(self._task, completed=step, stats=stats)
