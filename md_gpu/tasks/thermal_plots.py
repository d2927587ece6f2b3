"""Figures of the thermal runs (:mod:`.thermal`), drawn on the root rank from the runs that did not blow up:
``<phase>_hnemd.png``, ``<phase>_thermal_length.png`` and ``<interface>_thermal_profile.png``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.figures import pyplot

from .common import save


def plots(out_dir: Path, system: str, results: list[dict], entry: dict) -> None:
    """The thermal figures of one system (``entry``: its entry of summary.json)."""
    thermal = entry.get("thermal", {})
    plot_hnemd(out_dir, system, [r for r in results if r["kind"] == "hnemd"])
    if "length_dependence" in thermal:
        plot_thermal_length(out_dir, system, thermal["length_dependence"]["x"])
    if "conductance_W_per_m2K" in thermal:
        plot_interface_profile(out_dir, system, [r for r in results if r["kind"] == "interface_nemd"], thermal)


def plot_hnemd(out_dir: Path, system: str, runs: list[dict]) -> Path | None:
    """``<phase>_hnemd.png``: running HNEMD conductivity (W/(m K)) against time (ps), one colour per
    direction, one line per seed."""
    runs = [r for r in runs if r.get("series")]
    if not runs:
        return None
    fig, ax = pyplot().subplots(figsize=(6, 4))
    colours: dict = {}
    for r in sorted(runs, key=lambda r: (r["direction"], r["seed"])):
        new = r["direction"] not in colours
        colour = colours.setdefault(r["direction"], f"C{len(colours)}")
        ax.plot(r["series"]["time_ps"], r["series"]["running_conductivity_W_per_mK"], color=colour, lw=1,
                alpha=0.8, label=r["direction"] if new else None)
    ax.set_xlabel("production time (ps)")
    ax.set_ylabel("running conductivity (W/(m K))")
    ax.set_title(f"{system}: HNEMD at {runs[0]['settings']['temperature_K']:g} K, "
                 f"F_e = {runs[0]['settings']['thermal']['driving_force_per_A']:.2g} 1/Å")
    ax.legend(title="direction (seeds)")
    return save(fig, Path(out_dir) / f"{system}_hnemd.png")


def plot_thermal_length(out_dir: Path, system: str, length_dependence: dict) -> Path:
    """``<phase>_thermal_length.png``: NEMD kappa(L) (mean +- sem over seeds) and 1/kappa against 1/L with
    the straight line through the extrapolated 1/kappa_inf at 1/L = 0 (slope: least squares; no line when
    the extrapolation failed)."""
    d = length_dependence
    L = np.asarray(d["length_nm"])
    k = np.asarray([s["mean"] for s in d["conductivity_W_per_mK"]])
    dk = np.asarray([np.nan if s["sem"] is None else s["sem"] for s in d["conductivity_W_per_mK"]], dtype=float)
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(9, 3.8))
    left.errorbar(L, k, yerr=dk, fmt="o-", capsize=3, label="NEMD (mean ± sem)")
    inv_L, inv_k = 1.0 / L, 1.0 / k
    right.errorbar(inv_L, inv_k, yerr=dk / k ** 2, fmt="o", capsize=3, label="NEMD")
    if "extrapolated_W_per_mK" in d:
        k_inf, dk_inf = d["extrapolated_W_per_mK"]["mean"], d["extrapolated_W_per_mK"]["sem"]
        left.axhline(k_inf, color="k", ls="--", lw=1, label=f"L → ∞: {k_inf:.3g} ± {dk_inf:.2g}")
        slope = float(np.dot(inv_L, inv_k - 1.0 / k_inf) / np.dot(inv_L, inv_L))
        grid = np.linspace(0.0, inv_L.max() * 1.05, 50)
        right.plot(grid, 1.0 / k_inf + slope * grid, "k--", lw=1, label="extrapolation")
        right.errorbar([0.0], [1.0 / k_inf], yerr=[dk_inf / k_inf ** 2], fmt="ks", capsize=3)
    else:
        right.set_title("no diffusive limit (summary.json: extrapolation_error)", fontsize=8)
    left.set_xlabel("length L (nm)")
    left.set_ylabel("conductivity κ (W/(m K))")
    left.legend(fontsize=8)
    right.set_xlabel("1/L (1/nm)")
    right.set_ylabel("1/κ (m K/W)")
    right.legend(fontsize=8)
    fig.suptitle(f"{system}: length dependence of the NEMD conductivity along x")
    return save(fig, Path(out_dir) / f"{system}_thermal_length.png")


def plot_interface_profile(out_dir: Path, system: str, runs: list[dict], thermal: dict) -> Path | None:
    """``<interface>_thermal_profile.png``: NEMD temperature profile (K) across the interface cell, one line
    per seed, interfaces as dashed lines, the mean temperature jump drawn as a bar at each interface."""
    runs = [r for r in runs if r.get("profile")]
    if not runs:
        return None
    def profile(r):  # bins start at the hot bath: sort them by position in the cell
        x, t = np.asarray(r["profile"]["position_A"]), np.asarray(r["profile"]["temperature_K"])
        return x[np.argsort(x)], t[np.argsort(x)]

    fig, ax = pyplot().subplots(figsize=(6, 4))
    for r in sorted(runs, key=lambda r: r["seed"]):
        ax.plot(*profile(r), "o-", ms=3, lw=1, alpha=0.8, label=f"seed {r['seed']}")
    first = runs[0]
    jump = thermal["temperature_jump_K"]
    for x in first.get("interfaces_A", []):
        ax.axvline(x, color="k", ls="--", lw=0.8)
        t = float(np.interp(x, *profile(first)))
        ax.errorbar([x], [t], yerr=[abs(jump["mean"]) / 2], color="r", capsize=5, lw=2)
    g = thermal["conductance_W_per_m2K"]
    ax.set_title(f"{system}: ΔT = {_pm(jump)} K, G = {_pm(g)} W/(m² K)", fontsize=9)
    ax.set_xlabel("position along the normal y (Å)")
    ax.set_ylabel("temperature (K)")
    ax.legend(fontsize=8)
    return save(fig, Path(out_dir) / f"{system}_thermal_profile.png")


def _pm(stat: dict) -> str:
    """``mean ± sem``, or ``mean (1 seed)`` when the statistic has no sem (one run)."""
    if stat.get("sem") is None:
        return f"{stat['mean']:.3g} (1 seed)"
    return f"{stat['mean']:.3g} ± {stat['sem']:.2g}"
