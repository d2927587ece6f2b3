"""The ``constitutive`` stage: MD results -> ``properties.json`` (docs/properties.md).

Data flow: read ``runs/md/summary.json`` with ``common.contracts.read_summary`` (which checks its
``format`` and shape; per system: the statistics over seeds of each tensile direction and the
elastic constants, 2D N/m), attach each phase's effective thickness from ``case.yaml`` and the
provenance of every number (potential file and its sha256, MD run files, strain rate, size), check that every phase
direction has the quantities the continuum model needs, and write ``properties.json`` with
``common.contracts.write_properties``. This is the one place where MD output becomes continuum
input; ``fem/`` reads only this file.

Which protocol each property of a phase direction comes from (:data:`SOURCES`, recorded per direction
as ``sources``): Young's modulus and Poisson's ratio from the elastic constants at ``md.temperature_K``
(the summary's ``moduli_N_per_m``, per-seed engineering constants, ``md_gpu.tasks.elastic``) when the
md stage measured them, else from the tensile test; ultimate strength and failure strain from the
tensile test. The tensile test's modulus and Poisson's ratio stay as ``tensile_youngs_modulus_*`` and
``tensile_poisson_ratio`` (with their fit errors ``tensile_*_fit_sem*``) for the report. Interfaces
keep their tensile values (the elastic protocol runs on phases only).

Uncertainty and failures travel with the numbers (docs/properties.md, "Uncertain and unusable inputs"):

* every statistic keeps ``{mean, sem, n}`` with ``sem`` null for one seed (a summary of an older md
  stage wrote 0 there: read as null) and the run counts ``attempted``, ``failed``, ``blown_up`` where
  the summary has them;
* one rule for every continuum input (``common.uncertainty.withheld_reason``, applied by ``screen`` to moduli,
  elastic constants, strengths, conductivities and the conductance): a value not positive by two
  standard errors, or that no run gave, carries ``withheld`` with the reason and the fem stage does not
  use it; a single-seed value (no sem to test) is used, marked ``single_seed: true``;
* a strength to which a tensile run contributed that neither failed nor yielded (its peak is where
  the loading stopped) is flagged ``strength_from_unfailed`` (:func:`unfailed_runs`): the fem stage
  refuses it unless ``fem.allow_unfailed_strength``. Yield counts as failure: a yield stress is a
  strength of the material; only the end of the loading is not.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.contracts import PROPERTIES_FORMAT, read_summary, write_properties
from common.uncertainty import normalised, resolved, screen, withheld_reason  # noqa: F401  (the one rule; re-exported)
from .errors import StageError

CONSTITUTIVE_SETTINGS = {
    "require": (list, ["youngs_modulus_N_per_m", "poisson_ratio", "ultimate_strength_N_per_m", "failure_strain"],
                "quantities every tensile direction of every phase must have"),
    "require_interface": (list, ["ultimate_strength_N_per_m"], "quantities every interface must have"),
}

_STAT_KEYS = {"mean", "sem", "n"}
_RUN_COUNTS = ("attempted", "failed", "blown_up")  # per statistic, passed on where the summary has them
# tensile runs per direction, passed on
_COUNTS = ("runs_attempted", "runs_failed", "runs_collapsed", "runs_yielded", "runs_unfailed", "runs_blown_up")
# property -> where it comes from when the phase has elastic moduli (else every one is "tensile")
SOURCES = {"youngs_modulus_N_per_m": "elastic", "youngs_modulus_GPa": "elastic", "poisson_ratio": "elastic",
           "ultimate_strength_N_per_m": "tensile", "ultimate_strength_GPa": "tensile", "failure_strain": "tensile"}
# tensile-test keys that get a ``tensile_`` prefix in properties.json (the unprefixed modulus and
# Poisson's ratio are the chosen ones)
_TENSILE_MODULI = ("youngs_modulus_N_per_m", "youngs_modulus_GPa", "youngs_modulus_fit_sem_N_per_m",
                   "youngs_modulus_fit_sem_GPa", "poisson_ratio", "poisson_ratio_fit_sem")


def _check_stat(value, where: str) -> dict:
    """``{mean, sem, n}`` (+ run counts) of a summary statistic; ``sem`` None for one seed (0 from an older
    md stage is read as None: one run has no spread)."""
    if not (isinstance(value, dict) and _STAT_KEYS <= set(value)):
        raise StageError(f"{where}: expected a statistic {{mean, sem, n}}, got {value!r}")
    out = normalised(value)
    out.update({k: int(value[k]) for k in _RUN_COUNTS if isinstance(value.get(k), (int, np.integer))})
    return out


# the one rule for continuum inputs is common.uncertainty.withheld_reason (``resolved``, ``screen``)
def unfailed_runs(values: dict) -> int:
    """The tensile runs of a direction (summary ``directions.<d>`` / ``normal``) whose peak stress is only
    where the loading stopped: neither failed nor yielded. ``runs_unfailed`` of the summary; an older
    summary without it: the strength's ``n`` less the runs that fractured or yielded (at least 0)."""
    if "runs_unfailed" in values:
        return int(values["runs_unfailed"])
    strength = values.get("ultimate_strength_N_per_m") or values.get("ultimate_strength_GPa") or {}
    n = int(strength.get("n", 0)) if isinstance(strength, dict) else 0
    return max(n - int(values.get("runs_failed", 0)) - int(values.get("runs_yielded", 0)), 0)


def _strength_flags(values: dict, stats: dict) -> dict:
    """``runs_unfailed`` and ``strength_from_unfailed`` of a tensile direction with a strength."""
    if not any(k in stats for k in ("ultimate_strength_N_per_m", "ultimate_strength_GPa")):
        return {}
    unfailed = unfailed_runs(values)
    return {"runs_unfailed": unfailed, "strength_from_unfailed": unfailed > 0}


# which statistics of a phase direction / an interface are continuum inputs: key -> (symbol, unit, positive)
_DIRECTION_INPUTS = {"youngs_modulus_N_per_m": ("E", "N/m", True), "youngs_modulus_GPa": ("E", "GPa", True),
                     "poisson_ratio": ("nu", "", False), "ultimate_strength_N_per_m": ("strength", "N/m", True),
                     "ultimate_strength_GPa": ("strength", "GPa", True)}
_ELASTIC_INPUTS = {"C11": True, "C22": True, "C12": False, "C66": True}  # constant -> must be positive


def _screen_inputs(stats: dict, label: str) -> dict:
    """``stats`` with each continuum input of :data:`_DIRECTION_INPUTS` screened (``label``: e.g. ``_x``)."""
    out = dict(stats)
    for key, (symbol, unit, positive) in _DIRECTION_INPUTS.items():
        if key in out:
            out[key] = screen(out[key], f"{symbol}{label}", unit, positive=positive)
    return out


def _stats(entry: dict, where: str) -> dict:
    return {key: _check_stat(value, f"{where}.{key}") for key, value in entry.items()
            if isinstance(value, dict) and "mean" in value}


def build_properties(md_summary: dict, systems: dict, settings: dict, *, source: str) -> dict:
    """``properties.json`` content from the MD summary (checked by ``common.contracts``) and the case's
    systems (pure function)."""
    md_systems = md_summary["systems"]
    props = {"format": PROPERTIES_FORMAT, "temperature_K": md_summary["temperature_K"], "phases": {}, "interfaces": {}}
    for name, system in systems.items():
        if name not in md_systems:
            raise StageError(f"{source}: no MD results for system '{name}'; rerun the md stage "
                             f"(`multiscale run CASE --stages md`)")
        result = md_systems[name]
        where = f"{source}: systems.{name}"
        provenance = dict(result["provenance"])
        if system["kind"] == "phase":
            directions = {}
            moduli = result.get("moduli_N_per_m")
            for direction, values in result.get("directions", {}).items():
                stats = phase_direction(values, (moduli or {}).get(direction), system["thickness_A"],
                                        f"{where}.directions.{direction}")
                missing = [k for k in settings["require"] if k not in stats]
                if missing:
                    raise StageError(f"{where}.directions.{direction} lacks {', '.join(missing)}; the continuum "
                                     f"model needs them (constitutive.require)")
                directions[direction] = stats
            if not directions:
                raise StageError(f"{where}: no tensile directions were measured")
            entry = {"thickness_A": system["thickness_A"], "directions": directions, "provenance": provenance}
            if result.get("elastic_N_per_m"):
                constants = _stats(result["elastic_N_per_m"], f"{where}.elastic_N_per_m")
                entry["elastic_N_per_m"] = {k: screen(v, k, "N/m", positive=_ELASTIC_INPUTS.get(k, False))
                                            for k, v in constants.items()}
            if result.get("thermal"):
                entry["thermal"] = _phase_thermal(result["thermal"], f"{where}.thermal")
            props["phases"][name] = entry
        else:
            values = result.get("normal", result)
            stats = _stats(values, f"{where}")
            missing = [k for k in settings["require_interface"] if k not in stats]
            if missing:
                raise StageError(f"{where} lacks {', '.join(missing)} (constitutive.require_interface)")
            key = "|".join(system["between"])
            props["interfaces"][key] = {"name": name, "between": list(system["between"]), "direction": "normal",
                                        **_screen_inputs(stats, " of the interface"), **_counts(values),
                                        **_strength_flags(values, stats),
                                        "sources": {k: "tensile" for k in SOURCES if k in stats},
                                        "provenance": provenance}
            runs = stripe_runs(result, name)
            if runs:
                props["interfaces"][key]["heterostructure_runs"] = runs
            if result.get("heterostructure"):
                stripes = _heterostructure(result["heterostructure"], f"{where}.heterostructure")
                props["interfaces"][key]["heterostructure"] = stripes
                cell = stripes.get("low_T", {}).get("compliance_cell")
                if cell:
                    props["interfaces"][key]["normal_compliance"] = interface_normal_compliance(
                        cell, stripes["low_T"], list(system["between"]), f"{where}.heterostructure.low_T")
            if result.get("thermal"):
                props["interfaces"][key]["thermal"] = _interface_thermal(
                    result["thermal"], props["phases"], system["between"], f"{where}.thermal")
    return props


def _counts(values: dict) -> dict:
    return {k: int(values[k]) for k in _COUNTS if k in values}


def stripe_runs(result: dict, name: str) -> dict | None:
    """The interface system's ``heterostructure_runs`` (md_gpu.tasks.stripes.run_record), or for a summary
    of an older md stage the same derived from ``provenance.blown_up`` (runs ``<name>_heterostructure_*``)
    and the stripe modulus's ``n``; None when the md stage ran no stripe cell."""
    if result.get("heterostructure_runs"):
        return result["heterostructure_runs"]
    blown = [b for b in result.get("provenance", {}).get("blown_up", [])
             if b.get("run", "").startswith(f"{name}_heterostructure_seed")]
    done = (result.get("heterostructure") or {}).get("youngs_modulus_normal_N_per_m", {}).get("n", 0)
    if not blown and not done:
        return None
    out = {"at_temperature": {"attempted": int(done) + len(blown), "blown_up": len(blown)}}
    if blown:
        out["blown_up"] = blown
    return out


def phase_direction(values: dict, moduli: dict | None, thickness_A: float, where: str) -> dict:
    """The properties of one phase direction: the tensile statistics ``values`` (summary
    ``directions.<d>``) with Young's modulus and Poisson's ratio taken from ``moduli`` (summary
    ``moduli_N_per_m.<d>``: ``{youngs_modulus (N/m), poisson_ratio}``) when given and finite, the GPa
    modulus at ``thickness_A`` (Å); ``sources`` records which protocol each property came from and the
    tensile modulus and Poisson's ratio are kept as ``tensile_*``. The continuum inputs (modulus,
    Poisson's ratio, strength) are :func:`screen`-ed; the strength is flagged when a run that did not
    fail contributed to it (:func:`unfailed_runs`)."""
    stats = _stats(values, where)
    tensile = {f"tensile_{k}": stats.pop(k) for k in _TENSILE_MODULI if k in stats}
    elastic = {}
    if moduli is not None:
        e = _check_stat(moduli.get("youngs_modulus"), f"{where}: moduli youngs_modulus")
        nu = _check_stat(moduli.get("poisson_ratio"), f"{where}: moduli poisson_ratio")
        if e["n"] > 0 and np.isfinite(e["mean"]) and np.isfinite(nu["mean"]):
            to_gpa = 1.0 / (0.1 * thickness_A)  # N/m -> GPa at the effective thickness (Å)
            elastic = {"youngs_modulus_N_per_m": e, "poisson_ratio": nu,
                       "youngs_modulus_GPa": {**e, "mean": e["mean"] * to_gpa,
                                              "sem": None if e["sem"] is None else e["sem"] * to_gpa}}
    if elastic:
        chosen = elastic
    else:  # no elastic run: the tensile test's own
        chosen = {k: tensile[f"tensile_{k}"] for k in ("youngs_modulus_N_per_m", "youngs_modulus_GPa", "poisson_ratio")
                  if f"tensile_{k}" in tensile}
    label = f"_{where.rsplit('.', 1)[-1]}" if "directions." in where else ""
    out = {**_screen_inputs({**chosen, **stats}, label), **tensile, **_counts(values), **_strength_flags(values, stats)}
    out["sources"] = {k: (src if elastic else "tensile") for k, src in SOURCES.items() if k in out}
    return out


def _phase_thermal(thermal: dict, where: str) -> dict:
    """A phase's thermal conductivity per direction (W/(m K), statistics over seeds, :func:`screen`-ed: one
    not positive by two standard errors is withheld, not a usable material property) and its provenance."""
    per_direction = thermal.get("conductivity_W_per_mK")
    if not isinstance(per_direction, dict) or not per_direction:
        raise StageError(f"{where}.conductivity_W_per_mK: expected a statistic per direction, got {per_direction!r}")
    entry = {"conductivity_W_per_mK": {d: screen(_check_stat(v, f"{where}.conductivity_W_per_mK.{d}"),
                                                 f"kappa_{d}", "W/(m K)")
                                       for d, v in per_direction.items()}}
    for key in ("method", "length_dependence", "provenance"):
        if key in thermal:
            entry[key] = thermal[key]
    return entry


def _heterostructure(entry: dict, where: str) -> dict:
    """The MD stripe heterostructure (md_gpu.heterostructure): its modulus across the stripes (N/m),
    elastic constants and geometry, which the fem stage rebuilds for the consistency check, and
    (``low_T``) the same at low temperature with its phases' constants from the same MTP.
    Its shape is ``common.contracts.shapes.Heterostructure``, checked when the summary was read."""
    out = {"youngs_modulus_normal_N_per_m": _check_stat(entry["youngs_modulus_normal_N_per_m"],
                                                        f"{where}.youngs_modulus_normal_N_per_m"),
           "elastic_N_per_m": _stats(entry["elastic_N_per_m"], f"{where}.elastic_N_per_m"),
           "geometry": entry["geometry"]}
    low = entry.get("low_T")
    if low is not None:  # the like-for-like twin's inputs (md_gpu.heterostructure.summarize_low_t)
        w = f"{where}.low_T"
        out["low_T"] = {"temperature_K": float(low["temperature_K"]),
                        "youngs_modulus_normal_N_per_m": _check_stat(low["youngs_modulus_normal_N_per_m"],
                                                                     f"{w}.youngs_modulus_normal_N_per_m"),
                        "elastic_N_per_m": _stats(low["elastic_N_per_m"], f"{w}.elastic_N_per_m"),
                        "phases_elastic_N_per_m": {name: _stats(c, f"{w}.phases_elastic_N_per_m.{name}")
                                                   for name, c in low["phases_elastic_N_per_m"].items()}}
        cell = low.get("compliance_cell")
        if cell is not None:
            out["low_T"]["compliance_cell"] = {
                "youngs_modulus_normal_N_per_m": _check_stat(cell["youngs_modulus_normal_N_per_m"],
                                                             f"{w}.compliance_cell.youngs_modulus_normal_N_per_m"),
                "elastic_N_per_m": _stats(cell["elastic_N_per_m"], f"{w}.compliance_cell.elastic_N_per_m"),
                "geometry": cell["geometry"]}
    return out


def interface_normal_compliance(cell: dict, low: dict, between: list, where: str) -> dict:
    """The interfaces' normal compliance ``R`` (nm per N/m: the jump of the normal displacement per unit
    normal traction) from a stripe cell's modulus across its stripes (``cell``, N/m) and its phases'
    elastic constants from the same MTP at the same temperature (``low["phases_elastic_N_per_m"]``).

    The cell is a laminate of period ``L`` with two interfaces per period: ``1/E = 1/E_laminate + 2 R / L``
    (fem.laminate.laminate_modulus), so ``R = (1/E - 1/E_laminate) L / 2``; ``geometry.fraction_B`` is the
    area fraction of ``between[1]``. ``equivalent_length_nm``: ``R`` times each phase's modulus across
    the interface, the width of that phase that is as compliant as the interface (like a Kapitza length).
    """
    from fem.laminate import laminate_modulus, stiffness_of

    constants = low["phases_elastic_N_per_m"]
    missing = [p for p in between if p not in constants]
    if missing:
        raise StageError(f"{where}.phases_elastic_N_per_m: no constants for {', '.join(missing)}, which the "
                         "interface-compliance cell needs (rerun the md stage)")
    period, f = float(cell["geometry"]["period_nm"]), float(cell["geometry"]["fraction_B"])
    stiffness = {p: stiffness_of(constants[p]) for p in between}
    laminate = laminate_modulus([(1.0 - f, stiffness[between[0]]), (f, stiffness[between[1]])])
    E = cell["youngs_modulus_normal_N_per_m"]
    R = 0.5 * period * (1.0 / E["mean"] - 1.0 / laminate)
    sem = None if E["sem"] is None else 0.5 * period * E["sem"] / E["mean"] ** 2
    stat = screen({"mean": R, "sem": sem, "n": E["n"]}, "R", "nm per N/m", positive=False)  # R < 0: a stiff interface
    return {"nm_per_N_per_m": stat,
            "temperature_K": low["temperature_K"],
            "equivalent_length_nm": {p: R / float(np.linalg.inv(stiffness[p])[1, 1]) for p in between},
            "method": "1/E = 1/E_laminate + 2 R / L of a periodic stripe cell (md.heterostructure.compliance_periods "
                      "times the checked one), its phases' constants from the same MTP at the same temperature",
            "cell": {"period_nm": period, "fraction_B": f, "n_atoms": cell["geometry"].get("n_atoms"),
                     "youngs_modulus_normal_N_per_m": E, "laminate_N_per_m": laminate}}


def kapitza_length_nm(conductivity: dict, conductance: dict) -> dict:
    """Kapitza length kappa / G (nm) with its standard error (relative errors added in quadrature; None when
    either has none: one seed).

    conductivity: statistic of kappa (W/(m K)); conductance: statistic of G (W/(m^2 K)), G > 0.
    """
    kappa, g = conductivity["mean"], conductance["mean"]
    mean = kappa / g * 1e9
    n = min(conductivity["n"], conductance["n"])
    if conductivity["sem"] is None or conductance["sem"] is None:
        return {"mean": mean, "sem": None, "n": n}
    rel = ((conductivity["sem"] / kappa) ** 2 if kappa else 0.0) + (conductance["sem"] / g) ** 2
    return {"mean": mean, "sem": abs(mean) * rel ** 0.5, "n": n}


def _interface_thermal(thermal: dict, phases: dict, between, where: str) -> dict:
    """The interface's conductance G (W/(m^2 K)), temperature jump and, per phase with a measured
    conductivity, its Kapitza length kappa/G (nm) with kappa along the interface normal (the cell's y axis)
    or the mean over directions when y was not measured.

    A G that the runs did not resolve (not positive by two standard errors: too short a run, too small
    a temperature jump) is withheld (:func:`screen`): the FE model then treats the interface as it is
    told for a conductance it cannot use (``fem.thermal.interface_fallback``), instead of using noise as
    a resistance, and there is no Kapitza length; nor from a withheld conductivity.
    """
    if "conductance_W_per_m2K" not in thermal:
        raise StageError(f"{where}: no conductance_W_per_m2K (the interface NEMD runs did not finish)")
    entry = {k: _check_stat(v, f"{where}.{k}") for k, v in thermal.items() if isinstance(v, dict) and "mean" in v}
    g = entry["conductance_W_per_m2K"] = screen(entry["conductance_W_per_m2K"], "G", "W/(m^2 K)")
    if "withheld" in g:
        g["withheld"] += ("; run the interface NEMD longer (md.thermal.interface.production_steps), with more seeds "
                          "or a larger delta_T_K")
    else:
        kapitza = {}
        for phase in between:
            kappas = phases.get(phase, {}).get("thermal", {}).get("conductivity_W_per_mK", {})
            if kappas:
                sems = [v["sem"] for v in kappas.values()]
                kappa = kappas.get("y") or {"mean": sum(v["mean"] for v in kappas.values()) / len(kappas),
                                            "sem": None if None in sems else max(sems),
                                            "n": min(v["n"] for v in kappas.values())}
                if resolved(kappa) and "withheld" not in kappa:  # no Kapitza length from a conductivity lost in noise
                    kapitza[phase] = kapitza_length_nm(kappa, g)
        if kapitza:
            entry["kapitza_length_nm"] = kapitza
    if "provenance" in thermal:
        entry["provenance"] = thermal["provenance"]
    return entry


def record_potentials(props: dict) -> dict:
    """Add ``potential_sha256`` (hex digest of the file's bytes) to every ``provenance`` of ``props``
    (phases and interfaces) whose ``potential`` names a file that exists: the number then names the
    exact potential (MTP or NEP) the MD ran, not only its path. Returns ``props``, changed in place."""
    from .runner import file_hash  # here: the runner imports the stages

    for entry in (*props["phases"].values(), *props["interfaces"].values()):
        potential = entry.get("provenance", {}).get("potential")
        if potential and Path(potential).is_file():
            entry["provenance"]["potential_sha256"] = file_hash(Path(potential))
    return props


def run_constitutive(settings: dict, ctx) -> dict:
    """Stage entry point: write ``properties.json`` from the md stage's ``summary.json``, with the
    sha256 of each potential file its provenance names (:func:`record_potentials`)."""
    source = ctx.stage_dir("md") / "summary.json"
    props = record_potentials(build_properties(read_summary(source), ctx.systems, settings, source=str(source)))
    if ctx.is_root:
        write_properties(ctx.out_dir / "properties.json", props)
    return {"phases": sorted(props["phases"]), "interfaces": sorted(props["interfaces"]),
            "temperature_K": props["temperature_K"]}
