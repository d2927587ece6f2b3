"""Uniaxial tension at ``md.temperature_K``: each phase along every direction of ``md.directions``, each
interface system across its interface lines (``normal``, the y axis of the interface system's cell,
whose interfaces run along x), one run per seed (:func:`md_gpu.protocols.tensile`,
:func:`~md_gpu.protocols.interface_tensile`).

Tasks: ``tensile`` (``<phase>_<direction>_seed<k>``) and ``interface`` (``<interface>_normal_seed<k>``);
files ``<name>.h5`` (stress-strain curve and thermo), ``.extxyz`` (with ``md.traj_every``); while it runs,
checkpoints ``<name>.ckpt.npz`` (``<name>.look<k>.ckpt.npz`` for the second look at the k-th stress drop,
``<name>.seg<k>.ckpt.npz`` after the k-th yield event), from which an
interrupted task resumes (:mod:`.common`).

summary.json, per system (2D units N/m for sheets, GPa for bulk cells; each value ``{mean, sem, n,
attempted, failed, blown_up}`` over the seeds that did not blow up, :func:`md_gpu.analysis.mean_sem`:
``sem`` null for one seed, ``failed`` the finished runs without that number)::

    "directions": {"x": {"youngs_modulus_N_per_m", "youngs_modulus_fit_sem_N_per_m", "fit_window_strain",
                         "poisson_ratio", "poisson_ratio_fit_sem", "ultimate_strength_N_per_m",
                         "failure_strain", "fracture_strain", "yield_strain", "yield_stress_N_per_m",
                         "transverse_stress_mean_N_per_m", "transverse_stress_sem_N_per_m",
                         "runs_attempted": int, "runs_failed": int, "runs_collapsed": int, "runs_yielded": int,
                         "runs_unfailed": int, "runs_blown_up": int}, "y": {...}}             (phases)
    "normal": {...the same keys...}                                                           (interfaces)
    "provenance": {"md_runs": [<name>.h5, ...], "n_atoms": int, "blown_up": [{"run", "reason"}, ...],
                   "collapsed": [{"run", "reason"}, ...]}

``runs_attempted``: the runs of the direction (blown up included); ``runs_failed``: runs that failed (a
sustained stress drop with a crack across the cell, ``failure_mode`` "fracture", or after which the run blew
up, "collapse": its curve up to there is kept); ``runs_collapsed``: those of them that collapsed; ``runs_yielded``: runs
with a yield point (a drop without a crack; they go on to ``md.max_strain`` unless they collapse);
``runs_unfailed``: runs that neither failed nor yielded, whose peak stress is only where the loading stopped (``md.max_strain``): a
lower bound of the strength, which the constitutive stage flags (``strength_from_unfailed``). Per-run fit
errors (``*_fit_sem*``) are the within-run standard errors of the slopes; the ``sem`` of each entry is
the scatter over seeds. A quantity that a run does not have
(no yield: NaN) is left out of its mean. A run that blew up is named in ``provenance.blown_up``; the
stage fails when a direction loses every seed. A run that collapsed (kept, its curve up to the blow-up) is
named with the reason in ``provenance.collapsed``.
Figure: ``<system>_stress_strain.png``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis import mean_sem
from ..errors import MDRunError
from ..protocols.common import TRANSVERSE
from common.figures import pyplot

from .common import blown_up, load, name_run, note_blown_up, progress_printer, resumable, save

KINDS = ("tensile", "interface")
SUMMARY_ORDER = 30

SETTINGS = {
    "directions": (list, ["x", "y"], "in-plane tensile directions of the phases (x, y)"),
    "strain_rate_per_s": (float, 1e9, "engineering strain rate (1/s)"),
    "max_strain": (float, 0.3, "stop the tension here if the sample has not failed"),
    "transverse": (str, "stress", "transverse in-plane axis: 'stress' (held at zero) or 'strain' (fixed)"),
    "fit_max_strain": (float, 0.05, "Young's modulus and Poisson's ratio: upper bound of the linear-fit window "
                                    "[0, h]; h is chosen from the curve (widest window whose curvature bias "
                                    "stays below half the fit's standard error, at least 0.5 % strain, at most "
                                    "half the strain at peak stress; md_gpu.analysis.choose_fit_window) and "
                                    "reported as fit_window_strain"),
    "extrapolation": {
        "every": (int, 0, "steps between extrapolation-grade checks (0: off; needs the fit stage's .als: "
                          "a system that brings its potential is not graded)"),
        "warn": (float, 2.0, "warn (and save the frame) above this grade"),
        "stop": (float, 10.0, "stop the run above this grade"),
    },
}

PROPERTY_KEYS = ("youngs_modulus_N_per_m", "poisson_ratio", "ultimate_strength_N_per_m", "failure_strain",
                 "youngs_modulus_GPa", "ultimate_strength_GPa", "youngs_modulus_fit_sem_N_per_m",
                 "youngs_modulus_fit_sem_GPa", "poisson_ratio_fit_sem", "fit_window_strain", "fracture_strain",
                 "yield_strain", "yield_stress_N_per_m", "yield_stress_GPa", "transverse_stress_mean_N_per_m",
                 "transverse_stress_sem_N_per_m", "transverse_stress_mean_GPa", "transverse_stress_sem_GPa")


def check(settings: dict) -> None:
    for d in settings["directions"]:
        if d not in ("x", "y"):
            raise ValueError(f"md.directions: {d!r} is not one of x, y (rotate the sheet for other directions)")
    if settings["transverse"] not in TRANSVERSE:
        raise ValueError(f"md.transverse: {settings['transverse']!r} is not one of {', '.join(TRANSVERSE)}")


def plan_seed(settings: dict, system, seed: int) -> list[dict]:
    base, name = system.base, system.name
    if system.is_interface:
        return [{**base, "kind": "interface", "direction": "normal", "seed": seed, "name": f"{name}_normal_seed{seed}"}]
    return [{**base, "kind": "tensile", "direction": direction, "seed": seed, "name": f"{name}_{direction}_seed{seed}"}
            for direction in settings["directions"]]


def run(task: dict) -> dict:
    """One tensile run; ``result``: the protocol's properties (:data:`PROPERTY_KEYS`, ``failed``,
    ``failure_mode``), plus
    ``h5`` (file name), ``n_atoms`` and, for a run that failed by collapse, ``collapsed`` (the reason)."""
    from .. import protocols
    from ..extrapolation import ExtrapolationControl, mtp_grader

    ff, atoms, run_settings, prefix = load(task)
    settings = task["settings"]
    control = None
    x = settings["extrapolation"]
    # the fit stage's active set; None for a potential the system brings (md_stage.plan_tasks logs it)
    active_set = task.get("active_set", str(Path(task["potential"]).with_suffix(".als")))
    if x["every"] > 0 and active_set:
        control = ExtrapolationControl(mtp_grader(ff.mtp, active_set),
                                       every=x["every"], warn=x["warn"], stop=x["stop"], cutoff=ff.cutoff,
                                       frames_path=f"{prefix}.extrapolative.extxyz")
    protocol = protocols.interface_tensile if task["kind"] == "interface" else protocols.tensile
    direction = {} if task["kind"] == "interface" else {"direction": task["direction"]}
    try:
        r = protocol(ff, atoms, strain_rate_per_s=settings["strain_rate_per_s"], max_strain=settings["max_strain"],
                     transverse=settings["transverse"], settings=run_settings, thickness_A=task["thickness_A"],
                     fit_window=(0.0, settings["fit_max_strain"]), out_prefix=prefix,
                     resume=resumable(task, prefix), extrapolation=control, log=progress_printer(task),
                     **direction)
    except MDRunError as exc:
        return blown_up(task, exc)
    out = {**task, "result": r["properties"], "h5": f"{task['name']}.h5", "n_atoms": r["settings"]["n_atoms"]}
    collapse = [e["reason"] for e in r["settings"]["events"] if e["kind"] == "collapse"]
    if collapse:
        out["collapsed"] = collapse[0]
    return out


def note(provenance: dict, result: dict) -> None:
    """A blown-up run in ``blown_up``; a finished one's file in ``md_runs`` and its ``n_atoms``, a collapsed
    one also in ``collapsed``."""
    if result.get("blew_up"):
        note_blown_up(provenance, result)
        return
    if result.get("collapsed"):
        name_run(provenance, "collapsed", result, result["collapsed"])
    provenance["md_runs"].append(result["h5"])
    provenance["n_atoms"] = result["n_atoms"]


def summarise(results: list[dict], settings: dict) -> dict:
    """``{system: {"directions": ...} or {"normal": ...}}`` (module docstring)."""
    runs: dict = {}
    lost_runs: dict = {}
    for r in results:
        into = lost_runs if r.get("blew_up") else runs
        into.setdefault(r["system"], {}).setdefault(r["direction"], []).append(r)
    out = {}
    for system in dict.fromkeys(r["system"] for r in results):
        by_direction = {d: [r["result"] for r in done] for d, done in runs.get(system, {}).items()}
        blown = {d: [r["name"] for r in done] for d, done in lost_runs.get(system, {}).items()}
        lost = [d for d in blown if d not in by_direction]
        if lost:
            reason = next(r["blew_up"] for r in results if r["system"] == system and r.get("blew_up"))
            raise MDRunError(f"md: every run of {system} along {', '.join(lost)} blew up "
                             f"({', '.join(n for d in lost for n in blown[d])}): {reason}. The potential "
                             "leaves its training domain; add data there (longer or more AIMD chains) or check "
                             "it with md.extrapolation.every")
        stats = {d: {k: mean_sem([p.get(k) for p in props], blown_up=len(blown.get(d, [])))
                     for k in PROPERTY_KEYS if any(k in p for p in props)}
                 for d, props in by_direction.items()}
        for d, s in stats.items():
            done = by_direction[d]
            yielded = [bool(np.isfinite(p.get("yield_strain", np.nan))) for p in done]
            s["runs_attempted"] = len(done) + len(blown.get(d, []))
            s["runs_failed"] = sum(bool(p.get("failed")) for p in done)
            s["runs_collapsed"] = sum(p.get("failure_mode") == "collapse" for p in done)
            s["runs_yielded"] = sum(yielded)
            s["runs_unfailed"] = sum(not p.get("failed") and not y for p, y in zip(done, yielded))
            s["runs_blown_up"] = len(blown.get(d, []))
        if "normal" in stats:
            out[system] = {"normal": stats["normal"]}
        elif stats:
            out[system] = {"directions": stats}
    return out


def plots(out_dir: Path, system: str, results: list[dict], entry: dict) -> None:
    plot_stress_strain(out_dir, system, results)


def plot_stress_strain(out_dir: Path, system: str, runs: list[dict]) -> Path | None:
    """``<system>_stress_strain.png``: the stress-strain curve of every tensile run of ``system``
    (2D stress in N/m for sheets, GPa otherwise; one colour per direction, one line per seed).

    The y axis covers each curve up to its peak (``failure_strain``), not what follows: a sample that
    fails can run on as debris with stresses far off the scale of the test (graphene at 300 K: -4000 N/m)."""
    if not runs:
        return None
    from ..io import read_run_h5

    fig, ax = pyplot().subplots(figsize=(6, 4))
    colours = {}
    unit = "GPa"
    kept = []  # per run: the stresses up to the peak
    for r in sorted(runs, key=lambda r: (r["direction"], r["seed"])):
        curve = read_run_h5(Path(out_dir) / r["h5"])["stress_strain"]
        key = "stress_N_per_m" if "stress_N_per_m" in curve else "stress_GPa"
        unit = "N/m" if key == "stress_N_per_m" else "GPa"
        colour = colours.setdefault(r["direction"], f"C{len(colours)}")
        label = f"{r['direction']} (seeds)" if r["seed"] == 0 else None
        ax.plot(curve["strain"], curve[key], color=colour, lw=1, alpha=0.8, label=label)
        kept.append(_up_to_peak(np.asarray(curve["strain"], float), np.asarray(curve[key], float),
                                (r.get("result") or {}).get("failure_strain")))
    limits = stress_limits(kept)
    if limits:
        ax.set_ylim(*limits)
    ax.set_xlabel("engineering strain")
    ax.set_ylabel(f"stress ({unit})")
    ax.set_title(f"{system}: MD tension at {runs[0]['settings']['temperature_K']:g} K, "
                 f"{runs[0]['settings']['strain_rate_per_s']:.2g} 1/s")
    ax.legend()
    return save(fig, Path(out_dir) / f"{system}_stress_strain.png")


def _up_to_peak(strain, stress, failure_strain):
    """The finite stresses [n] of a curve up to its failure strain (default: its largest stress)."""
    ok = np.isfinite(strain) & np.isfinite(stress)
    strain, stress = strain[ok], stress[ok]
    if not len(stress):
        return stress
    end = failure_strain if failure_strain is not None and np.isfinite(failure_strain) else strain[np.argmax(stress)]
    return stress[strain <= end + 1e-12]


def stress_limits(curves, *, margin: float = 0.08, outlier: float = 2.0):
    """``(low, high)`` y limits (the curves' unit) for stress curves clipped at their peaks, or None.

    ``high``: the largest peak that is at most ``outlier`` times the median peak (a spike of a run gone
    wrong does not set the scale); ``low``: 0 or the lowest stress before the peaks, at most ``high``
    below 0; both widened by ``margin`` of the range."""
    curves = [c for c in curves if len(c)]
    if not curves:
        return None
    peaks = np.array([c.max() for c in curves])
    median = float(np.median(peaks))
    high = float(peaks[peaks <= outlier * abs(median)].max()) if median > 0 else float(peaks.max())
    low = max(min(0.0, min(float(c.min()) for c in curves)), -abs(high))
    if high <= low:
        return None
    pad = margin * (high - low)
    return low - pad, high + pad

