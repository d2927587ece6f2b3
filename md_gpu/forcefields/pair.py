"""Pair potentials (Morse, Lennard-Jones) on the shared force contract.

Parameters sit in ``[n_species, n_species]`` tables indexed by the types of the
two atoms, never in per-pair branches. Both are *shifted-force* potentials
(energy and force go continuously to zero at the cut-off, which NVE energy
conservation needs): ``phi_sf(r) = phi(r) - phi(rc) - (r - rc) phi'(rc)``.
Each atom gets half of each of its bonds, so with the full pair list
``E_i = 1/2 sum_j phi(r_ij)`` and ``dE/dd_p = 1/2 phi'(r_p) d_p / r_p``.

References: P. M. Morse, Phys. Rev. 34, 57 (1929); shifted force: M. P. Allen
and D. J. Tildesley, Computer Simulation of Liquids (2nd ed., 2017), sec. 1.4.3.
"""
from __future__ import annotations

import numpy as np

from common.arrays import array_module
from ..errors import MDSetupError


def _table(value, n: int, name: str) -> np.ndarray:
    """A symmetric [n, n] table from a scalar or an [n, n] array."""
    table = np.broadcast_to(np.asarray(value, dtype=float), (n, n)).copy()
    if not np.allclose(table, table.T):
        raise MDSetupError(f"pair potential parameter '{name}' must be symmetric in the species pair")
    return table


class _PairPotential:
    """Shared machinery: tables, shifted-force evaluation. Subclasses give ``_phi(r, t) -> (phi, dphi)``."""

    def __init__(self, species, cutoff: float, params: dict):
        self.species = tuple(species)
        if cutoff <= 0:
            raise MDSetupError(f"pair potential: cutoff must be > 0 Å, got {cutoff}")
        self.cutoff = float(cutoff)
        n = len(self.species)
        self.params = {k: _table(v, n, k) for k, v in params.items()}
        self._cache = {}

    def _tables(self, xp):
        key = xp.__name__
        if key not in self._cache:
            self._cache[key] = {k: xp.asarray(v) for k, v in self.params.items()}
        return self._cache[key]

    def evaluate(self, types, i, j, d, *, xp=None):
        """Site energies [n] (eV) and dE/dd [p, 3] (eV/Å) on a full pair list (see base; pairs at or beyond
        the cut-off give nothing)."""
        xp = xp or array_module(d)
        tables = self._tables(xp)
        ti, tj = types[i], types[j]
        p = {k: v[ti, tj] for k, v in tables.items()}
        r = xp.sqrt((d * d).sum(1))
        phi, dphi = self._phi(r, p, xp)
        phi_c, dphi_c = self._phi(xp.full_like(r, self.cutoff), p, xp)
        inside = r < self.cutoff
        e = xp.where(inside, phi - phi_c - (r - self.cutoff) * dphi_c, 0.0)
        de = xp.where(inside, dphi - dphi_c, 0.0)
        site = 0.5 * xp.bincount(i, weights=e, minlength=types.shape[0])
        dE_dd = (0.5 * de / r)[:, None] * d
        return site, dE_dd


class Morse(_PairPotential):
    """Morse potential ``phi = D (exp(-2a(r-r0)) - 2 exp(-a(r-r0)))``.

    D (eV), a (1/Å), r0 (Å): scalars or [n_species, n_species] tables; cutoff (Å).
    """

    def __init__(self, species, *, D, a, r0, cutoff: float):
        super().__init__(species, cutoff, {"D": D, "a": a, "r0": r0})

    @staticmethod
    def _phi(r, p, xp):
        x = xp.exp(-p["a"] * (r - p["r0"]))
        return p["D"] * (x * x - 2.0 * x), -2.0 * p["a"] * p["D"] * (x * x - x)


class LennardJones(_PairPotential):
    """Lennard-Jones ``phi = 4 eps ((s/r)^12 - (s/r)^6)``; eps (eV), sigma (Å), cutoff (Å)."""

    def __init__(self, species, *, epsilon, sigma, cutoff: float):
        super().__init__(species, cutoff, {"epsilon": epsilon, "sigma": sigma})

    @staticmethod
    def _phi(r, p, xp):
        s6 = (p["sigma"] / r) ** 6
        return 4.0 * p["epsilon"] * (s6 * s6 - s6), -24.0 * p["epsilon"] * (2.0 * s6 * s6 - s6) / r
