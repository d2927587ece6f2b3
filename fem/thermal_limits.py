r"""Closed-form limits of steady heat conduction in two-phase sheets; the one unit conversion of the heat model.

Units: conductivities kappa in W/(m K), interfacial conductance G in
W/(m^2 K), lengths in nm, temperatures in K. No dolfinx here.

Stripes of phases A and B (area fractions f_A + f_B = 1), heat flowing

* along the stripes (parallel, Wiener upper bound)::

      kappa_par = f_A kappa_A + f_B kappa_B

* across them (series) through a sample of length L with n interfaces::

      L / kappa_ser = f_A L / kappa_A + f_B L / kappa_B + n / G

  For a superlattice of period P (two interfaces per period) this is
  ``kappa(P) = 1 / (f_A/kappa_A + f_B/kappa_B + 2/(G P))``: interface-dominated
  (``G P / 2``) for small P, the harmonic mean for large P, crossing over at
  ``P_c = 2 kappa_harm / G``, twice the Kapitza length of the harmonic mean.
"""
from __future__ import annotations

import math

NM_PER_M = 1e9


def conductance_per_nm(G_W_per_m2K: float) -> float:
    """Interfacial conductance in the FE model's units: W/(m^2 K) -> W/(m K) per nm.

    The FE model keeps kappa in W/(m K) and lengths in nm, so its flux
    ``kappa grad T`` is in W/(m K) * K/nm = 1e9 W/m^2. The interface flux
    ``G [T]`` must be in the same units: ``G_fe = G / 1e9``. Perfect
    contact (``G = inf``) stays ``inf``. This is the only place where the
    heat model converts units.
    """
    return G_W_per_m2K / NM_PER_M


def kapitza_length_nm(kappa_W_per_mK: float, G_W_per_m2K: float) -> float:
    """Kapitza length ``kappa / G`` (nm): the thickness of phase whose resistance equals the interface's."""
    return kappa_W_per_mK / G_W_per_m2K * NM_PER_M


def parallel(kappas, fractions) -> float:
    """Area-weighted mean (W/(m K)): stripes along the heat flow; the upper (Wiener) bound."""
    return float(sum(f * k for f, k in zip(fractions, kappas)))


def series(kappas, fractions, *, length_nm: float = 1.0, n_interfaces: int = 0, G_W_per_m2K: float = math.inf) -> float:
    """Stripes across the heat flow (W/(m K)): harmonic mean plus ``n_interfaces`` resistances ``1/G``.

    ``length_nm``: sample length along the flow (nm); with no interfaces the
    result is the harmonic mean (the lower Wiener bound) whatever the length.
    """
    resistance = sum(f / k for f, k in zip(fractions, kappas) if f > 0)
    resistance += n_interfaces / (G_W_per_m2K * length_nm / NM_PER_M)
    return 1.0 / resistance


def superlattice(kappas, fractions, period_nm: float, G_W_per_m2K: float) -> float:
    """Superlattice across the flow, two interfaces per period ``period_nm`` (W/(m K))."""
    return series(kappas, fractions, length_nm=period_nm, n_interfaces=2, G_W_per_m2K=G_W_per_m2K)


def crossover_period_nm(kappas, fractions, G_W_per_m2K: float) -> float:
    """Period (nm) at which the interfaces and the bulk resist equally: ``2 kappa_harm / G``."""
    return 2.0 * kapitza_length_nm(series(kappas, fractions), G_W_per_m2K)


def interface_limited(period_nm: float, G_W_per_m2K: float) -> float:
    """Small-period limit of the superlattice, ``G P / 2`` (W/(m K)): only the two interfaces resist."""
    return G_W_per_m2K * period_nm / NM_PER_M / 2.0
