"""Heat-conduction inputs of the continuum model from properties.json: phase conductivities and the
interfaces' thermal conductance, under the rule of :mod:`common.uncertainty` (see :mod:`fem.materials`).

Units: conductivity W/(m K), conductance W/(m^2 K).
"""
from __future__ import annotations

import math

from .errors import FemInputError, UnusableInputError
from .materials import DIRECTIONS, interface_key, measured_mean


THERMAL_FALLBACKS = ("perfect", "error")


def _thermal_missing(source: str, name: str) -> FemInputError:
    return FemInputError(f"{source}: properties.json has no thermal conductivity for phase {name}: enable "
                         f"md.thermal in case.yaml (or set fem.thermal.enabled: false); missing key "
                         f"'phases.{name}.thermal.conductivity_W_per_mK'")


def phase_conductivity(props: dict, name: str) -> tuple[float, float]:
    """Thermal conductivity ``(kappa_x, kappa_y)`` (W/(m K)) of phase ``name`` from ``properties.json`` data.

    Read from ``phases[name].thermal.conductivity_W_per_mK.{x,y}.mean``; a
    phase measured along one direction only is taken as isotropic. Raises
    :class:`FemInputError` naming the key (and ``md.thermal``, which measures
    it) when it is absent, and :class:`UnusableInputError` when a value is
    withheld or not positive by two standard errors (the rule of the module docstring).
    """
    source = props.get("_source", "properties.json")
    if name not in props["phases"]:
        raise FemInputError(f"{source}: phase '{name}' is not in 'phases' (has: {', '.join(sorted(props['phases']))}); "
                            f"check fem.phases")
    node = props["phases"][name].get("thermal")
    per_direction = node.get("conductivity_W_per_mK") if isinstance(node, dict) else None
    if not isinstance(per_direction, dict) or not per_direction:
        raise _thermal_missing(source, name)
    where = f"phases.{name}.thermal.conductivity_W_per_mK"
    known = {d: measured_mean(per_direction, d, where, source, what=f"kappa_{d}", unit="W/(m K)")
             for d in DIRECTIONS if d in per_direction}
    if not known:
        raise _thermal_missing(source, name)
    kx, ky = known.get("x", known.get("y")), known.get("y", known.get("x"))
    if not (kx > 0 and ky > 0):
        raise FemInputError(f"{source}: '{where}' must be > 0 W/(m K), got x {kx}, y {ky}")
    return kx, ky


def interface_conductance(props: dict, a: str, b: str, *, fallback: str = "perfect") -> tuple[float, str]:
    """Interfacial thermal conductance ``G`` (W/(m^2 K)) between phases ``a`` and ``b``, and where it came from.

    From ``interfaces[key].thermal.conductance_W_per_m2K.mean`` (``key`` found
    by :func:`interface_key`). When there is no such entry, or its ``G`` is not
    usable (withheld, or not positive by two standard errors: the rule of the
    module docstring), ``fallback='perfect'`` returns ``G = inf`` (perfect thermal
    contact: no temperature jump, a named assumption the results record, with the
    reason) and ``'error'`` raises :class:`FemInputError`.
    """
    source = props.get("_source", "properties.json")
    if fallback not in THERMAL_FALLBACKS:
        raise FemInputError(f"fem.thermal.interface_fallback: {fallback!r} is not one of "
                            f"{', '.join(THERMAL_FALLBACKS)}")
    key = interface_key(props, a, b)
    node = props.get("interfaces", {}).get(key, {}).get("thermal") if key else None
    if not isinstance(node, dict) or "conductance_W_per_m2K" not in node:
        if fallback == "error":
            raise FemInputError(f"{source}: no interface conductance between '{a}' and '{b}' (key "
                                f"'interfaces.{key or a + '|' + b}.thermal.conductance_W_per_m2K'): enable "
                                f"md.thermal for the interface in case.yaml, or set "
                                f"fem.thermal.interface_fallback: perfect")
        return math.inf, f"fallback perfect: {source} has no thermal conductance joining {a} and {b}"
    where = f"interfaces.{key}.thermal"
    try:
        G = measured_mean(node, "conductance_W_per_m2K", where, source, what="G", unit="W/(m^2 K)")
    except UnusableInputError as exc:
        if fallback == "error":
            raise UnusableInputError(f"{exc}: the interface MD runs resolved no temperature jump; rerun them longer "
                                     "(md.thermal.interface), or set fem.thermal.interface_fallback: perfect (or "
                                     "fem.thermal.interface: perfect)") from None
        return math.inf, f"fallback perfect: {exc}"
    return G, f"{source}: interfaces['{key}'].thermal.conductance_W_per_m2K = {G:g} W/(m^2 K)"
