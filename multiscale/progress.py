"""Progress lines with rate and ETA for long work (MD runs, fits, FE load steps).

``Progress(total, what)`` prints at most one line every ``every_s`` seconds and
always the last one, e.g. ``[md] 6/12 tasks  0.42/s  elapsed 14s  ETA 14s``.
Output goes to a callable (``print`` or a logger), so it is silent on
non-root MPI ranks when given a no-op.
"""
from __future__ import annotations

import time
from typing import Callable


def format_seconds(seconds: float) -> str:
    """``75`` -> ``'1m15s'``; ``3700`` -> ``'1h01m'``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


class Progress:
    """Throttled progress reporting for ``total`` units of work named ``unit``."""

    def __init__(self, total: int, what: str, *, unit: str = "", every_s: float = 5.0,
                 emit: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic):
        self.total, self.what, self.unit = int(total), what, unit
        self.every_s, self.emit, self.clock = every_s, emit, clock
        self.start = clock()
        self._last_emit = -float("inf")
        self.done = 0

    def line(self) -> str:
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"[{self.what}] {self.done}/{self.total}{(' ' + self.unit) if self.unit else ''}"
        text += f"  {rate:.3g}/s  elapsed {format_seconds(elapsed)}"
        if 0 < self.done < self.total and rate > 0:
            text += f"  ETA {format_seconds((self.total - self.done) / rate)}"
        return text

    def update(self, done: int, note: str = "") -> None:
        """Record that ``done`` units are finished; print if due (or finished)."""
        self.done = int(done)
        now = self.clock()
        if self.done >= self.total or now - self._last_emit >= self.every_s:
            self._last_emit = now
            self.emit(self.line() + (f"  {note}" if note else ""))
