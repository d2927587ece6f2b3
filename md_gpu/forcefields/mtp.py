"""Thin adapter: a ``training.mtp`` moment tensor potential on the md_gpu force contract.

``MTPForceField.read(path, species=None)`` reads an MLIP ``.mtp`` file; the
species come from the file's ``potential_tag`` (``species:C,B``) or must be
given. ``evaluate`` is ``MTP.evaluate`` itself (same contract: full pair list,
``d = r_j + shift - r_i``, site energies [n] eV and dE/dd [p, 3] eV/Å; on the
CPU its compiled kernel, ``training.mtp.host_kernel.evaluate``, which falls
back to the array code), so the MD engine adds nothing between the model and
its forces while every pair is at least its core radius (below) apart.

Short-range core (``core=True``, the default in MD). Below ``min_dist`` an MTP
is a polynomial outside its fitted range: it can turn attractive and diverge to
minus infinity, so one hot collision (typically at fracture) makes the run blow
up. Pairs closer than a core radius ``c`` are therefore handled as in the common
LAMMPS ``hybrid/overlay mlip zbl`` practice, in two smooth parts. ``c`` of a
species pair is ``min_dist`` or, when given (``core_radii``, e.g. ``{"B-B": 1.33}``
from the fit stage's ``<system>_fit.json``: the shortest distance of that pair in
the training data), whichever is larger, since below the shortest distance in the
data the MTP was never fitted and can have attractive holes.

* the MTP sees such a pair at the distance ``g(r) = c - w tanh((c - r) / w)``
  (``w = CORE_WIDTH * c``), which equals ``r`` to second order at ``c`` and stays
  above ``c - w``: the MTP is only ever evaluated where it is bounded;
* a repulsive wall ``E(r) = (k / 3) (c - r)^3`` (``k = CORE_STIFFNESS``,
  eV/Å^3), split half to each atom of the pair, takes over.

Both vanish for ``r >= c``: there the numbers are MLIP's exactly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.arrays import array_module
from training.mtp import MTP, host_kernel

from ..errors import MDSetupError

CORE_WIDTH = 0.05  # w / c of the distance map g(r)
CORE_STIFFNESS = 1.0e4  # k of the wall (k/3)(c - r)^3, eV/Å^3: 3.3 eV at 0.1 Å inside, 27 eV at 0.2 Å


class MTPForceField:
    """An MTP (``training.mtp.MTP``) with its element symbols; ``cutoff`` (Å) = the MTP's ``max_dist``."""

    def __init__(self, mtp, species=None, *, core: bool = True, core_radii: dict | None = None):
        symbols = species if species is not None else mtp.species
        if symbols is None:
            raise MDSetupError("the MTP file does not name its species (no 'species:...' potential_tag); "
                               "give them, e.g. --species C or species=('C',)")
        if len(symbols) != mtp.species_count:
            raise MDSetupError(f"species {list(symbols)} do not match the MTP's species_count = {mtp.species_count}")
        self.mtp = mtp
        self.species = tuple(symbols)
        self.cutoff = float(mtp.cutoff)
        self.core_table = self._core_table(core_radii or {})
        # the largest core radius (Å); 0 = no core: MTP.evaluate alone, with no extra work per step
        self.core_max = float(self.core_table.max()) if core else 0.0

    def _core_table(self, radii: dict):
        """[S, S] core radius (Å) of every species pair: max(min_dist, radii['A-B'])."""
        table = np.full((len(self.species), len(self.species)), float(self.mtp.min_dist))
        for key, value in radii.items():
            pair = key.split("-")
            if len(pair) != 2 or not set(pair) <= set(self.species):
                raise MDSetupError(f"core radius {key!r}: expected 'A-B' with A, B among the potential's "
                                   f"species {', '.join(self.species)}")
            a, b = (self.species.index(x) for x in pair)
            table[a, b] = table[b, a] = max(table[a, b], float(value))
        return table

    @classmethod
    def read(cls, path, species=None, *, core: bool = True, core_radii: dict | None = None) -> "MTPForceField":
        path = Path(path)
        if not path.is_file():
            raise MDSetupError(f"potential file {path} does not exist; run the fit stage or give the path "
                               "of an MLIP .mtp file")
        return cls(MTP.read(path), species, core=core, core_radii=core_radii)

    def _mtp_evaluate(self, types, i, j, d, xp):
        if xp is np:
            return host_kernel.evaluate(self.mtp, types, i, j, d)
        return self.mtp.evaluate(types, i, j, d, xp=xp)

    def evaluate(self, types, i, j, d, *, xp=None):
        """Site energies [n] (eV) and dE/dd [p, 3] (eV/Å): ``MTP.evaluate``, plus the short-range core."""
        if xp is None:
            xp = array_module(d)
        if self.core_max <= 0:
            return self._mtp_evaluate(types, i, j, d, xp)
        r2 = (d * d).sum(axis=1)
        # On the host the usual step (no pair in a core) skips the core map after one reduction. On a
        # device that test would be a device-to-host read every step, so the map is applied to every
        # pair: outside the cores it is the identity (g = r, g' = 1, no wall), and the result is the
        # plain evaluation's up to the sign of zeros (tests/test_md_mtp.py).
        if xp is np and (r2.size == 0 or float(r2.min()) >= self.core_max ** 2):
            return self._mtp_evaluate(types, i, j, d, xp)
        return self.with_core(types, i, j, d, r2, xp)

    def with_core(self, types, i, j, d, r2, xp):
        """:meth:`evaluate` with the core map applied to every pair (``r2 [p]``: ``|d|^2``, Å^2)."""
        r = xp.sqrt(r2)
        c = xp.asarray(self.core_table)[types[i], types[j]]
        w = CORE_WIDTH * c
        depth = xp.maximum(c - r, 0.0)  # > 0 inside the core
        th = xp.tanh(depth / w)
        g, dg = c - w * th, 1.0 - th * th  # g(r), dg/dr; g = r, g' = 1 outside
        g = xp.where(depth > 0, g, r)
        energies, grad = self._mtp_evaluate(types, i, j, d * (g / r)[:, None], xp)
        u = d / r[:, None]
        radial = (u * grad).sum(axis=1)
        # d' = d g(r)/r:  dE/dd = (g/r) G + (g' - g/r) (u . G) u
        de_dd = (g / r)[:, None] * grad + ((dg - g / r) * radial)[:, None] * u
        wall, dwall = (CORE_STIFFNESS / 3.0) * depth ** 3, -CORE_STIFFNESS * depth ** 2
        energies = energies + 0.5 * xp.bincount(i, weights=wall, minlength=energies.shape[0])
        de_dd += (0.5 * dwall)[:, None] * u
        return energies, de_dd
