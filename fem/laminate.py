"""Effective stiffness of periodic laminates (stripes) and the Voigt/Reuss bounds.

Units: 2D stiffness in N/m (plane stress, Voigt order xx, yy, xy); compliances in 1/(N/m). No dolfinx.
"""
from __future__ import annotations

import numpy as np

from .errors import FemInputError

DIRECTIONS = ("x", "y")


def laminate_stiffness(layers, *, normal: str = "y", extra_normal_compliance: float = 0.0) -> np.ndarray:
    """Exact effective plane-stress stiffness ``[3, 3]`` (N/m, Voigt xx, yy, xy) of a periodic laminate.

    ``layers``: ``[(fraction, C)]`` with ``C`` an orthotropic plane-stress stiffness ``[3, 3]`` (N/m)
    in the sample axes; the fractions sum to 1. ``normal``: the axis across the layers. The layers
    share the strain along the layers and the tractions across them (the shear stress, and the normal
    stress, which sees the layers in series). ``extra_normal_compliance`` (1/(N/m)) adds the interfaces'
    own compliance per unit length across the layers: ``n R / L`` for ``n`` interfaces of normal
    compliance ``R`` (nm per N/m, :func:`interface_compliance`) in a period ``L`` (nm).

    Derivation: per layer ``eps_nn = (sigma_nn - C_tn eps_tt) / C_nn`` and ``sigma_tt = (C_tt -
    C_tn^2 / C_nn) eps_tt + (C_tn / C_nn) sigma_nn``; averaging with ``a = <C_tn/C_nn>``, ``b = <C_tt -
    C_tn^2/C_nn>``, ``c = <1/C_nn> + extra`` gives ``C_nn = 1/c``, ``C_tn = a/c``, ``C_tt = b + a^2/c``,
    and ``C_ss = 1 / <1/C_ss>``.
    """
    if normal not in DIRECTIONS:
        raise FemInputError(f"laminate normal {normal!r} is not one of {', '.join(DIRECTIONS)}")
    n, t = (1, 0) if normal == "y" else (0, 1)
    a = b = c = shear = 0.0
    for fraction, C in layers:
        C = np.asarray(C, dtype=float)
        a += fraction * C[t, n] / C[n, n]
        b += fraction * (C[t, t] - C[t, n] ** 2 / C[n, n])
        c += fraction / C[n, n]
        shear += fraction / C[2, 2]
    c += extra_normal_compliance
    if not (c > 0 and b > 0):
        raise FemInputError(f"laminate: the extra normal compliance {extra_normal_compliance:g} 1/(N/m) leaves the "
                            "laminate without a positive stiffness across its layers; check the interface compliance")
    out = np.zeros((3, 3))
    out[n, n], out[t, t], out[2, 2] = 1.0 / c, b + a * a / c, 1.0 / shear
    out[t, n] = out[n, t] = a / c
    return out


def laminate_modulus(layers, *, normal: str = "y", extra_normal_compliance: float = 0.0) -> float:
    """Young's modulus (N/m) across the laminate of :func:`laminate_stiffness` (uniaxial stress along
    ``normal``): what the FE twin of an MD stripe cell approaches (fem.consistency)."""
    S = np.linalg.inv(laminate_stiffness(layers, normal=normal, extra_normal_compliance=extra_normal_compliance))
    return float(1.0 / S[DIRECTIONS.index(normal), DIRECTIONS.index(normal)])


def stiffness_of(constants: dict) -> np.ndarray:
    """Plane-stress stiffness ``[3, 3]`` (N/m) from ``{"C11", "C22", "C12", "C66"}``: numbers or statistics."""
    v = {k: float(c["mean"] if isinstance(c, dict) else c) for k, c in constants.items()}
    return np.array([[v["C11"], v["C12"], 0.0], [v["C12"], v["C22"], 0.0], [0.0, 0.0, v["C66"]]])


def voigt_reuss(moduli, fractions) -> tuple[float, float]:
    """Voigt (parallel) and Reuss (series) averages of ``moduli [n]`` (N/m) with volume ``fractions [n]``."""
    E = np.asarray(moduli, dtype=float)
    f = np.asarray(fractions, dtype=float)
    return float(f @ E), float(1.0 / (f @ (1.0 / E)))
