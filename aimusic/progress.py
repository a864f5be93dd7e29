"""Progress on stderr, one mechanism for every long job: training steps, tokenizing files,
generating tokens, evaluating clips.

``Bars`` shows rich bars on a terminal. Where there is none (a log file, CI, a pipe) it
prints a plain line per bar every ``lines_every`` seconds and when the bar completes
(``None``: nothing without a terminal), so a job in the background still says how far it
is. Nothing at all when disabled or with ``-q``. ``TrainProgress`` is a ``Bars`` of one
bar in steps, with the rate, the latest losses and validation lines.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Self

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from aimusic.runtime import console, settings

log = logging.getLogger("aimusic")


def format_fields(d: dict[str, Any]) -> str:
    """``{"loss": 0.1234, "usage": [0.7, 0.9]}`` -> ``"loss 0.123  usage 0.70..0.90"``."""
    parts = []
    for k, v in d.items():
        if isinstance(v, float):
            parts.append(f"{k} {v:.3g}")
        elif isinstance(v, list):
            parts.append(f"{k} {min(v):.2f}..{max(v):.2f}" if v else k)
        else:
            parts.append(f"{k} {v}")
    return "  ".join(parts)


class Bar:
    """One bar of a ``Bars``: ``advance`` or ``update`` it, with a line of ``info``."""

    def __init__(self, bars: Bars, name: str, task: TaskID, total: int, completed: int) -> None:
        self.bars, self.name, self.task = bars, name, task
        self.total, self.completed, self.info = total, completed, ""
        self._last_line = -float("inf")  # the first update prints a line

    def advance(self, k: int = 1, info: str | None = None) -> None:
        self.update(self.completed + k, info)

    def update(self, completed: int, info: str | None = None) -> None:
        self.completed = completed
        if info is not None:
            self.info = info
        self.bars.progress.update(self.task, completed=completed, info=self.info,
                                  refresh=not self.bars.auto_refresh)
        self.bars.plain_line(self)

    def set_total(self, total: int) -> None:
        """A new planned total (a time budget's, once its pace is known)."""
        self.total = total
        self.bars.progress.update(self.task, total=total)


class Bars:
    """Rich progress bars on a terminal, plain lines elsewhere (see the module's doc).

    ``unit`` follows the counts ("tokens"); ``auto_refresh=False`` redraws only on updates
    (no refresh thread: for a process that forks workers)."""

    def __init__(self, enabled: bool = True, *, label: str = "", unit: str = "",
                 lines_every: float | None = None, eta: bool = False,
                 auto_refresh: bool = True) -> None:
        self.enabled = enabled and not settings.quiet
        self.label, self.lines_every, self.auto_refresh = label, lines_every, auto_refresh
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        if unit:
            columns.append(TextColumn(unit))
        columns.append(TimeElapsedColumn())
        if eta:
            columns.append(TimeRemainingColumn())
        columns.append(TextColumn("{task.fields[info]}"))
        self.progress = Progress(*columns, console=console, auto_refresh=auto_refresh,
                                 disable=not (self.enabled and console.is_terminal))

    def __enter__(self) -> Self:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def bar(self, name: str, total: int, completed: int = 0) -> Bar:
        task = self.progress.add_task(f"{self.label}{name}", total=total, completed=completed,
                                      info="")
        return Bar(self, name, task, total, completed)

    def plain_line(self, bar: Bar) -> None:
        """Without a terminal: the bar as a line, every ``lines_every`` s and at its end."""
        if not self.enabled or console.is_terminal or self.lines_every is None:
            return
        now = time.monotonic()
        if now - bar._last_line >= self.lines_every or bar.completed == bar.total:
            bar._last_line = now
            console.print(f"{self.label}{bar.name} {bar.completed}/{bar.total}  {bar.info}".rstrip(),
                          highlight=False, soft_wrap=True)

    def line(self, text: str) -> None:
        """A line printed above the bars (validation results, say)."""
        if self.enabled:
            self.progress.console.print(text, highlight=False, soft_wrap=True)


class TrainProgress(Bars):
    """Step bar with the rate and the latest losses; validation results as lines; a plain
    line every 30 s without a terminal."""

    def __init__(self, name: str, total: int, start: int = 0, enabled: bool = True) -> None:
        super().__init__(enabled, lines_every=30.0, eta=True)
        self.start, self.steps_done, self._t0 = start, 0, time.monotonic()
        self.main = self.bar(f"{name} step", total, start)

    def update(self, step: int, losses: dict[str, float]) -> None:
        self.steps_done = step - self.start
        rate = self.steps_done / max(1e-9, time.monotonic() - self._t0)
        self.main.update(step, f"{rate:.2f} it/s  {format_fields(losses)}")

    def set_total(self, total: int) -> None:
        self.main.set_total(total)

    def note(self, metrics: dict[str, Any]) -> None:
        self.line(f"  validation: {format_fields(metrics)}")
