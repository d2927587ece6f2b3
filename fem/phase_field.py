"""Phase-field fracture calibration: the fracture energy ``Gc`` that makes the FE strength the MD strength.

Units: lengths in nm, 2D moduli and stresses in N/m, ``Gc`` of the sheet per unit crack length in nN
(= 1e-9 J/m = (N/m) * nm). No dolfinx here: the UFL model is :mod:`fem.mechanics`.

Phase-field fracture (Bourdin, Francfort & Marigo 2000; Pham, Amor, Marigo & Maurini 2011;
Tanné, Li, Bourdin, Marigo & Maurini 2018, JMPS 110, 80)::

    E(u, a) = int  g(a) W(eps(u)) + Gc / c_w (w(a) / ell + ell |grad a|^2)  dA
    g(a) = (1 - a)^2
    AT1: w(a) = a,   c_w = 8/3   (purely elastic until the threshold stress)
    AT2: w(a) = a^2, c_w = 2

The homogeneous uniaxial-stress solution peaks at (docs/fem.md derives it)::

    AT1: sigma_c = sqrt(3 Gc E / (8 ell)),        eps_c = sqrt(3 Gc / (8 E ell))
    AT2: sigma_c = (3/16) sqrt(3 Gc E / ell),     eps_c = sqrt(Gc / (3 E ell))

so, for a chosen length scale ``ell``, ``Gc`` is set so that ``sigma_c`` equals
the MD ultimate tensile strength in the loading direction.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import FemInputError
from .materials import MODELS, PhaseMaterial


def c_w(model: str) -> float:
    """Normalisation ``c_w = 4 int_0^1 sqrt(w(a)) da`` of the dissipation: 8/3 (AT1) or 2 (AT2)."""
    _check_model(model)
    return 8.0 / 3.0 if model == "AT1" else 2.0


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise FemInputError(f"fem.model: {model!r} is not one of {', '.join(MODELS)}")


def calibrate_gc(model: str, E: float, sigma_c: float, ell_nm: float) -> float:
    """Fracture energy ``Gc`` (nN) whose homogeneous uniaxial peak stress is ``sigma_c``.

    ``E`` (N/m) is the Young's modulus in the loading direction, ``sigma_c``
    (N/m) the target strength, ``ell_nm`` (nm) the phase-field length scale.
    AT1: Gc = 8 ell sigma_c^2 / (3 E); AT2: Gc = 256 ell sigma_c^2 / (27 E).
    """
    _check_model(model)
    factor = 8.0 / 3.0 if model == "AT1" else 256.0 / 27.0
    return factor * ell_nm * sigma_c ** 2 / E


def critical_stress(model: str, E: float, Gc: float, ell_nm: float) -> float:
    """Peak stress (N/m) of the homogeneous uniaxial-stress solution (inverse of :func:`calibrate_gc`)."""
    _check_model(model)
    if model == "AT1":
        return math.sqrt(3.0 * Gc * E / (8.0 * ell_nm))
    return 3.0 / 16.0 * math.sqrt(3.0 * Gc * E / ell_nm)


def critical_strain(model: str, E: float, Gc: float, ell_nm: float) -> float:
    """Strain at the homogeneous peak stress (AT1: end of the elastic range)."""
    _check_model(model)
    if model == "AT1":
        return math.sqrt(3.0 * Gc / (8.0 * E * ell_nm))
    return math.sqrt(Gc / (3.0 * E * ell_nm))


def homogeneous_response(model: str, E: float, Gc: float, ell_nm: float, strain: np.ndarray) -> np.ndarray:
    """Stress (N/m) of the homogeneous (unlocalised) solution at ``strain [n]``; the reference curve.

    AT1 is taken on its homogeneous branch a = 1 - eps_c^2/eps^2 beyond eps_c;
    AT2: a = E eps^2 / (E eps^2 + Gc/ell).
    """
    eps = np.asarray(strain, dtype=float)
    if model == "AT1":
        ec = critical_strain(model, E, Gc, ell_nm)
        damage = np.where(eps > ec, 1.0 - (ec / np.maximum(eps, ec)) ** 2, 0.0)
    else:
        _check_model(model)
        damage = E * eps ** 2 / (E * eps ** 2 + Gc / ell_nm)
    return (1.0 - damage) ** 2 * E * eps


def fracture_energy(mat: PhaseMaterial, direction: str, model: str, ell_nm: float) -> float:
    """``Gc`` (nN) of ``mat`` calibrated to its strength along the loading ``direction``."""
    return calibrate_gc(model, mat.modulus(direction), mat.strength(direction), ell_nm)
