"""In-plane elastic constants C11, C22, C12, C66 of each phase (:func:`md_gpu.protocols.elastic_constants`,
central differences of the stress at strains of +-``md.elastic.delta``).

Tasks: ``elastic`` at ``md.temperature_K``, one per seed (``<phase>_elastic_seed<k>``), and ``elastic_low_T``
once (seed 0) at ``md.elastic.low_temperature_K`` (``<phase>_elastic_low_T``), near the 0 K stiffness of the
reference engine. No files: the runs are short and are not checkpointed.

summary.json, per phase (``N_per_m`` for sheets, ``GPa`` for bulk cells; ``{mean, sem, n}`` over seeds)::

    "elastic_N_per_m": {"C11": {mean, sem, n}, "C22": ..., "C12": ..., "C66": ...}
    "elastic_low_T_N_per_m": {"C11": {mean, sem, n}, ..., "temperature_K": float}
"""
from __future__ import annotations

from dataclasses import replace

from ..analysis import mean_sem
from .common import load, progress_printer

KINDS = ("elastic", "elastic_low_T")
SUMMARY_ORDER = 40
CONSTANTS = ("C11", "C22", "C12", "C66")

SETTINGS = {
    "elastic": {
        "enabled": (bool, True, "also measure C11, C22, C12, C66 at temperature_K (one run per seed)"),
        "delta": (float, 0.005, "strain amplitude of the finite differences"),
        "sample_steps": (int, 2000, "steps averaged per strained cell"),
        "low_temperature_K": (float, 1.0, "also measure them once (seed 0) at this temperature (K), near the "
                                          "reference engine's 0 K stiffness (0: off)"),
    },
}


def low_temperature(settings: dict) -> bool:
    """Whether the runs at ``md.elastic.low_temperature_K`` are on."""
    return settings["elastic"]["enabled"] and settings["elastic"]["low_temperature_K"] > 0


def plan_seed(settings: dict, system, seed: int) -> list[dict]:
    if system.is_interface or not settings["elastic"]["enabled"]:
        return []
    return [{**system.base, "kind": "elastic", "direction": None, "seed": seed,
             "name": f"{system.name}_elastic_seed{seed}"}]


def plan(settings: dict, system) -> list[dict]:
    if system.is_interface or not low_temperature(settings):
        return []
    return [{**system.base, "kind": "elastic_low_T", "direction": None, "seed": 0,
             "name": f"{system.name}_elastic_low_T"}]


def run(task: dict) -> dict:
    """``result``: {C11, C22, C12, C66} in ``unit`` ("N/m" or "GPa"), measured at ``temperature_K``.
    A blow-up raises :class:`md_gpu.errors.MDRunError` (the stage stops)."""
    ff, atoms, run_settings, _ = load(task)
    if task["kind"] == "elastic_low_T":
        run_settings = replace(run_settings, temperature_K=task["settings"]["elastic"]["low_temperature_K"])
    return measure(task, ff, atoms, run_settings)


def measure(task: dict, ff, atoms, run_settings) -> dict:
    """The elastic-constant run of ``task`` on ``atoms`` with ``md.elastic`` (also the stripe module's
    phase cells)."""
    from ..protocols import elastic_constants

    e = task["settings"]["elastic"]
    c = elastic_constants(ff, atoms, delta=e["delta"], sample_steps=e["sample_steps"], settings=run_settings,
                          log=progress_printer(task))
    return {**task, "result": {k: c[k] for k in CONSTANTS}, "unit": c["unit"], "temperature_K": c["temperature_K"]}


def summarise(results: list[dict], settings: dict) -> dict:
    """``{phase: {"elastic_<unit>": ..., "elastic_low_T_<unit>": ...}}`` (module docstring)."""
    out: dict = {}
    for kind, suffix in (("elastic", ""), ("elastic_low_T", "_low_T")):
        by_system: dict = {}
        for r in results:
            if r["kind"] == kind:
                by_system.setdefault(r["system"], []).append(r)
        for system, runs in by_system.items():
            unit = "N_per_m" if runs[0]["unit"] == "N/m" else "GPa"  # bulk test cells: GPa
            stats = {k: mean_sem([r["result"][k] for r in runs]) for k in CONSTANTS}
            if suffix:
                stats["temperature_K"] = runs[0]["temperature_K"]
            out.setdefault(system, {})[f"elastic{suffix}_{unit}"] = stats
    return out
