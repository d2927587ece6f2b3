"""The ``data`` stage: the case's reference datasets, read (or generated), checked, summarised.

Data flow (docs/architecture.md): ``case.yaml`` ``systems:`` + ``data:``
(:data:`DATA_SETTINGS`) -> for each system, the dataset in the case's
``data/`` folder (``systems.<name>.dataset``, default
``data/<name>.extxyz.gz``), or, when ``data.generate`` is true and the file is
missing, a new one from :func:`training.aimd.generate` (resumable: its
checkpoints live in the stage's scratch folder) -> optional subsampling ->
``ctx.out_dir``: ``<system>.extxyz.gz``, ``<system>.structure.extxyz`` (the system's 0 K cell,
which the md stage starts from), ``<system>.meta.json`` (when the dataset has metadata),
``<system>_hist.png``, ``summary.json``.

The cells (:mod:`training.cells`): each phase from its structure file or builder, made rectangular and
repeated to ``min_cell_length_A``; each interface from its file or builder, or generated from its two
phases (``between``). A dataset that comes with its relaxed 0 K cell (``<system>.structure.extxyz``
beside it, written by generation) gives that cell instead.

The returned summary (also ``summary.json``) holds, per system, the numbers of
:func:`training.summary.summarize`, including the reference engine and, for
generated phases, the engine's 0 K cell and stiffness, and how the system's cell was made.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from common.atomic import atomic_path, write_text

from . import aimd, cells, datasets, engines, subsample, summary

_PLAN = aimd.AIMDPlan()

DATA_SETTINGS = {
    "generate": (bool, False, "generate datasets missing from the case's data/ folder with the engine"),
    "engine": (str, engines.DEFAULT_ENGINE, "reference engine: tblite-gfn1 | tblite-gfn2 | gpaw | python:module.Class"),
    "engine_settings": (dict, {}, "keyword arguments of the engine's ASE calculator"),
    "reference_scan": (bool, True, "with generation: the engine's 0 K cell and relaxed-ion in-plane "
                                   "stiffness (N/m) of the phases from a static strain scan"),
    "min_cell_length_A": (float, cells.MIN_LENGTH_A, "cells are repeated to at least this length in x and y "
                                                     "(Å; twice the MTP cut-off)"),
    "interface_tolerance": (float, 0.04, "largest relative period mismatch of the two phases of an interface "
                                         "generated from its 'between' (phase B is strained to fit)"),
    "ripples": (int, 24, "with generation: out-of-plane ripple frames added to each generated dataset "
                         "(training.ripples: bending data the short AIMD chains lack; 0: none)"),
    "strain_frames": (int, 24, "with generation: small-strain 0 K frames added to each generated dataset "
                               "(training.strain_frames: the elastic data the AIMD chains lack; 0: none)"),
    "aimd": {
        "temperatures_K": (list, list(_PLAN.temperatures_K), "NVT temperatures (K)"),
        "strain_modes": (list, list(_PLAN.strain_modes), "strain modes: x, y (uniaxial), xy (biaxial)"),
        "strains": (list, list(_PLAN.strains), "engineering strains of each chain, 0 to beyond failure"),
        "timestep_fs": (float, _PLAN.timestep_fs, "MD time step (fs)"),
        "equilibration_steps": (int, _PLAN.equilibration_steps, "MD steps at zero strain before the first frame"),
        "settle_steps": (int, _PLAN.settle_steps, "MD steps after each strain increment before its first frame"),
        "stride_steps": (int, _PLAN.stride_steps, "MD steps between recorded frames"),
        "frames_per_strain": (int, _PLAN.frames_per_strain, "frames recorded at each strain"),
        "friction_per_fs": (float, _PLAN.friction_per_fs, "Langevin friction (1/fs)"),
        "seed": (int, _PLAN.seed, "random seed of the velocities and the thermostat"),
    },
    "subsample": {
        "method": (str, "none", "none | every | fps (farthest-point sampling)"),
        "every": (int, 1, "keep every k-th frame (method: every)"),
        "n_frames": (int, 0, "frames to keep per system (method: fps; 0 keeps all)"),
        "seed": (int, 0, "seed of the first farthest-point pick"),
    },
}


def plan_from_settings(settings: dict) -> aimd.AIMDPlan:
    """The :class:`training.aimd.AIMDPlan` of a validated ``data:`` section."""
    a = settings["aimd"]
    return aimd.AIMDPlan(temperatures_K=_numbers(a, "temperatures_K"),
                         strain_modes=tuple(a["strain_modes"]),
                         strains=_numbers(a, "strains"),
                         timestep_fs=a["timestep_fs"], equilibration_steps=a["equilibration_steps"],
                         settle_steps=a["settle_steps"], stride_steps=a["stride_steps"],
                         frames_per_strain=a["frames_per_strain"], friction_per_fs=a["friction_per_fs"],
                         seed=a["seed"])


def _numbers(section: dict, key: str) -> tuple:
    """``data.aimd.<key>`` as floats; ValueError naming the key for an entry that is not a number."""
    values = section[key]
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise ValueError(f"data.aimd.{key}: {bad[0]!r} is not a number; write numbers alone (the unit is part "
                         "of the key's name)")
    return tuple(float(v) for v in values)


def dataset_path(case_dir: Path, name: str, system: dict) -> Path:
    """The dataset file of system ``name``: ``systems.<name>.dataset`` or ``data/<name>.extxyz.gz``."""
    return Path(case_dir) / (system.get("dataset") or f"data/{name}.extxyz.gz")


def check_settings(settings: dict) -> None:
    """Value checks of a validated ``data:`` section; ValueError names the key."""
    engines.engine_settings(settings["engine"])  # raises for an unknown engine, naming data.engine
    method = settings["subsample"]["method"]
    if method not in ("none", "every", "fps"):
        raise ValueError(f"data.subsample.method: {method!r} is not one of none, every, fps")
    if settings["subsample"]["every"] < 1:
        raise ValueError(f"data.subsample.every: must be >= 1, got {settings['subsample']['every']}")
    plan_from_settings(settings)  # value checks of data.aimd.*


def build_cell(name: str, system: dict, built: dict, case_dir, settings: dict) -> tuple:
    """System ``name``'s cell as built and a record of how (training.cells): its structure file or builder
    (``systems.<name>.structure``), or for an interface without one, generated from the cells of its
    ``between`` phases in ``built`` (name -> Atoms). Returns ``(atoms, record)``."""
    from .systems import read_structure

    spec = system.get("structure", "")
    if system.get("kind") == "interface" and not spec:
        a, b = system["between"]
        try:
            atoms, record = cells.interface_cell(built[a], built[b], names=(a, b),
                                                 tolerance=settings["interface_tolerance"],
                                                 min_length_A=settings["min_cell_length_A"])
        except cells.GeometryError as exc:
            raise datasets.DatasetError(f"systems.{name}: cannot build the interface between {a} and {b}: {exc}") from None
        return atoms, {"source": f"generated from {a} and {b}", **record}
    atoms, record = cells.phase_cell(read_structure(spec, case_dir, key=f"systems.{name}.structure"),
                                     min_length_A=settings["min_cell_length_A"])
    return atoms, {"source": spec, **record}


def in_build_order(systems: dict) -> list[str]:
    """Phases first: a generated interface is built from its phases' (relaxed) cells."""
    return sorted(systems, key=lambda name: systems[name].get("kind") == "interface")


def run_data(settings: dict, ctx) -> dict:
    """Run the data stage (see the module docstring); returns the per-system summaries."""
    import ase.io

    check_settings(settings)
    out = Path(ctx.out_dir)
    result = {"systems": {}}
    built = {}  # name -> the system's 0 K cell
    for name in in_build_order(ctx.systems):
        system = ctx.systems[name]
        atoms, record = build_cell(name, system, built, ctx.case_dir, settings)
        path = dataset_path(ctx.case_dir, name, system)
        if not path.is_file():
            if not settings["generate"]:
                raise datasets.DatasetError(
                    f"{path}: dataset of system '{name}' not found; put it there, set "
                    f"systems.{name}.dataset, or set data.generate: true to generate it with {settings['engine']}")
            phase = system.get("kind") != "interface"
            ctx.log(f"generating {name} ({record['source']}, {len(atoms)} atoms) with {settings['engine']} (resumable)")
            if "strained" in record:
                ctx.log(f"{name}: {record['cells_x'][0]} x {record['between'][0]} : {record['cells_x'][1]} x "
                        f"{record['between'][1]} along the interfaces; {record['strained']} strained by "
                        f"{100 * record['strain']:+.2f} %")
            path = aimd.generate(name, out / "generated", atoms=atoms, free="lattice" if phase else "normal",
                                 source=record["source"], plan=plan_from_settings(settings), engine=settings["engine"],
                                 engine_settings=settings["engine_settings"], mapper=ctx.map,
                                 reference_scan=settings["reference_scan"] and phase)
            if settings["ripples"] > 0 and ctx.is_root:
                from .ripples import add_ripples

                add_ripples(path, engine=settings["engine"], engine_settings=settings["engine_settings"],
                            count=settings["ripples"], log=ctx.log)
            if settings["strain_frames"] > 0 and ctx.is_root:
                from .strain_frames import add_strain_frames

                add_strain_frames(path, engine=settings["engine"], engine_settings=settings["engine_settings"],
                                  count=settings["strain_frames"], log=ctx.log)
            if getattr(ctx, "comm", None) is not None:
                ctx.comm.Barrier()  # every rank reads the dataset only once rank 0 has extended it
        if aimd.structure_path(path).is_file():  # the relaxed 0 K cell that came with the dataset
            atoms = ase.io.read(aimd.structure_path(path), format="extxyz")
            record = {**record, "relaxed_cell": str(aimd.structure_path(path))}
        built[name] = atoms
        frames = datasets.read(path)
        meta = aimd.read_metadata(path)
        sub = settings["subsample"]
        frames = subsample.subsample(frames, method=sub["method"], every=sub["every"],
                                     n_frames=sub["n_frames"], seed=sub["seed"])
        info = summary.summarize(frames, metadata=meta, thickness_A=float(system.get("thickness_A", 3.35)))
        info["source"] = str(path)
        info["structure"] = {**record, "file": f"{name}.structure.extxyz", "n_atoms": len(atoms),
                             "cell_A": atoms.cell.lengths().tolist()}
        ctx.log(summary.format_summary(info, title=f"{name}:"))
        if ctx.is_root:
            datasets.write(out / f"{name}.extxyz.gz", frames)
            with atomic_path(out / f"{name}.structure.extxyz") as tmp:
                atoms.write(tmp, format="extxyz")
            if meta:
                write_text(out / f"{name}.meta.json", json.dumps(meta, indent=1))
            summary.plot_histograms(frames, out / f"{name}_hist.png", title=name)
        result["systems"][name] = info
    if ctx.is_root:
        write_text(out / "summary.json", json.dumps(result, indent=1))
        if (out / "generated").is_dir():  # keep only the finished datasets, not the checkpoints
            for work in (out / "generated").glob("*.work"):
                shutil.rmtree(work)
    return result
