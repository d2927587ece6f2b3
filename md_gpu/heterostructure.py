"""Direct MD of a periodic stripe heterostructure: the MD half of the multiscale consistency check.

The check (docs/report.md) simulates one stripe heterostructure twice: here by MD with the
interface system's MTP, and in ``fem/`` by the continuum model with the MD-derived phase
properties; the report compares the two effective moduli across the stripes.

Data flow::

    md.heterostructure + runs/fit/<interface>.mtp
      -> stripe_cell: training.structures.interface with stripes graphene_cells_y x sqrt(3) a_C and
         borophene_cells_y x b_B wide (two interfaces per period), repeated repeat_x times along x
      -> 0 K relaxation of the stripe cell (md_gpu.protocols.relaxation): a hole of the MTP -> MDRunError
      -> md_gpu.protocols.elastic_constants at md.temperature_K, one run per seed, scheme "tension"
         (forward differences: a sheet this long buckles under the compressed cells of central ones;
         graphene 64 A long at 300 K: C22 107-172 N/m central, 294 tension, 381-417 in a 13 A cell);
         the low-temperature twin with scheme "tension2" (second order: the cell stiffens with strain), and
         a cell with stripes compliance_periods times as wide, the same way (the interfaces' compliance)
      -> per seed the modulus across the stripes under uniaxial stress, E_y = (C11 C22 - C12^2) / C11 (N/m)
      -> summary.json systems.<interface>.heterostructure:
         {"elastic_N_per_m": {C11, C22, C12, C66: {mean, sem, n}},
          "youngs_modulus_normal_N_per_m": {mean, sem, n},
          "geometry": {"period_nm", "fraction_B", "length_nm", "n_atoms", "between", "stripes": "x"},
          "low_T": {"temperature_K", "elastic_N_per_m", "youngs_modulus_normal_N_per_m",
                    "phases_elastic_N_per_m": {<phase>: {C11, C22, C12, C66}},
                    "compliance_cell": {"elastic_N_per_m", "youngs_modulus_normal_N_per_m", "geometry"}}}
                                                                                    (low_temperature: true)

Why the low-temperature twin: at 300 K a 68 A long sheet ripples and softens more than the 12-17 A
cells in which the phase constants are measured (stripe cell -15 to -18 % from 0 K, phase cells
-11 %), and the ripples of a 68 A sheet are too slow for the quick protocol to converge (phase cells
as long as the stripe scatter by +-14 N/m in their laminate over 4 seeds); at 1 K neither happens,
and with the phase constants from the same (interface) MTP the FE twin and the MD differ only by
what the continuum model leaves out unless told: the compliance of the interfaces themselves. The
wider ``compliance_cell`` tells it (multiscale.constitutive: 1/E = 1/E_laminate + 2 R / L), from
another cell than the checked one, so that the check remains a prediction.

Geometry: the stripes run along x and stack along y with period ``L_y``; the interfaces sit in
the middle of the C-B gaps, so phase B (borophene) is ``(y_B,max - y_B,min + gap) / L_y`` of the
area. The cell as built (0 K lattice constants); the elastic protocol equilibrates it at zero stress.
"""
from __future__ import annotations

import numpy as np

from .analysis import mean_sem
from .errors import MDSetupError

HETEROSTRUCTURE_SETTINGS = {
    "enabled": (bool, False, "simulate a periodic stripe heterostructure with the interface MTP (the MD half "
                             "of the FE-vs-MD consistency check)"),
    "graphene_cells_y": (int, 8, "graphene stripe width in rectangular cells (sqrt(3) a = 4.26 A each)"),
    "borophene_cells_y": (int, 4, "borophene stripe width in chi3 cells (b = 8.48 A each)"),
    "repeat_x": (int, 1, "repeats of the 14.7 A cell along the stripes (x)"),
    "seeds": (int, 1, "independent runs (elastic constants at md.temperature_K)"),
    "low_temperature": (bool, True, "also run the stripe cell, and the cells of the two phases with the interface "
                                    "MTP, once at md.elastic.low_temperature_K: the like-for-like FE-vs-MD check "
                                    "(one potential, no thermal ripples)"),
    "compliance_periods": (int, 2, "with low_temperature: also run a stripe cell with stripes this many times as "
                                   "wide (at low temperature) for the interfaces' normal compliance (the constitutive "
                                   "stage; >= 2, another cell than the checked one); 0: none"),
}

BUILDER = "interface"
CONSTANTS = ("C11", "C22", "C12", "C66")  # the in-plane elastic constants each run reports (N/m)


def check_settings(h: dict, structure: str | None = None) -> None:
    """Clear errors for ``md.heterostructure`` (naming the key); ``structure``: the interface system's."""
    for key in ("graphene_cells_y", "borophene_cells_y", "repeat_x", "seeds"):
        if int(h[key]) < 1:
            raise ValueError(f"md.heterostructure.{key}: {h[key]} must be >= 1")
    if int(h["compliance_periods"]) == 1 or int(h["compliance_periods"]) < 0:
        raise ValueError(f"md.heterostructure.compliance_periods: {h['compliance_periods']} must be 0 (none) or >= 2: "
                         "1 would take the interfaces' compliance from the checked cell itself, and the FE twin "
                         "would then reproduce the MD modulus by construction")
    from training.structures import ALIASES

    if h["enabled"] and structure is not None and ALIASES.get(structure, structure) != BUILDER:
        raise ValueError(f"md.heterostructure: the interface system's structure {structure!r} is not the "
                         f"'{BUILDER}' builder of training.structures, whose stripe widths it sets; "
                         "set md.heterostructure.enabled: false")


def stripe_cell(h: dict):
    """The stripe heterostructure (ase.Atoms, a 2D sheet) and its geometry (module docstring)."""
    from training.structures import LATTICE, interface

    from .structures import as_sheet

    atoms = as_sheet(interface(graphene_cells=(6, int(h["graphene_cells_y"])),
                               borophene_cells_y=int(h["borophene_cells_y"])))
    y = atoms.positions[np.array(atoms.get_chemical_symbols()) == "B", 1]
    fraction_b = (y.max() - y.min() + LATTICE["interface"]["gap_A"]) / atoms.cell[1, 1]
    atoms = atoms.repeat((int(h["repeat_x"]), 1, 1))
    geometry = {"period_nm": float(atoms.cell[1, 1]) / 10.0, "fraction_B": float(fraction_b),
                "length_nm": float(atoms.cell[0, 0]) / 10.0, "n_atoms": len(atoms), "stripes": "x"}
    return atoms, geometry


def compliance_cell_settings(h: dict) -> dict:
    """``md.heterostructure`` for the interface-compliance cell: stripes ``compliance_periods`` times as
    wide, one 14.7 A cell along x (704 atoms for the case's 8 + 4 cells)."""
    k = int(h["compliance_periods"])
    return {**h, "graphene_cells_y": k * int(h["graphene_cells_y"]), "borophene_cells_y": k * int(h["borophene_cells_y"]),
            "repeat_x": 1}


def normal_modulus(c: dict) -> float:
    """Young's modulus across stripes along x (uniaxial stress along y), N/m: (C11 C22 - C12^2) / C11."""
    return (c["C11"] * c["C22"] - c["C12"] ** 2) / c["C11"]


def run(ff, h: dict, elastic: dict, run_settings, *, relax_steps: int = 500, scheme: str = "tension",
        log=print) -> dict:
    """One run: elastic constants of the stripe cell at ``run_settings.temperature_K`` (``elastic``:
    the md.elastic block, for ``delta`` and ``sample_steps``). Returns plain data.

    ``scheme``: "tension" (forward differences, at temperature) or "tension2" (second-order one-sided,
    for the low-temperature twin: the stripe cell stiffens with strain, corrugated at its interfaces,
    and the forward difference at delta = 0.005 reads it 2 % stiff; see md_gpu.protocols.elastic).

    First a 0 K relaxation of the stripe cell (``relax_steps`` FIRE steps, 0: none,
    :mod:`md_gpu.protocols.relaxation`): a hole of the interface MTP there raises
    :class:`MDRunError` before any MD, instead of a run that blows up or reports C = 0 N/m at
    temperature."""
    from .errors import MDRunError
    from .protocols import elastic_constants
    from .protocols.relaxation import describe, relaxation_check

    if scheme not in ("tension", "tension2"):
        raise MDSetupError(f"stripe heterostructure: scheme {scheme!r} is not 'tension' or 'tension2'")
    atoms, geometry = stripe_cell(h)
    log(f"stripe heterostructure: {geometry['n_atoms']} atoms, period {geometry['period_nm']:.2f} nm, "
        f"borophene fraction {geometry['fraction_B']:.3f}")
    if relax_steps > 0:
        relaxation = relaxation_check(ff, atoms, steps=relax_steps)
        log(f"stripe heterostructure: {describe(relaxation)}")
        if relaxation["hole"]:
            raise MDRunError(f"the stripe cell: {describe(relaxation)}. The interface MTP has no training data "
                             "there; fit it with more data near the interface (docs/fit.md)")
    # no compressed cell: the 7 nm long sheet buckles under the -delta compression of central differences
    c = elastic_constants(ff, atoms, delta=elastic["delta"], sample_steps=elastic["sample_steps"],
                          settings=run_settings, scheme=scheme, log=log)
    if c["unit"] != "N/m":
        raise MDSetupError("md.heterostructure: the stripe cell is not a 2D sheet")
    constants = {k: float(c[k]) for k in CONSTANTS}
    return {"elastic_N_per_m": constants, "youngs_modulus_normal_N_per_m": normal_modulus(constants),
            "geometry": geometry}


def summarize_low_t(stripe: dict, phases: dict, temperature_K: float, compliance_cell: dict | None = None) -> dict:
    """The ``heterostructure.low_T`` entry: the stripe cell's run at ``temperature_K``, per phase the
    elastic constants (N/m) of its own cell with the interface MTP (``phases``: name -> C), and the
    run of the wider interface-compliance cell when there is one (``compliance_cell``)."""
    def one_run(r: dict) -> dict:  # one run each: mean_sem of one value
        return {"elastic_N_per_m": {k: mean_sem([r["elastic_N_per_m"][k]]) for k in CONSTANTS},
                "youngs_modulus_normal_N_per_m": mean_sem([r["youngs_modulus_normal_N_per_m"]])}

    out = {"temperature_K": float(temperature_K), **one_run(stripe),
           "phases_elastic_N_per_m": {name: {k: mean_sem([c[k]]) for k in CONSTANTS}
                                      for name, c in sorted(phases.items())}}
    if compliance_cell:
        out["compliance_cell"] = {**one_run(compliance_cell), "geometry": compliance_cell["geometry"]}
    return out


def summarize(results: list[dict], between) -> dict:
    """The ``heterostructure`` entry of summary.json from the runs' results (one per seed)."""
    constants = {k: mean_sem([r["elastic_N_per_m"][k] for r in results]) for k in CONSTANTS}
    return {"elastic_N_per_m": constants,
            "youngs_modulus_normal_N_per_m": mean_sem([r["youngs_modulus_normal_N_per_m"] for r in results]),
            "geometry": {**results[0]["geometry"], "between": list(between)}}
