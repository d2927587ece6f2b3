"""Fit reports: predictions of a potential on reference frames, errors, JSON report, parity and grade plots.

Data flow: MTP + frames (ase.Atoms with reference energy, forces, stress) -> :func:`predict`
(``training.mtp.calculator.evaluate_frames`` in batches) -> :func:`metrics` (RMSE/MAE) and
:func:`parity_png` (energy per atom, force components, stress components: predicted vs reference);
passive-training grades -> :func:`grades_png`; a report dict -> :func:`write_json` (atomic).

Units: energy per atom eV/atom, forces eV/Å, stress GPa (ASE sign, Voigt xx yy zz yz xz xy; a 2D
sheet's 3D stress refers to the whole cell including vacuum).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.atomic import write_json as common_write_json
from common.figures import pyplot, save_figure

_GPA = 160.21766208  # eV/Å^3 in GPa


def predict(mtp, frames, *, batch_atoms: int = 2000) -> dict:
    """Predicted and reference values of ``frames``.

    Returns {"energy_per_atom": (pred [F], ref [F]) eV/atom, "forces": (pred [3N], ref [3N]) eV/Å,
    "stress": (pred [F', 6], ref [F', 6]) GPa over the F' frames with a reference stress}.
    """
    from training import datasets
    from training.mtp.energy_rows import atom_batches

    frames = list(frames)
    results = []
    for start, stop in atom_batches(frames, batch_atoms):
        results += _evaluate(mtp, frames[start:stop])
    n_atoms = np.array([len(a) for a in frames], dtype=float)
    e_pred = np.array([r["energy"] for r in results]) / n_atoms
    e_ref = np.array([datasets.reference(a, "energy") for a in frames], dtype=float) / n_atoms
    f_pred = np.concatenate([r["forces"].ravel() for r in results]) if frames else np.zeros(0)
    f_ref = np.concatenate([np.asarray(datasets.reference(a, "forces")).ravel() for a in frames]) if frames \
        else np.zeros(0)
    out = {"energy_per_atom": (e_pred, e_ref), "forces": (f_pred, f_ref)}
    with_stress = [(r, a) for r, a in zip(results, frames) if datasets.reference(a, "stress") is not None
                   and "stress" in r]
    if with_stress:
        out["stress"] = (np.array([r["stress"] for r, _ in with_stress]) * _GPA,
                         np.array([datasets.reference(a, "stress") for _, a in with_stress]) * _GPA)
    return out


def _evaluate(mtp, frames) -> list[dict]:
    """Energy (eV), forces [n, 3] (eV/Å) and stress [6] (eV/Å³, ASE sign) of each frame, with one batched
    ``MTP.evaluate`` on the pair lists already built for the same frames (``training.mtp.neighbors.PAIRS``)."""
    from training.mtp.calculator import evaluate_frames
    from training.mtp.neighbors import PAIRS

    return evaluate_frames(mtp, frames, pairs=PAIRS)


def metrics(pred: dict) -> dict:
    """RMSE and MAE of each quantity of a :func:`predict` dict (units as there)."""
    units = {"energy_per_atom": "eV/atom", "forces": "eV/A", "stress": "GPa"}
    out = {}
    for name, (p, r) in pred.items():
        diff = np.asarray(p) - np.asarray(r)
        out[name] = {"rmse": float(np.sqrt(np.mean(diff ** 2))) if diff.size else None,
                     "mae": float(np.mean(np.abs(diff))) if diff.size else None, "unit": units[name]}
    return out


def errors(mtp, frames) -> dict:
    """metrics(predict(mtp, frames)), plus the frame count."""
    return {"n_frames": len(list(frames)), **metrics(predict(mtp, frames))}


def parity_png(pred: dict, path, *, title: str = "", model: str = "MTP") -> Path:
    """One PNG with a parity panel per quantity of ``pred`` (energy, forces, stress); RMSE in each title;
    ``model`` names the potential on the y axes."""
    plt = pyplot()

    names = [n for n in ("energy_per_atom", "forces", "stress") if n in pred]
    labels = {"energy_per_atom": "energy (eV/atom)", "forces": "force component (eV/Å)",
              "stress": "stress component (GPa)"}
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        p, r = (np.asarray(x).ravel() for x in pred[name])
        lo, hi = float(min(p.min(), r.min())), float(max(p.max(), r.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        ax.scatter(r, p, s=4, alpha=0.5)
        rmse = float(np.sqrt(np.mean((p - r) ** 2)))
        ax.set(xlabel=f"reference {labels[name]}", ylabel=f"{model} {labels[name]}", title=f"RMSE {rmse:.3g}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def grades_png(grades_preliminary, grades_final, threshold: float, path, *, title: str = "") -> Path:
    """Histogram of per-frame extrapolation grades with the preliminary and final potentials."""
    import matplotlib.ticker

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    allg = np.concatenate([grades_preliminary, grades_final])
    bins = np.logspace(np.log10(max(allg.min(), 1e-3)), np.log10(max(allg.max(), threshold) * 1.05), 40)
    ax.hist(grades_preliminary, bins=bins, alpha=0.6, label="preliminary potential")
    ax.hist(grades_final, bins=bins, alpha=0.6, label="final potential")
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:g}")
    ax.set(xscale="log", xlabel="extrapolation grade γ of each AIMD frame", ylabel="frames", title=title)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path) -> Path:
    return save_figure(fig, path, dpi=110)


def write_json(path, report: dict) -> Path:
    """Write ``report`` as JSON indented by one space, atomically (NumPy scalars and arrays converted)."""
    return common_write_json(path, report, indent=1, final_newline=False)
