"""What a running stage sees of the runner (the ``ctx`` of docs/architecture.md)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .errors import StageError
from .parallel import Farm
from .progress import Progress


@dataclass
class StageContext:
    """Folders, systems, MPI farm, progress and log for one stage run.

    ``out_dir`` is the scratch folder ``runs/<stage>.partial/`` that becomes
    ``runs/<stage>/`` when the stage returns; checkpoints left there by an
    interrupted run are found again by the next run.
    """

    name: str
    case_dir: Path
    runs_dir: Path
    out_dir: Path
    systems: dict
    farm: Farm
    preset: str | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("multiscale"))
    _progress: dict = field(default_factory=dict, repr=False)

    @property
    def is_root(self) -> bool:
        return self.farm.is_root

    @property
    def comm(self):
        """The MPI communicator of the run, or None in a serial run."""
        return self.farm.comm

    def stage_dir(self, name: str) -> Path:
        """The finished output folder of an upstream stage."""
        path = self.runs_dir / name
        if not (path / "stage.json").is_file():
            raise StageError(
                f"stage '{self.name}' needs the output of stage '{name}', but {path} holds no "
                f"finished run: run `multiscale run {self.case_dir} --stages {name}` first"
            )
        return path

    def log(self, message: str) -> None:
        if self.is_root:
            self.logger.info(f"[{self.name}] {message}")

    def progress(self, done: int, total: int, what: str = "") -> None:
        """Report ``done`` of ``total`` units of ``what`` (a line with rate and ETA, throttled)."""
        key = what or self.name
        bar = self._progress.get(key)
        if bar is None or bar.total != total or done < bar.done:
            bar = Progress(total, f"{self.name}{': ' + what if what else ''}", emit=self._emit)
            self._progress[key] = bar
        bar.update(done)

    def _emit(self, line: str) -> None:
        if self.is_root:
            self.logger.info(line)

    def map(self, fn: Callable[[Any], Any], items: Iterable, *, what: str = "tasks",
            costs: Sequence[float] | None = None) -> list:
        """``[fn(item) for item in items]`` farmed over the MPI ranks, results in order (``costs``:
        relative cost per item, farmed costliest first, see :meth:`multiscale.parallel.Farm.map`)."""
        items = list(items)
        size = self.farm.size
        # Rank 0 sees only its own share; with round-robin farming the others keep pace (with costs the
        # shares differ in length, and the count is only a rough guide until the closing exchange)
        report = (lambda n: self.progress(min(n * size, len(items)), len(items), what))
        report(0)  # starts the clock, so that the rate counts from the first item, not from its end
        return self.farm.map(fn, items, progress=report, costs=costs)
