"""The ``md`` stage: tensile tests (and elastic constants) of every system x direction x seed.

Data flow::

    runs/fit/<system>.mtp + training.structures.build(systems.<name>.structure)
      --ctx.map over MPI ranks--> one task per (system, direction, seed) [+ (system, 'elastic', seed)]
                                  [+ (phase, 'elastic_low_T'): once at md.elastic.low_temperature_K]
      --> runs/md/<system>_<direction>_seed<k>.h5 (+ .extxyz, checkpoints while running)
      --> runs/md/summary.json: per system and direction the mean, sem and n over seeds (2D units, N/m)

Phases are pulled along every direction of ``md.directions``; an interface
system is pulled perpendicular to its interface lines (``normal``, the y axis of
the ``training.structures`` interface cell). ``summary.json`` is what the
``constitutive`` stage reads (see docs/properties.md and docs/md.md)::

    {"temperature_K": 300.0, "strain_rate_per_s": 1e9,
     "systems": {"graphene": {"directions": {"x": {"youngs_modulus_N_per_m": {mean, sem, n}, ...}},
                              "elastic_N_per_m": {"C11": {...}, ...},
                              "elastic_low_T_N_per_m": {"C11": {...}, ..., "temperature_K": 1.0},
                              "provenance": {...}},
                 "interface": {"normal": {...}, "provenance": {...}}}}

A checkpoint left in the stage's scratch folder by an interrupted run is resumed when the run's
settings and potential are unchanged (``<name>.task.json``); otherwise it is deleted.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from .analysis import mean_sem
from .errors import MDRunError, MDSetupError

MD_SETTINGS = {
    "temperature_K": (float, 300.0, "temperature of all MD runs (K)"),
    "dt_fs": (float, 1.0, "time step (fs)"),
    "directions": (list, ["x", "y"], "in-plane tensile directions of the phases (x, y)"),
    "seeds": (int, 3, "independent random seeds per (system, direction)"),
    "strain_rate_per_s": (float, 1e9, "engineering strain rate (1/s)"),
    "max_strain": (float, 0.3, "stop the tension here if the sample has not failed"),
    "transverse": (str, "stress", "transverse in-plane axis: 'stress' (held at zero) or 'strain' (fixed)"),
    "fit_max_strain": (float, 0.01, "Young's modulus: linear fit from 0 to this strain"),
    "failure_min_strain": (float, 0.02, "a tensile run ends at failure (stress below half its peak) only past "
                                        "this strain; raise it for soft systems in small, noisy cells"),
    "equilibrate_steps": (int, 10000, "NPT equilibration steps before the tension"),
    "thermostat": (str, "bussi", "bussi | langevin"),
    "thermostat_tau_fs": (float, 100.0, "thermostat time constant (fs)"),
    "barostat_tau_fs": (float, 500.0, "barostat time constant (fs)"),
    "supercell": (list, [1, 1], "repeats of the built structure along x and y"),
    "short_range_core": (bool, True, "MTP pairs closer than the training data's shortest distance of their species "
                                     "pair (fit/<system>_fit.json) or min_dist: bounded MTP + repulsive wall "
                                     "(md_gpu/forcefields/mtp.py); the exact MTP above"),
    "thermo_every": (int, 10, "steps between thermo rows"),
    "traj_every": (int, 0, "steps between extxyz frames (0: none)"),
    "checkpoint_every": (int, 2000, "steps between checkpoints (0: none)"),
    "elastic": {
        "enabled": (bool, True, "also measure C11, C22, C12, C66 at temperature_K (one run per seed)"),
        "delta": (float, 0.005, "strain amplitude of the finite differences"),
        "sample_steps": (int, 2000, "steps averaged per strained cell"),
        "low_temperature_K": (float, 1.0, "also measure them once (seed 0) at this temperature (K), near the "
                                          "reference engine's 0 K stiffness (0: off)"),
    },
    "extrapolation": {
        "every": (int, 0, "steps between extrapolation-grade checks (0: off; needs the fit stage's .als)"),
        "warn": (float, 2.0, "warn (and save the frame) above this grade"),
        "stop": (float, 10.0, "stop the run above this grade"),
    },
}


def _check(settings: dict) -> None:
    for d in settings["directions"]:
        if d not in ("x", "y"):
            raise ValueError(f"md.directions: {d!r} is not one of x, y (rotate the sheet for other directions)")
    if settings["transverse"] not in ("stress", "strain"):
        raise ValueError(f"md.transverse: {settings['transverse']!r} is not one of stress, strain")
    if settings["thermostat"] not in ("bussi", "langevin"):
        raise ValueError(f"md.thermostat: {settings['thermostat']!r} is not one of bussi, langevin")
    if settings["seeds"] < 1:
        raise ValueError(f"md.seeds: {settings['seeds']} must be >= 1")
    if len(settings["supercell"]) != 2 or any(int(r) < 1 for r in settings["supercell"]):
        raise ValueError(f"md.supercell: {settings['supercell']} must be two positive integers [nx, ny]")


def _run_settings(settings: dict, seed: int):
    from .protocols import RunSettings

    return RunSettings(temperature_K=settings["temperature_K"], dt_fs=settings["dt_fs"],
                       thermostat=settings["thermostat"], thermostat_tau_fs=settings["thermostat_tau_fs"],
                       barostat_tau_fs=settings["barostat_tau_fs"], equilibrate_steps=settings["equilibrate_steps"],
                       thermo_every=settings["thermo_every"], traj_every=settings["traj_every"],
                       checkpoint_every=settings["checkpoint_every"], seed=seed,
                       failure_min_strain=settings["failure_min_strain"])


def _progress_printer(task: dict):
    """Progress lines of one run (steps, atom-steps/s, ETA every 30 s), on whichever rank runs it."""
    return lambda line: print(f"[md] {task['name']}: {line}", flush=True)


def _resumable(task: dict, prefix: Path) -> bool:
    """True when ``<prefix>.ckpt.npz`` was left by an interrupted run of this very task (same settings,
    same potential file content); a checkpoint of other settings is deleted, never resumed."""
    checkpoint = Path(f"{prefix}.ckpt.npz")
    stamp_path = Path(f"{prefix}.task.json")
    potential = Path(task["potential"])
    stamp = json.dumps({"settings": task["settings"], "structure": task["structure"], "seed": task["seed"],
                        "potential_sha256": hashlib.sha256(potential.read_bytes()).hexdigest()},
                       sort_keys=True, default=str)
    same = stamp_path.is_file() and stamp_path.read_text() == stamp
    if checkpoint.is_file() and not same:
        checkpoint.unlink()
    stamp_path.write_text(stamp)
    return checkpoint.is_file()


def run_task(task: dict) -> dict:
    """One MD run (module-level so that ``ctx.map`` can send it to any rank); returns plain data."""
    from .extrapolation import ExtrapolationControl, mtp_grader
    from .forcefields.loading import load_forcefield
    from .protocols import elastic_constants, interface_tensile, tensile
    from .structures import load_structure

    settings = task["settings"]
    ff = load_forcefield(task["potential"], species=task.get("species"), core=settings["short_range_core"],
                         core_radii=task.get("core_radii"))
    atoms = load_structure(task["structure"], base_dir=task["case_dir"], repeat=settings["supercell"] + [1],
                           key=f"systems.{task['system']}.structure")
    run_settings = _run_settings(settings, task["seed"])
    prefix = Path(task["out_dir"]) / task["name"]
    if task["kind"] in ("elastic", "elastic_low_T"):
        e = settings["elastic"]
        if task["kind"] == "elastic_low_T":
            run_settings = replace(run_settings, temperature_K=e["low_temperature_K"])
        c = elastic_constants(ff, atoms, delta=e["delta"], sample_steps=e["sample_steps"], settings=run_settings,
                              log=_progress_printer(task))
        return {**task, "result": {k: c[k] for k in ("C11", "C22", "C12", "C66")}, "unit": c["unit"],
                "temperature_K": c["temperature_K"]}
    control = None
    x = settings["extrapolation"]
    if x["every"] > 0:
        control = ExtrapolationControl(mtp_grader(ff.mtp, Path(task["potential"]).with_suffix(".als")),
                                       every=x["every"], warn=x["warn"], stop=x["stop"], cutoff=ff.cutoff,
                                       frames_path=f"{prefix}.extrapolative.extxyz")
    protocol = interface_tensile if task["kind"] == "interface" else tensile
    direction = {} if task["kind"] == "interface" else {"direction": task["direction"]}
    try:
        r = protocol(ff, atoms, strain_rate_per_s=settings["strain_rate_per_s"], max_strain=settings["max_strain"],
                     transverse=settings["transverse"], settings=run_settings, thickness_A=task["thickness_A"],
                     fit_window=(0.0, settings["fit_max_strain"]), out_prefix=prefix,
                     resume=_resumable(task, prefix), extrapolation=control, log=_progress_printer(task),
                     **direction)
    except MDRunError as exc:
        # A passively trained potential can leave its training domain (typically at fracture or in
        # out-of-plane ripples the short AIMD chains never sampled) and blow up: that run is reported,
        # the others of the same system and direction still count.
        reason = str(exc).split(" (at ")[0]
        print(f"[md] {task['name']}: blew up, left out of the statistics: {reason}", flush=True)
        return {**task, "result": None, "blew_up": reason}
    return {**task, "result": r["properties"], "h5": f"{task['name']}.h5", "n_atoms": r["settings"]["n_atoms"]}


def plan_tasks(settings: dict, ctx) -> list[dict]:
    """The list of runs: phases x directions x seeds, interfaces x seeds, elastic x phases x seeds."""
    tasks = []
    fit_dir = ctx.stage_dir("fit")
    for system, entry in ctx.systems.items():
        potential = fit_dir / f"{system}.mtp"
        if not potential.is_file():
            raise MDSetupError(f"md: {potential} is missing; the fit stage did not write a potential for "
                               f"'{system}' (rerun `multiscale run {ctx.case_dir} --stages fit`)")
        fit_report = fit_dir / f"{system}_fit.json"
        core_radii = json.loads(fit_report.read_text()).get("shortest_distance_A") if fit_report.is_file() else None
        base = {"system": system, "potential": str(potential), "structure": entry["structure"], "core_radii": core_radii,
                "case_dir": str(ctx.case_dir), "out_dir": str(ctx.out_dir), "settings": settings,
                "thickness_A": entry.get("thickness_A")}
        for seed in range(settings["seeds"]):
            if entry["kind"] == "interface":
                tasks.append({**base, "kind": "interface", "direction": "normal", "seed": seed,
                              "name": f"{system}_normal_seed{seed}"})
                continue
            for direction in settings["directions"]:
                tasks.append({**base, "kind": "tensile", "direction": direction, "seed": seed,
                              "name": f"{system}_{direction}_seed{seed}"})
            if settings["elastic"]["enabled"]:
                tasks.append({**base, "kind": "elastic", "direction": None, "seed": seed,
                              "name": f"{system}_elastic_seed{seed}"})
        if entry["kind"] != "interface" and settings["elastic"]["enabled"] \
                and settings["elastic"]["low_temperature_K"] > 0:
            tasks.append({**base, "kind": "elastic_low_T", "direction": None, "seed": 0,
                          "name": f"{system}_elastic_low_T"})
    return tasks


TENSILE_KEYS = ("youngs_modulus_N_per_m", "poisson_ratio", "ultimate_strength_N_per_m", "failure_strain",
                "youngs_modulus_GPa", "ultimate_strength_GPa")


def summarize_tasks(results: list[dict], settings: dict) -> dict:
    """``summary.json`` content from the task results (see module docstring)."""
    systems: dict = {}
    for r in results:
        entry = systems.setdefault(r["system"], {"provenance": {
            "potential": r["potential"], "md_runs": [], "strain_rate_per_s": settings["strain_rate_per_s"],
            "temperature_K": settings["temperature_K"]}})
        if r["kind"] in ("elastic", "elastic_low_T"):
            entry.setdefault(f"_{r['kind']}", []).append((r["result"], r["unit"], r["temperature_K"]))
            continue
        if r.get("blew_up"):
            entry["provenance"].setdefault("blown_up", []).append({"run": r["name"], "reason": r["blew_up"]})
            entry.setdefault("_blown_up", {}).setdefault(r["direction"], []).append(r["name"])
            continue
        entry["provenance"]["md_runs"].append(r["h5"])
        entry["provenance"]["n_atoms"] = r["n_atoms"]
        entry.setdefault("_runs", {}).setdefault(r["direction"], []).append(r["result"])
    for system, entry in systems.items():
        runs_by_direction = entry.pop("_runs", {})
        blown_up = entry.pop("_blown_up", {})
        lost = [d for d in blown_up if d not in runs_by_direction]
        if lost:
            raise MDRunError(f"md: every run of {system} along {', '.join(lost)} blew up "
                             f"({', '.join(n for d in lost for n in blown_up[d])}): "
                             f"{entry['provenance']['blown_up'][0]['reason']}. The potential leaves its training "
                             "domain; add data there (longer or more AIMD chains) or check it with "
                             "md.extrapolation.every")
        per_direction = {d: {k: mean_sem([run.get(k) for run in runs]) for k in TENSILE_KEYS
                             if any(k in run for run in runs)}
                         for d, runs in runs_by_direction.items()}
        for d, stats in per_direction.items():
            stats["runs_failed"] = sum(bool(run.get("failed")) for run in runs_by_direction[d])
            stats["runs_blown_up"] = len(blown_up.get(d, []))
        if "normal" in per_direction:
            entry["normal"] = per_direction["normal"]
        elif per_direction:
            entry["directions"] = per_direction
        for kind, suffix in (("elastic", ""), ("elastic_low_T", "_low_T")):
            elastic = entry.pop(f"_{kind}", None)
            if elastic:
                unit = "N_per_m" if elastic[0][1] == "N/m" else "GPa"  # bulk test cells: GPa
                stats = {k: mean_sem([c[k] for c, _, _ in elastic]) for k in ("C11", "C22", "C12", "C66")}
                if suffix:
                    stats["temperature_K"] = elastic[0][2]
                entry[f"elastic{suffix}_{unit}"] = stats
    return {"format": "md_gpu-summary/1", "temperature_K": settings["temperature_K"],
            "strain_rate_per_s": settings["strain_rate_per_s"], "systems": systems}


def plot_stress_strain(out_dir: Path, system: str, runs: list[dict]) -> Path | None:
    """``<system>_stress_strain.png``: the stress-strain curve of every tensile run of ``system``
    (2D stress in N/m for sheets, GPa otherwise; one colour per direction, one line per seed)."""
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import read_run_h5

    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {}
    unit = "GPa"
    for r in sorted(runs, key=lambda r: (r["direction"], r["seed"])):
        curve = read_run_h5(Path(out_dir) / r["h5"])["stress_strain"]
        key = "stress_N_per_m" if "stress_N_per_m" in curve else "stress_GPa"
        unit = "N/m" if key == "stress_N_per_m" else "GPa"
        colour = colours.setdefault(r["direction"], f"C{len(colours)}")
        label = f"{r['direction']} (seeds)" if r["seed"] == 0 else None
        ax.plot(curve["strain"], curve[key], color=colour, lw=1, alpha=0.8, label=label)
    ax.set_xlabel("engineering strain")
    ax.set_ylabel(f"stress ({unit})")
    ax.set_title(f"{system}: MD tension at {runs[0]['settings']['temperature_K']:g} K, "
                 f"{runs[0]['settings']['strain_rate_per_s']:.2g} 1/s")
    ax.legend()
    fig.tight_layout()
    path = Path(out_dir) / f"{system}_stress_strain.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_md(settings: dict, ctx) -> dict:
    """Stage entry point (docs/architecture.md): run all tasks over the ranks, write ``summary.json``."""
    _check(settings)
    tasks = plan_tasks(settings, ctx)
    ctx.log(f"{len(tasks)} MD runs at {settings['temperature_K']} K, strain rate "
            f"{settings['strain_rate_per_s']:.3g} 1/s, over {ctx.farm.size if hasattr(ctx, 'farm') else 1} rank(s)")
    results = ctx.map(run_task, tasks, what="MD runs")
    summary = summarize_tasks(results, settings)
    if ctx.is_root:
        tmp = ctx.out_dir / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n")
        tmp.replace(ctx.out_dir / "summary.json")
        for system in summary["systems"]:
            plot_stress_strain(ctx.out_dir, system, [r for r in results if r["system"] == system and r.get("h5")])
    return {"runs": len(tasks), "systems": sorted(summary["systems"])}
