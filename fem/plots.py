"""PNG figures of the continuum stage (matplotlib, Agg; called on rank 0 only).

* :func:`curve_png`  – effective stress–strain curve(s), stress in N/m.
* :func:`damage_png` – the damage field at failure from gathered nodal values.
* :func:`sweep_png`  – effective modulus and strength versus a swept variable.
* :func:`temperature_png` – the (discontinuous) temperature field of a conduction test.
* :func:`size_effect_png` – effective conductivity of stripes in series versus the period (log x),
  with the interface-dominated and bulk limits and the Kapitza lengths.
* :func:`conductivity_fraction_png` – effective conductivity versus area fraction, with the bounds.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.tri as mtri  # noqa: E402
import numpy as np  # noqa: E402

from common.atomic import atomic_path  # noqa: E402


def _save(fig, path) -> None:
    """Write ``fig`` to the PNG ``path`` atomically (a reader never sees half a file) and close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=130)
    finally:
        plt.close(fig)


def curve_png(path, curves: dict, *, title: str = "") -> None:
    """``curves``: label -> (strain [n], stress [n] in N/m)."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for label, (strain, stress) in curves.items():
        ax.plot(np.asarray(strain) * 100, stress, ".-", ms=3, label=label)
    ax.set_xlabel("applied strain (%)")
    ax.set_ylabel("effective stress (N/m)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def field_png(path, xy: np.ndarray, values: np.ndarray, *, label: str, cmap: str = "viridis", vmin=None,
              vmax=None, triangles: np.ndarray | None = None, title: str = "") -> None:
    """A nodal field on the sample: ``xy [n, 2]`` (nm), ``values [n]``; ``triangles [m, 3]`` (indices into
    ``xy``) for a discontinuous field given per cell corner, else a Delaunay triangulation of the nodes."""
    tri = mtri.Triangulation(xy[:, 0], xy[:, 1], triangles)
    span = np.ptp(xy, axis=0)
    fig, ax = plt.subplots(figsize=(6, min(6 * span[1] / span[0], 8) + 0.8))
    im = ax.tripcolor(tri, values, shading="gouraud", cmap=cmap, vmin=vmin, vmax=vmax)
    fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    ax.set_aspect("equal")
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def damage_png(path, xy: np.ndarray, damage: np.ndarray, *, title: str = "") -> None:
    """``xy [n, 2]`` node coordinates (nm), ``damage [n]`` in [0, 1]."""
    field_png(path, xy, damage, label="damage", cmap="inferno", vmin=0, vmax=1, title=title)


def temperature_png(path, xy: np.ndarray, T: np.ndarray, *, title: str = "") -> None:
    """``xy [3 m, 2]`` (nm) and ``T [3 m]`` (K) at the corners of ``m`` cells (DG1: jumps at interfaces shown)."""
    field_png(path, xy, T, label="temperature (K)", cmap="coolwarm",
              triangles=np.arange(len(T)).reshape(-1, 3), title=title)


def sweep_png(path, variable: str, rows: list[dict], *, title: str = "") -> None:
    """``rows``: dicts with ``value``, ``modulus_N_per_m``, ``strength_N_per_m`` (optional Voigt/Reuss bounds)."""
    x = [r["value"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.4))
    a1.plot(x, [r["modulus_N_per_m"] for r in rows], "o-", label="FE")
    for key, style in (("voigt_N_per_m", "--"), ("reuss_N_per_m", ":")):
        if all(r.get(key) is not None for r in rows):
            a1.plot(x, [r[key] for r in rows], style, color="0.5", label=key.split("_")[0].capitalize())
    a1.legend(fontsize=7)
    a1.set_ylabel("effective modulus (N/m)")
    a2.plot(x, [r["strength_N_per_m"] for r in rows], "s-", color="C3")
    a2.set_ylabel("effective strength (N/m)")
    for a in (a1, a2):
        a.set_xlabel(variable)
        a.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def size_effect_png(path, rows: list[dict], *, limits: dict, title: str = "") -> None:
    """``rows``: dicts with ``period_nm`` and ``kappa_fe`` (W/(m K)); ``limits``: ``period_nm [k]`` a fine
    grid with the ``exact [k]`` and ``interface [k]`` (G P / 2) curves on it, ``bulk`` (harmonic mean),
    ``kapitza_nm`` {phase: kappa/G (nm)}, ``crossover_nm`` (period where interfaces and bulk resist equally)."""
    P = np.array([r["period_nm"] for r in rows])
    fine, bulk = limits["period_nm"], limits["bulk"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(fine, limits["exact"], "-", color="0.3", lw=1, label="exact (series + 2/(G P))")
    ax.plot(P, [r["kappa_fe"] for r in rows], "o", color="C3", label="FE")
    ax.plot(fine, limits["interface"], "--", color="C0", lw=1, label="interface-dominated G P / 2")
    ax.axhline(bulk, ls=":", color="C2", label="bulk harmonic mean")
    for i, (phase, lk) in enumerate(limits["kapitza_nm"].items()):
        ax.axvline(lk, ls="-.", lw=0.8, color=f"C{4 + i}", label=f"Kapitza length {phase} {lk:.3g} nm")
    ax.axvline(limits["crossover_nm"], ls=":", lw=1, color="k",
               label=f"crossover 2 kappa_harm/G {limits['crossover_nm']:.3g} nm")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(min(r["kappa_fe"] for r in rows) / 2, bulk * 2)
    ax.set_xlabel("stripe period P (nm)")
    ax.set_ylabel("effective conductivity (W/(m K))")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, path)


def conductivity_fraction_png(path, tables: dict, *, fraction_label: str, title: str = "") -> None:
    """``tables``: sample name -> rows with ``fraction``, ``kappa_fe``, ``parallel`` and ``series`` bounds
    (W/(m K)) and, for stripes in series, ``exact`` (with the interface resistances)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, rows) in enumerate(tables.items()):
        f = [r["fraction"] for r in rows]
        ax.plot(f, [r["kappa_fe"] for r in rows], "os^"[i % 3] + "-", color=f"C{i}", label=f"FE {name}")
        if all(r.get("exact") is not None for r in rows):
            ax.plot(f, [r["exact"] for r in rows], "x", color=f"C{i}", ms=8, label=f"exact {name}")
    rows = next(iter(tables.values()))
    order = np.argsort([r["fraction"] for r in rows])
    f = np.array([r["fraction"] for r in rows])[order]
    ax.plot(f, np.array([r["parallel"] for r in rows])[order], "--", color="0.5", label="parallel (upper bound)")
    ax.plot(f, np.array([r["series"] for r in rows])[order], ":", color="0.5", label="series, no interfaces")
    ax.set_xlabel(fraction_label)
    ax.set_ylabel("effective conductivity (W/(m K))")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
