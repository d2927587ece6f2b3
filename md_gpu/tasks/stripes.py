"""The stripe heterostructure of each interface system, run with its MTP: the MD half of the FE-vs-MD
consistency check (:mod:`md_gpu.heterostructure` holds the cell, the runs and the physics). The stripe
cell is built from the 0 K cells of the two phases of the interface system's ``between`` [A, B].

Tasks of an interface system with ``md.heterostructure.enabled``:

- ``heterostructure``: elastic constants of the stripe cell at ``md.temperature_K``, one per seed of
  ``md.heterostructure.seeds`` (``<interface>_heterostructure_seed<k>``; forward differences);
- with ``md.heterostructure.low_temperature`` and ``md.elastic.low_temperature_K`` > 0, once each at that
  temperature: ``heterostructure_low_T`` (the same cell, second-order differences,
  ``<interface>_heterostructure_low_T``), ``heterostructure_compliance_low_T`` (stripes
  ``compliance_periods`` times as wide, ``<interface>_heterostructure_compliance_low_T``: the constitutive
  stage derives the interfaces' normal compliance from it), and ``heterostructure_phase_low_T`` (each
  phase the interface joins, in its own cell with the interface MTP: ``<interface>_<phase>_elastic_low_T``).

No run files; while a task runs, its equilibration and strained cells checkpoint to ``<name>.<part>.ckpt.npz``
(:func:`md_gpu.protocols.elastic_constants`), so an interrupted task resumes (:mod:`.common`).

summary.json, per interface system (N/m; :func:`md_gpu.heterostructure.summarize` and
:func:`~md_gpu.heterostructure.summarize_low_t` document the keys)::

    "heterostructure": {"elastic_N_per_m", "youngs_modulus_normal_N_per_m", "geometry",
                        "low_T": {"temperature_K", "elastic_N_per_m", "youngs_modulus_normal_N_per_m",
                                  "phases_elastic_N_per_m", "compliance_cell"}}

    "heterostructure_runs": {"at_temperature": {"attempted", "blown_up"},
                             "low_T": {"attempted", "blown_up"},          (the low-temperature runs, when planned)
                             "blown_up": [{"run", "reason"}]}             (when some blew up)

``heterostructure`` is there only when at least one stripe run at temperature finished (its statistics
carry the run counts ``attempted``, ``failed``, ``blown_up``; one seed: ``sem`` null); ``low_T`` only when
the low-temperature stripe run and every joined phase's run finished (the twin must not mix potentials).
``heterostructure_runs`` is always there for an interface system with stripe runs, so that a check
whose stripe runs blew up says so (multiscale.checks, fem.consistency) instead of reading as a case
without them. Runs that blew up are also named in ``provenance.blown_up``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .. import heterostructure
from ..analysis import run_counts
from ..errors import MDRunError, MDSetupError
from . import elastic
from .common import blown_up, load, progress_printer, resumable

KINDS = ("heterostructure", "heterostructure_low_T", "heterostructure_compliance_low_T",
         "heterostructure_phase_low_T")
SUMMARY_ORDER = 20
SETTINGS = {"heterostructure": heterostructure.HETEROSTRUCTURE_SETTINGS}


def check(settings: dict) -> None:
    heterostructure.check_settings(settings["heterostructure"])


def plan(settings: dict, system) -> list[dict]:
    """The tasks of one interface system (module docstring); each stripe task carries ``between`` [A, B] and
    ``phase_structures``, the two phases' 0 K cell files in that order."""
    h = settings["heterostructure"]
    if not (system.is_interface and h["enabled"]):
        return []
    base, name = system.base, system.name
    between = list(system.entry.get("between", []))
    if len(between) != 2 or any(phase not in system.structures for phase in between):
        raise MDSetupError(f"md.heterostructure: systems.{name}.between {between} must name the two phases of the "
                           f"case the interface joins (systems: {', '.join(system.structures)})")
    stripe = {**base, "direction": "normal", "seed": 0, "between": between,
              "phase_structures": [system.structures[phase] for phase in between]}
    tasks = [{**stripe, "kind": "heterostructure", "seed": seed, "name": f"{name}_heterostructure_seed{seed}"}
             for seed in range(h["seeds"])]
    if h["low_temperature"] and elastic.low_temperature(settings):
        tasks.append({**stripe, "kind": "heterostructure_low_T", "name": f"{name}_heterostructure_low_T"})
        if h["compliance_periods"] > 0:
            tasks.append({**stripe, "kind": "heterostructure_compliance_low_T",
                          "name": f"{name}_heterostructure_compliance_low_T"})
        # the phases' own cells with the interface MTP (base["potential"]): the FE twin's inputs
        tasks += [{**base, "kind": "heterostructure_phase_low_T", "direction": None, "seed": 0, "phase": phase,
                   "structure": system.structures[phase], "name": f"{name}_{phase}_elastic_low_T"}
                  for phase in between]
    return tasks


def run(task: dict) -> dict:
    """``result``: :func:`md_gpu.heterostructure.run`'s dict for the stripe cells; the phase cells'
    {C11, C22, C12, C66} (N/m) as in :mod:`.elastic`. A run that blows up is reported, not raised."""
    from ..structures import load_structure

    ff, atoms, run_settings, _ = load(task)
    settings = task["settings"]
    if task["kind"] != "heterostructure":
        run_settings = replace(run_settings, temperature_K=settings["elastic"]["low_temperature_K"])
    try:
        if task["kind"] == "heterostructure_phase_low_T":
            return elastic.measure(task, ff, atoms, run_settings)
        h = settings["heterostructure"]
        if task["kind"] == "heterostructure_compliance_low_T":
            h = heterostructure.compliance_cell_settings(h)
        phases = [(phase, load_structure(path, key=f"md {task['name']} (phase {phase})"))
                  for phase, path in zip(task["between"], task["phase_structures"])]
        # at low temperature the noise is small enough for the second-order difference (no strain bias)
        scheme = "tension" if task["kind"] == "heterostructure" else "tension2"
        prefix = Path(task["out_dir"]) / task["name"]
        return {**task, "result": heterostructure.run(ff, h, phases, settings["elastic"], run_settings,
                                                     relax_steps=settings["stability"]["relax_steps"],
                                                     scheme=scheme, checkpoints=prefix,
                                                     resume=resumable(task, prefix), log=progress_printer(task))}
    except MDRunError as exc:
        return blown_up(task, exc)


def run_record(results: list[dict]) -> dict:
    """``heterostructure_runs`` of one interface system (module docstring) from all its stripe-module results."""
    def counts(kinds) -> dict:
        mine = [r for r in results if r["kind"] in kinds]
        return {"attempted": len(mine), "blown_up": sum(bool(r.get("blew_up")) for r in mine)}

    record = {"at_temperature": counts(("heterostructure",))}
    low = counts(KINDS[1:])
    if low["attempted"]:
        record["low_T"] = low
    blown = [{"run": r["name"], "reason": r["blew_up"]} for r in results if r.get("blew_up")]
    if blown:
        record["blown_up"] = blown
    return record


def summarise(results: list[dict], settings: dict) -> dict:
    """``{interface: {"heterostructure_runs": ..., "heterostructure": ...}}`` (module docstring)."""
    out = {}
    for system in dict.fromkeys(r["system"] for r in results):
        mine = [r for r in results if r["system"] == system]
        record = run_record(mine)
        out[system] = {"heterostructure_runs": record}
        done = [r for r in mine if not r.get("blew_up")]
        stripes = [r for r in done if r["kind"] == "heterostructure"]
        if not stripes:  # every stripe run blew up: heterostructure_runs says so
            continue
        last = {r["kind"]: r for r in done}
        entry = heterostructure.summarize([r["result"] for r in stripes], stripes[-1].get("between", []))
        at_t = record["at_temperature"]
        for stat in [entry["youngs_modulus_normal_N_per_m"], *entry["elastic_N_per_m"].values()]:
            stat.update(run_counts(stat["n"], at_t["attempted"], at_t["blown_up"]))
        phases = {r["phase"]: r["result"] for r in done if r["kind"] == "heterostructure_phase_low_T"}
        stripe_low_t = last.get("heterostructure_low_T")
        if stripe_low_t and set(phases) >= set(stripes[-1].get("between", [])):
            compliance = last.get("heterostructure_compliance_low_T")
            entry["low_T"] = heterostructure.summarize_low_t(stripe_low_t["result"], phases,
                                                             settings["elastic"]["low_temperature_K"],
                                                             compliance["result"] if compliance else None)
        out[system]["heterostructure"] = entry
    return out
