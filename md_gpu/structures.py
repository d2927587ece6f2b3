"""Starting structures for MD runs: any structure file ASE reads.

``load_structure(path, *, base_dir=None, repeat=None, key="structure")``: ``path`` is a file ASE reads
(extxyz, POSCAR, cfg, ...), relative to ``base_dir`` when given. The result is repeated by ``repeat``
(ints per periodic axis) when given. In the md stage the files are the data stage's 0 K cells
``runs/data/<system>.structure.extxyz``; a built-in cell of ``training.structures`` is written as a file
by ``python -m training.structures <builder> <file>``.

2D sheets: a cell whose atoms leave a vacuum gap of more than ``SHEET_GAP_A`` along z (the Gamma-point
reference engines need ``pbc = True`` with vacuum, so the files keep it) is turned into an open-z sheet
(``pbc = (True, True, False)``), so that neighbour lists, barostat and stress conversion treat it as 2D
(:func:`as_sheet`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.sheets import SHEET_GAP_A, as_sheet  # noqa: F401  (re-exported: md_gpu.structures.as_sheet)

from .errors import MDSetupError


def load_structure(path, *, base_dir=None, repeat=None, key: str = "structure"):
    """An ase.Atoms from the structure file ``path`` (module docstring). Raises :class:`MDSetupError`
    naming ``key`` and the file when it is missing or ASE cannot read it."""
    path = Path(path)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise MDSetupError(f"{key}: structure file {path} not found")
    from ase.io import read

    try:
        atoms = read(path)
    except Exception as exc:
        raise MDSetupError(f"{key}: cannot read structure file {path} ({exc})") from None
    atoms = as_sheet(atoms)
    if repeat is not None:
        reps = [int(r) for r in repeat] + [1] * (3 - len(repeat))
        if any(r < 1 for r in reps):
            raise MDSetupError(f"repeat {list(repeat)} must hold positive integers")
        atoms = atoms.repeat(reps)
    return atoms


def repeat_to(atoms, n_atoms: int):
    """``atoms`` repeated along its periodic axes (as evenly as possible) to at least ``n_atoms``."""
    periodic = [k for k in range(3) if atoms.pbc[k]]
    if not periodic:
        raise MDSetupError("cannot enlarge a non-periodic structure")
    factor = max(1.0, n_atoms / len(atoms)) ** (1.0 / len(periodic))
    reps = [1, 1, 1]
    lengths = atoms.cell.lengths()
    target = (np.prod(lengths[periodic]) * factor ** len(periodic)) ** (1.0 / len(periodic))
    for k in periodic:
        reps[k] = max(1, int(round(target / lengths[k])))
    while len(atoms) * np.prod(reps) < n_atoms:
        k = min(periodic, key=lambda a: reps[a] * lengths[a])
        reps[k] += 1
    return atoms.repeat(reps)
