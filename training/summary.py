"""Dataset summary: what a set of reference frames covers, as numbers, text and a histogram PNG.

Data flow: ``list[Atoms]`` (+ the generator's ``.meta.json``, see
:func:`training.aimd.read_metadata`) -> :func:`summarize` -> a JSON-able dict
-> :func:`format_summary` (the text ``multiscale data summary`` prints) and
:func:`plot_histograms` (a PNG).

Numbers: frames, atoms, species counts, temperatures (K) and strains covered,
energy per atom (eV/atom), force components (eV/A), stress. Stress is kept in
files as ASE does (eV/A^3 over the whole cell, vacuum included); here it is
quoted as 2D stress (N/m, = stress x cell height) and, for people, in GPa over
an effective thickness (``thickness_A``, default 3.35 A). The engine and, for
generated data, the engine's own 0 K lattice constant and in-plane stiffness
(the numbers the later stages must reproduce) come from the metadata.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from common.figures import pyplot, save_figure

from .datasets import reference

EV_PER_A3_TO_GPA = 160.21766208
EV_PER_A2_TO_N_PER_M = 16.021766208


def _range(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean())}


def stress_2d_n_per_m(atoms) -> np.ndarray | None:
    """In-plane 2D stress [xx, yy, xy] (N/m) of a frame: stress (eV/A^3) x cell height (A)."""
    stress = reference(atoms, "stress")
    if stress is None:
        return None
    return np.asarray(stress)[[0, 1, 5]] * atoms.cell[2, 2] * EV_PER_A2_TO_N_PER_M


def summarize(frames, *, metadata: dict | None = None, thickness_A: float = 3.35) -> dict:
    """Summary dict of ``frames`` (see the module docstring for units)."""
    frames = list(frames)
    metadata = metadata or {}
    n_atoms = np.array([len(a) for a in frames])
    species = Counter()
    for atoms in frames:
        species.update(atoms.get_chemical_symbols())
    e_per_atom = [reference(a, "energy") / len(a) for a in frames]
    forces = np.concatenate([np.asarray(reference(a, "forces")).ravel() for a in frames])
    s2d = [s for s in (stress_2d_n_per_m(a) for a in frames) if s is not None]
    temps = Counter(float(a.info["temperature_K"]) for a in frames if "temperature_K" in a.info)
    strains = [np.asarray(a.info["strain"], dtype=float) for a in frames if "strain" in a.info]
    out = {
        "n_frames": len(frames),
        "n_atoms_total": int(n_atoms.sum()),
        "atoms_per_frame": {"min": int(n_atoms.min()), "max": int(n_atoms.max())},
        "species": dict(sorted(species.items())),
        "systems": dict(Counter(str(a.info.get("system", "?")) for a in frames)),
        "temperatures_K": {f"{t:g}": n for t, n in sorted(temps.items())},
        "energy_eV_per_atom": _range(e_per_atom),
        "force_eV_per_A": {**_range(forces), "rms": float(np.sqrt(np.mean(forces ** 2)))},
        "frames_with_stress": len(s2d),
        "engine": _engine_line(frames, metadata),
    }
    if strains:
        strains = np.array(strains)
        out["strain"] = {"exx": _range(strains[:, 0]), "eyy": _range(strains[:, 1]),
                         "states": len({tuple(np.round(s, 4)) for s in strains})}
    if s2d:
        s2d = np.array(s2d)
        out["stress_2d_N_per_m"] = {k: _range(s2d[:, i]) for i, k in enumerate(("xx", "yy", "xy"))}
        gpa = s2d / thickness_A / EV_PER_A2_TO_N_PER_M * EV_PER_A3_TO_GPA
        out["stress_GPa"] = {"thickness_A": thickness_A,
                             **{k: _range(gpa[:, i]) for i, k in enumerate(("xx", "yy", "xy"))}}
    if "reference" in metadata:
        out["reference"] = metadata["reference"]
    return out


def _engine_line(frames, metadata: dict) -> str:
    engine = metadata.get("engine")
    if engine:
        versions = ", ".join(f"{k} {v}" for k, v in engine.get("versions", {}).items())
        return f"{engine['engine']} ({engine.get('method', '')}; {engine.get('theory', '')}; {versions})"
    labels = sorted({str(a.info["engine"]) for a in frames if "engine" in a.info})
    return "; ".join(labels) if labels else "unknown (no engine recorded in the file)"


def format_summary(summary: dict, *, title: str = "") -> str:
    """Human-readable text of :func:`summarize`'s dict (stress in N/m and GPa)."""
    lines = [title] if title else []
    lines.append(f"  frames {summary['n_frames']}, atoms {summary['n_atoms_total']} "
                 f"({summary['atoms_per_frame']['min']}-{summary['atoms_per_frame']['max']} per frame), "
                 f"species {summary['species']}")
    lines.append(f"  engine: {summary['engine']}")
    if summary["temperatures_K"]:
        lines.append("  temperatures (K: frames): "
                     + ", ".join(f"{t}: {n}" for t, n in summary["temperatures_K"].items()))
    if "strain" in summary:
        st = summary["strain"]
        lines.append(f"  strain: exx {st['exx']['min']:.3f}..{st['exx']['max']:.3f}, "
                     f"eyy {st['eyy']['min']:.3f}..{st['eyy']['max']:.3f} ({st['states']} states)")
    e, f = summary["energy_eV_per_atom"], summary["force_eV_per_A"]
    lines.append(f"  energy {e['min']:.4f}..{e['max']:.4f} eV/atom; force components "
                 f"{f['min']:.3f}..{f['max']:.3f} eV/A (rms {f['rms']:.3f})")
    if "stress_2d_N_per_m" in summary:
        s, g = summary["stress_2d_N_per_m"], summary["stress_GPa"]
        lines.append(f"  2D stress xx {s['xx']['min']:.2f}..{s['xx']['max']:.2f} N/m, "
                     f"yy {s['yy']['min']:.2f}..{s['yy']['max']:.2f} N/m "
                     f"(= xx {g['xx']['min']:.1f}..{g['xx']['max']:.1f} GPa at {g['thickness_A']} A)")
    ref = summary.get("reference")
    if ref:
        if "lattice_A" in ref:  # the embedded default case's metadata: named lattice constants
            lattice = ", ".join(f"{k} = {v:.4f} A" for k, v in ref["lattice_A"].items())
        else:  # training.reference.reference_properties: the relaxed cell of any sheet
            lattice = f"cell {ref['cell_A'][0]:.4f} x {ref['cell_A'][1]:.4f} A ({ref['n_atoms']} atoms)"
        lines.append(f"  reference engine at 0 K: {lattice}; C11 {ref['C11_N_per_m']:.1f}, "
                     f"C22 {ref['C22_N_per_m']:.1f}, C12 {ref['C12_N_per_m']:.1f} N/m; "
                     f"E_x {ref['E_x_N_per_m']:.1f}, E_y {ref['E_y_N_per_m']:.1f} N/m; "
                     f"nu_xy {ref['nu_xy']:.3f}")
    return "\n".join(lines)


def plot_histograms(frames, path, *, title: str = "") -> Path:
    """Write a PNG with histograms of energy per atom, force components, 2D stress and the
    temperature-strain coverage of ``frames``; returns ``path``."""
    plt = pyplot()

    frames = list(frames)
    fig, ax = plt.subplots(2, 2, figsize=(9, 7))
    ax[0, 0].hist([reference(a, "energy") / len(a) for a in frames], bins=40)
    ax[0, 0].set_xlabel("energy (eV/atom)")
    ax[0, 1].hist(np.concatenate([np.asarray(reference(a, "forces")).ravel() for a in frames]), bins=80,
                  log=True)
    ax[0, 1].set_xlabel("force component (eV/Å)")
    s2d = [s for s in (stress_2d_n_per_m(a) for a in frames) if s is not None]
    if s2d:
        s2d = np.array(s2d)
        ax[1, 0].hist([s2d[:, 0], s2d[:, 1]], bins=40, label=["xx", "yy"])
        ax[1, 0].legend()
    ax[1, 0].set_xlabel("2D stress (N/m)")
    strain = np.array([np.asarray(a.info.get("strain", [np.nan, np.nan]), dtype=float) for a in frames])
    temp = np.array([float(a.info.get("temperature_K", np.nan)) for a in frames])
    sc = ax[1, 1].scatter(strain[:, 0], strain[:, 1], c=temp, cmap="plasma", s=12)
    fig.colorbar(sc, ax=ax[1, 1], label="T (K)")
    ax[1, 1].set_xlabel("strain xx")
    ax[1, 1].set_ylabel("strain yy")
    for a in ax.flat[:3]:
        a.set_ylabel("count")
    fig.suptitle(title)
    return save_figure(fig, path, dpi=90, tight=True)
