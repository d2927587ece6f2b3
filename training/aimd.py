"""Resumable NVT AIMD over a temperature x strain grid: the reference data of one system.

Data flow: the system's cell as built (:mod:`training.cells`) -> relaxed 0 K start
cell (cached) -> for every *chain* (one temperature, one strain mode) an NVT
Langevin run that strains the cell step by step through ``plan.strains``
(0 % to beyond failure), recording a frame every ``stride_steps`` MD steps ->
``<system>.work/chain_*.extxyz`` (appended frame by frame) -> when every chain
is complete, ``<system>.extxyz.gz`` + ``<system>.meta.json`` (engine, method,
settings, versions, plan, timing, reference cell/stiffness) + ``<system>.structure.extxyz``
(the relaxed 0 K cell).

This is the "two-step passive training" data recipe: stress-free and
strained cells (uniaxial x, uniaxial y, biaxial), several temperatures, cells
at least twice the MTP cut-off in every periodic direction.

Resuming: after each recorded frame the exact MD state (positions, momenta,
cell, frame count, elapsed time) of its chain is saved atomically to
``chain_*.state.npz``. The random numbers of each frame segment come from a
generator seeded by ``(seed, chain, frame)``, so an interrupted generation
continues where it stopped and produces the same frames as one that never
stopped.

Each frame's ``atoms.info``: ``system``, ``temperature_K`` (target, K),
``strain`` ([exx, eyy], engineering strain of the relaxed 0 K cell),
``engine`` (label), ``chain``, ``step``, ``time_fs`` (fs),
``kinetic_temperature_K`` (K). Reference properties as in
:mod:`training.datasets`.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units

from common.atomic import atomic_path, atomic_write, write_text

from . import datasets, engines, reference

STRAIN_MODES = {"x": (1.0, 0.0), "y": (0.0, 1.0), "xy": (1.0, 1.0)}


@dataclass(frozen=True)
class AIMDPlan:
    """The grid and MD settings of one generation (all keyword-only in practice).

    Per chain: ``equilibration_steps`` at zero strain, then for every strain
    ``frames_per_strain`` frames ``stride_steps`` apart (the first one
    ``settle_steps`` after the strain is applied). Time step in fs, Langevin
    friction in 1/fs, temperatures in K, strains dimensionless.
    """

    temperatures_K: tuple = (300.0, 900.0, 1500.0)
    strain_modes: tuple = ("x", "y", "xy")
    strains: tuple = (0.0, 0.05, 0.10, 0.15, 0.20, 0.30)
    timestep_fs: float = 1.0
    equilibration_steps: int = 20
    settle_steps: int = 5
    stride_steps: int = 5
    frames_per_strain: int = 4
    friction_per_fs: float = 0.02
    seed: int = 0

    def __post_init__(self):
        for mode in self.strain_modes:
            if mode not in STRAIN_MODES:
                raise ValueError(f"data.aimd.strain_modes: {mode!r} is not one of {', '.join(STRAIN_MODES)}")
        if not self.temperatures_K or min(self.temperatures_K) <= 0:
            raise ValueError(f"data.aimd.temperatures_K: need positive temperatures, got {self.temperatures_K}")
        if not self.strains or min(self.strains) <= -1.0:
            raise ValueError(f"data.aimd.strains: need strains > -1, got {self.strains}")
        if not self.timestep_fs > 0:
            raise ValueError(f"data.aimd.timestep_fs: must be > 0 fs, got {self.timestep_fs}")
        if self.friction_per_fs < 0:
            raise ValueError(f"data.aimd.friction_per_fs: must be >= 0 (1/fs), got {self.friction_per_fs}")
        for key in ("equilibration_steps", "settle_steps", "stride_steps", "frames_per_strain"):
            if getattr(self, key) < 1:
                raise ValueError(f"data.aimd.{key}: must be >= 1, got {getattr(self, key)}")

    @property
    def chains(self) -> list[tuple[float, str]]:
        """(temperature_K, mode) of every chain, in generation order."""
        return [(float(t), m) for t in self.temperatures_K for m in self.strain_modes]

    @property
    def frames_per_chain(self) -> int:
        return len(self.strains) * self.frames_per_strain

    def steps_before(self, frame: int) -> int:
        """MD steps run in a chain between frame ``frame - 1`` and frame ``frame``."""
        if frame == 0:
            return self.equilibration_steps
        return self.settle_steps if frame % self.frames_per_strain == 0 else self.stride_steps

    @property
    def steps_per_chain(self) -> int:
        return sum(self.steps_before(k) for k in range(self.frames_per_chain))


@dataclass
class ChainTask:
    """Everything one chain needs (picklable, for ``ctx.map`` over MPI ranks)."""

    system: str
    index: int
    temperature_K: float
    mode: str
    plan: AIMDPlan
    engine: str
    engine_settings: dict = field(default_factory=dict)
    work_dir: str = "."  # holds <system>.start.extxyz, the relaxed start cell (start_structure)

    @property
    def stem(self) -> str:
        return f"chain_{self.index:02d}_T{self.temperature_K:g}_{self.mode}"


def _atomic_savez(path: Path, **arrays) -> None:
    atomic_write(path, lambda handle: np.savez(handle, **arrays), mode="wb")


def start_structure(system: str, work_dir: Path, calc, *, atoms: Atoms, free: str = "lattice",
                    fmax: float = 0.01) -> Atoms:
    """The relaxed 0 K start cell of ``system``, cached as ``work_dir/<system>.start.extxyz``.

    ``atoms``: the cell as built; ``free``: which cell components relax with the positions
    (:data:`training.reference.RELAX_MASKS`: ``lattice`` for a phase, ``normal`` for an interface cell).
    """
    import ase.io

    cache = Path(work_dir) / f"{system}.start.extxyz"
    if cache.is_file():  # always the file, so a resumed run starts from the same numbers
        return ase.io.read(cache, format="extxyz")
    relaxed = reference.relax_cell(atoms, calc, free=free, fmax=fmax, steps=500)
    start = Atoms(relaxed.numbers, positions=relaxed.positions, cell=relaxed.cell, pbc=True)
    with atomic_path(cache) as tmp:
        start.write(tmp, format="extxyz")
    return ase.io.read(cache, format="extxyz")


def _strain_cell(cell0: np.ndarray, mode: str, strain: float) -> np.ndarray:
    fx, fy = STRAIN_MODES[mode]
    return cell0 @ np.diag([1.0 + fx * strain, 1.0 + fy * strain, 1.0])


def _record(atoms: Atoms, task: ChainTask, frame: int, step: int, label: str) -> Atoms:
    strain = task.plan.strains[frame // task.plan.frames_per_strain]
    fx, fy = STRAIN_MODES[task.mode]
    out = datasets.with_reference(
        Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc),
        energy=atoms.get_potential_energy(), forces=atoms.get_forces(), stress=atoms.get_stress())
    out.info.update(system=task.system, temperature_K=task.temperature_K,
                    strain=np.array([fx * strain, fy * strain]), engine=label, chain=task.stem,
                    step=step, time_fs=step * task.plan.timestep_fs,
                    kinetic_temperature_K=float(atoms.get_temperature()))
    return out


def run_chain(task: ChainTask, progress=None) -> dict:
    """Run (or resume) one chain; returns {'chain', 'frames', 'steps', 'elapsed_s'}.

    ``progress(done_frames, total_frames, what)`` is called after every frame.
    """
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md import velocitydistribution as vd

    plan = task.plan
    work = Path(task.work_dir)
    frames_path = work / f"{task.stem}.extxyz"
    state_path = work / f"{task.stem}.state.npz"
    calc = engines.make_calculator(task.engine, task.engine_settings)
    label = engines.engine_label(task.engine, task.engine_settings)
    start = _read_start(work, task.system)
    cell0 = start.cell.array.copy()
    total = plan.frames_per_chain

    atoms = start.copy()
    done, step, elapsed = 0, 0, 0.0
    if state_path.is_file():
        state = np.load(state_path)
        done, step, elapsed = int(state["frames"]), int(state["step"]), float(state["elapsed_s"])
        atoms.set_cell(state["cell"])
        atoms.positions = state["positions"]
        atoms.set_momenta(state["momenta"])
        _truncate_frames(frames_path, done)
    else:
        frames_path.unlink(missing_ok=True)
        # twice the target: half of it flows into potential energy (equipartition) within ~10 fs
        thermalize = getattr(vd, "thermalize_momenta", vd.MaxwellBoltzmannDistribution)  # ase >= 3.29
        thermalize(atoms, temperature_K=2.0 * task.temperature_K,
                   rng=np.random.default_rng([plan.seed, task.index, 0, 1]))
        vd.Stationary(atoms)
    atoms.calc = calc
    atoms.set_constraint(FixCom())

    while done < total:
        t0 = time.perf_counter()
        if done % plan.frames_per_strain == 0:
            atoms.set_cell(_strain_cell(cell0, task.mode, plan.strains[done // plan.frames_per_strain]),
                           scale_atoms=True)
        nsteps = plan.steps_before(done)
        dyn = Langevin(atoms, plan.timestep_fs * units.fs, temperature_K=task.temperature_K,
                       friction=plan.friction_per_fs / units.fs,
                       fixcm=False, rng=np.random.default_rng([plan.seed, task.index, done]))
        dyn.run(nsteps)
        step += nsteps
        frame = _record(atoms, task, done, step, label)
        with open(frames_path, "a") as handle:
            datasets.write_extxyz(handle, [frame])
        done += 1
        elapsed += time.perf_counter() - t0
        _atomic_savez(state_path, frames=done, step=step, elapsed_s=elapsed, cell=atoms.cell.array,
                      positions=atoms.positions, momenta=atoms.get_momenta())
        if progress is not None:
            progress(done, total, f"{task.system} {task.stem} strain "
                     f"{plan.strains[(done - 1) // plan.frames_per_strain]:.2f} "
                     f"({elapsed / max(step, 1):.2f} s/step)")
    return {"chain": task.stem, "frames": done, "steps": step, "elapsed_s": elapsed}


def _truncate_frames(path: Path, keep: int) -> None:
    """Drop frames beyond the first ``keep`` (written after the last saved state)."""
    if not path.is_file():
        if keep:
            raise datasets.DatasetError(f"{path}: missing, but its state file says {keep} frames were "
                                        "recorded; delete the chain's .state.npz to restart the chain")
        return
    frames = datasets.read(path) if keep else []
    if len(frames) < keep:
        raise datasets.DatasetError(f"{path}: holds {len(frames)} frames, its state file says {keep}; "
                                    "delete the chain's .state.npz and .extxyz to restart the chain")
    if len(frames) > keep:
        with atomic_path(path) as tmp:
            _append(tmp, frames[:keep])


def _append(path: Path, frames) -> None:
    with open(path, "a") as handle:
        datasets.write_extxyz(handle, frames)


def _print_progress(done: int, total: int, what: str) -> None:
    print(f"[aimd] {done}/{total} {what}", flush=True)


def _read_start(work: Path, system: str) -> Atoms:
    import ase.io

    path = work / f"{system}.start.extxyz"
    if not path.is_file():
        raise datasets.DatasetError(f"{path}: the relaxed start cell of '{system}' is missing; "
                                    "generate() writes it before the chains run")
    return ase.io.read(path, format="extxyz")


def chain_tasks(system: str, work_dir, *, plan: AIMDPlan, engine: str = engines.DEFAULT_ENGINE,
                engine_settings: dict | None = None) -> list[ChainTask]:
    """The chains of ``system`` (one per temperature and strain mode); ``work_dir`` must hold the
    relaxed start cell (:func:`start_structure`)."""
    return [ChainTask(system, i, t, m, plan, engine, dict(engine_settings or {}), str(work_dir))
            for i, (t, m) in enumerate(plan.chains)]


def _run_chain_quiet(task: ChainTask) -> dict:
    return run_chain(task, progress=_print_progress)


def structure_path(dataset_path) -> Path:
    """The 0 K cell beside a dataset: ``<system>.structure.extxyz`` next to ``<system>.extxyz.gz``."""
    path = Path(dataset_path)
    return path.with_name(path.name.split(".")[0] + ".structure.extxyz")


def generate(system: str, out_dir, *, atoms: Atoms, free: str = "lattice", source: str = "",
             plan: AIMDPlan | None = None, engine: str = engines.DEFAULT_ENGINE, engine_settings: dict | None = None,
             mapper=None, reference_scan: bool = False) -> Path:
    """Generate (or finish) the dataset of ``system`` in ``out_dir``; returns the ``.extxyz.gz`` path.

    ``atoms``: the system's cell as built (a sheet, at least twice the cut-off long in x and y);
    ``free``: the cell components its 0 K relaxation frees (:func:`start_structure`); ``source``: where
    the cell came from (a file or builder name, recorded). ``mapper(fn, items) -> list`` runs the chains
    (``ctx.map`` under MPI; default: serial). ``reference_scan``: also the engine's 0 K in-plane
    stiffness of the relaxed cell (:func:`training.reference.reference_properties`; phases).

    Writes ``<system>.extxyz.gz``, ``<system>.meta.json`` and the relaxed 0 K cell
    ``<system>.structure.extxyz`` (:func:`structure_path`, the cell every later stage starts from).
    A finished dataset (its ``.meta.json`` exists) is returned as is.
    """
    plan = plan or AIMDPlan()
    out_dir = Path(out_dir)
    final = out_dir / f"{system}.extxyz.gz"
    meta_path = out_dir / f"{system}.meta.json"
    if final.is_file() and meta_path.is_file():
        return final
    work = out_dir / f"{system}.work"
    work.mkdir(parents=True, exist_ok=True)
    calc = engines.make_calculator(engine, engine_settings)
    t0 = time.perf_counter()
    start = start_structure(system, work, calc, atoms=atoms, free=free)
    relax_s = time.perf_counter() - t0
    tasks = chain_tasks(system, work, plan=plan, engine=engine, engine_settings=engine_settings)
    mapper = mapper or (lambda fn, items: [fn(item) for item in items])
    results = mapper(_run_chain_quiet, tasks)

    frames = []
    for task in tasks:
        frames += datasets.read(work / f"{task.stem}.extxyz")
    meta = {
        "system": system, "n_frames": len(frames), "n_atoms": len(frames[0]),
        "engine": engines.engine_metadata(engine, engine_settings),
        "plan": asdict(plan),
        "structure": {"source": source, "relaxed": free, "start_cell_A": start.cell.lengths().tolist(),
                      "formula": start.get_chemical_formula(), "file": structure_path(final).name},
        "timing": {"chains": results, "relax_s": relax_s,
                   "md_s": sum(r["elapsed_s"] for r in results),
                   "s_per_step": sum(r["elapsed_s"] for r in results) / max(1, sum(r["steps"] for r in results))},
        "units": {"energy": "eV", "forces": "eV/A", "stress": "eV/A^3 (ASE sign, positive = tensile)"},
    }
    if reference_scan:
        meta["reference"] = reference.reference_properties(start, calc)
    with atomic_path(structure_path(final)) as tmp:
        start.write(tmp, format="extxyz")
    datasets.write(final, frames)
    write_text(meta_path, json.dumps(meta, indent=1))
    return final


def read_metadata(dataset_path) -> dict:
    """The ``.meta.json`` beside a generated ``<system>.extxyz.gz`` ({} when there is none)."""
    path = Path(dataset_path)
    name = path.name
    for suffix in (".gz", ".extxyz", ".xyz", ".cfg"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    meta = path.with_name(name + ".meta.json")
    return json.loads(meta.read_text()) if meta.is_file() else {}

