"""Does the structure survive at temperature? Coordination numbers before and after NVT MD.

Why: a potential (or the reference engine it learned from) can hold a lower-energy structure than
the one the case is about. The default case's chi3 borophene MTP turns, after about 7 ps of NVT at
300 K, into a buckled, all three-coordinated sheet, 196 meV/atom below chi3 for the MTP and 65
meV/atom below it for GFN1-xTB itself (both relaxed at the chi3 cell; GFN2-xTB puts the same sheet
220 meV/atom *above* chi3). Tensile curves, elastic constants and conductivities of such a run
belong to another material; this check says so instead of letting them through.

Data flow::

    built structure (0 K) --first_shell_cutoff--> r_c: the middle of the widest gap in its
        neighbour distances up to twice the shortest (graphene 1.42 | 2.46 A -> 1.94 A)
    --NVT at settings.temperature_K, fixed cell, ``steps``--> snapshots every steps / n_samples
    --coordination(r_c) per atom--> changed_fraction: atoms whose coordination number at the end
        differs from the 0 K structure's; energy_drift_meV_per_atom: mean potential energy of the
        last fifth of the run minus that of the second fifth (the first fifth is equilibration)
    -> {"changed_fraction", "coordination_start", "coordination_end" (histograms: count per
        coordination number 0, 1, 2, ...), "changed_fraction_series", "energy_drift_meV_per_atom",
        "cutoff_A", "steps", "temperature_K", "n_atoms", "retained": changed_fraction <= max_changed}

Thermal vibrations do not move an atom across the gap between shells, so a structure that is
kept scores 0 (graphene and chi3 borophene with their MTPs at 300 K over 20 ps: 0.0); a transformed
one scores up to 1 (chi3 -> three-coordinated borophene: 1.0).
"""
from __future__ import annotations

import numpy as np

from common.atomic import atomic_path

from ..errors import MDSetupError
from ..simulation import Stage
from ..state import State, to_atoms
from .common import RunSettings, checkpoint_file, prepare_state, simulation


def first_shell_cutoff(atoms, *, search_A: float = 6.0) -> float:
    """Å: the middle of the widest gap between consecutive neighbour distances up to twice the shortest.

    The gap sits between the first and second neighbour shells of a crystal (graphene: 1.42 | 2.46;
    a close-packed sheet: a | sqrt(3) a). Raises when there are fewer than two distinct distances
    within ``search_A`` (nothing to tell apart).
    """
    from ase.neighborlist import neighbor_list

    d = np.unique(np.round(neighbor_list("d", atoms, search_A), 3))
    d = d[d <= 2.0 * d[0]] if d.size else d
    if d.size < 2:
        raise MDSetupError(f"first_shell_cutoff: fewer than two neighbour distances between the shortest and "
                           f"twice it (searched up to {search_A} Å); the structure has no shells to count")
    k = int(np.argmax(np.diff(d)))
    return float(0.5 * (d[k] + d[k + 1]))


def coordination(atoms, cutoff_A: float) -> np.ndarray:
    """Neighbours of each atom closer than ``cutoff_A`` (periodic images included)."""
    from ase.neighborlist import neighbor_list

    return np.bincount(neighbor_list("i", atoms, cutoff_A), minlength=len(atoms))


def _histogram(cn: np.ndarray) -> list[int]:
    return np.bincount(cn).astype(int).tolist()


def structure_stability(ff, atoms, *, steps: int = 20000, n_samples: int = 10, max_changed: float = 0.1,
                        settings: RunSettings | None = None, final_path=None, checkpoints=None, resume: bool = False,
                        log=print) -> dict:
    """NVT run of ``atoms`` (ase.Atoms at 0 K) at ``settings.temperature_K``; see the module docstring.

    ``final_path``: also write the last snapshot there (extxyz, for OVITO or ASE's viewer).
    ``checkpoints``: path prefix of the checkpoints of the ``n_samples`` chunks of the run
    (``<checkpoints>.nvt<k>.ckpt.npz``, with ``settings.checkpoint_every``); ``resume``: replay the finished
    chunks and continue the interrupted one from them (:func:`~md_gpu.protocols.common.simulation`)."""
    settings = settings or RunSettings()
    if steps < n_samples or n_samples < 5:
        raise MDSetupError(f"structure stability: steps ({steps}) must be >= n_samples ({n_samples}) >= 5")
    if not 0 <= max_changed <= 1:
        raise MDSetupError(f"structure stability: max_changed {max_changed} must be in [0, 1]")
    reference = atoms if not isinstance(atoms, State) else to_atoms(atoms)
    cutoff = first_shell_cutoff(reference)
    cn0 = coordination(reference, cutoff)
    state = prepare_state(ff, atoms, settings)
    chunk = steps // n_samples
    series, energies = [], []
    for k in range(n_samples):
        run = simulation(ff, state, settings, checkpoint=checkpoint_file(checkpoints, f"nvt{k}"), resume=resume,
                         log=log).run([Stage(f"nvt {k + 1}/{n_samples}", chunk, thermostat=settings.make_thermostat())])
        state = run.md.state
        energies.append(float(np.mean(run.thermo["potential_eV"])))
        series.append(float(np.mean(coordination(to_atoms(state), cutoff) != cn0)))
    final = to_atoms(state)
    cn_end = coordination(final, cutoff)
    if final_path is not None:
        import ase.io

        with atomic_path(final_path) as tmp:
            ase.io.write(str(tmp), final, format="extxyz")
    n = len(reference)
    fifth = max(n_samples // 5, 1)
    drift = (np.mean(energies[-fifth:]) - np.mean(energies[fifth:2 * fifth])) / n * 1000.0
    changed = series[-1]
    return {"changed_fraction": changed, "changed_fraction_series": series,
            "coordination_start": _histogram(cn0), "coordination_end": _histogram(cn_end),
            "energy_drift_meV_per_atom": float(drift), "cutoff_A": cutoff, "steps": chunk * n_samples,
            "temperature_K": settings.temperature_K, "n_atoms": n, "max_changed": max_changed,
            "retained": bool(changed <= max_changed)}
