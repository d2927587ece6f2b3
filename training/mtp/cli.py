"""``multiscale mtp calc-efs``: MLIP's ``mlp calc-efs`` (energies, forces, stresses of a dataset).

``register(subparsers)`` adds the sub-command to the ``mtp`` group; its handler ``args.func(args)`` returns
an exit code.  Input and output are MLIP ``.cfg`` (optionally ``.gz``) or any format ASE writes
(extended XYZ by default), chosen by the file name.
"""
from __future__ import annotations

import sys
from pathlib import Path


def _is_cfg(path: str) -> bool:
    name = Path(path).name
    return name.endswith(".cfg") or name.endswith(".cfg.gz")


def calc_efs(args) -> int:
    """Handler of ``calc-efs``: read POT and IN, write OUT with MTP energies, forces and stresses."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from .calculator import evaluate_frames
    from .cfg import read_cfg, write_cfg
    from .errors import MTPError
    from .model import MTP

    try:
        mtp = MTP.read(args.potential)
        if args.species:
            mtp.species = args.species.split(",")
        frames = read_cfg(args.input, species=mtp.species) if _is_cfg(args.input) else ase.io.read(args.input, ":")
        for atoms, res in zip(frames, evaluate_frames(mtp, frames)):
            kept = {k: res[k] for k in ("energy", "forces", "stress") if k in res}
            atoms.calc = SinglePointCalculator(atoms, free_energy=res["energy"], energies=res["energies"], **kept)
        if _is_cfg(args.output):
            write_cfg(args.output, frames, species=mtp.species)
        else:
            ase.io.write(args.output, frames)
    except (MTPError, OSError, ValueError) as error:
        print(f"multiscale mtp calc-efs: error: {error}", file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    """Add ``calc-efs`` to the ``mtp`` command group (``subparsers`` from ``add_subparsers()``)."""
    parser = subparsers.add_parser(
        "calc-efs", help="energies, forces and stresses of a dataset with an MTP (like MLIP's mlp calc-efs)",
        description="Compute energy, forces and stress of every configuration of IN with the MTP in POT and "
                    "write them to OUT (.cfg/.cfg.gz: MLIP format; otherwise any ASE format, e.g. .extxyz).")
    parser.add_argument("potential", metavar="POT.mtp", help="MLIP .mtp potential")
    parser.add_argument("input", metavar="IN", help="configurations: .cfg[.gz] or extxyz")
    parser.add_argument("output", metavar="OUT", help="output file: .cfg[.gz] or extxyz")
    parser.add_argument("--species", default=None,
                        help="comma-separated element symbols of MTP types 0,1,... (default: the potential's "
                             "potential_tag; without either, cfg type indices are used as they are)")
    parser.set_defaults(func=calc_efs)
