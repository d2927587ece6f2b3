"""The FE half of the multiscale consistency check: the MD stripe heterostructure as a continuum sample.

The md stage simulates a periodic graphene/borophene stripe cell directly with the interface MTP
(``md_gpu.heterostructure``); properties.json carries its geometry and its modulus across the
stripes (``interfaces[A|B].heterostructure``). Here the same stripes are built as an FE sample
with the MD-derived phase properties and loaded across the stripes; the report compares the two
moduli (``multiscale.checks``).

Data flow::

    properties.json interfaces[A|B].heterostructure.geometry {period_nm, fraction_B}
    properties.json interfaces[A|B].normal_compliance (when the md stage measured it on a longer cell)
      -> fem settings: stripes along x (period, fraction of B), load along y, linear elasticity
         (no damage: a modulus), ``periods`` periods high and long, ``elements_per_period`` elements
         across a period; the interfaces' normal compliance R in a band ``band_elements`` elements
         wide (fem.materials.interface_material: the band's halves in series plus R / width)
      -> study.run_tensile (one small strain step), with R and with perfect interfaces
      -> fem_results.json "consistency":
         {"modulus_N_per_m", "perfect_interface_modulus_N_per_m", "interface_compliance_nm_per_N_per_m",
          "md_modulus_N_per_m", "period_nm", "fraction_B", "reuss_N_per_m", ...,
          "low_T": {"temperature_K", "modulus_N_per_m", "perfect_interface_modulus_N_per_m",
                    "md_modulus_N_per_m", ...} or {"skipped": reason}}
         or, without an MD stripe cell, {"skipped": reason}: the true one (:func:`missing_reason`:
         md.heterostructure off, or N of M stripe runs blew up; fem.consistency.enabled false)

``low_T`` (when the md stage ran md.heterostructure.low_temperature): the same sample again with each
phase's elastic constants measured at low temperature with the stripe cell's own (interface) MTP,
against the stripe cell's MD modulus at that temperature -- the like-for-like comparison: one
potential on both sides and no thermal ripples, so what is left is what the continuum leaves out
unless it is told: the interfaces' own compliance. The main comparison uses the case's phase
properties (phase MTPs, md.temperature_K) as the FE main run does.

The interface compliance R (nm per N/m, the normal displacement jump per unit traction) is an
MD-derived interface property like the interface strength: the constitutive stage takes it from a
stripe cell ``md.heterostructure.compliance_periods`` times as long as the checked one (1/E_cell -
1/E_laminate = 2 R / L_cell), so the check stays a prediction: the checked cell's own modulus does
not enter the FE. Without it the twin has perfect interfaces (and says so).

Why a sample several periods long and high with free lateral edges: the MD cell is periodic, so its
stripes share one strain along x; in the FE sample the stripes are held together along their whole
length by the interfaces, and the lateral edges free of traction relax only near the ends. With the
test phases (tests/test_fem_consistency.py) 6 periods and 12 elements per period give the exact
modulus of the infinite laminate to 1e-6, the tolerance the test asserts (measured -4.9e-7, the free
edges' boundary layer; 12.5k dofs, 0.4 s).
"""
from __future__ import annotations

import copy
import math

from mpi4py import MPI

from . import materials, study
from .errors import FemInputError

CONSISTENCY_SETTINGS = {
    "enabled": (bool, True, "rebuild the MD stripe heterostructure (properties.json "
                            "interfaces.*.heterostructure) as an FE sample and compute its modulus"),
    "periods": (int, 6, "the sample is this many stripe periods long (x) and high (y)"),
    "elements_per_period": (int, 24, "element size = period / this"),
    "band_elements": (int, 2, "the interfaces' normal compliance (properties.json interfaces.*.normal_compliance) "
                              "sits in a band this many elements wide; 0: perfect interfaces"),
}


def heterostructure_entry(props: dict, phases) -> dict | None:
    """The MD heterostructure between the two FE phases, or None when the md stage made none."""
    key = materials.interface_key(props, *phases)
    return (props.get("interfaces", {}).get(key) or {}).get("heterostructure") if key else None


def sample_settings(settings: dict, geometry: dict) -> dict:
    """The fem settings of the consistency sample (module docstring) from the main ones, without an
    interface band (:func:`run_consistency` sets its width when the interfaces have a compliance)."""
    c = settings["consistency"]
    if c["periods"] < 1 or c["elements_per_period"] < 4 or c["band_elements"] < 0:
        raise FemInputError(f"fem.consistency: periods ({c['periods']}) must be >= 1, elements_per_period "
                            f"({c['elements_per_period']}) >= 4 and band_elements ({c['band_elements']}) >= 0")
    period, fraction = float(geometry["period_nm"]), float(geometry["fraction_B"])
    if not (period > 0 and 0 < fraction < 1):
        raise FemInputError(f"properties.json heterostructure geometry: period_nm {period} must be > 0 and "
                            f"fraction_B {fraction} in (0, 1)")
    s = copy.deepcopy(settings)
    size = c["periods"] * period
    h = period / c["elements_per_period"]
    s.update(geometry="stripes", length_nm=size, height_nm=size, load_direction="y", damage=False,
             interface_width_nm=0.0, interface_mesh_size_nm=0.0, mesh_size_nm=h,
             write_fields=False)
    # from the middle of an A stripe to the middle of one: 2 x periods interfaces, as many per period as the MD cell
    s["stripes"] = {**s["stripes"], "period_nm": period, "fraction": fraction, "orientation": "x",
                    "offset_nm": 0.5 * (1.0 - fraction) * period}
    s["loading"] = {**s["loading"], "max_strain": 0.001, "n_steps": 1}
    return s


def missing_reason(props: dict, phases) -> str:
    """Why properties.json has no MD stripe heterostructure between ``phases``: no interface entry, no stripe
    runs planned (``md.heterostructure.enabled`` false), or every stripe run blew up
    (``interfaces.*.heterostructure_runs``, md_gpu.tasks.stripes)."""
    key = materials.interface_key(props, *phases)
    if key is None:
        return f"properties.json has no interface joining {phases[0]} and {phases[1]}"
    runs = props["interfaces"][key].get("heterostructure_runs")
    if not runs:
        return "the md stage ran no stripe heterostructure (md.heterostructure.enabled is false)"
    at = runs["at_temperature"]
    return (f"{at['blown_up']} of {at['attempted']} MD stripe runs blew up"
            + _first_reason(runs, "_heterostructure_seed") + "; no MD modulus to compare with")


def low_t_missing_reason(props: dict, phases) -> str:
    """Why the MD stripe heterostructure between ``phases`` has no ``low_T`` twin: not planned, or runs blew up."""
    key = materials.interface_key(props, *phases)
    runs = (props["interfaces"][key].get("heterostructure_runs") or {}) if key else {}
    low = runs.get("low_T")
    if not low:
        return ("the md stage ran no low-temperature stripe twin (md.heterostructure.low_temperature or "
                "md.elastic.low_temperature_K is off)")
    if low["blown_up"]:
        return (f"{low['blown_up']} of {low['attempted']} low-temperature stripe and phase runs blew up"
                + _first_reason(runs, "_low_T"))
    return "the md stage recorded no low-temperature twin"


def _first_reason(runs: dict, suffix: str) -> str:
    """``: <run>: <reason>`` of the first blown-up run whose name has ``suffix`` (empty when none is named)."""
    named = [b for b in runs.get("blown_up", []) if suffix in b.get("run", "")]
    return f" ({named[0]['run']}: {named[0]['reason']})" if named else ""


def run_consistency(settings: dict, props: dict, *, comm=MPI.COMM_WORLD, log=None) -> dict:
    """The FE modulus (N/m) of the MD stripe heterostructure, beside the MD one; ``{"skipped": reason}``
    without one (the true reason: not run by the md stage, or its runs blew up, :func:`missing_reason`)."""
    md = heterostructure_entry(props, settings["phases"])
    if md is None:
        reason = missing_reason(props, settings["phases"])
        if log:
            log(f"consistency: no FE twin is run: {reason}")
        return {"skipped": reason}
    R, source = materials.interface_compliance(props, *settings["phases"])
    with_band = R != 0.0 and settings["consistency"]["band_elements"] > 0
    s = sample_settings(settings, md["geometry"])
    if with_band:
        n = band_elements(settings, props, R, s["mesh_size_nm"])
        width = n * s["mesh_size_nm"]
        # the sample starts and ends with half an A stripe: the band must fit in half the narrower stripe
        room = 0.5 * s["stripes"]["period_nm"] * min(s["stripes"]["fraction"], 1.0 - s["stripes"]["fraction"])
        if width >= room:
            with_band = False
            source = (f"{source}: a stiff interface that needs a band of {n} elements ({width:.3g} nm), "
                      f"wider than half the narrower stripe ({room:.3g} nm); the twin has perfect interfaces")
        else:
            s["interface_width_nm"] = width
    out = {**_twin(s, props, comm, with_band), "md_modulus_N_per_m": md["youngs_modulus_normal_N_per_m"],
           "interface_compliance_nm_per_N_per_m": R if with_band else 0.0,
           "interface_compliance_source": source if with_band else f"not applied: {source}",
           "period_nm": s["stripes"]["period_nm"], "fraction_B": s["stripes"]["fraction"],
           "sample_nm": [s["length_nm"], s["height_nm"]], "mesh_size_nm": s["mesh_size_nm"],
           "band_nm": s["interface_width_nm"], "md_geometry": md["geometry"]}
    if log:
        md_e = out["md_modulus_N_per_m"]
        spread = f"+- {md_e['sem']:.2f}" if md_e.get("sem") is not None else "(1 seed)"
        log(f"consistency: FE {out['modulus_N_per_m']:.2f} N/m (perfect interfaces "
            f"{out['perfect_interface_modulus_N_per_m']:.2f}) vs direct MD {md_e['mean']:.2f} {spread} N/m across "
            f"{out['period_nm']:.2f} nm stripes; interface compliance {out['interface_compliance_source']}")
    low = md.get("low_T")
    if not low:
        out["low_T"] = {"skipped": low_t_missing_reason(props, settings["phases"])}
    else:
        out["low_T"] = {"temperature_K": low["temperature_K"],
                        **_twin(s, like_for_like_properties(props, low, settings["phases"]), comm, with_band),
                        "md_modulus_N_per_m": low["youngs_modulus_normal_N_per_m"],
                        "phases_elastic_N_per_m": low["phases_elastic_N_per_m"]}
        if log:
            log(f"consistency at {low['temperature_K']:g} K, phase constants from the stripe's own MTP: FE "
                f"{out['low_T']['modulus_N_per_m']:.2f} N/m (perfect interfaces "
                f"{out['low_T']['perfect_interface_modulus_N_per_m']:.2f}) vs direct MD "
                f"{low['youngs_modulus_normal_N_per_m']['mean']:.2f} N/m")
    return out


def band_elements(settings: dict, props: dict, R: float, h: float) -> int:
    """Elements across the twin's interface band: ``fem.consistency.band_elements``, or more for a stiff
    interface (``R`` < 0, nm per N/m) so that the band keeps at least half its halves' own compliance
    across (``R / width`` is added to it; fem.materials.interface_material)."""
    n = settings["consistency"]["band_elements"]
    if R < 0:
        allow = settings.get("allow_unfailed_strength", False)
        least = min(1.0 / materials.phase_material(props, p, allow_unfailed_strength=allow).stiffness()[1, 1]
                    for p in settings["phases"])
        n = max(n, math.ceil(2.0 * -R / least / h))
    return n


def _twin(s: dict, props: dict, comm, with_band: bool) -> dict:
    """The twin's modulus (N/m) with the interface band (when ``with_band``) and with perfect interfaces."""
    r = study.run_tensile(s, props, comm=comm, out_dir=None, label="consistency", write_fields=False, log=None)
    perfect = r
    if with_band:
        perfect = study.run_tensile({**s, "interface_width_nm": 0.0}, props, comm=comm, out_dir=None,
                                    label="consistency_perfect", write_fields=False, log=None)
    return {"modulus_N_per_m": r["modulus_N_per_m"], "perfect_interface_modulus_N_per_m": perfect["modulus_N_per_m"],
            "voigt_N_per_m": perfect["voigt_N_per_m"], "reuss_N_per_m": perfect["reuss_N_per_m"],
            "n_dofs_displacement": r["n_dofs_displacement"], "wall_s": r["wall_s"] + (perfect["wall_s"] if with_band else 0)}


def like_for_like_properties(props: dict, low: dict, phases) -> dict:
    """``props`` with each FE phase's elastic constants replaced by those measured at low temperature
    with the stripe cell's own MTP (``low["phases_elastic_N_per_m"]``); FemInputError if one is missing."""
    measured = low["phases_elastic_N_per_m"]
    missing = [name for name in phases if name not in measured]
    if missing:
        raise FemInputError(f"{props.get('_source', 'properties.json')}: heterostructure.low_T has no elastic "
                            f"constants for phase(s) {', '.join(missing)} (has: {', '.join(sorted(measured))}); "
                            "rerun the md stage with md.heterostructure.low_temperature: true")
    out = copy.deepcopy(props)
    for name in phases:
        out["phases"][name] = {**out["phases"][name], "elastic_N_per_m": measured[name]}
    return out
