"""MPI for the runner: independent tasks farmed over ranks, errors that never hang.

Data flow: every rank runs the same stage function; ``Farm.map(fn, items)``
gives item ``k`` to rank ``k % size`` (or, with ``costs``, the costliest items
first each to the least loaded rank), each rank computes its share, and one
``allgather`` returns every result, in order, to every rank. Rank 0 alone owns
the case directory. A rank that finished its share waits asleep (polling a
non-blocking barrier), not spinning in MPI, so that threads of a rank still
working can use its core (the fit stage's threads).

Errors: every collective here exchanges a *payload* that says either "ok" or
"failed on rank r: message". When any rank's payload is a failure, every rank
raises :class:`RankFailure` from the same collective, so no rank is left waiting
in a later collective. A rank whose own code raised between collectives reports
the error at the next collective it reaches (``Farm.finish``, called by the
runner after each stage), which the other ranks' next collective matches.

MPI is only initialised when the process was started by an MPI launcher, so a
serial run never calls ``MPI_Init`` (which would stop it from launching
``mpirun`` in a subprocess, ENVIRONMENT.md pitfall 5). mpi4py is optional: without it
every run is serial, and only a launch with several ranks is an error.
"""
from __future__ import annotations

import os
import time
import traceback
from typing import Any, Callable, Iterable, Sequence

from .errors import MultiscaleError, StageError
from .stages import from_import_error, install_hint

_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
#: Seconds between the checks of a rank waiting for the others.
WAIT_POLL_S = 0.02


def launched_by_mpi() -> bool:
    """True when an MPI launcher (mpirun, mpiexec, srun) started this process."""
    return any(var in os.environ for var in _LAUNCHER_VARS)


def launcher_size() -> int:
    """The number of ranks the launcher says it started (1 when it does not say)."""
    return max(_env_int(var) for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"))


def launcher_rank() -> int:
    """This process's rank as the launcher says it (0 when it does not say)."""
    return max(_env_int(var, 0) for var in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"))


def _env_int(var: str, default: int = 1) -> int:
    try:
        return int(os.environ[var])
    except (KeyError, ValueError):
        return default


def serial_ase() -> None:
    """Make ASE treat every rank as a serial program.

    Why: once mpi4py is imported, ASE's file functions (``ase.io.read``, ``iread``, ``write``) run on
    rank 0 only and broadcast the result, a collective that every rank must enter in step. Our ranks
    do different tasks (one writes a trajectory while the other reads a dataset): under ``mpirun -n 2``
    the data stage hung after its first system, one rank inside ``iread``'s broadcast and the other
    in the stage's closing allgather. The farm decides which rank touches which file, so ASE must not.
    """
    import ase.parallel

    ase.parallel.world.comm = ase.parallel.DummyMPI()  # the lazy wrapper every ASE module holds


class RankFailure(StageError):
    """A rank failed; raised on every rank from the same collective."""


class MPIUnavailable(MultiscaleError):
    """Several MPI ranks were started but mpi4py does not import; raised before any stage runs."""


class Farm:
    """The ranks of one run. Serial when ``comm`` is None (no MPI)."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1

    @classmethod
    def from_environment(cls) -> "Farm":
        """COMM_WORLD when launched by MPI with more than one rank, else serial.

        Without mpi4py every run is serial: a plain ``multiscale run`` never needs it, and a run
        under a launcher with one rank runs serially. Several ranks without mpi4py would be
        independent copies writing the same case directory, so that is a :class:`MPIUnavailable`.
        """
        if launched_by_mpi():
            try:
                from mpi4py import MPI
            except ImportError as exc:
                ranks = launcher_size()
                if ranks > 1 or launcher_rank() > 0:
                    raise MPIUnavailable(
                        f"started by an MPI launcher{f' with {ranks} ranks' if ranks > 1 else ''}, but "
                        f"mpi4py does not import ({exc}): {install_hint(['mpi4py'])}; or run without "
                        f"mpirun, serially") from None
                return cls(None)
            if MPI.COMM_WORLD.Get_size() > 1:
                serial_ase()
                return cls(MPI.COMM_WORLD)
        return cls(None)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def _exchange(self, payload: tuple) -> list:
        if self.comm is None:
            payloads = [payload]
        else:
            # wait asleep for the others: a blocking collective spins on its core (Open MPI)
            arrived = self.comm.Ibarrier()
            while not arrived.Test():
                time.sleep(WAIT_POLL_S)
            payloads = self.comm.allgather(payload)
        failures = [p for p in payloads if p[0] == "failed"]
        if failures:
            _, rank, message = failures[0]
            raise RankFailure(message if self.size == 1 else f"rank {rank}: {message}")
        return [p[1] for p in payloads]

    def bcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (an error on rank 0 is raised on all)."""
        return self._exchange(("ok", obj))[0]

    def finish(self, error: BaseException | None) -> None:
        """Collective end of a unit of work: raise on all ranks if any rank failed."""
        if isinstance(error, RankFailure):
            raise error  # already exchanged: every rank raised it from the same collective
        if error is None:
            self._exchange(("ok", None))
        else:
            self._exchange(("failed", self.rank, _describe(error)))

    def map(self, fn: Callable[[Any], Any], items: Iterable, *,
            progress: Callable[[int], None] | None = None, costs: Sequence[float] | None = None) -> list:
        """``[fn(item) for item in items]``, items farmed round-robin over the ranks.

        ``progress(n_done_here)`` is called on each rank after each of its items. ``costs`` (one
        relative cost per item): farm by :func:`assign` instead, so that one long item does not wait
        behind short ones on the same rank.
        """
        items = list(items)
        if costs is None:
            share = range(self.rank, len(items), self.size)
        else:
            if len(costs) != len(items):
                raise ValueError(f"Farm.map: {len(costs)} costs for {len(items)} items")
            share = assign(costs, self.size)[self.rank]
        mine: list[tuple[int, Any]] = []
        try:
            for index in share:
                mine.append((index, fn(items[index])))
                if progress is not None:
                    progress(len(mine))
        except RankFailure:
            raise
        except Exception as exc:
            self._exchange(("failed", self.rank, f"task {index} ({items[index]!r}): {_describe(exc)}"))
        gathered = self._exchange(("ok", mine))
        results: list = [None] * len(items)
        for part in gathered:
            for index, value in part:
                results[index] = value
        return results


def assign(costs: Sequence[float], size: int) -> list[list[int]]:
    """Item indices per rank: the costliest item first, each to the rank with the least cost so far
    (ties: lowest rank, then lowest index), the longest-processing-time rule. Deterministic."""
    shares: list[list[int]] = [[] for _ in range(size)]
    load = [0.0] * size
    for index in sorted(range(len(costs)), key=lambda k: (-float(costs[k]), k)):
        rank = min(range(size), key=lambda r: (load[r], r))
        shares[rank].append(index)
        load[rank] += float(costs[index])
    return shares


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StageError) or type(exc).__name__ in ("CaseError",):
        return str(exc)
    if isinstance(exc, ImportError):  # an engine package imported inside a task is missing
        unavailable = from_import_error(exc)
        if unavailable is not None:
            return f"not available: {unavailable}"
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"

