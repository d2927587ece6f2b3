"""Constitutive inputs of the continuum model: properties.json -> per-phase materials.

Data flow::

    properties.json (docs/properties.md, 2D N/m)
        -> read_properties(path)                       plain dict, checked
        -> phase_material(props, name, ...)            PhaseMaterial (E1, E2, nu12, G12, strengths)
        -> interface_material(props, a, b, ...)        PhaseMaterial of the interface band + sources
           (fem.laminate.laminate_stiffness: exact stiffness of stripes, with the interfaces' normal compliance)
        -> fem.thermal_inputs                          heat-conduction inputs (W/(m K), W/(m^2 K))
        -> fem.phase_field.fracture_energy(mat, ...)   Gc (nN) calibrated to the MD strength

Units: lengths in nm, 2D stiffness and 2D stress in N/m, fracture energy of
the sheet per unit crack length in nN (= 1e-9 J/m = (N/m) * nm). No dolfinx
here: the UFL constitutive law lives in :mod:`fem.mechanics`.

The phase-field calibration of these materials (Gc from the MD strength) is
:mod:`fem.phase_field`.

Every measured input passes the rule of :mod:`common.uncertainty` (the one the constitutive stage
applies): a statistic marked ``withheld``, or not positive by two standard errors (moduli, strengths,
conductivities, the conductance), or that no run gave, raises :class:`~fem.errors.UnusableInputError`
naming the key and the reason, and only a fallback the case asks for takes its place
(``fem.interface_fallback`` for the interface strength, ``fem.thermal.interface_fallback`` for the
conductance, ``fem.thermal.on_bad_input: skip`` for the conductivities). A single-seed input is used
and listed by :func:`input_record`. A strength flagged ``strength_from_unfailed`` (a tensile run that
neither failed nor yielded contributed its end-of-loading peak) is refused unless
``fem.allow_unfailed_strength``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.contracts import PROPERTIES_FORMAT as FORMAT
from common.uncertainty import normalised, withheld_reason

from .errors import FemInputError, UnusableInputError
from .laminate import DIRECTIONS, laminate_stiffness, stiffness_of

MODELS = ("AT1", "AT2")
ELASTICITY = ("orthotropic", "isotropic")


# -- reading properties.json ---------------------------------------------------------------
def read_properties(path: str | Path) -> dict:
    """Read and check ``properties.json``; return it as a plain dict.

    Raises :class:`FemInputError` naming the file for a missing file, bad JSON,
    a wrong ``format`` or a missing ``phases`` section.
    """
    path = Path(path)
    if not path.is_file():
        raise FemInputError(f"{path}: properties file not found; run the 'constitutive' stage first "
                            f"or pass an existing properties.json")
    try:
        props = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FemInputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(props, dict) or props.get("format") != FORMAT:
        raise FemInputError(f"{path}: key 'format' must be '{FORMAT}' (docs/properties.md), "
                            f"got {props.get('format') if isinstance(props, dict) else props!r}")
    if not isinstance(props.get("phases"), dict) or not props["phases"]:
        raise FemInputError(f"{path}: key 'phases' is missing or empty; it must map phase names "
                            f"to their properties (docs/properties.md)")
    props["_source"] = str(path)
    return props


def measured_mean(node: dict, key: str, where: str, source: str, *, what: str | None = None, unit: str = "",
          positive: bool = True) -> float:
    """The ``mean`` of the statistic ``node[key]``; a clear error if it is absent or not a number, and
    (``what``: the symbol named in the reason) :class:`UnusableInputError` when the statistic is
    ``withheld`` or fails the rule of :mod:`common.uncertainty` (``positive``: must be positive by two
    standard errors)."""
    stat = node.get(key) if isinstance(node, dict) else None
    value = stat.get("mean") if isinstance(stat, dict) else None
    if isinstance(stat, dict) and stat.get("withheld"):
        raise UnusableInputError(f"{source}: '{where}.{key}' is withheld by the constitutive stage and not used as "
                                 f"a model input: {stat['withheld']}")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise FemInputError(f"{source}: key '{where}.{key}.mean' is missing or not a finite number "
                            f"(got {stat!r}); the constitutive stage must provide it")
    if what is not None:
        reason = withheld_reason(stat, what, unit, positive=positive)
        if reason:
            raise UnusableInputError(f"{source}: '{where}.{key}' is not used as a model input: {reason}")
    return float(value)


def _strength(node: dict, where: str, source: str, allow_unfailed: bool) -> float:
    """The strength (N/m) ``node["ultimate_strength_N_per_m"]`` of a phase direction or an interface: the
    rule of :func:`measured_mean`, and refused when the tensile runs it comes from did not all fail
    (``strength_from_unfailed``) unless ``allow_unfailed`` (``fem.allow_unfailed_strength``)."""
    sigma = measured_mean(node, "ultimate_strength_N_per_m", where, source, what="strength", unit="N/m")
    if node.get("strength_from_unfailed") and not allow_unfailed:
        labels = (("failed", "runs_failed"), ("yielded", "runs_yielded"), ("neither", "runs_unfailed"))
        counts = ", ".join(f"{label} {node[k]}" for label, k in labels if k in node)
        raise FemInputError(
            f"{source}: '{where}.ultimate_strength_N_per_m' = {sigma:.4g} N/m comes from tensile runs that did not "
            f"fail ({counts or 'strength_from_unfailed'}): a run that neither failed nor yielded stopped at "
            "md.max_strain, and its peak stress is a lower bound of the strength, not a strength. Rerun the md "
            "stage with a larger md.max_strain (or a lower md.strain_rate_per_s), or set "
            "fem.allow_unfailed_strength: true to use it as the strength (recorded in fem_results.json)")
    return sigma


# -- materials --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhaseMaterial:
    """Plane-stress orthotropic sheet in its material axes = the sample axes x, y.

    Attributes (all 2D, N/m): ``E1``, ``E2`` Young's moduli along x and y,
    ``G12`` in-plane shear modulus, ``strength_x``/``strength_y`` uniaxial
    tensile strengths; ``nu12`` (dimensionless) is the Poisson ratio
    -eps_y/eps_x under stress along x. Isotropic: ``E1 == E2``,
    ``G12 == E1 / (2 (1 + nu12))``.
    """

    name: str
    E1: float
    E2: float
    nu12: float
    G12: float
    strength_x: float
    strength_y: float

    def __post_init__(self):
        for key in ("E1", "E2", "G12", "strength_x", "strength_y"):
            if not getattr(self, key) > 0:
                raise FemInputError(f"material '{self.name}': {key} must be > 0 N/m, got {getattr(self, key)}")
        if not self.nu12 ** 2 * self.E2 / self.E1 < 1:
            raise FemInputError(f"material '{self.name}': nu12={self.nu12} with E1={self.E1}, E2={self.E2} "
                                f"is not positive definite (need nu12^2 E2/E1 < 1)")

    @property
    def nu21(self) -> float:
        return self.nu12 * self.E2 / self.E1

    def stiffness(self) -> np.ndarray:
        """Plane-stress stiffness ``[3, 3]`` (N/m), Voigt order (xx, yy, xy) with engineering shear."""
        d = 1.0 - self.nu12 * self.nu21
        return np.array([[self.E1 / d, self.nu12 * self.E2 / d, 0.0],
                         [self.nu12 * self.E2 / d, self.E2 / d, 0.0],
                         [0.0, 0.0, self.G12]])

    def modulus(self, direction: str) -> float:
        """Young's modulus (N/m) under uniaxial stress along ``direction`` ('x' or 'y')."""
        return self.E1 if direction == "x" else self.E2

    def strength(self, direction: str) -> float:
        """Uniaxial tensile strength (N/m) along ``direction``."""
        return self.strength_x if direction == "x" else self.strength_y


def from_stiffness(name: str, C: np.ndarray, strength_x: float, strength_y: float) -> PhaseMaterial:
    """Orthotropic material from a plane-stress stiffness ``C [3, 3]`` (N/m, Voigt xx, yy, xy)."""
    S = np.linalg.inv(np.asarray(C, dtype=float))
    return PhaseMaterial(name=name, E1=1.0 / S[0, 0], E2=1.0 / S[1, 1], nu12=-S[0, 1] / S[0, 0],
                         G12=1.0 / S[2, 2], strength_x=strength_x, strength_y=strength_y)


def isotropic(name: str, E: float, nu: float, strength: float) -> PhaseMaterial:
    """Isotropic material: Young's modulus ``E`` (N/m), Poisson ratio ``nu``, strength (N/m)."""
    return PhaseMaterial(name=name, E1=E, E2=E, nu12=nu, G12=E / (2.0 * (1.0 + nu)),
                         strength_x=strength, strength_y=strength)


def phase_material(props: dict, name: str, *, elasticity: str = "orthotropic",
                   allow_unfailed_strength: bool = False) -> PhaseMaterial:
    """The material of phase ``name`` from ``properties.json`` data.

    Elastic constants come from ``elastic_N_per_m`` (C11, C22, C12, C66) when
    present, else from the uniaxial tests (Young's modulus along x and y,
    Poisson ratio along x; then G12 = E/(2(1+nu)) with the mean E). Strengths
    are ``directions.{x,y}.ultimate_strength_N_per_m``. ``elasticity=
    'isotropic'`` replaces the moduli by E = (E1+E2)/2, nu = (nu12+nu21)/2 and
    the strength by the mean strength. Every input passes the rule of the module
    docstring (:class:`UnusableInputError` naming the key otherwise); a strength
    flagged ``strength_from_unfailed`` needs ``allow_unfailed_strength``.
    """
    source = props.get("_source", "properties.json")
    if elasticity not in ELASTICITY:
        raise FemInputError(f"fem.elasticity: {elasticity!r} is not one of {', '.join(ELASTICITY)}")
    phases = props["phases"]
    if name not in phases:
        raise FemInputError(f"{source}: phase '{name}' is not in 'phases' (has: {', '.join(sorted(phases))}); "
                            f"check the phase names in the fem geometry settings")
    node = phases[name]
    where = f"phases.{name}"
    dirs = node.get("directions", {})
    strengths = [_strength(dirs.get(d, {}), f"{where}.directions.{d}", source, allow_unfailed_strength)
                 for d in DIRECTIONS]
    if "elastic_N_per_m" in node:
        el = node["elastic_N_per_m"]
        constants = {k: measured_mean(el, k, f"{where}.elastic_N_per_m", source, what=k, unit="N/m", positive=k != "C12")
                     for k in ("C11", "C22", "C12", "C66")}
        mat = from_stiffness(name, stiffness_of(constants), *strengths)
    else:
        ex = measured_mean(dirs.get("x", {}), "youngs_modulus_N_per_m", f"{where}.directions.x", source, what="E_x", unit="N/m")
        ey = measured_mean(dirs.get("y", {}), "youngs_modulus_N_per_m", f"{where}.directions.y", source, what="E_y", unit="N/m")
        nu = measured_mean(dirs.get("x", {}), "poisson_ratio", f"{where}.directions.x", source, what="nu_xy", positive=False)
        mat = PhaseMaterial(name, ex, ey, nu, 0.5 * (ex + ey) / (2 * (1 + nu)), *strengths)
    if elasticity == "isotropic":
        mat = isotropic(name, 0.5 * (mat.E1 + mat.E2), 0.5 * (mat.nu12 + mat.nu21), 0.5 * sum(strengths))
    return mat


def interface_key(props: dict, a: str, b: str) -> str | None:
    """The key of the interface between phases ``a`` and ``b`` in ``props['interfaces']``, or None."""
    for key, node in props.get("interfaces", {}).items():
        if sorted(node.get("between", key.split("|"))) == sorted([a, b]):
            return key
    return None


def resolve_phases(phases, props: dict, systems: dict | None = None) -> list[str]:
    """The two phases ``[A, B]`` of the FE samples (area fractions are of B).

    ``phases``: the ``fem.phases`` setting, returned as given when not empty. Empty: the ``between`` of
    the case's one interface system (``systems``: the case.yaml ``systems`` blocks by name), or, without
    the case's systems, of the one interface of ``props`` (properties.json). Raises
    :class:`FemInputError` naming ``fem.phases`` when there is not exactly one interface to take them from."""
    if phases:
        return list(phases)
    if systems is not None:
        found = {name: e.get("between") for name, e in systems.items() if e.get("kind") == "interface"}
        where = "the case's interface systems"
    else:
        found = {key: node.get("between", key.split("|")) for key, node in props.get("interfaces", {}).items()}
        where = f"the interfaces of {props.get('_source', 'properties.json')}"
    if len(found) != 1:
        listed = ", ".join(f"{name}: {between}" for name, between in found.items()) or "none"
        raise FemInputError(f"fem.phases is not given and cannot be taken from {where} ({listed}): exactly one "
                            "interface names its two phases; set fem.phases: [A, B] (area fractions are of B)")
    return list(next(iter(found.values())))


INTERFACE_FALLBACKS = ("weaker_phase", "error")


def interface_strength(props: dict, a: PhaseMaterial, b: PhaseMaterial, *,
                       fallback: str = "weaker_phase",
                       allow_unfailed_strength: bool = False) -> tuple[float, float, str]:
    """Strength (N/m) of the interface between phases ``a`` and ``b``, along x and y, and where it came from.

    From ``interfaces[key].ultimate_strength_N_per_m`` of ``properties.json``
    (the MD interface cell pulled normal to the interface) when an entry
    joins the two phases, used in both directions and capped by the weaker
    phase so that the band never strengthens the sample. When there is no
    entry, or its strength is not usable (withheld: the rule of the module
    docstring): ``fallback='weaker_phase'`` takes the weaker phase's strength in
    each direction (the interface is then as strong as the weaker phase, a
    named assumption recorded in the results); ``'error'`` raises
    :class:`FemInputError`. A strength from unfailed runs is refused as a phase's is
    (``allow_unfailed_strength``). Returns ``(strength_x, strength_y, source)``.
    """
    source = props.get("_source", "properties.json")
    if fallback not in INTERFACE_FALLBACKS:
        raise FemInputError(f"fem.interface_fallback: {fallback!r} is not one of {', '.join(INTERFACE_FALLBACKS)}")
    key = interface_key(props, a.name, b.name)
    if key is None:
        if fallback == "error":
            raise FemInputError(f"{source}: no entry in 'interfaces' joins '{a.name}' and '{b.name}'; "
                                f"add one, set fem.interface_width_nm: 0 to model a perfect interface, or "
                                f"fem.interface_fallback: weaker_phase")
        return (min(a.strength_x, b.strength_x), min(a.strength_y, b.strength_y),
                f"fallback weaker_phase: {source} has no interfaces entry joining {a.name} and {b.name}")
    try:
        sigma = _strength(props["interfaces"][key], f"interfaces.{key}", source, allow_unfailed_strength)
    except UnusableInputError as exc:
        if fallback == "error":
            raise UnusableInputError(f"{exc}; set fem.interface_fallback: weaker_phase to take the weaker phase's "
                                     "strength instead") from None
        return (min(a.strength_x, b.strength_x), min(a.strength_y, b.strength_y),
                f"fallback weaker_phase: {exc}")
    return (min(sigma, a.strength_x, b.strength_x), min(sigma, a.strength_y, b.strength_y),
            f"{source}: interfaces['{key}'].ultimate_strength_N_per_m = {sigma:g} N/m")


def interface_compliance(props: dict, a: str, b: str) -> tuple[float, str]:
    """Normal compliance ``R`` (nm per N/m) of the interface between phases ``a`` and ``b``, and its source.

    ``R`` is the jump of the normal displacement (nm) across the interface per unit normal traction
    (N/m): a sharp interface as a spring layer, ``[u_n] = R sigma_nn``. Read from
    ``interfaces[key].normal_compliance.nm_per_N_per_m.mean`` (the constitutive stage derives it from
    a long MD stripe cell, docs/properties.md); ``(0.0, reason)`` -- a perfectly bonded interface --
    when properties.json has none.
    """
    source = props.get("_source", "properties.json")
    key = interface_key(props, a, b)
    node = props.get("interfaces", {}).get(key, {}).get("normal_compliance") if key else None
    if not isinstance(node, dict):
        return 0.0, f"none: {source} has no interfaces[{a}|{b}].normal_compliance (perfectly bonded interface)"
    R = measured_mean(node, "nm_per_N_per_m", f"interfaces.{key}.normal_compliance", source, what="R", positive=False)
    return R, f"{source}: interfaces['{key}'].normal_compliance.nm_per_N_per_m = {R:.4g}"


def interface_material(props: dict, a: PhaseMaterial, b: PhaseMaterial, *, fallback: str = "weaker_phase",
                       normal: str | None = None, width_nm: float = 0.0,
                       allow_unfailed_strength: bool = False) -> tuple[PhaseMaterial, dict]:
    """The material of the band of width ``width_nm`` (nm) along the interface between phases ``a`` and
    ``b``, and where its properties came from (``{"strength": ..., "compliance": ...}``).

    Strength: :func:`interface_strength` (the MD interface strength, or the named ``fallback`` when
    ``properties.json`` has no entry for the pair).

    Elasticity, when the band's ``normal`` is a sample axis (straight stripes): the exact laminate of
    its two halves (:func:`laminate_stiffness`) with the interface's normal compliance ``R``
    (:func:`interface_compliance`) spread over the band, ``R / width_nm``: across the band the FE then
    sees the phases in series plus the jump ``R sigma_nn``, along it the phases in parallel. The
    tangential (shear) compliance of the interface is not measured and is left out. Without a fixed
    normal (islands: the normal turns along the rim) the band is the mean of the two stiffness
    matrices and ``R`` is not applied; the returned source says so.
    """
    sx, sy, strength_source = interface_strength(props, a, b, fallback=fallback,
                                                 allow_unfailed_strength=allow_unfailed_strength)
    key = interface_key(props, a.name, b.name) or f"{a.name}|{b.name}"
    R, compliance_source = interface_compliance(props, a.name, b.name)
    if normal is None:
        C = 0.5 * (a.stiffness() + b.stiffness())
        if R != 0.0:
            compliance_source = f"not applied (the band's normal is not a sample axis); {compliance_source}"
    else:
        if not width_nm > 0:
            raise FemInputError(f"interface band of {key}: width {width_nm} nm must be > 0")
        C = laminate_stiffness([(0.5, a.stiffness()), (0.5, b.stiffness())], normal=normal,
                               extra_normal_compliance=R / width_nm)
    return from_stiffness(key, C, sx, sy), {"strength": strength_source, "compliance": compliance_source,
                                            "normal_compliance_nm_per_N_per_m": R if normal else 0.0}


def sheet_thickness_A(props: dict, name: str) -> float | None:
    """Effective thickness (Å) of phase ``name`` (``phases[name].thickness_A``), or None when absent."""
    t = props["phases"].get(name, {}).get("thickness_A")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 else None


# -- what the results record about the measured inputs ------------------------------------------------------
def input_record(props: dict, settings: dict) -> dict:
    """The record of ``fem_results.json`` ``inputs`` about the measured inputs the runs of ``settings`` read
    for their two phases and the interface between them: ``allow_unfailed_strength`` (the setting),
    ``unfailed_strength`` (the key paths of strengths from runs that did not fail, used because the
    setting allows it), ``single_seed`` (the key paths of inputs measured by one run: no spread, used as
    they are) and ``notes`` (one sentence each, for the report)."""
    phases = list(settings.get("phases") or [])
    thermal = settings.get("thermal", {})
    with_thermal = bool(thermal.get("enabled"))
    used, strengths = [], []  # (key path, statistic); (key path, the node carrying strength_from_unfailed)
    for name in phases:
        node = props.get("phases", {}).get(name, {})
        dirs = node.get("directions", {})
        if "elastic_N_per_m" in node:
            used += [(f"phases.{name}.elastic_N_per_m.{k}", node["elastic_N_per_m"].get(k))
                     for k in ("C11", "C22", "C12", "C66")]
        else:
            used += [(f"phases.{name}.directions.{d}.youngs_modulus_N_per_m",
                      dirs.get(d, {}).get("youngs_modulus_N_per_m")) for d in DIRECTIONS]
            used.append((f"phases.{name}.directions.x.poisson_ratio", dirs.get("x", {}).get("poisson_ratio")))
        for d in DIRECTIONS:
            path = f"phases.{name}.directions.{d}.ultimate_strength_N_per_m"
            used.append((path, dirs.get(d, {}).get("ultimate_strength_N_per_m")))
            strengths.append((path, dirs.get(d, {})))
        if with_thermal:
            kappas = (node.get("thermal") or {}).get("conductivity_W_per_mK") or {}
            used += [(f"phases.{name}.thermal.conductivity_W_per_mK.{d}", v) for d, v in kappas.items()]
    key = interface_key(props, *phases) if len(phases) == 2 else None
    if key:
        node = props["interfaces"][key]
        if settings.get("interface_width_nm", 0.0) > 0:
            path = f"interfaces.{key}.ultimate_strength_N_per_m"
            used.append((path, node.get("ultimate_strength_N_per_m")))
            strengths.append((path, node))
        if isinstance(node.get("normal_compliance"), dict):
            used.append((f"interfaces.{key}.normal_compliance.nm_per_N_per_m",
                         node["normal_compliance"].get("nm_per_N_per_m")))
        if with_thermal and thermal.get("interface") != "perfect":
            used.append((f"interfaces.{key}.thermal.conductance_W_per_m2K",
                         (node.get("thermal") or {}).get("conductance_W_per_m2K")))
    single = [path for path, stat in used if isinstance(stat, dict) and "mean" in stat and not stat.get("withheld")
              and normalised(stat)["sem"] is None]
    allow = bool(settings.get("allow_unfailed_strength", False))
    unfailed = [path for path, node in strengths if node.get("strength_from_unfailed")] if allow else []
    notes = []
    if single:
        notes.append(f"inputs measured by one MD run (single seed: no spread measured, used as they are): "
                     f"{', '.join(single)}")
    if unfailed:
        notes.append("strengths from tensile runs that did not fail (the peak stress where the loading stopped, a "
                     "lower bound), used as strengths because fem.allow_unfailed_strength is true: "
                     f"{', '.join(unfailed)}")
    return {"allow_unfailed_strength": allow, "unfailed_strength": unfailed, "single_seed": single, "notes": notes}
