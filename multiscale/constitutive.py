"""The ``constitutive`` stage: MD results -> ``properties.json`` (docs/properties.md).

Data flow: read ``runs/md/summary.json`` (per system: the statistics over seeds
of each tensile direction and the elastic constants, 2D N/m), attach each
phase's effective thickness from ``case.yaml`` and the provenance of every
number (potential, MD run files, strain rate, size), check that every phase
direction has the quantities the continuum model needs, and write
``properties.json``. This is the one place where MD output becomes continuum
input; ``fem/`` reads only this file.
"""
from __future__ import annotations

import json

from .atomic import write_json
from .errors import StageError

FORMAT = "multiscale-properties/1"

CONSTITUTIVE_SETTINGS = {
    "require": (list, ["youngs_modulus_N_per_m", "poisson_ratio", "ultimate_strength_N_per_m", "failure_strain"],
                "quantities every tensile direction of every phase must have"),
    "require_interface": (list, ["ultimate_strength_N_per_m"], "quantities every interface must have"),
}

_STAT_KEYS = {"mean", "sem", "n"}


def _check_stat(value, where: str) -> dict:
    if not (isinstance(value, dict) and _STAT_KEYS <= set(value)):
        raise StageError(f"{where}: expected a statistic {{mean, sem, n}}, got {value!r}")
    return {"mean": float(value["mean"]), "sem": float(value["sem"]), "n": int(value["n"])}


def _stats(entry: dict, where: str) -> dict:
    return {key: _check_stat(value, f"{where}.{key}") for key, value in entry.items()
            if isinstance(value, dict) and "mean" in value}


def build_properties(md_summary: dict, systems: dict, settings: dict, *, source: str) -> dict:
    """``properties.json`` content from the MD summary and the case's systems (pure function)."""
    md_systems = md_summary.get("systems", {})
    props = {"format": FORMAT, "temperature_K": md_summary.get("temperature_K"), "phases": {}, "interfaces": {}}
    for name, system in systems.items():
        if name not in md_systems:
            raise StageError(f"{source}: no MD results for system '{name}'; rerun the md stage "
                             f"(`multiscale run CASE --stages md`)")
        result = md_systems[name]
        where = f"{source}: systems.{name}"
        provenance = dict(result.get("provenance", {}))
        if system["kind"] == "phase":
            directions = {}
            for direction, values in result.get("directions", {}).items():
                stats = _stats(values, f"{where}.directions.{direction}")
                missing = [k for k in settings["require"] if k not in stats]
                if missing:
                    raise StageError(f"{where}.directions.{direction} lacks {', '.join(missing)}; the continuum "
                                     f"model needs them (constitutive.require)")
                directions[direction] = stats
            if not directions:
                raise StageError(f"{where}: no tensile directions were measured")
            entry = {"thickness_A": system["thickness_A"], "directions": directions, "provenance": provenance}
            if result.get("elastic_N_per_m"):
                entry["elastic_N_per_m"] = _stats(result["elastic_N_per_m"], f"{where}.elastic_N_per_m")
            props["phases"][name] = entry
        else:
            values = result.get("normal", result)
            stats = _stats(values, f"{where}")
            missing = [k for k in settings["require_interface"] if k not in stats]
            if missing:
                raise StageError(f"{where} lacks {', '.join(missing)} (constitutive.require_interface)")
            key = "|".join(system["between"])
            props["interfaces"][key] = {"name": name, "between": list(system["between"]), "direction": "normal",
                                        **stats, "provenance": provenance}
    return props


def run_constitutive(settings: dict, ctx) -> dict:
    """Stage entry point: write ``properties.json`` from the md stage's ``summary.json``."""
    source = ctx.stage_dir("md") / "summary.json"
    if not source.is_file():
        raise StageError(f"{source} is missing: the md stage did not write its summary; rerun it with --force")
    props = build_properties(json.loads(source.read_text()), ctx.systems, settings, source=str(source))
    if ctx.is_root:
        write_json(ctx.out_dir / "properties.json", props)
    return {"phases": sorted(props["phases"]), "interfaces": sorted(props["interfaces"]),
            "temperature_K": props["temperature_K"]}
