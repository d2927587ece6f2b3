"""Force field from a command-line/config string: an MLIP ``.mtp`` path, a GPUMD NEP ``.txt``
(``nep.txt``, read by :mod:`md_gpu.forcefields.nep`) or a built-in pair potential.

Built-ins (for tests, benchmarks and demos, not for production numbers):
``morse-cu`` (Girifalco & Weizer's Morse copper, Phys. Rev. 114, 687 (1959),
shifted-force at 5.5 Å).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import MDSetupError
from .pair import Morse

BUILTIN = {
    "morse-cu": lambda: Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5),
}


def load_forcefield(spec, *, species=None, core: bool = True, core_radii: dict | None = None):
    """An MTP force field from a ``.mtp`` path (``species``: element per type if the file lacks them;
    ``core``, ``core_radii``: the short-range core, see :mod:`md_gpu.forcefields.mtp`), a NEP from a
    ``.txt`` path (or a name starting with ``nep``; ``species``, if given, must be the file's), or a built-in."""
    spec = str(spec)
    if spec in BUILTIN:
        return BUILTIN[spec]()
    usage = f"give an MLIP .mtp file, a NEP .txt file or one of the built-ins {', '.join(BUILTIN)}"
    if Path(spec).suffix == ".txt" or (Path(spec).name.startswith("nep") and Path(spec).suffix != ".mtp"):
        if not Path(spec).is_file():
            raise MDSetupError(f"potential {spec!r} does not exist: {usage}")
        from .nep import NEPForceField

        return NEPForceField.read(spec, species=species)
    if Path(spec).suffix != ".mtp":
        raise MDSetupError(f"potential {spec!r}: {usage}")
    from .mtp import MTPForceField

    return MTPForceField.read(spec, species=species, core=core, core_radii=core_radii)
