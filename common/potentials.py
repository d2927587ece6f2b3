"""Potential files a system of ``case.yaml`` may bring (``systems.<name>.potential``): which model a
file holds, the elements its header names, and the name the fit stage gives its copy.

Contract: :func:`potential_model` ``(path) -> "mtp" | "nep" | None`` from the file's first non-blank
line (an MLIP ``.mtp`` starts with ``MTP``; a GPUMD ``nep.txt`` with its model keyword ``nep3``,
``nep4``, ``nep4_zbl``, ...), whatever the file is called; :func:`nep_species` reads the elements
of a NEP's model line; :func:`fit_file_name` is ``<system>.mtp`` or ``<system>.nep.txt``, names that
``md_gpu.forcefields.loading.load_forcefield`` reads as an MTP and as a NEP. This module reads
headers only: the full readers are ``training.mtp.MTP.read`` and
``training.nep.read_nep`` (case validation runs them, :mod:`multiscale.potentials`).
"""
from __future__ import annotations

#: The suffix of the fit stage's copy of each model (the md stage's loader picks the model by it).
SUFFIXES = {"mtp": ".mtp", "nep": ".nep.txt"}


def first_line(path) -> str:
    """The first non-blank line of ``path``, stripped ('' for an empty file); undecodable bytes are replaced."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return line.strip()
    return ""


def potential_model(path) -> str | None:
    """``"mtp"`` for an MLIP file (first line ``MTP``), ``"nep"`` for a GPUMD NEP file (first word
    starting with ``nep``), else None."""
    line = first_line(path)
    if line == "MTP":
        return "mtp"
    words = line.split()
    return "nep" if words and words[0].lower().startswith("nep") else None


def nep_species(path) -> list[str]:
    """The elements of a NEP file's model line (``nep4 2 C B`` -> ``["C", "B"]``); ValueError when the
    line does not hold them."""
    words = first_line(path).split()
    if len(words) < 3 or not words[1].isdigit() or len(words) != 2 + int(words[1]):
        raise ValueError(f"{path}: the first line must be the NEP model line, e.g. 'nep4 2 C B', "
                         f"got {' '.join(words)[:80]!r}")
    return words[2:]


def fit_file_name(system: str, model: str) -> str:
    """The file name of ``system``'s potential in the fit stage's folder: ``<system>.mtp`` or ``<system>.nep.txt``."""
    return f"{system}{SUFFIXES[model]}"
