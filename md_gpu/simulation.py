"""Run a protocol: a list of stages (ensemble, cell modifiers, steps) through one loop.

Data flow::

    State + force field (+ external per-atom force) --> Simulation(stages) --> per stage:
        velocity_verlet(thermostat, modifiers), then the observers (whole run, then the stage's)
        every thermo_every steps: a row of the thermo table (T, energies, stress, cell), judged by
            the run's :class:`BlowUpGuard` (MDRunError when the run blew up)
        every traj_every steps: an extxyz frame;  every checkpoint_every: a checkpoint (.npz)
        every grade_every steps: extrapolation grades (:mod:`md_gpu.extrapolation`)
    --> RunResult(thermo: dict of arrays, final MDState, stage start rows, stopped_by)

A protocol is data (:class:`Stage`), e.g. the tensile test is "NVT + in-plane
barostat for n steps, then deform along x at a strain rate with the transverse
barostat until failure". A run stopped at any point resumes from its last
checkpoint with :meth:`Simulation.resume` and gives, bit for bit on the NumPy backend (CuPy: the same
state, with the random stream restarted from the seed, :func:`md_gpu.integrators.rng_state`), the same
trajectory, thermo table and observer results as an uninterrupted run: a checkpoint holds the
random generator state, the configuration the neighbour list in use was built for (a list built at the
saved step would order and count pairs differently and change the last bits of the sums; built again
from that configuration it is the same list, and the forces on it those of the saved step) and the
accumulators of every observer that has them (``checkpoint_arrays() -> {name: array}`` and
``restore_arrays(arrays)``; files an observer writes: ``cut_files(arrays)``), why a stage stopped early,
and the length of the trajectory file, which a resume cuts back to (the frames a killed run wrote after
its last checkpoint are written again). A run checkpoints at its start too, so a run killed before its
first step checkpoint cuts what it wrote from files it shares with earlier runs (a protocol's segments).
Every stage ends with a checkpoint, so the checkpoint of a finished run replays it (thermo table and
final state) without a step, and cuts nothing: later runs may have appended to those files.

Extension points, all fixed when the Simulation is built: ``per_atom=True`` (per-atom energies
and virials in every ForceResult, for heat currents), ``external_force(state, result) -> [n, 3]``
(eV/Å, added to the forces of every step), ``observers`` (callables ``observer(md)`` run after
every step; :attr:`Stage.observers` for one stage only; an observer that accumulates state also has
``checkpoint_arrays()`` and ``restore_arrays(arrays)``, so that a checkpoint carries it) and ``blowup``
(a :class:`BlowUpGuard`).

Host reads of the neighbour list (:mod:`md_gpu.neighbors`): with ``neighbor_check_every = 1`` (the
default) every step tests the list exactly, one read per step. With ``neighbor_check_every = N > 1`` a
stage whose every step can be replayed (no barostat, which reads the stress each step anyway; a
thermostat with ``rewindable = True``, or none; observers with ``mark() -> token`` and ``rewind(token)``;
``external_force`` a function of the state, since a replay calls it again)
tests it only at its checks: every N steps and before anything that leaves the loop (a thermo row, a
frame, a checkpoint, an extrapolation check, the stage's end). A check that finds the list went stale
since the last one rewinds the run to that check (state, random stream on NumPy, observers) and replays
the steps with the exact test (``n_replays`` counts them); the interval is then halved, and it grows back
by one step per check that keeps the list, up to N (a list that lasts fewer than N steps, in a hot cell
or with a thin skin, is checked as often as it needs). The trajectory is one the exact test gives
(on NumPy the same to the last bits as long as no replay and no rebuild at a check changes the list's
order; on CuPy a replay draws new random numbers: cuRAND's state is not kept).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .analysis import VOIGT_COLUMN
from common.arrays import array_module
from .backend import get_backend, host_scalar, to_host
from .cell_control import Barostat, Deform, axis_index
from .errors import MDRunError, MDSetupError
from .integrators import MDState, make_force_fn, make_rng, rng_state, stress_array, velocity_verlet
from .neighbors import NeighborList
from .state import State, kinetic_energy_array, temperature
from .units import PER_S_TO_PER_FS

THERMO_COLUMNS = ("step", "time_fs", "stage", "temperature_K", "potential_eV", "kinetic_eV", "heat_eV",
                  "stress_xx_GPa", "stress_yy_GPa", "stress_zz_GPa", "stress_yz_GPa", "stress_xz_GPa",
                  "stress_xy_GPa", "cell_xx_A", "cell_yy_A", "cell_zz_A", "cell_xy_A", "max_grade")
COLLAPSE_EV_PER_ATOM = 1.0  # default BlowUpGuard.collapse_eV_per_atom (also the 0 K relaxation's hole test)
OVERHEAT_FACTOR = 10.0      # default BlowUpGuard.overheat_factor


@dataclass(frozen=True)
class BlowUpGuard:
    """The one decision "this run blew up", taken on every thermo row (except a stage's first).

    A row means a blow-up (:class:`MDRunError`, whose message says which criterion) when

    1. its potential energy or temperature is not finite;
    2. its potential energy lies more than ``collapse_eV_per_atom`` (eV/atom) below the run's first
       row: a collapse into a hole of the potential, not physics (reconstructions and fracture change
       it by tenths of an eV per atom);
    3. in a stage that does not deform the cell, its temperature T (K) exceeds
       ``overheat_factor x max(target, floor_K)``, where ``target`` is ``target_K`` if given, else the
       stage thermostat's ``temperature_K`` (a stage without either is not checked): with a thermostat
       on, that heat is energy the potential releases outside its training data, faster than the
       thermostat takes it out. Deforming stages are exempt: a small cell that fractures heats up
       legitimately, and the failure detector ends them.

    The default (10 x max(thermostat, 300 K)) suits mechanical runs; the thermal protocols use a
    strict guard (2 x max(T, 1 K) against the run's temperature, baths included), since a heat
    current measured in an overheated cell is meaningless.
    """

    collapse_eV_per_atom: float = COLLAPSE_EV_PER_ATOM
    overheat_factor: float = OVERHEAT_FACTOR
    floor_K: float = 300.0
    target_K: float | None = None

    def overheat_target_K(self, stage: "Stage") -> float | None:
        """The temperature (K) that ``stage`` is held at, None when its overheating is not checked."""
        if stage.deform_axis is not None:
            return None
        return self.target_K if self.target_K is not None else getattr(stage.thermostat, "temperature_K", None)

    def check(self, rows: list, n_atoms: int, stage: "Stage") -> None:
        """MDRunError when the newest of ``rows`` (thermo rows, THERMO_COLUMNS) shows a blow-up."""
        step, temperature_K, energy = rows[-1][0], rows[-1][3], rows[-1][4]
        if not (np.isfinite(energy) and np.isfinite(temperature_K)):
            raise MDRunError(f"step {step:.0f}: the energy ({energy}) or temperature ({temperature_K}) is not "
                             "finite: the system blew up")
        drop = (rows[0][4] - energy) / n_atoms
        if drop > self.collapse_eV_per_atom:
            raise MDRunError(f"step {step:.0f}: the potential energy fell {drop:.3g} eV/atom below the run's start "
                             f"(more than {self.collapse_eV_per_atom:g}): the system collapsed into a hole of the "
                             "potential, where it has no training data. Check the potential with a 0 K relaxation "
                             "(md.stability.relax_steps) and md.extrapolation.every")
        target = self.overheat_target_K(stage)
        if target is not None and not temperature_K <= self.overheat_factor * max(target, self.floor_K):
            raise MDRunError(f"step {step:.0f}: the run blew up: the temperature is {temperature_K:.4g} K in stage "
                             f"'{stage.name}' held at {target:g} K (more than {self.overheat_factor:g} x "
                             f"max(target, {self.floor_K:g} K)): energy released by the potential outside its "
                             "training data (a hole)")


@dataclass
class Stage:
    """One protocol stage.

    name: label; steps: number of steps (an upper bound when ``stop_on_failure``);
    thermostat: None (NVE), ``Bussi``, ``Langevin`` or any object with ``end(md, dt_fs) -> MDState``
    (e.g. heat baths); barostat: None or ``Barostat``; observers: callables ``observer(md)`` run after
    every step of this stage (measurements; they must not change ``md``);
    deform_axis: None or 'x'/'y'/'z' with ``strain_rate_per_s`` (1/s); stop_on_failure:
    end the stage at failure as judged by :class:`FailureDetector` (``failure_drop``,
    ``failure_window`` thermo rows, ``failure_min_strain``) on the stress along ``deform_axis``.
    """

    name: str
    steps: int
    thermostat: object = None
    barostat: Barostat | None = None
    deform_axis: str | None = None
    strain_rate_per_s: float = 0.0
    stop_on_failure: bool = False
    failure_drop: float = 0.5
    failure_window: int = 5
    failure_min_strain: float = 0.02
    observers: tuple = ()

    def __post_init__(self):
        if self.steps < 0:
            raise MDSetupError(f"stage '{self.name}': steps={self.steps} must be >= 0")
        if self.stop_on_failure:
            FailureDetector(self.failure_drop, self.failure_window, self.failure_min_strain)  # checks them
        if self.deform_axis is not None:
            axis_index(self.deform_axis)
            if self.strain_rate_per_s <= 0:
                raise MDSetupError(f"stage '{self.name}': strain_rate_per_s={self.strain_rate_per_s} "
                                   "must be > 0 (1/s)")


class FailureDetector:
    """Decides when a sample under tension has failed, from the thermo rows of the deformation stage.

    The axial stress is smoothed by a running mean over the last ``window`` rows; the sample has
    failed once the strain exceeds ``min_strain`` and the smoothed stress has fallen below
    ``drop`` x its running maximum (which must be > 0). Without the smoothing and the minimum
    strain, thermal noise at the start of a pull (stress ~ 0 +- noise) reads as a failure.
    """

    def __init__(self, drop: float = 0.5, window: int = 5, min_strain: float = 0.02):
        if not (0 < drop < 1) or window < 1 or min_strain < 0:
            raise MDSetupError(f"failure detection: failure_drop={drop} must be in (0, 1), failure_window="
                               f"{window} >= 1 row and failure_min_strain={min_strain} >= 0")
        self.drop, self.window, self.min_strain = float(drop), int(window), float(min_strain)
        self.recent: list = []
        self.peak = -np.inf
        self.smoothed = np.nan

    def update(self, strain: float, stress: float) -> bool:
        """Add one thermo row (engineering strain, axial stress in any unit); True once failed."""
        self.recent = (self.recent + [float(stress)])[-self.window:]
        smoothed = float(np.mean(self.recent))
        self.peak = max(self.peak, smoothed)
        self.smoothed = smoothed
        return strain >= self.min_strain and self.peak > 0 and smoothed < self.drop * self.peak


@dataclass
class RunResult:
    """thermo: column name -> [rows] array (units in the names); md: final MDState;
    stage_rows: first thermo row of each stage; stopped_by: '' or why a stage ended early."""

    thermo: dict
    md: MDState
    stage_rows: list = field(default_factory=list)
    stage_L0: list = field(default_factory=list)
    stopped_by: str = ""


def thermo_columns(rows: list) -> dict:
    """Thermo rows (lists in :data:`THERMO_COLUMNS` order) as ``{column: array [rows]}``."""
    thermo = np.array(rows, dtype=float).reshape(-1, len(THERMO_COLUMNS))
    return {c: thermo[:, n] for n, c in enumerate(THERMO_COLUMNS)}


class Simulation:
    """The MD loop for one system; see the module docstring.

    ff: force field (contract of :mod:`md_gpu.forcefields.base`); state: :class:`State`;
    dt_fs: time step (fs); skin_A: Verlet skin (Å); seed: random seed; thermo_every,
    traj_every, checkpoint_every: intervals in steps (0 = never); traj_path (extxyz),
    checkpoint_path (.npz); extrapolation: None or :class:`md_gpu.extrapolation.ExtrapolationControl`;
    log: callable taking a line; progress_every_s: seconds between progress lines;
    per_atom: per-atom energies [n] (eV) and virials [n, 3, 3] (eV) in every ForceResult;
    external_force: None or ``external_force(state, result) -> [n, 3]`` (eV/Å), added to the forces
    of every force call; observers: callables ``observer(md)`` run after every step of every stage
    (before the stage's own :attr:`Stage.observers`); blowup: the :class:`BlowUpGuard` (default: its
    defaults); neighbor_check_every: steps between the neighbour-list checks of the stages that allow
    a replay (1: an exact check every step; module docstring). None of these change after construction.
    """

    def __init__(self, ff, state: State, *, dt_fs: float = 1.0, skin_A: float = 1.0, seed: int = 0,
                 thermo_every: int = 10, traj_every: int = 0, traj_path=None, checkpoint_every: int = 0,
                 checkpoint_path=None, extrapolation=None, log=print, progress_every_s: float = 30.0,
                 per_atom: bool = False, external_force=None, observers=(), blowup: BlowUpGuard | None = None,
                 neighbor_check_every: int = 1):
        if thermo_every < 1 or neighbor_check_every < 1:
            raise MDSetupError(f"thermo_every={thermo_every} and neighbor_check_every={neighbor_check_every} "
                               "must be >= 1 step")
        if traj_every and traj_path is None or checkpoint_every and checkpoint_path is None:
            raise MDSetupError("traj_every / checkpoint_every need traj_path / checkpoint_path")
        self.ff = ff
        self.state = state
        self.dt_fs = float(dt_fs)
        self.seed = int(seed)
        self.nlist = NeighborList(ff.cutoff, skin_A, state.pbc)
        self.force_fn = make_force_fn(ff, self.nlist, per_atom=per_atom, external_force=external_force)
        self.observers = tuple(observers)
        self.blowup = blowup if blowup is not None else BlowUpGuard()
        self.thermo_every = int(thermo_every)
        self.traj_every = int(traj_every)
        self.traj_path = Path(traj_path) if traj_path else None
        self.checkpoint_every = int(checkpoint_every)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.extrapolation = extrapolation
        self.log = log
        self.progress_every_s = progress_every_s
        self.check_every = int(neighbor_check_every)
        self._interval = self.check_every  # steps between deferred checks now (module docstring)
        self.n_replays = 0
        self._resume = None

    # -- recording -------------------------------------------------------------
    def _row(self, md: MDState, stage_index: int, grade: float) -> list:
        """One thermo row (THERMO_COLUMNS): stress, kinetic and potential energy and heat read in one transfer."""
        s = md.state
        sig, ke, energy, heat = to_host(stress_array(md), kinetic_energy_array(s), md.result.energy, md.heat)
        ke = float(ke)
        return [md.step, md.time_fs, stage_index, temperature(s, ke), float(energy), ke,
                float(heat), sig[0, 0], sig[1, 1], sig[2, 2], sig[1, 2], sig[0, 2], sig[0, 1],
                s.cell[0, 0], s.cell[1, 1], s.cell[2, 2], s.cell[1, 0], grade]

    def _write_frame(self, md: MDState) -> None:
        from ase.io import write

        from .state import to_atoms

        atoms = to_atoms(md.state)
        atoms.info.update(step=md.step, time_fs=md.time_fs, energy=host_scalar(md.result.energy))
        write(self.traj_path, atoms, format="extxyz", append=True)

    # -- checkpoints -----------------------------------------------------------
    def _checkpoint(self, md: MDState, stage_index: int, step_in_stage: int, t0_fs: float, L0_A: float,
                    rows: list, stage_rows: list, stage_L0: list, stateful: list, stopped_by: str) -> None:
        from .io import write_checkpoint

        arrays = {f"observer{k}.{name}": value for k, observer in enumerate(stateful)
                  for name, value in observer.checkpoint_arrays().items()}
        meta = {"stage_index": stage_index, "step_in_stage": step_in_stage, "t0_fs": t0_fs, "L0_A": L0_A,
                "rng_state": rng_state(md.rng), "stage_rows": stage_rows, "stage_L0": stage_L0, "seed": self.seed,
                "traj_bytes": self._traj_bytes(), "stopped_by": stopped_by, "check_interval": self._interval,
                "neighbor_checks": self.nlist.check_record()}
        write_checkpoint(self.checkpoint_path, md, meta=meta,
                         thermo=np.array(rows, dtype=float).reshape(-1, len(THERMO_COLUMNS)), nlist=self.nlist,
                         arrays=arrays)

    def _traj_bytes(self) -> int | None:
        """The size of the trajectory file (bytes; None without one): a resume cuts it back to this."""
        if not self.traj_every or self.traj_path is None:
            return None
        return self.traj_path.stat().st_size if self.traj_path.is_file() else 0

    @classmethod
    def resume(cls, checkpoint_path, ff, **kwargs) -> "Simulation":
        """A Simulation that continues the run saved in ``checkpoint_path`` (call :meth:`run` with the same stages)."""
        from .io import read_checkpoint

        state, extra, meta, thermo = read_checkpoint(checkpoint_path, xp=get_backend())  # on the run's backend
        kwargs.setdefault("checkpoint_path", checkpoint_path)
        kwargs["seed"] = meta["seed"]
        sim = cls(ff, state, **kwargs)
        sim._resume = (extra, meta, thermo)
        return sim

    def _restore(self, xp, stateful: list, finished: bool) -> MDState:
        """The MDState saved in the checkpoint being resumed; the neighbour list and the observers'
        accumulators as they were. The files written after the checkpoint (trajectory frames, an
        observer's ``cut_files``) are cut back, unless the checkpoint is of the finished run
        (``finished``): a protocol that goes on in another Simulation (a tensile test's next segment)
        appends to the same files after it."""
        extra, meta, _ = self._resume
        rng = make_rng(self.seed, xp, state=meta["rng_state"])
        for k, observer in enumerate(stateful):
            head = f"observer{k}."
            arrays = {n[len(head):]: v for n, v in extra["arrays"].items() if n.startswith(head)}
            if arrays:
                observer.restore_arrays(arrays)
                if not finished and hasattr(observer, "cut_files"):
                    observer.cut_files(arrays)
        size = meta.get("traj_bytes")
        if not finished and size is not None and self.traj_path is not None and self.traj_path.is_file():
            with open(self.traj_path, "r+b") as handle:  # drop the frames written after the checkpoint
                handle.truncate(size)
        saved = extra["nlist"]
        if saved is not None:  # the list in use, built again from its configuration: the same pairs, same order
            self.nlist.restore(xp.asarray(saved["ref_positions"]), np.asarray(saved["ref_cell"], dtype=float),
                               meta.get("neighbor_checks"))
        self._interval = int(meta.get("check_interval", self.check_every))
        init, _ = velocity_verlet(self.force_fn, self.dt_fs)  # forces on that list: those of the saved step
        return init(self.state, rng=rng, step=extra["step"], time_fs=extra["time_fs"], heat=extra["heat"])

    # -- deferred neighbour-list checks ---------------------------------------------
    def _replayable(self, stage: Stage, observers) -> bool:
        """Whether ``stage`` may defer its neighbour-list checks (module docstring): they are asked for,
        and every step can be replayed from a mark."""
        return (self.check_every > 1 and stage.barostat is None
                and (stage.thermostat is None or getattr(stage.thermostat, "rewindable", False))
                and all(hasattr(o, "mark") and hasattr(o, "rewind") for o in observers))

    @staticmethod
    def _mark(md: MDState, k: int, observers) -> tuple:
        """What a replay restarts from: the state after step ``k`` of the stage, the random stream's state
        (NumPy; None on CuPy) and each observer's token."""
        return md, k, rng_state(md.rng), [o.mark() for o in observers]

    @staticmethod
    def _rewind(mark: tuple, observers) -> tuple:
        """``(md, k)`` of ``mark``, with the random stream and the observers set back to it."""
        md, k, random_state, tokens = mark
        if random_state is not None:
            md.rng.bit_generator.state = random_state
        for observer, token in zip(observers, tokens):
            observer.rewind(token)
        return md, k

    # -- the loop --------------------------------------------------------------
    def run(self, stages: list[Stage]) -> RunResult:
        """Run ``stages`` in order (from the checkpoint when resumed); return the :class:`RunResult`.
        An :class:`~md_gpu.errors.MDRunError` raised on the way carries, as ``thermo``, the rows that
        passed the guards (the row a guard rejected is left out)."""
        xp = array_module(self.state.positions)
        rows, stage_rows, stage_L0 = [], [], []
        first_stage, first_step, t0_fs, L0_A = 0, 0, None, None
        md = None
        stopped_by = ""
        # observers (and the extrapolation control) whose state travels with the checkpoints, in a fixed order
        stateful = [o for o in self.observers + tuple(o for st in stages for o in st.observers) + (self.extrapolation,)
                    if hasattr(o, "checkpoint_arrays")]
        if self._resume is not None:
            _, meta, thermo = self._resume
            rows = [list(r) for r in thermo]
            stage_rows, stage_L0 = list(meta["stage_rows"]), list(meta["stage_L0"])
            first_stage, first_step = meta["stage_index"], meta["step_in_stage"]
            t0_fs, L0_A = meta["t0_fs"], meta["L0_A"]
            stopped_by = meta.get("stopped_by", "")
            md = self._restore(xp, stateful, finished=first_stage >= len(stages))
        total = sum(st.steps for st in stages)
        done_before = sum(st.steps for st in stages[:first_stage]) + first_step
        clock = time.monotonic()
        last_report = clock
        try:
            for index in range(first_stage, len(stages)):
                stage = stages[index]
                if md is None:
                    init, _ = velocity_verlet(self.force_fn, self.dt_fs)
                    md = init(self.state, seed=self.seed)
                    if self.checkpoint_every:  # where this run began: a resume before its first checkpoint
                        # cuts the files it shares with earlier runs (a protocol's segments) back to here
                        self._checkpoint(md, index, 0, md.time_fs, 0.0, rows, stage_rows, stage_L0, stateful,
                                         stopped_by)
                resumed_here = index == first_stage and first_step > 0
                if not resumed_here:
                    t0_fs = md.time_fs
                    stage_rows.append(len(rows))
                    L0_A = 0.0
                    if stage.deform_axis is not None:
                        k_axis = axis_index(stage.deform_axis)
                        L0_A = float(md.state.cell[k_axis, k_axis])
                    stage_L0.append(L0_A)
                modifiers = []
                if stage.deform_axis is not None:
                    modifiers.append(Deform(stage.deform_axis, stage.strain_rate_per_s, L0_A=L0_A, t0_fs=t0_fs))
                if stage.barostat is not None:
                    modifiers.append(stage.barostat)
                _, step_fn = velocity_verlet(self.force_fn, self.dt_fs, thermostat=stage.thermostat,
                                             modifiers=modifiers)
                start = first_step if resumed_here else 0
                if not resumed_here:
                    rows.append(self._row(md, index, np.nan))
                failure = None
                if stage.stop_on_failure:
                    failure = FailureDetector(stage.failure_drop, stage.failure_window, stage.failure_min_strain)
                    axial_column = THERMO_COLUMNS.index(VOIGT_COLUMN[axis_index(stage.deform_axis)])
                    rate_per_fs = stage.strain_rate_per_s * PER_S_TO_PER_FS
                    for row in rows[stage_rows[index] + 1:]:  # rows before a resume count too
                        failure.update(rate_per_fs * (row[1] - t0_fs), row[axial_column])
                observers = self.observers + tuple(stage.observers)
                deferred = self._replayable(stage, observers)
                mark = self._mark(md, start, observers) if deferred else None
                replay_to = 0  # steps up to this one are a replay: exact list checks
                if not resumed_here:
                    self._interval = self.check_every
                k = start
                while k < stage.steps:
                    k += 1
                    self.nlist.deferred = deferred and k > replay_to
                    md = step_fn(md)
                    for observer in observers:
                        observer(md)
                    grading = self.extrapolation is not None and md.step % self.extrapolation.every == 0
                    row_due = k % self.thermo_every == 0 or k == stage.steps
                    frame_due = self.traj_every and md.step % self.traj_every == 0
                    checkpoint_due = self.checkpoint_every and md.step % self.checkpoint_every == 0
                    if self.nlist.deferred and (grading or row_due or frame_due or checkpoint_due
                                                or k - mark[1] >= self._interval):
                        if not self.nlist.verify(md.state.positions, md.state.cell, self._interval):
                            replay_to, (md, k) = k, self._rewind(mark, observers)
                            self.n_replays += 1
                            self._interval = max(1, self._interval // 2)
                            continue
                        mark = self._mark(md, k, observers)
                        self._interval = min(self.check_every, self._interval + 1)
                    elif deferred and k == replay_to:
                        mark = self._mark(md, k, observers)
                    grade = np.nan
                    if grading:
                        grade = self.extrapolation.check(md, self.nlist)
                    if row_due:
                        rows.append(self._row(md, index, grade))
                        try:
                            self.blowup.check(rows, md.state.n_atoms, stage)
                        except MDRunError:
                            rows.pop()  # the row a guard rejected is not part of the run
                            raise
                        if failure is not None and failure.update(
                                rate_per_fs * (md.time_fs - t0_fs), rows[-1][axial_column]):
                            stopped_by = (f"stage '{stage.name}': failure at step {md.step} (stress fell to "
                                          f"{failure.smoothed:.3g} GPa from a peak of {failure.peak:.3g} GPa, "
                                          f"means over {failure.window} thermo rows)")
                            self.log(stopped_by)
                            break
                    if frame_due:
                        self._write_frame(md)
                    if checkpoint_due:
                        self._checkpoint(md, index, k, t0_fs, L0_A, rows, stage_rows, stage_L0, stateful,
                                         stopped_by)
                    now = time.monotonic()
                    if now - last_report > self.progress_every_s:
                        done = done_before + k
                        rate = (done - (sum(s.steps for s in stages[:first_stage]) + first_step)) / (now - clock)
                        eta = (total - done) / max(rate, 1e-12)
                        self.log(f"md: {stage.name} step {k}/{stage.steps} ({done}/{total} total), "
                                 f"{rate * md.state.n_atoms:.3g} atom-steps/s, ETA {eta:.0f} s")
                        last_report = now
                done_before += stage.steps
                if self.checkpoint_every:
                    self._checkpoint(md, index + 1, 0, t0_fs, L0_A, rows, stage_rows, stage_L0, stateful,
                                     stopped_by)
        except MDRunError as exc:  # the rows that passed the guards go with the error
            exc.thermo = thermo_columns(rows)
            raise
        finally:
            self.nlist.deferred = False
        return RunResult(thermo_columns(rows), md, stage_rows, stage_L0, stopped_by)

