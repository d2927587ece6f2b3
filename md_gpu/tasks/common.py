"""What every task kind shares: the run-wide settings, loading a task's potential and structure, the
protocols' run settings, progress lines, checkpoint stamps, blow-ups and the figure helpers.

Units as everywhere in md_gpu: eV, Å, fs, amu, K; stresses in GPa (bulk) or N/m (2D sheets).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from common.figures import save_figure

from ..errors import MDRunError
from ..protocols.common import THERMOSTATS

SETTINGS = {
    "temperature_K": (float, 300.0, "temperature of all MD runs (K)"),
    "dt_fs": (float, 1.0, "time step (fs)"),
    "seeds": (int, 3, "independent random seeds per (system, direction)"),
    "failure_min_strain": (float, 0.02, "a tensile run ends at failure (stress below half its peak) only past "
                                        "this strain; raise it for soft systems in small, noisy cells"),
    "equilibrate_steps": (int, 10000, "NPT equilibration steps before the tension"),
    "thermostat": (str, "bussi", " | ".join(THERMOSTATS)),
    "thermostat_tau_fs": (float, 100.0, "thermostat time constant (fs)"),
    "barostat_tau_fs": (float, 500.0, "barostat time constant (fs)"),
    "supercell": (list, [1, 1], "repeats of the system's 0 K cell along x and y"),
    "short_range_core": (bool, True, "MTP pairs closer than the training data's shortest distance of their species "
                                     "pair (fit/<system>_fit.json) or min_dist: bounded MTP + repulsive wall "
                                     "(md_gpu/forcefields/mtp.py); the exact MTP above. A NEP runs as it is"),
    "thermo_every": (int, 10, "steps between thermo rows"),
    "traj_every": (int, 0, "steps between extxyz frames (0: none)"),
    "checkpoint_every": (int, 2000, "steps between checkpoints (0: none)"),
}


def check(settings: dict) -> None:
    """Errors name the key (``md.thermostat``, ``md.seeds``, ``md.supercell``)."""
    if settings["thermostat"] not in THERMOSTATS:
        raise ValueError(f"md.thermostat: {settings['thermostat']!r} is not one of {', '.join(THERMOSTATS)}")
    if settings["seeds"] < 1:
        raise ValueError(f"md.seeds: {settings['seeds']} must be >= 1")
    if len(settings["supercell"]) != 2 or any(int(r) < 1 for r in settings["supercell"]):
        raise ValueError(f"md.supercell: {settings['supercell']} must be two positive integers [nx, ny]")


def load(task: dict):
    """``(ff, atoms, run_settings, prefix)`` of one task: its force field (``task["potential"]``), its
    structure (the file ``task["structure"]``) repeated ``task["repeat"]`` (default ``md.supercell``) times
    in x and y, the protocols' :class:`md_gpu.protocols.RunSettings` at ``md.temperature_K`` with the
    task's seed, and the path prefix of its files (``<out_dir>/<name>``)."""
    from ..forcefields.loading import load_forcefield
    from ..structures import load_structure

    settings = task["settings"]
    ff = load_forcefield(task["potential"], species=task.get("species"), core=settings["short_range_core"],
                         core_radii=task.get("core_radii"))
    atoms = load_structure(task["structure"], repeat=list(task.get("repeat", settings["supercell"])) + [1],
                           key=f"md {task['name']}")
    return ff, atoms, run_settings(settings, task["seed"]), Path(task["out_dir"]) / task["name"]


def run_settings(settings: dict, seed: int):
    """The :class:`md_gpu.protocols.RunSettings` of the ``md`` settings and ``seed``."""
    from ..protocols import RunSettings

    return RunSettings(temperature_K=settings["temperature_K"], dt_fs=settings["dt_fs"],
                       thermostat=settings["thermostat"], thermostat_tau_fs=settings["thermostat_tau_fs"],
                       barostat_tau_fs=settings["barostat_tau_fs"], equilibrate_steps=settings["equilibrate_steps"],
                       thermo_every=settings["thermo_every"], traj_every=settings["traj_every"],
                       checkpoint_every=settings["checkpoint_every"], seed=seed,
                       failure_min_strain=settings["failure_min_strain"])


def progress_printer(task: dict):
    """Progress lines of one run (steps, atom-steps/s, ETA every 30 s), on whichever rank runs it."""
    return lambda line: print(f"[md] {task['name']}: {line}", flush=True)


def resumable(task: dict, prefix: Path) -> bool:
    """True when ``<prefix>.ckpt.npz`` was left by an interrupted run of this very task (same settings,
    same potential and structure file contents); a checkpoint of other settings is deleted, never resumed."""
    checkpoint = Path(f"{prefix}.ckpt.npz")
    stamp_path = Path(f"{prefix}.task.json")
    structure = Path(task["structure"])
    stamp = json.dumps({"settings": task["settings"], "structure": task["structure"], "seed": task["seed"],
                        "potential_sha256": _sha256(Path(task["potential"])),
                        "structure_sha256": _sha256(structure) if structure.is_file() else None},
                       sort_keys=True, default=str)
    same = stamp_path.is_file() and stamp_path.read_text() == stamp
    if checkpoint.is_file() and not same:
        checkpoint.unlink()
    stamp_path.write_text(stamp)
    return checkpoint.is_file()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def blown_up(task: dict, exc: MDRunError) -> dict:
    """A passively trained potential can leave its training domain (typically at fracture or in
    out-of-plane ripples the short AIMD chains never sampled) and blow up: that run is reported,
    the others of the same system and direction still count."""
    reason = str(exc).split(" (at ")[0]
    print(f"[md] {task['name']}: blew up, left out of the statistics: {reason}", flush=True)
    return {**task, "result": None, "blew_up": reason}


def save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (PNG, 110 dpi, tight layout) atomically and close it."""
    return save_figure(fig, path, dpi=110, tight=True)
