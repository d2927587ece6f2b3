"""What every task kind shares: the run-wide settings, loading a task's potential and structure, the
protocols' run settings, progress lines, resuming (checkpoint stamps, stored results), blow-ups and the
figure helpers.

Resuming, the same for every task kind: a task writes its checkpoints as ``<out_dir>/<name>.ckpt.npz``
or, for a protocol made of several runs, ``<name>.<part>.ckpt.npz`` (every ``md.checkpoint_every``
steps and at the end of every stage; :func:`md_gpu.protocols.common.simulation`), stamped with the
task's :func:`fingerprint` in ``<name>.task.json`` (:func:`resumable`). When it finishes, its result
goes to ``<name>.result.json`` and its checkpoints and stamp are deleted (:func:`run_once`; all this
only with ``md.checkpoint_every`` > 0). A stage killed at any point and run again returns the stored
results, resumes the interrupted runs from their checkpoints and gives the same ``summary.json`` and
run files, bit for bit on the NumPy backend, as an uninterrupted run (tests/test_fault_injection.py).

Units as everywhere in md_gpu: eV, Å, fs, amu, K; stresses in GPa (bulk) or N/m (2D sheets).
"""
from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path

from common.atomic import write_json, write_text
from common.figures import save_figure

from ..errors import MDRunError, MDSetupError
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
    "checkpoint_every": (int, 2000, "steps between checkpoints (0: none, and no finished run is kept: an "
                                    "interrupted stage runs everything again)"),
    "neighbor_check_every": (int, 1, "steps between the neighbour-list checks of the stages whose steps can be "
                                     "replayed (no barostat, no NEMD baths; 1: exact every step; N > 1: one "
                                     "host read per N steps, the steps since a check replayed when the list "
                                     "went stale; for small systems on a GPU)"),
}


def check(settings: dict) -> None:
    """Errors name the key (``md.thermostat``, ``md.seeds``, ``md.supercell``)."""
    if settings["thermostat"] not in THERMOSTATS:
        raise ValueError(f"md.thermostat: {settings['thermostat']!r} is not one of {', '.join(THERMOSTATS)}")
    if settings["neighbor_check_every"] < 1:
        raise ValueError(f"md.neighbor_check_every: {settings['neighbor_check_every']} must be >= 1 step")
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
                       failure_min_strain=settings["failure_min_strain"],
                       neighbor_check_every=settings["neighbor_check_every"])


def progress_printer(task: dict):
    """Progress lines of one run (steps, atom-steps/s, ETA every 30 s), on whichever rank runs it."""
    return lambda line: print(f"[md] {task['name']}: {line}", flush=True)


def fingerprint(task: dict) -> str:
    """SHA-256 (hex) of what a task computes: the task itself (kind, settings, seed, file names, ...) and the
    contents of the files it reads (``potential``, ``structure``, ``phase_structures``; a name that is not a
    file, e.g. a built-in potential, counts by its name)."""
    files = [task.get("potential"), task.get("structure"), *task.get("phase_structures", [])]
    contents = {str(f): _sha256(Path(f)) if Path(f).is_file() else None for f in files if f}
    text = json.dumps({"task": task, "sha256": contents}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def checkpoints(prefix) -> list[Path]:
    """The checkpoints of the task whose files start with ``prefix``: ``<prefix>.ckpt.npz`` and the sub-runs'
    ``<prefix>.<part>.ckpt.npz``."""
    prefix = Path(prefix)
    return sorted(prefix.parent.glob(f"{glob.escape(prefix.name)}.*ckpt.npz"))


def resumable(task: dict, prefix: Path) -> bool:
    """True when checkpoints ``<prefix>[.<part>].ckpt.npz`` were left by an interrupted run of this very task
    (the same :func:`fingerprint`, kept in ``<prefix>.task.json``); the checkpoints of any other task of that
    name (other settings, a refitted potential, another structure file) are deleted, never resumed."""
    stamp_path = Path(f"{prefix}.task.json")
    stamp = json.dumps({"fingerprint": fingerprint(task)})
    same = stamp_path.is_file() and stamp_path.read_text() == stamp
    if not same:
        for path in checkpoints(prefix):
            path.unlink()
    write_text(stamp_path, stamp)
    return bool(checkpoints(prefix))


def run_once(task: dict, run) -> dict:
    """``run(task)``, once: its result is stored in ``<out_dir>/<name>.result.json`` (atomically, with the
    task's :func:`fingerprint`) and the task's checkpoints and stamp are removed; a later call for the same
    task (a stage resumed after a kill) returns the stored result without running. Both return the result
    as it reads back from that JSON file, so a resumed stage assembles exactly what an uninterrupted one
    does. A stored result of another task of that name is overwritten; an unreadable one is one
    :class:`~md_gpu.errors.MDSetupError` naming the file. With ``md.checkpoint_every`` 0 nothing is kept:
    the task runs every time."""
    if not task["settings"]["checkpoint_every"]:
        return run(task)
    prefix = Path(task["out_dir"]) / task["name"]
    path = Path(f"{prefix}.result.json")
    stamp = fingerprint(task)
    if path.is_file():
        stored = _read_result(path)
        if stored.get("fingerprint") == stamp:
            return stored["result"]
    write_json(path, {"fingerprint": stamp, "result": run(task)})
    for checkpoint in checkpoints(prefix):
        checkpoint.unlink()
    Path(f"{prefix}.task.json").unlink(missing_ok=True)
    return _read_result(path)["result"]


def _read_result(path: Path) -> dict:
    from ..io import CORRUPT_HINT

    try:
        stored = json.loads(path.read_text())
        if not isinstance(stored, dict) or "result" not in stored:
            raise ValueError("no 'result' in it")
        return stored
    except (ValueError, UnicodeDecodeError) as exc:
        raise MDSetupError(f"md: the stored result {path} of a finished run is truncated or corrupt ({exc}); "
                           f"{CORRUPT_HINT}") from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def blown_up(task: dict, exc: MDRunError) -> dict:
    """A passively trained potential can leave its training domain (typically at fracture or in
    out-of-plane ripples the short AIMD chains never sampled) and blow up: that run is reported,
    the others of the same system and direction still count."""
    reason = str(exc).split(" (at ")[0]
    print(f"[md] {task['name']}: blew up, left out of the statistics: {reason}", flush=True)
    return {**task, "result": None, "blew_up": reason}


def name_run(provenance: dict, key: str, result: dict, reason: str) -> None:
    """``provenance[key]`` lists the run of ``result`` with ``reason`` (``{"run", "reason"}``)."""
    provenance.setdefault(key, []).append({"run": result["name"], "reason": reason})


def note_blown_up(provenance: dict, result: dict) -> None:
    """The default ``note``: a run that blew up is named in ``provenance.blown_up``."""
    if result.get("blew_up"):
        name_run(provenance, "blown_up", result, result["blew_up"])


def save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (PNG, 110 dpi, tight layout) atomically and close it."""
    return save_figure(fig, path, dpi=110, tight=True)
