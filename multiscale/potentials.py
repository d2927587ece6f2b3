"""``systems.<name>.potential``: a potential a system brings instead of a fitted MTP, checked at load.

Contract: the value is a file relative to the case folder (an absolute path works too): a GPUMD NEP
``nep.txt`` (NEP3/NEP4, optional ZBL) or an MLIP ``.mtp`` whose ``potential_tag`` names its elements
(``species:C,B``). The model is recognised by the file's first line (:func:`common.potentials.potential_model`),
not by its name. :func:`check_path` (no imports: runs for every case) and :func:`check_potential` (reads
the file with the engine's own reader, ``training.nep.read_nep`` or
``training.mtp.MTP.read``, and the system's structure) raise :class:`PotentialError`, one line that
starts with the key and names the file and the problem. :func:`brought_files` lists the files, inputs
of the fit stage (:data:`multiscale.stages.PRODUCT`): editing one reruns the fit and what follows.
"""
from __future__ import annotations

import re
from pathlib import Path


class PotentialError(ValueError):
    """A ``systems.<name>.potential`` the stages cannot use; the message starts with the key."""


def potential_path(spec: str, case_dir) -> Path:
    """The file ``spec`` names: relative to ``case_dir`` unless absolute."""
    path = Path(spec)
    return path if path.is_absolute() else Path(case_dir) / path


def check_path(name: str, spec: str, case_dir) -> Path:
    """The brought file of system ``name``; PotentialError when it is not a file."""
    path = potential_path(spec, case_dir)
    if not path.is_file():
        problem = "is a folder, not a potential file" if path.is_dir() else "does not exist"
        raise PotentialError(f"systems.{name}.potential: {path} {problem}; give a GPUMD NEP file (nep.txt) or an "
                             f"MLIP .mtp file relative to the case folder {case_dir}, or remove the key to fit "
                             f"an MTP for '{name}'")
    return path


def read_potential(name: str, path: Path) -> tuple[str, list[str]]:
    """``(model, elements in type order)`` of the brought file ``path``, read by the engine's reader."""
    from common.potentials import first_line, potential_model

    key = f"systems.{name}.potential"
    model = potential_model(path)
    if model is None:
        line = first_line(path)
        found = f"its first line is {line[:60]!r}" if line else "it is empty"
        raise PotentialError(f"{key}: {path} is neither a GPUMD NEP file (first line the model, e.g. 'nep4 1 C') "
                             f"nor an MLIP .mtp file (first line 'MTP'): {found}")
    try:
        if model == "nep":
            from training.nep import read_nep

            species = list(read_nep(path).species)
        else:
            from training.mtp import MTP

            species = MTP.read(path).species
    except (ValueError, IndexError, KeyError, OSError) as exc:  # the readers' format errors are ValueErrors
        reason = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
        what = "NEP" if model == "nep" else "MTP"
        raise PotentialError(f"{key}: {path} is not a readable {what} potential: {reason}") from None
    if not species:
        raise PotentialError(f"{key}: {path} does not name its elements; add them to its potential_tag in the "
                             f"order of its types, e.g. 'potential_tag = species:C,B'")
    return model, list(species)


def check_potential(name: str, entry: dict, systems: dict, case_dir, *, structures: bool = True) -> None:
    """Read the potential of system ``name`` (its validated ``entry``) and, with ``structures``, check that
    its elements cover those of the system (:func:`training.systems.system_species`)."""
    if not entry.get("potential"):
        return
    path = check_path(name, entry["potential"], case_dir)
    model, species = read_potential(name, path)
    if not structures:
        return
    from training.systems import system_species

    needed, source = system_species(name, entry, systems, case_dir)
    missing = [s for s in needed if s not in species]
    if missing:
        raise PotentialError(
            f"systems.{name}.potential: {path} is a {model.upper()} potential for {', '.join(species)}, but the "
            f"system holds {', '.join(missing)} too ({source}: {', '.join(needed)}); a brought potential must "
            f"cover every element of its system")


def brought_files(case) -> list[Path]:
    """The potential files the systems of ``case`` bring (existing ones), in system order."""
    paths = [potential_path(e["potential"], case.path) for e in case.systems.values() if e.get("potential")]
    return [p for p in paths if p.is_file()]
