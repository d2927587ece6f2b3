"""PNG figures of the continuum stage (matplotlib, Agg; called on rank 0 only).

* :func:`curve_png`  – effective stress–strain curve(s), stress in N/m.
* :func:`damage_png` – the damage field at failure from gathered nodal values.
* :func:`sweep_png`  – effective modulus and strength versus a swept variable.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.tri as mtri  # noqa: E402
import numpy as np  # noqa: E402


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
    fig.savefig(path, dpi=130)
    plt.close(fig)


def damage_png(path, xy: np.ndarray, damage: np.ndarray, *, title: str = "") -> None:
    """``xy [n, 2]`` node coordinates (nm), ``damage [n]`` in [0, 1]."""
    tri = mtri.Triangulation(xy[:, 0], xy[:, 1])
    span = np.ptp(xy, axis=0)
    fig, ax = plt.subplots(figsize=(6, 6 * span[1] / span[0] + 0.8))
    im = ax.tripcolor(tri, damage, shading="gouraud", cmap="inferno", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="damage", shrink=0.8)
    ax.set_aspect("equal")
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


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
    fig.savefig(path, dpi=130)
    plt.close(fig)
