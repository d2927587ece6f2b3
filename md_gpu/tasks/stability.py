"""Does each structure survive at ``md.temperature_K``? One NVT run of ``md.stability.steps`` per system from
its 0 K structure (:func:`md_gpu.protocols.stability.structure_stability`), after a 0 K relaxation with the
MTP (``md.stability.relax_steps`` FIRE steps, :func:`md_gpu.protocols.relaxation.relaxation_check`) that
looks for holes of the potential next to the structure.

Task: ``stability`` (``<system>_stability``, seed 0); file ``<system>_stability_final.extxyz`` (the last
snapshot); while it runs, checkpoints ``<system>_stability.nvt<k>.ckpt.npz`` of the run's chunks, from which
an interrupted task resumes (:mod:`.common`). A structure that is not retained, or blows up, does not stop
the stage: the report's checks show it.

summary.json, per system::

    "stability": {"retained": bool, "changed_fraction": float (fraction of atoms whose coordination number
                  changed), "coordination_start": {n: count}, "coordination_end": {...},
                  "energy_drift_meV_per_atom": float, "steps": int, "temperature_K": float, ...,
                  "relaxation": {...}}          (or {"retained": false, "blew_up": reason})
"""
from __future__ import annotations

from ..errors import MDRunError
from .common import load, progress_printer, resumable

KINDS = ("stability",)
SUMMARY_ORDER = 10

SETTINGS = {
    "stability": {
        "enabled": (bool, True, "one NVT run per system at temperature_K from its 0 K structure: does the "
                                "structure keep its coordination numbers (md_gpu.protocols.stability)?"),
        "steps": (int, 20000, "NVT steps of the check"),
        "max_changed_fraction": (float, 0.1, "the structure counts as kept while at most this fraction of atoms "
                                             "changed coordination number"),
        "relax_steps": (int, 500, "FIRE steps of the 0 K relaxation that comes first and looks for holes of "
                                  "the potential (md_gpu.protocols.relaxation; 0: off)"),
    },
}


def check(settings: dict) -> None:
    st = settings["stability"]
    if st["steps"] < 10:
        raise ValueError(f"md.stability.steps: {st['steps']} must be >= 10 (the check samples 10 snapshots)")
    if not 0 <= st["max_changed_fraction"] <= 1:
        raise ValueError(f"md.stability.max_changed_fraction: {st['max_changed_fraction']} must be in [0, 1]")
    if st["relax_steps"] < 0:
        raise ValueError(f"md.stability.relax_steps: {st['relax_steps']} must be >= 0 (0: no 0 K relaxation)")


def plan(settings: dict, system) -> list[dict]:
    if not settings["stability"]["enabled"]:
        return []
    return [{**system.base, "kind": "stability", "direction": None, "seed": 0, "name": f"{system.name}_stability"}]


def run(task: dict) -> dict:
    """``result``: the protocol's dict (module docstring), with ``relaxation`` when one ran."""
    from ..protocols.relaxation import describe as describe_relaxation
    from ..protocols.relaxation import relaxation_check
    from ..protocols.stability import structure_stability

    ff, atoms, run_settings, prefix = load(task)
    st = task["settings"]["stability"]
    relaxation = None
    if st["relax_steps"] > 0:
        relaxation = relaxation_check(ff, atoms, steps=st["relax_steps"])
        print(f"[md] {task['name']}: {describe_relaxation(relaxation)}", flush=True)
    try:
        result = structure_stability(ff, atoms, steps=st["steps"], max_changed=st["max_changed_fraction"],
                                     settings=run_settings, final_path=f"{prefix}_final.extxyz",
                                     checkpoints=prefix, resume=resumable(task, prefix), log=progress_printer(task))
    except MDRunError as exc:  # a blow-up is the clearest way of not keeping the structure
        result = {"retained": False, "blew_up": str(exc).split(" (at ")[0]}
    else:
        if not result["retained"]:
            print(f"[md] {task['name']}: the structure did not survive {result['steps']} steps at "
                  f"{result['temperature_K']:g} K: {result['changed_fraction']:.0%} of the atoms changed "
                  f"coordination (energy {result['energy_drift_meV_per_atom']:+.1f} meV/atom); its MD "
                  f"properties belong to another structure (see {prefix.name}_final.extxyz)", flush=True)
    if relaxation:
        result["relaxation"] = relaxation
    return {**task, "result": result}


def summarise(results: list[dict], settings: dict) -> dict:
    """``{system: {"stability": result}}`` (module docstring)."""
    return {r["system"]: {"stability": dict(r["result"])} for r in results}
