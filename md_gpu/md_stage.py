"""The ``md`` stage: tensile tests (and elastic constants) of every system x direction x seed.

Data flow::

    runs/fit/<system>.mtp + training.structures.build(systems.<name>.structure)
      --ctx.map over MPI ranks--> one task per (system, direction, seed) [+ (system, 'elastic', seed)]
                                  [+ (phase, 'elastic_low_T'): once at md.elastic.low_temperature_K]
      --> runs/md/<system>_<direction>_seed<k>.h5 (+ .extxyz, checkpoints while running)
      --> runs/md/summary.json: per system and direction the mean, sem and n over seeds (2D units, N/m)

    with md.thermal.enabled, thermal transport (md_gpu.protocols.thermal) on the same farm:
      (phase, 'hnemd', direction, seed)            -> <phase>_hnemd_<direction>_seed<k>.h5
      (phase, 'nemd', length L along x, seed)      -> <phase>_nemd_L<L>_seed<k>.h5
      (interface, 'interface_nemd', seed)          -> <interface>_nemd_seed<k>.h5
      --> summary.json systems.<name>.thermal (below); <phase>_hnemd.png, <phase>_thermal_length.png,
          <interface>_thermal_profile.png

Phases are pulled along every direction of ``md.directions``; an interface
system is pulled perpendicular to its interface lines (``normal``, the y axis of
the ``training.structures`` interface cell). ``summary.json`` is what the
``constitutive`` stage reads (see docs/properties.md and docs/md.md)::

    {"temperature_K": 300.0, "strain_rate_per_s": 1e9,
     "systems": {"graphene": {"directions": {"x": {"youngs_modulus_N_per_m": {mean, sem, n}, ...}},
                              "elastic_N_per_m": {"C11": {...}, ...},
                              "elastic_low_T_N_per_m": {"C11": {...}, ..., "temperature_K": 1.0},
                              "provenance": {...}},
                 "interface": {"normal": {...}, "provenance": {...}}}}

With ``md.stability.enabled`` (default) every system also gets one NVT run of ``md.stability.steps`` from
its 0 K structure (``<system>_stability``, ``md_gpu.protocols.stability``) and a ``stability`` entry: the
fraction of atoms whose coordination number changed, the coordination histograms before and after,
the potential energy drift and ``retained``; the last snapshot is ``<system>_stability_final.extxyz``.
A structure that is not retained does not stop the stage: the report's checks show it. Before the NVT
run, a 0 K relaxation with the MTP (``md.stability.relax_steps``, md_gpu.protocols.relaxation) looks
for holes of the potential next to the structure: ``stability.relaxation``.

With ``md.heterostructure.enabled`` every interface system also runs its MTP on a periodic stripe
heterostructure of a few hundred to thousands of atoms (``md_gpu.heterostructure``: elastic constants
at temperature, one run per seed, ``<interface>_heterostructure_seed<k>``) and gets a
``heterostructure`` entry: the modulus across the stripes and the geometry, which the fem stage
rebuilds for the FE half of the consistency check. With ``md.heterostructure.low_temperature`` (default)
and ``md.elastic.low_temperature_K`` > 0 the stripe cell is also run once at that temperature
(``<interface>_heterostructure_low_T``), and so are the cells of the two phases it joins with the same
interface MTP (``<interface>_<phase>_elastic_low_T``): ``heterostructure.low_T`` holds the stripe's
modulus and those phase constants, the like-for-like inputs of the FE twin (no thermal ripples, one
potential). With ``md.heterostructure.compliance_periods`` (default 2) a stripe cell that many times as
wide runs the same way (``<interface>_heterostructure_compliance_low_T``, ``low_T.compliance_cell``): the
constitutive stage derives the interfaces' normal compliance from it.

With ``md.thermal.enabled`` each system also gets a ``thermal`` entry (docs/md.md, "Thermal transport in the md stage")::

    phase:     {"conductivity_W_per_mK": {"x": {mean, sem, n}, "y": {...}}, "method": "hnemd",
                "length_dependence": {"x": {"length_nm": [...], "n_atoms": [...],
                                            "conductivity_W_per_mK": [{mean, sem, n}, ...],
                                            "extrapolated_W_per_mK": {"mean", "sem"}}},
                "provenance": {"runs": [...h5...], "temperature_K", "n_atoms", "thickness_A", ...}}
    interface: {"conductance_W_per_m2K": {mean, sem, n}, "temperature_jump_K": {...},
                "heat_flux_W_per_m2": {...}, "provenance": {...}}

The thermal runs of an interface use the mean ``thickness_A`` of the two phases it joins
(``between``): the interface cell is half of each.

A checkpoint left in the stage's scratch folder by an interrupted run is resumed when the run's
settings and potential are unchanged (``<name>.task.json``); otherwise it is deleted.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from . import heterostructure
from .analysis import mean_sem
from .errors import MDRunError, MDSetupError

def _bath_settings(axis: str) -> dict:
    """The heat-bath keys shared by md.thermal.nemd and md.thermal.interface."""
    return {"delta_T_K": (float, 40.0, "hot minus cold bath temperature (K)"),
            "bath_width_A": (float, 5.0, f"width of each bath along {axis} (Å)"),
            "production_steps": (int, 200000, "NEMD production steps (after a transient of a quarter of them)")}


MD_SETTINGS = {
    "temperature_K": (float, 300.0, "temperature of all MD runs (K)"),
    "dt_fs": (float, 1.0, "time step (fs)"),
    "directions": (list, ["x", "y"], "in-plane tensile directions of the phases (x, y)"),
    "seeds": (int, 3, "independent random seeds per (system, direction)"),
    "strain_rate_per_s": (float, 1e9, "engineering strain rate (1/s)"),
    "max_strain": (float, 0.3, "stop the tension here if the sample has not failed"),
    "transverse": (str, "stress", "transverse in-plane axis: 'stress' (held at zero) or 'strain' (fixed)"),
    "fit_max_strain": (float, 0.01, "Young's modulus: linear fit from 0 to this strain"),
    "failure_min_strain": (float, 0.02, "a tensile run ends at failure (stress below half its peak) only past "
                                        "this strain; raise it for soft systems in small, noisy cells"),
    "equilibrate_steps": (int, 10000, "NPT equilibration steps before the tension"),
    "thermostat": (str, "bussi", "bussi | langevin"),
    "thermostat_tau_fs": (float, 100.0, "thermostat time constant (fs)"),
    "barostat_tau_fs": (float, 500.0, "barostat time constant (fs)"),
    "supercell": (list, [1, 1], "repeats of the built structure along x and y"),
    "short_range_core": (bool, True, "MTP pairs closer than the training data's shortest distance of their species "
                                     "pair (fit/<system>_fit.json) or min_dist: bounded MTP + repulsive wall "
                                     "(md_gpu/forcefields/mtp.py); the exact MTP above"),
    "thermo_every": (int, 10, "steps between thermo rows"),
    "traj_every": (int, 0, "steps between extxyz frames (0: none)"),
    "checkpoint_every": (int, 2000, "steps between checkpoints (0: none)"),
    "elastic": {
        "enabled": (bool, True, "also measure C11, C22, C12, C66 at temperature_K (one run per seed)"),
        "delta": (float, 0.005, "strain amplitude of the finite differences"),
        "sample_steps": (int, 2000, "steps averaged per strained cell"),
        "low_temperature_K": (float, 1.0, "also measure them once (seed 0) at this temperature (K), near the "
                                          "reference engine's 0 K stiffness (0: off)"),
    },
    "extrapolation": {
        "every": (int, 0, "steps between extrapolation-grade checks (0: off; needs the fit stage's .als)"),
        "warn": (float, 2.0, "warn (and save the frame) above this grade"),
        "stop": (float, 10.0, "stop the run above this grade"),
    },
    "stability": {
        "enabled": (bool, True, "one NVT run per system at temperature_K from its 0 K structure: does the "
                                "structure keep its coordination numbers (md_gpu.protocols.stability)?"),
        "steps": (int, 20000, "NVT steps of the check"),
        "max_changed_fraction": (float, 0.1, "the structure counts as kept while at most this fraction of atoms "
                                             "changed coordination number"),
        "relax_steps": (int, 500, "FIRE steps of the 0 K relaxation that comes first and looks for holes of "
                                  "the potential (md_gpu.protocols.relaxation; 0: off)"),
    },
    "heterostructure": heterostructure.HETEROSTRUCTURE_SETTINGS,
    "thermal": {
        "enabled": (bool, False, "thermal transport MD: HNEMD conductivity of the phases, NEMD length dependence, "
                                 "interface conductance (md_gpu.protocols.thermal)"),
        "seeds": (int, 3, "independent seeds per thermal run"),
        "directions": (list, ["x", "y"], "HNEMD transport directions of the phases (x, y)"),
        "driving_force_per_A": (float, 1e-4, "HNEMD driving force F_e (1/Å); small enough for linear response"),
        "equilibrate_steps": (int, 20000, "equilibration steps before each thermal run"),
        "production_steps": (int, 500000, "HNEMD production steps (the running conductivity is averaged "
                                          "over them)"),
        "supercell": (list, [2, 2], "repeats [nx, ny] of the built structure in the thermal runs: the HNEMD cell; "
                                    "NEMD cells take ny from it, the interface cell nx"),
        "nemd": {
            "enabled": (bool, True, "NEMD along x at several lengths: kappa(L) and the 1/kappa vs 1/L "
                                    "extrapolation to infinite length"),
            "repeats": (list, [3, 6, 12], "cell lengths as repeats of the built structure along x (two or more; "
                                         "the baths need a cell of about 35 Å, 3 graphene cells)"),
            **_bath_settings("x"),
        },
        "interface": {
            "enabled": (bool, True, "NEMD across the interface cell of each interface system: conductance G"),
            "repeats_normal": (int, 2, "repeats of the interface cell along its normal y (even)"),
            **_bath_settings("y"),
        },
    },
}


def _check(settings: dict) -> None:
    for d in settings["directions"]:
        if d not in ("x", "y"):
            raise ValueError(f"md.directions: {d!r} is not one of x, y (rotate the sheet for other directions)")
    if settings["transverse"] not in ("stress", "strain"):
        raise ValueError(f"md.transverse: {settings['transverse']!r} is not one of stress, strain")
    if settings["thermostat"] not in ("bussi", "langevin"):
        raise ValueError(f"md.thermostat: {settings['thermostat']!r} is not one of bussi, langevin")
    if settings["seeds"] < 1:
        raise ValueError(f"md.seeds: {settings['seeds']} must be >= 1")
    if len(settings["supercell"]) != 2 or any(int(r) < 1 for r in settings["supercell"]):
        raise ValueError(f"md.supercell: {settings['supercell']} must be two positive integers [nx, ny]")
    st = settings["stability"]
    if st["steps"] < 10:
        raise ValueError(f"md.stability.steps: {st['steps']} must be >= 10 (the check samples 10 snapshots)")
    if not 0 <= st["max_changed_fraction"] <= 1:
        raise ValueError(f"md.stability.max_changed_fraction: {st['max_changed_fraction']} must be in [0, 1]")
    if st["relax_steps"] < 0:
        raise ValueError(f"md.stability.relax_steps: {st['relax_steps']} must be >= 0 (0: no 0 K relaxation)")
    _check_thermal(settings["thermal"], settings["temperature_K"])
    heterostructure.check_settings(settings["heterostructure"])


def _positive_ints(values) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)


N_BLOCKS = 10  # block averages per thermal run (the protocols' default n_blocks)


def _check_thermal(th: dict, temperature_K: float) -> None:
    """Errors name the key (``md.thermal.nemd.repeats``); checked even when the block is off."""
    def positive(block: dict, key: str, where: str):
        if not block[key] > 0:
            raise ValueError(f"md.thermal.{where}{key}: {block[key]} must be > 0")

    for key in ("seeds", "driving_force_per_A"):
        positive(th, key, "")
    for where, block in (("", th), ("nemd.", th["nemd"]), ("interface.", th["interface"])):
        if block["production_steps"] < N_BLOCKS:
            raise ValueError(f"md.thermal.{where}production_steps: {block['production_steps']} must be >= "
                             f"{N_BLOCKS} (the run's sem comes from {N_BLOCKS} block averages)")
    if th["equilibrate_steps"] < 0:
        raise ValueError(f"md.thermal.equilibrate_steps: {th['equilibrate_steps']} must be >= 0")
    if not th["directions"] or any(d not in ("x", "y") for d in th["directions"]) \
            or len(set(th["directions"])) != len(th["directions"]):
        raise ValueError(f"md.thermal.directions: {th['directions']} must list x and/or y, each once (HNEMD gives "
                         "the conductivity that the constitutive stage reads)")
    if len(th["supercell"]) != 2 or not _positive_ints(th["supercell"]):
        raise ValueError(f"md.thermal.supercell: {th['supercell']} must be two positive integers [nx, ny]")
    repeats = th["nemd"]["repeats"]
    if not _positive_ints(repeats) or len(set(repeats)) < 2:
        raise ValueError(f"md.thermal.nemd.repeats: {repeats} must be two or more different positive integers "
                         "(cell lengths along x, in repeats of the structure) for the 1/kappa vs 1/L "
                         "extrapolation")
    normal = th["interface"]["repeats_normal"]
    if not _positive_ints([normal]) or normal % 2:
        raise ValueError(f"md.thermal.interface.repeats_normal: {normal} must be an even positive integer (the "
                         "cold bath sits half a cell after the hot one, in the same phase)")
    for name in ("nemd", "interface"):
        block = th[name]
        positive(block, "bath_width_A", f"{name}.")
        if not 0 < block["delta_T_K"] < 2 * temperature_K:
            raise ValueError(f"md.thermal.{name}.delta_T_K: {block['delta_T_K']} K must be > 0 and below "
                             f"2 x md.temperature_K ({2 * temperature_K:g} K): the cold bath sits at T - delta_T/2")


def _run_settings(settings: dict, seed: int):
    from .protocols import RunSettings

    return RunSettings(temperature_K=settings["temperature_K"], dt_fs=settings["dt_fs"],
                       thermostat=settings["thermostat"], thermostat_tau_fs=settings["thermostat_tau_fs"],
                       barostat_tau_fs=settings["barostat_tau_fs"], equilibrate_steps=settings["equilibrate_steps"],
                       thermo_every=settings["thermo_every"], traj_every=settings["traj_every"],
                       checkpoint_every=settings["checkpoint_every"], seed=seed,
                       failure_min_strain=settings["failure_min_strain"])


def _progress_printer(task: dict):
    """Progress lines of one run (steps, atom-steps/s, ETA every 30 s), on whichever rank runs it."""
    return lambda line: print(f"[md] {task['name']}: {line}", flush=True)


def _resumable(task: dict, prefix: Path) -> bool:
    """True when ``<prefix>.ckpt.npz`` was left by an interrupted run of this very task (same settings,
    same potential file content); a checkpoint of other settings is deleted, never resumed."""
    checkpoint = Path(f"{prefix}.ckpt.npz")
    stamp_path = Path(f"{prefix}.task.json")
    potential = Path(task["potential"])
    stamp = json.dumps({"settings": task["settings"], "structure": task["structure"], "seed": task["seed"],
                        "potential_sha256": hashlib.sha256(potential.read_bytes()).hexdigest()},
                       sort_keys=True, default=str)
    same = stamp_path.is_file() and stamp_path.read_text() == stamp
    if checkpoint.is_file() and not same:
        checkpoint.unlink()
    stamp_path.write_text(stamp)
    return checkpoint.is_file()


def run_task(task: dict) -> dict:
    """One MD run (module-level so that ``ctx.map`` can send it to any rank); returns plain data."""
    from .extrapolation import ExtrapolationControl, mtp_grader
    from .forcefields.loading import load_forcefield
    from .protocols import elastic_constants, interface_tensile, tensile
    from .protocols.relaxation import describe as describe_relaxation
    from .protocols.relaxation import relaxation_check
    from .protocols.stability import structure_stability
    from .structures import load_structure

    settings = task["settings"]
    ff = load_forcefield(task["potential"], species=task.get("species"), core=settings["short_range_core"],
                         core_radii=task.get("core_radii"))
    atoms = load_structure(task["structure"], base_dir=task["case_dir"],
                           repeat=list(task.get("repeat", settings["supercell"])) + [1],
                           key=f"systems.{task['system']}.structure")
    run_settings = _run_settings(settings, task["seed"])
    prefix = Path(task["out_dir"]) / task["name"]
    if task["kind"] in THERMAL_KINDS:
        try:
            return _run_thermal(task, ff, atoms, run_settings, prefix)
        except MDRunError as exc:
            return _blown_up(task, exc)
        except MDSetupError as exc:  # e.g. a NEMD cell too short for its baths: name the settings block
            block = {"hnemd": "", "nemd": ".nemd", "interface_nemd": ".interface"}[task["kind"]]
            raise MDSetupError(f"md.thermal{block} ({task['name']}): {exc}") from None
    if task["kind"] == "stability":
        st = settings["stability"]
        relaxation = None
        if st["relax_steps"] > 0:
            relaxation = relaxation_check(ff, atoms, steps=st["relax_steps"])
            print(f"[md] {task['name']}: {describe_relaxation(relaxation)}", flush=True)
        try:
            result = structure_stability(ff, atoms, steps=st["steps"], max_changed=st["max_changed_fraction"],
                                         settings=run_settings, final_path=f"{prefix}_final.extxyz",
                                         log=_progress_printer(task))
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
    if task["kind"] in LOW_T_KINDS:
        run_settings = replace(run_settings, temperature_K=settings["elastic"]["low_temperature_K"])
    if task["kind"] in STRIPE_KINDS:
        h = settings["heterostructure"]
        if task["kind"] == "heterostructure_compliance_low_T":
            h = heterostructure.compliance_cell_settings(h)
        try:
            # at low temperature the noise is small enough for the second-order difference (no strain bias)
            scheme = "tension" if task["kind"] == "heterostructure" else "tension2"
            return {**task, "result": heterostructure.run(ff, h, settings["elastic"],
                                                         run_settings, relax_steps=settings["stability"]["relax_steps"],
                                                         scheme=scheme, log=_progress_printer(task))}
        except MDRunError as exc:
            return _blown_up(task, exc)
    if task["kind"] in ("elastic", "elastic_low_T", "heterostructure_phase_low_T"):
        e = settings["elastic"]
        try:
            c = elastic_constants(ff, atoms, delta=e["delta"], sample_steps=e["sample_steps"], settings=run_settings,
                                  log=_progress_printer(task))
        except MDRunError as exc:
            if task["kind"] != "heterostructure_phase_low_T":
                raise
            return _blown_up(task, exc)
        return {**task, "result": {k: c[k] for k in ("C11", "C22", "C12", "C66")}, "unit": c["unit"],
                "temperature_K": c["temperature_K"]}
    control = None
    x = settings["extrapolation"]
    if x["every"] > 0:
        control = ExtrapolationControl(mtp_grader(ff.mtp, Path(task["potential"]).with_suffix(".als")),
                                       every=x["every"], warn=x["warn"], stop=x["stop"], cutoff=ff.cutoff,
                                       frames_path=f"{prefix}.extrapolative.extxyz")
    protocol = interface_tensile if task["kind"] == "interface" else tensile
    direction = {} if task["kind"] == "interface" else {"direction": task["direction"]}
    try:
        r = protocol(ff, atoms, strain_rate_per_s=settings["strain_rate_per_s"], max_strain=settings["max_strain"],
                     transverse=settings["transverse"], settings=run_settings, thickness_A=task["thickness_A"],
                     fit_window=(0.0, settings["fit_max_strain"]), out_prefix=prefix,
                     resume=_resumable(task, prefix), extrapolation=control, log=_progress_printer(task),
                     **direction)
    except MDRunError as exc:
        return _blown_up(task, exc)
    return {**task, "result": r["properties"], "h5": f"{task['name']}.h5", "n_atoms": r["settings"]["n_atoms"]}


def _blown_up(task: dict, exc: MDRunError) -> dict:
    """A passively trained potential can leave its training domain (typically at fracture or in
    out-of-plane ripples the short AIMD chains never sampled) and blow up: that run is reported,
    the others of the same system and direction still count."""
    reason = str(exc).split(" (at ")[0]
    print(f"[md] {task['name']}: blew up, left out of the statistics: {reason}", flush=True)
    return {**task, "result": None, "blew_up": reason}


THERMAL_KINDS = ("hnemd", "nemd", "interface_nemd")
# runs at md.elastic.low_temperature_K instead of md.temperature_K
LOW_T_KINDS = ("elastic_low_T", "heterostructure_low_T", "heterostructure_phase_low_T",
               "heterostructure_compliance_low_T")
# runs of md_gpu.heterostructure (a stripe cell)
STRIPE_KINDS = ("heterostructure", "heterostructure_low_T", "heterostructure_compliance_low_T")


def _run_thermal(task: dict, ff, atoms, run_settings, prefix: Path) -> dict:
    """One thermal run: ``md_gpu.protocols.<kind>`` (hnemd, nemd, interface_nemd) with ``md.thermal``.

    No checkpoints: the thermal protocols do not resume, so an interrupted run starts afresh.
    """
    from . import protocols

    th = task["settings"]["thermal"]
    kind = task["kind"]
    run_settings = replace(run_settings, equilibrate_steps=th["equilibrate_steps"], checkpoint_every=0)
    if kind == "hnemd":
        options = {"direction": task["direction"], "driving_force_per_A": th["driving_force_per_A"],
                   "production_steps": th["production_steps"]}
    else:
        block = th["nemd" if kind == "nemd" else "interface"]
        options = {"direction" if kind == "nemd" else "axis": task["direction"], "delta_T_K": block["delta_T_K"],
                   "bath_width_A": block["bath_width_A"], "production_steps": block["production_steps"]}
    r = getattr(protocols, kind)(ff, atoms, settings=run_settings, thickness_A=task["thickness_A"],
                                 out_prefix=prefix, log=_progress_printer(task), **options)
    out = {**task, "result": r["properties"], "h5": Path(r["h5"]).name if r.get("h5") else None,
           "n_atoms": r["properties"]["n_atoms"]}
    for key in ("series", "profile", "interfaces_A"):  # for the plots (the protocols keep them short)
        if key in r:
            out[key] = r[key]
    return out


def plan_tasks(settings: dict, ctx) -> list[dict]:
    """The list of runs: phases x directions x seeds, interfaces x seeds, elastic x phases x seeds
    (+ the thermal runs of md.thermal, :func:`_thermal_tasks`)."""
    tasks = []
    fit_dir = ctx.stage_dir("fit")
    for system, entry in ctx.systems.items():
        potential = fit_dir / f"{system}.mtp"
        if not potential.is_file():
            raise MDSetupError(f"md: {potential} is missing; the fit stage did not write a potential for "
                               f"'{system}' (rerun `multiscale run {ctx.case_dir} --stages fit`)")
        fit_report = fit_dir / f"{system}_fit.json"
        core_radii = json.loads(fit_report.read_text()).get("shortest_distance_A") if fit_report.is_file() else None
        base = {"system": system, "potential": str(potential), "structure": entry["structure"], "core_radii": core_radii,
                "case_dir": str(ctx.case_dir), "out_dir": str(ctx.out_dir), "settings": settings,
                "thickness_A": entry.get("thickness_A")}
        for seed in range(settings["seeds"]):
            if entry["kind"] == "interface":
                tasks.append({**base, "kind": "interface", "direction": "normal", "seed": seed,
                              "name": f"{system}_normal_seed{seed}"})
                continue
            for direction in settings["directions"]:
                tasks.append({**base, "kind": "tensile", "direction": direction, "seed": seed,
                              "name": f"{system}_{direction}_seed{seed}"})
            if settings["elastic"]["enabled"]:
                tasks.append({**base, "kind": "elastic", "direction": None, "seed": seed,
                              "name": f"{system}_elastic_seed{seed}"})
        if entry["kind"] != "interface" and settings["elastic"]["enabled"] \
                and settings["elastic"]["low_temperature_K"] > 0:
            tasks.append({**base, "kind": "elastic_low_T", "direction": None, "seed": 0,
                          "name": f"{system}_elastic_low_T"})
        if settings["stability"]["enabled"]:
            tasks.append({**base, "kind": "stability", "direction": None, "seed": 0, "name": f"{system}_stability"})
        h = settings["heterostructure"]
        if entry["kind"] == "interface" and h["enabled"]:
            heterostructure.check_settings(h, entry["structure"])
            between = list(entry.get("between", []))
            tasks += [{**base, "kind": "heterostructure", "direction": "normal", "seed": seed,
                       "between": between, "name": f"{system}_heterostructure_seed{seed}"}
                      for seed in range(h["seeds"])]
            if h["low_temperature"] and settings["elastic"]["enabled"] and settings["elastic"]["low_temperature_K"] > 0:
                tasks.append({**base, "kind": "heterostructure_low_T", "direction": "normal", "seed": 0,
                              "between": between, "name": f"{system}_heterostructure_low_T"})
                if h["compliance_periods"] > 0:
                    tasks.append({**base, "kind": "heterostructure_compliance_low_T", "direction": "normal",
                                  "seed": 0, "between": between, "name": f"{system}_heterostructure_compliance_low_T"})
                # the phases' own cells with the interface MTP (base["potential"]): the FE twin's inputs
                tasks += [{**base, "kind": "heterostructure_phase_low_T", "direction": None, "seed": 0,
                           "phase": phase, "structure": ctx.systems[phase]["structure"],
                           "name": f"{system}_{phase}_elastic_low_T"} for phase in between if phase in ctx.systems]
        if settings["thermal"]["enabled"]:
            tasks += _thermal_tasks(base, entry, settings["thermal"], ctx.systems)
    return tasks


def _thermal_tasks(base: dict, entry: dict, th: dict, systems: dict) -> list[dict]:
    """Phases: HNEMD per direction x seed and NEMD along x per length x seed; interfaces: NEMD across
    the interface (normal y) per seed. ``repeat`` [nx, ny] is the thermal cell."""
    system, (nx, ny) = base["system"], th["supercell"]
    if entry["kind"] == "interface":
        if not th["interface"]["enabled"]:
            return []
        # The interface cell is half of each phase: quote fluxes at the mean effective thickness.
        thicknesses = [systems[p].get("thickness_A") for p in entry.get("between", []) if p in systems]
        thickness = sum(thicknesses) / len(thicknesses) if thicknesses and None not in thicknesses \
            else base["thickness_A"]
        return [{**base, "kind": "interface_nemd", "direction": "y", "seed": seed, "thickness_A": thickness,
                 "repeat": [nx, th["interface"]["repeats_normal"]], "name": f"{system}_nemd_seed{seed}"}
                for seed in range(th["seeds"])]
    tasks = []
    for seed in range(th["seeds"]):
        tasks += [{**base, "kind": "hnemd", "direction": d, "seed": seed, "repeat": [nx, ny],
                   "name": f"{system}_hnemd_{d}_seed{seed}"} for d in th["directions"]]
        if th["nemd"]["enabled"]:
            tasks += [{**base, "kind": "nemd", "direction": "x", "length_repeats": n, "seed": seed,
                       "repeat": [n, ny], "name": f"{system}_nemd_L{n}_seed{seed}"} for n in th["nemd"]["repeats"]]
    return tasks


TENSILE_KEYS = ("youngs_modulus_N_per_m", "poisson_ratio", "ultimate_strength_N_per_m", "failure_strain",
                "youngs_modulus_GPa", "ultimate_strength_GPa")


def summarize_tasks(results: list[dict], settings: dict) -> dict:
    """``summary.json`` content from the task results (see module docstring)."""
    systems: dict = {}
    for r in results:
        entry = systems.setdefault(r["system"], {"provenance": {
            "potential": r["potential"], "md_runs": [], "strain_rate_per_s": settings["strain_rate_per_s"],
            "temperature_K": settings["temperature_K"]}})
        if r["kind"] in THERMAL_KINDS:
            continue
        if r["kind"] == "stability":
            entry["stability"] = dict(r["result"])
            continue
        if r["kind"] in (*STRIPE_KINDS, "heterostructure_phase_low_T"):
            if r.get("blew_up"):
                entry["provenance"].setdefault("blown_up", []).append({"run": r["name"], "reason": r["blew_up"]})
            elif r["kind"] == "heterostructure":
                entry.setdefault("_heterostructure", []).append(r["result"])
                entry["_between"] = r.get("between", [])
            elif r["kind"] == "heterostructure_low_T":
                entry["_stripe_low_T"] = r["result"]
            elif r["kind"] == "heterostructure_compliance_low_T":
                entry["_compliance_low_T"] = r["result"]
            else:
                entry.setdefault("_phases_low_T", {})[r["phase"]] = r["result"]
            continue
        if r["kind"] in ("elastic", "elastic_low_T"):
            entry.setdefault(f"_{r['kind']}", []).append((r["result"], r["unit"], r["temperature_K"]))
            continue
        if r.get("blew_up"):
            entry["provenance"].setdefault("blown_up", []).append({"run": r["name"], "reason": r["blew_up"]})
            entry.setdefault("_blown_up", {}).setdefault(r["direction"], []).append(r["name"])
            continue
        entry["provenance"]["md_runs"].append(r["h5"])
        entry["provenance"]["n_atoms"] = r["n_atoms"]
        entry.setdefault("_runs", {}).setdefault(r["direction"], []).append(r["result"])
    for system, entry in systems.items():
        stripes, between = entry.pop("_heterostructure", None), entry.pop("_between", [])
        stripe_low_t, phases_low_t = entry.pop("_stripe_low_T", None), entry.pop("_phases_low_T", {})
        compliance_low_t = entry.pop("_compliance_low_T", None)
        if stripes:
            entry["heterostructure"] = heterostructure.summarize(stripes, between)
            if stripe_low_t and set(phases_low_t) >= set(between):
                entry["heterostructure"]["low_T"] = heterostructure.summarize_low_t(
                    stripe_low_t, phases_low_t, settings["elastic"]["low_temperature_K"], compliance_low_t)
        runs_by_direction = entry.pop("_runs", {})
        blown_up = entry.pop("_blown_up", {})
        lost = [d for d in blown_up if d not in runs_by_direction]
        if lost:
            raise MDRunError(f"md: every run of {system} along {', '.join(lost)} blew up "
                             f"({', '.join(n for d in lost for n in blown_up[d])}): "
                             f"{entry['provenance']['blown_up'][0]['reason']}. The potential leaves its training "
                             "domain; add data there (longer or more AIMD chains) or check it with "
                             "md.extrapolation.every")
        per_direction = {d: {k: mean_sem([run.get(k) for run in runs]) for k in TENSILE_KEYS
                             if any(k in run for run in runs)}
                         for d, runs in runs_by_direction.items()}
        for d, stats in per_direction.items():
            stats["runs_failed"] = sum(bool(run.get("failed")) for run in runs_by_direction[d])
            stats["runs_blown_up"] = len(blown_up.get(d, []))
        if "normal" in per_direction:
            entry["normal"] = per_direction["normal"]
        elif per_direction:
            entry["directions"] = per_direction
        for kind, suffix in (("elastic", ""), ("elastic_low_T", "_low_T")):
            elastic = entry.pop(f"_{kind}", None)
            if elastic:
                unit = "N_per_m" if elastic[0][1] == "N/m" else "GPa"  # bulk test cells: GPa
                stats = {k: mean_sem([c[k] for c, _, _ in elastic]) for k in ("C11", "C22", "C12", "C66")}
                if suffix:
                    stats["temperature_K"] = elastic[0][2]
                entry[f"elastic{suffix}_{unit}"] = stats
    for system, thermal in summarize_thermal([r for r in results if r["kind"] in THERMAL_KINDS], settings).items():
        systems[system]["thermal"] = thermal
    return {"format": "md_gpu-summary/1", "temperature_K": settings["temperature_K"],
            "strain_rate_per_s": settings["strain_rate_per_s"], "systems": systems}


def summarize_thermal(results: list[dict], settings: dict) -> dict:
    """``{system: thermal entry}`` of ``summary.json`` from the thermal task results (module docstring).

    Seeds are combined with :func:`md_gpu.analysis.mean_sem`; a blown-up run is named in
    ``provenance.blown_up`` and left out; the stage fails when a (system, method, direction or length)
    loses every seed.
    """
    th = settings["thermal"]
    by_system: dict = {}
    for r in results:
        group = (r["kind"], r.get("length_repeats", r["direction"]))
        by_system.setdefault(r["system"], {}).setdefault(group, []).append(r)
    out = {}
    for system, groups in by_system.items():
        runs = [r for group in groups.values() for r in group]
        kept = {g: [r for r in group if not r.get("blew_up")] for g, group in groups.items()}
        lost = [r["name"] for g, group in groups.items() if not kept[g] for r in group]
        if lost:
            reason = next(r["blew_up"] for r in runs if r.get("blew_up"))
            raise MDRunError(f"md: every seed of a thermal run of {system} blew up ({', '.join(lost)}): {reason}. "
                             "The potential leaves its training domain; add data there or lower "
                             "md.thermal.driving_force_per_A / delta_T_K")
        provenance = {"runs": [r["h5"] for r in runs if r.get("h5")], "temperature_K": settings["temperature_K"],
                      "thickness_A": runs[0]["thickness_A"], "seeds": th["seeds"],
                      "equilibrate_steps": th["equilibrate_steps"]}
        blown_up = [{"run": r["name"], "reason": r["blew_up"]} for r in runs if r.get("blew_up")]
        if blown_up:
            provenance["blown_up"] = blown_up
        if ("interface_nemd", "y") in kept:
            done = kept[("interface_nemd", "y")]
            entry = {"conductance_W_per_m2K": _seed_stats(done, "conductance_W_per_m2K"),
                     **{k: mean_sem([r["result"][k] for r in done]) for k in ("temperature_jump_K",
                                                                               "heat_flux_W_per_m2")}}
            provenance.update(n_atoms=done[0]["n_atoms"], repeat=done[0]["repeat"],
                              **{k: th["interface"][k] for k in ("delta_T_K", "bath_width_A", "production_steps")})
        else:
            hnemd = {d: kept[("hnemd", d)] for d in th["directions"] if ("hnemd", d) in kept}
            entry = {"conductivity_W_per_mK": {d: _seed_stats(done) for d, done in hnemd.items()},
                     "method": "hnemd"}
            nemd = sorted((key, done) for (kind, key), done in kept.items() if kind == "nemd")
            if nemd:
                entry["length_dependence"] = {"x": _length_dependence(system, [done for _, done in nemd])}
                provenance["nemd"] = {k: th["nemd"][k] for k in ("repeats", "delta_T_K", "bath_width_A",
                                                                 "production_steps")}
            first = next(iter(hnemd.values()))[0]
            provenance.update(n_atoms=first["n_atoms"], repeat=first["repeat"],
                              driving_force_per_A=th["driving_force_per_A"], production_steps=th["production_steps"])
        entry["provenance"] = provenance
        out[system] = entry
    return out


def _seed_stats(runs: list[dict], key: str = "conductivity_W_per_mK") -> dict:
    """{mean, sem, n} of ``key`` over seeds; with one seed the sem is that run's block-average sem
    (``<name>_sem_<unit>``; not 0, which would make the 1/L fit and the Kapitza lengths look exact)."""
    stats = mean_sem([r["result"][key] for r in runs])
    if stats["n"] == 1:
        stats["sem"] = float(runs[0]["result"][key.replace("_W_", "_sem_W_", 1)])
    return stats


def _length_dependence(system: str, per_length: list[list[dict]]) -> dict:
    """kappa(L) over seeds per NEMD length, and the 1/kappa vs 1/L extrapolation to infinite length
    (left out, with the reason in ``extrapolation_error``, when the data give no diffusive limit)."""
    from .protocols import extrapolate_length

    lengths_A = [sum(r["result"]["length_A"] for r in runs) / len(runs) for runs in per_length]
    kappas = [_seed_stats(runs) for runs in per_length]
    out = {"length_nm": [L / 10.0 for L in lengths_A], "n_atoms": [runs[0]["n_atoms"] for runs in per_length],
           "conductivity_W_per_mK": kappas}
    try:
        x = extrapolate_length(lengths_A, [k["mean"] for k in kappas], [k["sem"] for k in kappas])
    except (MDRunError, MDSetupError) as exc:  # noisy short runs: kappa(L) <= 0 or 1/kappa_inf <= 0
        print(f"[md] {system}: no length extrapolation of the NEMD conductivity: {exc}", flush=True)
        out["extrapolation_error"] = str(exc)
        return out
    out["extrapolated_W_per_mK"] = {"mean": float(x["conductivity_W_per_mK"]), "sem": float(x["sem"])}
    return out


def plot_stress_strain(out_dir: Path, system: str, runs: list[dict]) -> Path | None:
    """``<system>_stress_strain.png``: the stress-strain curve of every tensile run of ``system``
    (2D stress in N/m for sheets, GPa otherwise; one colour per direction, one line per seed)."""
    if not runs:
        return None
    plt = _pyplot()
    from .io import read_run_h5

    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {}
    unit = "GPa"
    for r in sorted(runs, key=lambda r: (r["direction"], r["seed"])):
        curve = read_run_h5(Path(out_dir) / r["h5"])["stress_strain"]
        key = "stress_N_per_m" if "stress_N_per_m" in curve else "stress_GPa"
        unit = "N/m" if key == "stress_N_per_m" else "GPa"
        colour = colours.setdefault(r["direction"], f"C{len(colours)}")
        label = f"{r['direction']} (seeds)" if r["seed"] == 0 else None
        ax.plot(curve["strain"], curve[key], color=colour, lw=1, alpha=0.8, label=label)
    ax.set_xlabel("engineering strain")
    ax.set_ylabel(f"stress ({unit})")
    ax.set_title(f"{system}: MD tension at {runs[0]['settings']['temperature_K']:g} K, "
                 f"{runs[0]['settings']['strain_rate_per_s']:.2g} 1/s")
    ax.legend()
    return _save(fig, Path(out_dir) / f"{system}_stress_strain.png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_hnemd(out_dir: Path, system: str, runs: list[dict]) -> Path | None:
    """``<phase>_hnemd.png``: running HNEMD conductivity (W/(m K)) against time (ps), one colour per
    direction, one line per seed."""
    runs = [r for r in runs if r.get("series")]
    if not runs:
        return None
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    colours: dict = {}
    for r in sorted(runs, key=lambda r: (r["direction"], r["seed"])):
        new = r["direction"] not in colours
        colour = colours.setdefault(r["direction"], f"C{len(colours)}")
        ax.plot(r["series"]["time_ps"], r["series"]["running_conductivity_W_per_mK"], color=colour, lw=1,
                alpha=0.8, label=r["direction"] if new else None)
    ax.set_xlabel("production time (ps)")
    ax.set_ylabel("running conductivity (W/(m K))")
    ax.set_title(f"{system}: HNEMD at {runs[0]['settings']['temperature_K']:g} K, "
                 f"F_e = {runs[0]['settings']['thermal']['driving_force_per_A']:.2g} 1/Å")
    ax.legend(title="direction (seeds)")
    return _save(fig, Path(out_dir) / f"{system}_hnemd.png")


def plot_thermal_length(out_dir: Path, system: str, length_dependence: dict) -> Path:
    """``<phase>_thermal_length.png``: NEMD kappa(L) (mean +- sem over seeds) and 1/kappa against 1/L with
    the straight line through the extrapolated 1/kappa_inf at 1/L = 0 (slope: least squares; no line when
    the extrapolation failed)."""
    import numpy as np

    d = length_dependence
    L = np.asarray(d["length_nm"])
    k = np.asarray([s["mean"] for s in d["conductivity_W_per_mK"]])
    dk = np.asarray([s["sem"] for s in d["conductivity_W_per_mK"]])
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(9, 3.8))
    left.errorbar(L, k, yerr=dk, fmt="o-", capsize=3, label="NEMD (mean ± sem)")
    inv_L, inv_k = 1.0 / L, 1.0 / k
    right.errorbar(inv_L, inv_k, yerr=dk / k ** 2, fmt="o", capsize=3, label="NEMD")
    if "extrapolated_W_per_mK" in d:
        k_inf, dk_inf = d["extrapolated_W_per_mK"]["mean"], d["extrapolated_W_per_mK"]["sem"]
        left.axhline(k_inf, color="k", ls="--", lw=1, label=f"L → ∞: {k_inf:.3g} ± {dk_inf:.2g}")
        slope = float(np.dot(inv_L, inv_k - 1.0 / k_inf) / np.dot(inv_L, inv_L))
        grid = np.linspace(0.0, inv_L.max() * 1.05, 50)
        right.plot(grid, 1.0 / k_inf + slope * grid, "k--", lw=1, label="extrapolation")
        right.errorbar([0.0], [1.0 / k_inf], yerr=[dk_inf / k_inf ** 2], fmt="ks", capsize=3)
    else:
        right.set_title("no diffusive limit (summary.json: extrapolation_error)", fontsize=8)
    left.set_xlabel("length L (nm)")
    left.set_ylabel("conductivity κ (W/(m K))")
    left.legend(fontsize=8)
    right.set_xlabel("1/L (1/nm)")
    right.set_ylabel("1/κ (m K/W)")
    right.legend(fontsize=8)
    fig.suptitle(f"{system}: length dependence of the NEMD conductivity along x")
    return _save(fig, Path(out_dir) / f"{system}_thermal_length.png")


def plot_interface_profile(out_dir: Path, system: str, runs: list[dict], thermal: dict) -> Path | None:
    """``<interface>_thermal_profile.png``: NEMD temperature profile (K) across the interface cell, one line
    per seed, interfaces as dashed lines, the mean temperature jump drawn as a bar at each interface."""
    import numpy as np

    runs = [r for r in runs if r.get("profile")]
    if not runs:
        return None
    def profile(r):  # bins start at the hot bath: sort them by position in the cell
        x, t = np.asarray(r["profile"]["position_A"]), np.asarray(r["profile"]["temperature_K"])
        return x[np.argsort(x)], t[np.argsort(x)]

    fig, ax = _pyplot().subplots(figsize=(6, 4))
    for r in sorted(runs, key=lambda r: r["seed"]):
        ax.plot(*profile(r), "o-", ms=3, lw=1, alpha=0.8, label=f"seed {r['seed']}")
    first = runs[0]
    jump = thermal["temperature_jump_K"]
    for x in first.get("interfaces_A", []):
        ax.axvline(x, color="k", ls="--", lw=0.8)
        t = float(np.interp(x, *profile(first)))
        ax.errorbar([x], [t], yerr=[abs(jump["mean"]) / 2], color="r", capsize=5, lw=2)
    g = thermal["conductance_W_per_m2K"]
    ax.set_title(f"{system}: ΔT = {jump['mean']:.3g} ± {jump['sem']:.2g} K, "
                 f"G = {g['mean']:.3g} ± {g['sem']:.2g} W/(m² K)", fontsize=9)
    ax.set_xlabel("position along the normal y (Å)")
    ax.set_ylabel("temperature (K)")
    ax.legend(fontsize=8)
    return _save(fig, Path(out_dir) / f"{system}_thermal_profile.png")


def run_md(settings: dict, ctx) -> dict:
    """Stage entry point (docs/architecture.md): run all tasks over the ranks, write ``summary.json``."""
    _check(settings)
    tasks = plan_tasks(settings, ctx)
    ctx.log(f"{len(tasks)} MD runs at {settings['temperature_K']} K, strain rate "
            f"{settings['strain_rate_per_s']:.3g} 1/s, over {ctx.farm.size if hasattr(ctx, 'farm') else 1} rank(s)")
    results = ctx.map(run_task, tasks, what="MD runs")
    summary = summarize_tasks(results, settings)
    if ctx.is_root:
        tmp = ctx.out_dir / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n")
        tmp.replace(ctx.out_dir / "summary.json")
        for system, entry in summary["systems"].items():
            mine = [r for r in results if r["system"] == system and not r.get("blew_up")]
            plot_stress_strain(ctx.out_dir, system, [r for r in mine if r["kind"] in ("tensile", "interface")])
            thermal = entry.get("thermal", {})
            plot_hnemd(ctx.out_dir, system, [r for r in mine if r["kind"] == "hnemd"])
            if "length_dependence" in thermal:
                plot_thermal_length(ctx.out_dir, system, thermal["length_dependence"]["x"])
            if "conductance_W_per_m2K" in thermal:
                plot_interface_profile(ctx.out_dir, system, [r for r in mine if r["kind"] == "interface_nemd"],
                                       thermal)
    return {"runs": len(tasks), "systems": sorted(summary["systems"])}
