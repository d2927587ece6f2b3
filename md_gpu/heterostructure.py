"""Direct MD of a periodic stripe heterostructure: the MD half of the multiscale consistency check.

The check (docs/report.md) simulates one stripe heterostructure twice: here by MD with the
interface system's MTP, and in ``fem/`` by the continuum model with the MD-derived phase
properties; the report compares the two effective moduli across the stripes.

Data flow::

    md.heterostructure + runs/fit/<interface>.mtp + the 0 K cells of the interface's two phases
    (runs/data/<A>.structure.extxyz, <B>.structure.extxyz; A, B as in the interface system's between)
      -> stripe_cell: each phase reduced to its rectangular unit (common.sheets.rectangular_sheet), the
         periods along x matched (B strained to A's), stripes of stripe_widths_nm (rounded to whole unit
         cells) side by side along y (two interfaces per period, common.sheets.lateral_interface),
         the matched period repeated to at least min_length_A along x, that cell repeat_x times
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
          "geometry": {"period_nm", "fraction_B", "length_nm", "n_atoms", "between", "stripes": "x",
                       "strain", "strained"},
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

Geometry: the stripes run along x and stack along y with period ``L_y`` (``period_nm``); the interfaces
sit in the middle of the gaps between the facing atom rows, so phase B is ``(y_B,max - y_B,min + gap) / L_y``
of the area (``fraction_B``); ``strain`` is B's relative strain along x that matches the periods,
``strained`` B's name. The cell as built (0 K lattice constants); the elastic protocol equilibrates it at
zero stress.
"""
from __future__ import annotations

from .analysis import mean_sem
from .errors import MDSetupError

HETEROSTRUCTURE_SETTINGS = {
    "enabled": (bool, False, "simulate a periodic stripe heterostructure with the interface MTP (the MD half "
                             "of the FE-vs-MD consistency check)"),
    "stripe_widths_nm": (list, [3.4, 3.4], "widths of the stripes of phase A and B (nm), A and B as in the "
                                           "interface system's between (rounded to whole rectangular cells)"),
    "repeat_x": (int, 1, "repeats along the stripes (x) of the shortest cell that holds a whole number of matched "
                         "periods and is at least min_length_A long"),
    "min_length_A": (float, 10.0, "shortest length of the stripe cell along the stripes (Å; twice the MTP cut-off)"),
    "gap_A": (float, 0.0, "distance of the facing atom rows at the interfaces (Å); 0: sum of covalent radii"),
    "match_tolerance": (float, 0.04, "largest relative strain of phase B that matches the two phases' periods "
                                     "along the interfaces"),
    "seeds": (int, 1, "independent runs (elastic constants at md.temperature_K)"),
    "low_temperature": (bool, True, "also run the stripe cell, and the cells of the two phases with the interface "
                                    "MTP, once at md.elastic.low_temperature_K: the like-for-like FE-vs-MD check "
                                    "(one potential, no thermal ripples)"),
    "compliance_periods": (int, 2, "with low_temperature: also run a stripe cell with stripes this many times as "
                                   "wide (at low temperature) for the interfaces' normal compliance (the constitutive "
                                   "stage; >= 2, another cell than the checked one); 0: none"),
}

CONSTANTS = ("C11", "C22", "C12", "C66")  # the in-plane elastic constants each run reports (N/m)


def check_settings(h: dict) -> None:
    """Clear errors for ``md.heterostructure`` (naming the key)."""
    for key in ("repeat_x", "seeds"):
        if int(h[key]) < 1:
            raise ValueError(f"md.heterostructure.{key}: {h[key]} must be >= 1")
    widths = h["stripe_widths_nm"]
    if len(widths) != 2 or not all(isinstance(w, (int, float)) and w > 0 for w in widths):
        raise ValueError(f"md.heterostructure.stripe_widths_nm: {widths} must be two widths > 0 (nm) [A, B]")
    if h["gap_A"] < 0:
        raise ValueError(f"md.heterostructure.gap_A: {h['gap_A']} must be >= 0 (0: sum of covalent radii)")
    if not 0 <= h["match_tolerance"] < 1:
        raise ValueError(f"md.heterostructure.match_tolerance: {h['match_tolerance']} must be in [0, 1)")
    if int(h["compliance_periods"]) == 1 or int(h["compliance_periods"]) < 0:
        raise ValueError(f"md.heterostructure.compliance_periods: {h['compliance_periods']} must be 0 (none) or >= 2: "
                         "1 would take the interfaces' compliance from the checked cell itself, and the FE twin "
                         "would then reproduce the MD modulus by construction")


def cells_across(width_nm: float, cell_y_A: float) -> int:
    """Whole rectangular cells (``cell_y_A`` Å each) of a stripe ``width_nm`` wide: at least one."""
    return max(1, round(10.0 * width_nm / cell_y_A))


def stripe_cell(h: dict, phases):
    """The stripe heterostructure (ase.Atoms, a 2D sheet) and its geometry (module docstring).

    ``h``: the ``md.heterostructure`` settings (``stripe_widths_nm``, ``repeat_x``, ``gap_A``,
    ``match_tolerance``); ``phases``: ``[(name_A, atoms_A), (name_B, atoms_B)]``, any periodic cell of each
    phase's sheet (the data stage's 0 K cells). Raises :class:`MDSetupError` naming the phase or key when
    a phase is not a sheet with a rectangular cell or the periods do not match within the tolerance."""
    from common.sheets import GeometryError, as_sheet, is_sheet, lateral_interface, rectangular_sheet

    names = tuple(name for name, _ in phases)
    units = []
    for name, atoms in phases:
        if not is_sheet(atoms):
            raise MDSetupError(f"md.heterostructure: phase {name}: its 0 K cell is not a 2D sheet (periodic in x "
                               "and y, vacuum along z), so it has no stripes")
        try:
            units.append(as_sheet(rectangular_sheet(atoms)))
        except GeometryError as exc:
            raise MDSetupError(f"md.heterostructure: phase {name}: {exc}") from None
    cells_y = tuple(cells_across(w, unit.cell[1, 1]) for w, unit in zip(h["stripe_widths_nm"], units))
    try:
        atoms, info = lateral_interface(*units, cells_y=cells_y, tolerance=float(h["match_tolerance"]),
                                        gap_A=float(h["gap_A"]) or None, repeat_x=int(h["repeat_x"]),
                                        min_length_A=float(h["min_length_A"]), names=names)
    except GeometryError as exc:
        raise MDSetupError(f"md.heterostructure: {exc} (md.heterostructure.match_tolerance: "
                           f"{h['match_tolerance']})") from None
    geometry = {"period_nm": info["period_nm"], "fraction_B": info["fraction_B"], "length_nm": info["length_nm"],
                "n_atoms": info["n_atoms"], "stripes": "x", "strain": info["strain"], "strained": info["strained"]}
    return as_sheet(atoms), geometry


def compliance_cell_settings(h: dict) -> dict:
    """``md.heterostructure`` for the interface-compliance cell: stripes ``compliance_periods`` times as
    wide, the shortest cell along x (704 atoms for the default case's 3.4 + 3.4 nm)."""
    k = int(h["compliance_periods"])
    return {**h, "stripe_widths_nm": [k * float(w) for w in h["stripe_widths_nm"]], "repeat_x": 1}


def normal_modulus(c: dict) -> float:
    """Young's modulus across stripes along x (uniaxial stress along y), N/m: (C11 C22 - C12^2) / C11."""
    return (c["C11"] * c["C22"] - c["C12"] ** 2) / c["C11"]


def run(ff, h: dict, phases, elastic: dict, run_settings, *, relax_steps: int = 500, scheme: str = "tension",
        checkpoints=None, resume: bool = False, log=print) -> dict:
    """One run: elastic constants of the stripe cell of ``phases`` (:func:`stripe_cell`) at
    ``run_settings.temperature_K`` (``elastic``: the md.elastic block, for ``delta`` and ``sample_steps``).
    Returns plain data: ``elastic_N_per_m`` {C11, C22, C12, C66}, ``youngs_modulus_normal_N_per_m``,
    ``geometry``.

    ``scheme``: "tension" (forward differences, at temperature) or "tension2" (second-order one-sided,
    for the low-temperature twin: the stripe cell stiffens with strain, corrugated at its interfaces,
    and the forward difference at delta = 0.005 reads it 2 % stiff; see md_gpu.protocols.elastic).
    ``checkpoints``, ``resume``: the MD runs' checkpoints and resuming, as
    :func:`md_gpu.protocols.elastic_constants`.

    First a 0 K relaxation of the stripe cell (``relax_steps`` FIRE steps, 0: none,
    :mod:`md_gpu.protocols.relaxation`): a hole of the interface MTP there raises
    :class:`MDRunError` before any MD, instead of a run that blows up or reports C = 0 N/m at
    temperature."""
    from .errors import MDRunError
    from .protocols import elastic_constants
    from .protocols.relaxation import describe, relaxation_check

    if scheme not in ("tension", "tension2"):
        raise MDSetupError(f"stripe heterostructure: scheme {scheme!r} is not 'tension' or 'tension2'")
    atoms, geometry = stripe_cell(h, phases)
    b = phases[1][0]
    log(f"stripe heterostructure: {geometry['n_atoms']} atoms, period {geometry['period_nm']:.2f} nm, "
        f"fraction of {b} {geometry['fraction_B']:.3f}, {b} strained {100 * geometry['strain']:+.2f} % along x")
    if relax_steps > 0:
        relaxation = relaxation_check(ff, atoms, steps=relax_steps)
        log(f"stripe heterostructure: {describe(relaxation)}")
        if relaxation["hole"]:
            raise MDRunError(f"the stripe cell: {describe(relaxation)}. The interface MTP has no training data "
                             "there; fit it with more data near the interface (docs/fit.md)")
    # no compressed cell: the 7 nm long sheet buckles under the -delta compression of central differences
    c = elastic_constants(ff, atoms, delta=elastic["delta"], sample_steps=elastic["sample_steps"],
                          settings=run_settings, scheme=scheme, checkpoints=checkpoints, resume=resume, log=log)
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
