"""Thin adapter: a ``training.mtp`` moment tensor potential on the md_gpu force contract.

``MTPForceField.read(path, species=None)`` reads an MLIP ``.mtp`` file; the
species come from the file's ``potential_tag`` (``species=C,B``) or must be
given. ``evaluate`` is ``MTP.evaluate`` itself (same contract: full pair list,
``d = r_j + shift - r_i``, site energies [n] eV and dE/dd [p, 3] eV/Å), so the
MD engine adds nothing between the model and its forces.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import MDSetupError


def _mtp_class():
    try:
        from training.mtp import MTP
    except ImportError:
        from training.mtp.model import MTP
    return MTP


class MTPForceField:
    """An MTP (``training.mtp.MTP``) with its element symbols; ``cutoff`` (Å) = the MTP's ``max_dist``."""

    def __init__(self, mtp, species=None):
        symbols = species if species is not None else mtp.species
        if symbols is None:
            raise MDSetupError("the MTP file does not name its species (no 'species=...' potential_tag); "
                               "give them, e.g. --species C or species=('C',)")
        if len(symbols) != mtp.species_count:
            raise MDSetupError(f"species {list(symbols)} do not match the MTP's species_count = {mtp.species_count}")
        self.mtp = mtp
        self.species = tuple(symbols)
        self.cutoff = float(mtp.cutoff)

    @classmethod
    def read(cls, path, species=None) -> "MTPForceField":
        path = Path(path)
        if not path.is_file():
            raise MDSetupError(f"potential file {path} does not exist; run the fit stage or give the path "
                               "of an MLIP .mtp file")
        return cls(_mtp_class().read(path), species)

    def evaluate(self, types, i, j, d, *, xp=None):
        """Site energies [n] (eV) and dE/dd [p, 3] (eV/Å): ``MTP.evaluate``."""
        return self.mtp.evaluate(types, i, j, d, xp=xp)
