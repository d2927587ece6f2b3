"""Cross-scale consistency checks: does each scale reproduce the one below it?

Data flow::

    runs/data/summary.json      the reference engine's own 0 K stiffness of each phase (static strain scan)
    runs/md/summary.json        structure checks, MTP-MD elastic constants at low temperature, interface-cell tension
    runs/fem/fem_results.json   FE effective modulus of the stripe sample (main run)
        --> check_structures, check_reference_stiffness, check_fe_vs_md  --> rows {check, ours, reference, rel_diff, tol, passed}
        --> the report's "Cross-scale checks" table and runs/report/checks.json

Three checks, with the tolerances of the acceptance criteria (and, ahead of the first, whether the
0 K relaxation that precedes it found a hole of the potential, md_gpu.protocols.relaxation):

* Structure kept: each system's NVT run at temperature from its 0 K structure (``stability`` of the
  MD summary, md_gpu.protocols.stability) changes the coordination number of at most
  ``md.stability.max_changed_fraction`` of its atoms. A structure that transforms (the default
  case's chi3 borophene with GFN1-xTB data does) makes every MD number of that system a number of
  another material.
* MTP-MD vs reference engine: the 2D Young's moduli E_x, E_y = (C11 C22 - C12^2)/C22 (resp. /C11) in N/m
  of a phase from the MD elastic constants at low temperature (``elastic_low_T_N_per_m`` of the MD
  summary) against the same moduli from the engine's static strain scan (``reference`` of the data
  summary), within 5 %; and the Poisson's ratio nu_xy = C12 / C22 of the same constants against the
  engine's, within 0.05 (an absolute tolerance: ``tolerance_kind`` "absolute", ``abs_diff``).
* FE vs direct MD: one periodic stripe heterostructure simulated twice. With ``md.heterostructure``
  the md stage runs the interface MTP on a stripe cell of a few hundred to thousands of atoms and
  the fem stage rebuilds the same stripes (period, area fraction) with the MD-derived phase
  properties (``fem_results.json`` ``consistency``): their moduli across the stripes agree within
  10 %. With ``md.heterostructure.low_temperature`` a second row compares the same twin at low
  temperature with phase constants from the stripe cell's own MTP (``consistency.low_T``): one
  potential and no thermal ripples on both sides. The FE twin carries the interfaces' normal
  compliance measured by MD on a wider stripe cell (``properties.json`` ``normal_compliance``,
  fem.consistency); each row's text names it and the perfect-interface modulus. Without it, the FE main run (a stripe sample loaded across its stripes) is compared with
  the MD modulus of the small interface cell pulled normal to its interfaces (``normal``), a
  rougher comparison (other period and, in general, other fraction).

Every row has a ``status``: ``pass``, ``fail``, ``not run`` or ``compared`` (``passed`` True / False /
None / None), and a check whose inputs are missing is reported as ``not run`` with the reason, never as
passed. ``compared`` is the stripe row at temperature when the case also plans the low-temperature
twin: its FE side takes phase constants measured in cells several times shorter than the stripe cell,
and at temperature a sheet's ripples soften it more the longer it is (md_gpu.heterostructure: stripe
cell -15 to -18 % from 0 K, phase cells -11 %; the same stripe cell with the same potential read
169 +- 6, 139 +- 20 and 155 +- 9 N/m in three runs whose MD differed in the order of its pair sums and
the elastic protocol's reference cell), so the row shows the size effect with its numbers and
the verdict is the like-for-like low-temperature row's. Without the low-temperature twin the row at
temperature is the only verdict and is judged. Which rows
there are depends on the case (its systems and settings), never on what happened in the runs: a
structure check for every system, both stiffness moduli of every phase with a reference, and, when
the md stage planned stripe runs (``heterostructure_runs`` of the MD summary, md_gpu.tasks.stripes),
both stripe rows, each ``not run`` with the true reason when its MD runs blew up ("2 of 2 MD stripe
runs blew up: ...") or its FE twin was skipped. Only a case without stripe runs compares the FE main
sample with the interface cells instead (and shows the stripe rows as not run, saying why).
"""
from __future__ import annotations

import json
from pathlib import Path

from common.contracts import read_summary

REFERENCE_TOL = 0.05
POISSON_TOL = 0.05   # absolute
FE_MD_TOL = 0.10


STATUS = {True: "pass", False: "fail", None: "not run"}
COMPARED = "compared"


def _row(check: str, ours, reference, tol: float, what: str, *, absolute: bool = False) -> dict:
    """A judged row; ``tol`` bounds the relative difference, or with ``absolute`` the difference itself
    (``abs_diff``, ``tolerance_kind``)."""
    rel = abs(ours - reference) / abs(reference)
    diff = abs(ours - reference)
    passed = bool((diff if absolute else rel) <= tol)
    return {"check": check, "status": STATUS[passed], "ours": float(ours), "reference": float(reference),
            "rel_diff": float(rel), "abs_diff": float(diff), "tolerance": tol,
            "tolerance_kind": "absolute" if absolute else "relative", "passed": passed, "what": what}


def _not_run(check: str, reason: str) -> dict:
    return {"check": check, "status": STATUS[None], "ours": None, "reference": None, "rel_diff": None,
            "tolerance": None, "passed": None, "what": f"not run: {reason}"}


def youngs_moduli(c11: float, c22: float, c12: float) -> tuple[float, float]:
    """2D Young's moduli (E_x, E_y) of an orthotropic sheet from C11, C22, C12 (all N/m)."""
    det = c11 * c22 - c12 ** 2
    return det / c22, det / c11


def check_reference_stiffness(data_summary: dict | None, md_summary: dict | None, *,
                              tol: float = REFERENCE_TOL, poisson_tol: float = POISSON_TOL) -> list[dict]:
    """MTP-MD moduli and Poisson's ratio at low T against the reference engine's static ones, for every
    phase that has both (the ratio where the reference gives ``nu_xy``)."""
    name = "MTP-MD vs reference engine stiffness"
    poisson = "MTP-MD vs reference engine Poisson's ratio"
    if not data_summary or not md_summary:
        return [_not_run(name, "the data or md stage has not run")]
    rows = []
    for system, info in (data_summary.get("systems") or {}).items():
        ref = info.get("reference")
        md = (md_summary.get("systems") or {}).get(system, {}).get("elastic_low_T_N_per_m")
        if not ref:
            continue
        checks = [f"{name} ({system}, E_{axis})" for axis in ("x", "y")]
        if "nu_xy" in ref:
            checks.append(f"{poisson} ({system}, nu_xy)")
        if not md:
            rows += [_not_run(check, "the md stage measured no low-temperature elastic constants "
                                     "(md.elastic.low_temperature_K)") for check in checks]
            continue
        temperature = md.get("temperature_K", "low")
        ex, ey = youngs_moduli(md["C11"]["mean"], md["C22"]["mean"], md["C12"]["mean"])
        for axis, ours in (("x", ex), ("y", ey)):
            rows.append(_row(f"{name} ({system}, E_{axis})", ours, ref[f"E_{axis}_N_per_m"], tol,
                             f"2D Young's modulus (N/m): MTP-MD elastic constants at {temperature} K vs the "
                             f"engine's 0 K relaxed-ion strain scan"))
        if "nu_xy" in ref:
            rows.append(_row(f"{poisson} ({system}, nu_xy)", md["C12"]["mean"] / md["C22"]["mean"], ref["nu_xy"],
                             poisson_tol, f"Poisson's ratio C12 / C22: MTP-MD elastic constants at {temperature} K "
                                          f"vs the engine's 0 K relaxed-ion strain scan", absolute=True))
    return rows or [_not_run(name, "no dataset carries the reference engine's stiffness (data.reference_scan)")]


def _in_series(settings: dict) -> bool:
    return settings.get("geometry") == "stripes" and settings.get("stripes", {}).get("orientation") != \
        settings.get("load_direction")


STRIPES = "FE stripes vs direct MD"


def check_fe_vs_md(fem_results: dict | None, md_summary: dict | None, *, tol: float = FE_MD_TOL) -> list[dict]:
    """FE modulus of the MD stripe heterostructure's twin against the direct MD one, at temperature and at
    low temperature (two rows whenever the md stage ran, each ``not run`` with its reason when it cannot
    be made); without stripe runs in the case, the FE main stripe sample against every interface cell
    pulled normal instead."""
    if not md_summary:
        return [_not_run(STRIPES, "the md stage has not run")]
    system, entry = _stripe_system(md_summary, fem_results)
    if system is None:  # the case runs no stripe cell: the rougher comparison with the interface cells
        off = "the md stage ran no stripe heterostructure (md.heterostructure.enabled is false)"
        return ([_not_run(f"{STRIPES} (stripe heterostructure)", off),
                 _not_run(f"{STRIPES} at low T, one MTP (stripe heterostructure)", off)]
                + _interface_cell_rows(fem_results, md_summary, tol))
    return [_stripe_row(fem_results, entry, tol), _low_t_row(fem_results, entry, tol)]


def _stripe_system(md_summary: dict, fem_results: dict | None) -> tuple[str | None, dict]:
    """The interface system whose stripe cell the FE twin rebuilds: the one with stripe runs (recorded in
    ``heterostructure_runs``, or a ``heterostructure`` from an older md stage, or stripe runs named in
    ``provenance.blown_up``), preferring the one between the FE phases; ``(None, {})`` without any."""
    found = {}
    for name, entry in (md_summary.get("systems") or {}).items():
        blown = [b for b in (entry.get("provenance") or {}).get("blown_up", [])
                 if b.get("run", "").startswith(f"{name}_heterostructure")]
        if entry.get("heterostructure_runs") or entry.get("heterostructure") or blown:
            found[name] = {**entry, "_blown": blown}
    if not found:
        return None, {}
    phases = sorted((fem_results or {}).get("settings", {}).get("phases") or [])
    for name, entry in found.items():
        between = ((entry.get("heterostructure") or {}).get("geometry") or {}).get("between")
        if between and sorted(between) == phases:
            return name, entry
    return next(iter(found.items()))


def _blow_ups(entry: dict, which: str) -> tuple[int, int, str]:
    """``(blown up, attempted, "run: reason" of the first)`` of the stripe runs ``which`` ("at_temperature" or
    "low_T") of an interface system's summary entry; an older summary: from ``provenance.blown_up``."""
    runs = entry.get("heterostructure_runs") or {}
    counts = runs.get(which)
    named = [b for b in runs.get("blown_up", entry["_blown"])
             if ("_low_T" in b.get("run", "")) == (which == "low_T")]
    first = f"{named[0]['run']}: {named[0]['reason']}" if named else ""
    if counts:
        return counts["blown_up"], counts["attempted"], first
    done = ((entry.get("heterostructure") or {}).get("youngs_modulus_normal_N_per_m") or {}).get("n", 0)
    return len(named), len(named) + (done if which == "at_temperature" else 0), first


def _lost(blown: int, attempted: int, first: str, what: str) -> str:
    return f"{blown} of {attempted} {what} blew up" + (f" ({first})" if first else "")


def _twin_missing(fem_results: dict | None) -> str | None:
    """Why fem_results.json has no FE twin (None when it has one)."""
    if not fem_results:
        return "the fem stage has not run"
    twin = fem_results.get("consistency")
    if not twin:
        return "fem_results.json has no FE twin of the stripe cell (fem.consistency.enabled, or an older fem stage)"
    if twin.get("skipped"):
        return f"the fem stage ran no FE twin: {twin['skipped']}"
    return None


def _stripe_row(fem_results: dict | None, entry: dict, tol: float) -> dict:
    check = f"{STRIPES} (stripe heterostructure)"
    blown, attempted, first = _blow_ups(entry, "at_temperature")
    if not entry.get("heterostructure"):
        return _not_run(check, _lost(blown, attempted, first, "MD stripe runs") + ": no MD modulus to compare with")
    missing = _twin_missing(fem_results)
    if missing:
        return _not_run(check, missing)
    twin = fem_results["consistency"]
    md = twin["md_modulus_N_per_m"]
    g = twin.get("md_geometry", {})
    phase_b = (g.get("between") or [None, _phase_b(fem_results)])[1]
    lost = f"; {_lost(blown, attempted, first, 'MD stripe runs')}, left out" if blown else ""
    row = _row(check, twin["modulus_N_per_m"], md["mean"], tol,
               f"2D modulus (N/m) across {twin['period_nm']:.2f} nm periodic stripes, fraction of {phase_b} "
               f"{twin['fraction_B']:.3f}: FE with the MD phase properties{_interfaces_said(twin)} vs MD of the same "
               f"stripes ({g.get('n_atoms', '?')} atoms, interface MTP, {_spread(md)}{lost})")
    if "low_T" not in (entry.get("heterostructure_runs") or {}):
        return row
    return {**row, "status": COMPARED, "passed": None, "tolerance": None,
            "what": row["what"] + "; compared, not judged: the FE phase constants come from cells several times "
                                  "shorter than the stripe cell, which ripples and softens more at temperature; "
                                  "the low-temperature row below is the like-for-like check"}


def _spread(stat: dict) -> str:
    """'2 seeds, sem 1.5' or '1 seed' of an MD statistic."""
    n = stat.get("n", "?")
    if n == 1 or stat.get("sem") is None:
        return "1 seed" if n == 1 else f"{n} seed(s)"
    return f"{n} seeds, sem {stat['sem']:.3g}"


def _low_t_row(fem_results: dict | None, entry: dict, tol: float) -> dict:
    het = entry.get("heterostructure") or {}
    twin = (fem_results or {}).get("consistency") or {}
    low = twin.get("low_T") or {}
    t = low.get("temperature_K", (het.get("low_T") or {}).get("temperature_K"))
    check = f"{STRIPES} at {f'{t:g} K' if t is not None else 'low T'}, one MTP (stripe heterostructure)"
    if not het:
        blown, attempted, first = _blow_ups(entry, "at_temperature")
        return _not_run(check, _lost(blown, attempted, first, "MD stripe runs") + ": no stripe cell to compare with")
    if not het.get("low_T"):
        blown, attempted, first = _blow_ups(entry, "low_T")
        if blown:
            return _not_run(check, _lost(blown, attempted, first, "low-temperature MD stripe and phase runs"))
        return _not_run(check, "the md stage ran no low-temperature stripe twin (md.heterostructure.low_temperature "
                               "or md.elastic.low_temperature_K is off)")
    missing = _twin_missing(fem_results)
    if missing:
        return _not_run(check, missing)
    if not low or low.get("skipped"):
        return _not_run(check, f"the fem stage ran no low-temperature twin: {low.get('skipped', 'not recorded')}")
    return _row(check, low["modulus_N_per_m"], low["md_modulus_N_per_m"]["mean"], tol,
                f"the same stripes at {t:g} K (no thermal ripples), the FE phases' elastic constants "
                f"measured at {t:g} K with the stripe cell's own interface MTP{_interfaces_said(low, twin)}"
                f": the like-for-like comparison (MD: {_spread(low['md_modulus_N_per_m'])})")


def _interface_cell_rows(fem_results: dict | None, md_summary: dict, tol: float) -> list[dict]:
    """Without stripe runs: the FE main sample (stripes loaded across) against each MD interface cell."""
    systems = [(system, e["normal"]["youngs_modulus_N_per_m"])
               for system, e in (md_summary.get("systems") or {}).items()
               if (e.get("normal") or {}).get("youngs_modulus_N_per_m")]
    if not systems:
        return [_not_run(STRIPES, "the md stage measured no interface cell")]
    if not fem_results:
        return [_not_run(f"{STRIPES} ({system})", "the fem stage has not run") for system, _ in systems]
    settings = fem_results.get("settings", {})
    if not _in_series(settings):
        return [_not_run(f"{STRIPES} ({system})", "the FE main run is not a stripe sample loaded across its stripes "
                                                  "(fem.geometry: stripes with stripes.orientation != load_direction)")
                for system, _ in systems]
    fe = fem_results["tensile"]["modulus_N_per_m"]
    phase_b = _phase_b(fem_results)
    return [_row(f"{STRIPES} ({system})", fe, normal["mean"], tol,
                 f"effective 2D modulus (N/m) across the stripes: FE (fraction of {phase_b} "
                 f"{settings.get('stripes', {}).get('fraction')}) vs MD of the {system} cell "
                 f"pulled normal to its interfaces ({_spread(normal)})")
            for system, normal in systems]


def _phase_b(fem_results: dict) -> str:
    """The name of phase B of the FE samples (``settings.phases[1]`` of fem_results.json; "B" without it)."""
    phases = fem_results.get("settings", {}).get("phases") or []
    return phases[1] if len(phases) > 1 else "B"


def _interfaces_said(entry: dict, twin: dict | None = None) -> str:
    """How the FE twin's interfaces were modelled, with the perfect-interface modulus beside it."""
    twin = twin or entry
    R = twin.get("interface_compliance_nm_per_N_per_m")
    if not R:
        return (" and perfect interfaces (no interface compliance measured: "
                f"{twin.get('interface_compliance_source', 'none')})")
    return (f" and the MD interface compliance R = {R:.3g} nm per N/m, measured on a wider stripe cell "
            f"(perfect interfaces: {entry['perfect_interface_modulus_N_per_m']:.1f} N/m)")


def check_structures(md_summary: dict | None) -> list[dict]:
    """Each system's structure check (``stability`` of the MD summary): the fraction of atoms whose
    coordination number changed in NVT at temperature, against at most ``max_changed``."""
    name = "structure kept in MD at temperature"
    if not md_summary:
        return [_not_run(name, "the md stage has not run")]
    rows = []
    for system, entry in (md_summary.get("systems") or {}).items():
        st = entry.get("stability")
        if not st:
            rows.append(_not_run(f"{name} ({system})", "the md stage ran no structure check (md.stability.enabled)"))
            continue
        if st.get("relaxation"):
            rows.append(_relaxation_row(system, st["relaxation"]))
        check = f"{name} ({system})"
        if "changed_fraction" not in st:  # blew up: the structure was not kept
            rows.append({**_not_run(check, ""), "passed": False, "status": STATUS[False],
                         "what": f"the NVT run blew up: {st.get('blew_up', 'no reason recorded')}"})
            continue
        start, end = st["coordination_start"], st["coordination_end"]
        rows.append({"check": check, "status": STATUS[bool(st["retained"])], "ours": float(st["changed_fraction"]),
                     "reference": 0.0,
                     "rel_diff": float(st["changed_fraction"]), "tolerance": float(st["max_changed"]),
                     "passed": bool(st["retained"]),
                     "what": f"fraction of atoms whose coordination number (neighbours within {st['cutoff_A']:.2f} Å) "
                             f"changed in {st['steps']} NVT steps at {st['temperature_K']:g} K; atoms per "
                             f"coordination number 0, 1, 2, ...: {start} before, {end} after; potential energy "
                             f"{st['energy_drift_meV_per_atom']:+.1f} meV/atom"})
    return rows or [_not_run(name, "the md stage ran no system")]


def _relaxation_row(system: str, relaxation: dict) -> dict:
    """The 0 K relaxation that precedes the NVT structure check: passes unless it found a hole."""
    from md_gpu.protocols.relaxation import describe

    return {"check": f"no hole of the MTP at 0 K ({system})", "status": STATUS[not relaxation["hole"]],
            "ours": float(relaxation["energy_change_meV_per_atom"]), "reference": 0.0, "rel_diff": None,
            "tolerance": None, "passed": not relaxation["hole"],
            "what": f"relaxation energy (meV/atom) of the built structure with its MTP: {describe(relaxation)}"}


def _read(path: Path, read=lambda p: json.loads(p.read_text())) -> dict | None:
    return read(path) if path.is_file() else None


def run_checks(runs_dir: Path) -> list[dict]:
    """All checks from the stage outputs under ``runs_dir`` (missing outputs give ``not run`` rows)."""
    runs_dir = Path(runs_dir)
    md = _read(runs_dir / "md" / "summary.json", read_summary)  # checked: a foreign or old file stops here
    return (check_structures(md)
            + check_reference_stiffness(_read(runs_dir / "data" / "summary.json"), md)
            + check_fe_vs_md(_read(runs_dir / "fem" / "fem_results.json"), md))
