"""Wall and CPU time of a fit, by phase and per optimiser iteration.

:class:`FitClock` is started with the fit; ``mark(phase)`` books the time since the previous mark to a
phase (``setup``: pair lists and training sets; ``starts``: the optimiser states of the random starts;
``final``: the linear solve on all frames, predictions and metrics), ``iteration()`` books it to one
optimiser iteration.  Wall time is ``time.perf_counter``; CPU time is ``time.process_time``, the CPU
seconds of all threads of the process, so CPU / wall is the number of cores a fit kept busy.
:meth:`FitClock.summary` gives the JSON-able ``timing`` of the fit report (seconds).
"""
from __future__ import annotations

import time


class FitClock:
    """Books wall and CPU seconds (module docstring) from its creation on."""

    def __init__(self):
        self._start = self._last = (time.perf_counter(), time.process_time())
        self.phases: dict[str, list[float]] = {}
        self.iterations: list[tuple[float, float]] = []

    def _lap(self) -> tuple[float, float]:
        now = (time.perf_counter(), time.process_time())
        lap = (now[0] - self._last[0], now[1] - self._last[1])
        self._last = now
        return lap

    def mark(self, phase: str) -> None:
        """Book the time since the previous mark or iteration to ``phase``."""
        wall, cpu = self._lap()
        booked = self.phases.setdefault(phase, [0.0, 0.0])
        booked[0] += wall
        booked[1] += cpu

    def iteration(self) -> None:
        """Book the time since the previous mark or iteration to one more optimiser iteration."""
        self.iterations.append(self._lap())

    def elapsed(self) -> float:
        """Wall seconds since the clock started."""
        return time.perf_counter() - self._start[0]

    def summary(self) -> dict:
        """``{"wall_s", "cpu_s"}`` in all; per phase ``<phase>_wall_s``, ``<phase>_cpu_s``; ``iterations``
        (timed in this process: a resumed fit counts only its own), ``iteration_wall_s``,
        ``iteration_cpu_s`` (sums) and their means ``wall_per_iteration_s``, ``cpu_per_iteration_s``
        (None without iterations); ``per_iteration`` [[wall, cpu], ...] in order."""
        now = (time.perf_counter(), time.process_time())
        out = {"wall_s": now[0] - self._start[0], "cpu_s": now[1] - self._start[1]}
        for phase, (wall, cpu) in self.phases.items():
            out[f"{phase}_wall_s"], out[f"{phase}_cpu_s"] = wall, cpu
        n = len(self.iterations)
        wall = sum(w for w, _ in self.iterations)
        cpu = sum(c for _, c in self.iterations)
        out.update(iterations=n, iteration_wall_s=wall, iteration_cpu_s=cpu,
                   wall_per_iteration_s=wall / n if n else None, cpu_per_iteration_s=cpu / n if n else None,
                   per_iteration=[[w, c] for w, c in self.iterations])
        return out


def brief(timing: dict | None) -> dict | None:
    """``timing`` (:meth:`FitClock.summary`) without the per-iteration list, for reports that keep one
    entry per fit; None stays None (a fit without a clock, e.g. the linear one)."""
    return None if timing is None else {k: v for k, v in timing.items() if k != "per_iteration"}
