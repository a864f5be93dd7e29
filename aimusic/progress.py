"""Rich progress for training: a step bar with losses, plain lines where there is no terminal."""

from __future__ import annotations

import logging
import time
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from aimusic.runtime import console, settings

log = logging.getLogger("aimusic")


def _fmt(d: dict[str, Any]) -> str:
    parts = []
    for k, v in d.items():
        if isinstance(v, float):
            parts.append(f"{k} {v:.3g}")
        elif isinstance(v, list):
            parts.append(f"{k} {min(v):.2f}..{max(v):.2f}" if v else k)
        else:
            parts.append(f"{k} {v}")
    return "  ".join(parts)


class TrainProgress:
    """Step bar with the latest losses; validation results are logged as lines."""

    def __init__(self, name: str, total: int, start: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled and not settings.quiet
        self.start, self.steps_done, self._t0 = start, 0, time.monotonic()
        self.name, self.total, self._last_line = name, total, 0.0
        self.progress = Progress(
            TextColumn(f"[bold]{name}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=console,
            disable=not self.enabled,
        )
        self.task = self.progress.add_task(name, total=total, completed=start, losses="",
                                           rate="")

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def update(self, step: int, losses: dict[str, float]) -> None:
        self.steps_done = step - self.start
        rate = self.steps_done / max(1e-9, time.monotonic() - self._t0)
        self.progress.update(self.task, completed=step, losses=_fmt(losses),
                             rate=f"{rate:.2f} it/s")
        now = time.monotonic()
        # no live bar in a log file or CI: a plain line every 30 s instead
        if self.enabled and not console.is_terminal and now - self._last_line > 30:
            self._last_line = now
            console.print(f"{self.name} step {step}/{self.total}  {rate:.2f} it/s  "
                          f"{_fmt(losses)}", highlight=False)

    def set_total(self, total: int) -> None:
        """A new planned number of steps (a time budget's, once its pace is known)."""
        self.total = total
        self.progress.update(self.task, total=total)

    def note(self, metrics: dict[str, Any]) -> None:
        if self.enabled:
            self.progress.console.print(f"  validation: {_fmt(metrics)}", highlight=False)
