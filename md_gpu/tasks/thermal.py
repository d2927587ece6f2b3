"""Thermal transport with ``md.thermal.enabled`` (:mod:`md_gpu.protocols`: ``thermal_hnemd``, ``thermal_nemd``, ``thermal_interface``; docs/md.md, "Thermal
transport in the md stage").

Tasks (cells of ``md.thermal.supercell`` = [nx, ny] repeats of the system's 0 K cell):

- ``hnemd``, per phase, direction of ``md.thermal.directions`` and seed: ``<phase>_hnemd_<d>_seed<k>.h5``;
- ``nemd`` along x, per phase, length ``n`` of ``md.thermal.nemd.repeats`` (cell [n, ny]) and seed:
  ``<phase>_nemd_L<n>_seed<k>.h5``;
- ``interface_nemd`` across each interface system (normal y, cell [nx, repeats_normal]) per seed:
  ``<interface>_nemd_seed<k>.h5``. Its fluxes use the mean ``thickness_A`` of the two phases it joins
  (``between``): the interface cell is half of each.

While a run goes, its equilibration and production checkpoint to ``<name>.equilibrate.ckpt.npz`` and
``<name>.production.ckpt.npz`` every ``md.checkpoint_every`` steps, with the heat-current record (HNEMD) or
the block sums of the bath energies and temperature profile (NEMD); an interrupted run resumes from them
to the result of an uninterrupted one (:mod:`.common`).

summary.json, per system, ``thermal``::

    phase:     {"conductivity_W_per_mK": {"x": {mean, sem, n}, "y": {...}}, "method": "hnemd",
                "length_dependence": {"x": {"length_nm": [...], "n_atoms": [...],
                                            "conductivity_W_per_mK": [{mean, sem, n}, ...],
                                            "extrapolated_W_per_mK": {"mean", "sem"}
                                            (or "extrapolation_error": str)}},
                "provenance": {"runs": [...h5...], "temperature_K", "thickness_A", "seeds", "equilibrate_steps",
                               "n_atoms", "repeat", "driving_force_per_A", "production_steps", "nemd": {...},
                               "blown_up": [{"run", "reason"}]}}
    interface: {"conductance_W_per_m2K": {mean, sem, n}, "temperature_jump_K": {...},
                "heat_flux_W_per_m2": {...}, "provenance": {...}}

Seeds are combined with :func:`md_gpu.analysis.mean_sem` (with one seed the sem of a conductivity or
conductance is the run's block-average sem; of the temperature jump and heat flux null); the conductivities
per direction and the interface's statistics carry the run counts ``attempted``, ``failed``, ``blown_up``
of their (system, direction); a blown-up run is named in the entry's ``provenance.blown_up`` and left
out; the stage fails when a (system, method, direction or length) loses every seed. Figures: :mod:`.thermal_plots`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..analysis import mean_sem
from ..errors import MDRunError, MDSetupError
from .common import blown_up, load, progress_printer, resumable
from .thermal_plots import plots  # noqa: F401  (the registry's hook)

KINDS = ("hnemd", "nemd", "interface_nemd")
SUMMARY_ORDER = 50
N_BLOCKS = 10  # block averages per thermal run (the protocols' default n_blocks)


def _bath_settings(axis: str) -> dict:
    """The heat-bath keys shared by md.thermal.nemd and md.thermal.interface."""
    return {"delta_T_K": (float, 40.0, "hot minus cold bath temperature (K)"),
            "bath_width_A": (float, 5.0, f"width of each bath along {axis} (Å)"),
            "production_steps": (int, 200000, "NEMD production steps (after a transient of a quarter of them)")}


SETTINGS = {"thermal": {
    "enabled": (bool, False, "thermal transport MD: HNEMD conductivity of the phases, NEMD length dependence, "
                             "interface conductance (md_gpu.protocols.hnemd, nemd, interface_nemd)"),
    "seeds": (int, 3, "independent seeds per thermal run"),
    "directions": (list, ["x", "y"], "HNEMD transport directions of the phases (x, y)"),
    "driving_force_per_A": (float, 1e-4, "HNEMD driving force F_e (1/Å); small enough for linear response"),
    "equilibrate_steps": (int, 20000, "equilibration steps before each thermal run"),
    "production_steps": (int, 500000, "HNEMD production steps (the running conductivity is averaged "
                                      "over them)"),
    "supercell": (list, [2, 2], "repeats [nx, ny] of the system's 0 K cell in the thermal runs: the HNEMD cell; "
                                "NEMD cells take ny from it, the interface cell nx"),
    "nemd": {
        "enabled": (bool, True, "NEMD along x at several lengths: kappa(L) and the 1/kappa vs 1/L "
                                "extrapolation to infinite length"),
        "repeats": (list, [3, 6, 12], "cell lengths as repeats of the system's 0 K cell along x "
                                     "(two or more; the baths need a cell of about 35 Å)"),
        **_bath_settings("x"),
    },
    "interface": {
        "enabled": (bool, True, "NEMD across the interface cell of each interface system: conductance G"),
        "repeats_normal": (int, 2, "repeats of the interface cell along its normal y (even)"),
        **_bath_settings("y"),
    },
}}


def _positive_ints(values) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)


def check(settings: dict) -> None:
    """Errors name the key (``md.thermal.nemd.repeats``); checked even when the block is off."""
    th, temperature_K = settings["thermal"], settings["temperature_K"]

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


def _phase_species(system) -> dict | None:
    """Phase name -> its species (from the phases' 0 K cell files) for an interface system's ``between``;
    None when the phases' files are not known (the interfaces are then found from the species alone)."""
    import ase.io

    between = list(system.entry.get("between", []))
    if len(between) != 2 or any(p not in system.structures for p in between):
        return None
    return {p: sorted(set(ase.io.read(system.structures[p]).get_chemical_symbols())) for p in between}


def plan(settings: dict, system) -> list[dict]:
    """Phases: HNEMD per direction x seed and NEMD along x per length x seed; interfaces: NEMD across
    the interface (normal y) per seed. ``repeat`` [nx, ny] is the thermal cell."""
    th = settings["thermal"]
    if not th["enabled"]:
        return []
    base, name, (nx, ny) = system.base, system.name, th["supercell"]
    if system.is_interface:
        if not th["interface"]["enabled"]:
            return []
        # The interface cell is half of each phase: quote fluxes at the mean effective thickness.
        thicknesses = [system.systems[p].get("thickness_A") for p in system.entry.get("between", [])
                       if p in system.systems]
        thickness = sum(thicknesses) / len(thicknesses) if thicknesses and None not in thicknesses \
            else base["thickness_A"]
        return [{**base, "kind": "interface_nemd", "direction": "y", "seed": seed, "thickness_A": thickness,
                 "repeat": [nx, th["interface"]["repeats_normal"]], "name": f"{name}_nemd_seed{seed}",
                 "phases": _phase_species(system)} for seed in range(th["seeds"])]
    tasks = []
    for seed in range(th["seeds"]):
        tasks += [{**base, "kind": "hnemd", "direction": d, "seed": seed, "repeat": [nx, ny],
                   "name": f"{name}_hnemd_{d}_seed{seed}"} for d in th["directions"]]
        if th["nemd"]["enabled"]:
            tasks += [{**base, "kind": "nemd", "direction": "x", "length_repeats": n, "seed": seed,
                       "repeat": [n, ny], "name": f"{name}_nemd_L{n}_seed{seed}"} for n in th["nemd"]["repeats"]]
    return tasks


def run(task: dict) -> dict:
    """One thermal run: ``md_gpu.protocols.<kind>`` with ``md.thermal``. ``result``: the protocol's
    properties; also ``h5``, ``n_atoms`` and, for the plots, ``series``, ``profile``, ``interfaces_A``."""
    from .. import protocols

    ff, atoms, run_settings, prefix = load(task)
    th = task["settings"]["thermal"]
    kind = task["kind"]
    run_settings = replace(run_settings, equilibrate_steps=th["equilibrate_steps"])
    if kind == "hnemd":
        options = {"direction": task["direction"], "driving_force_per_A": th["driving_force_per_A"],
                   "production_steps": th["production_steps"]}
    else:
        block = th["nemd" if kind == "nemd" else "interface"]
        options = {"direction" if kind == "nemd" else "axis": task["direction"], "delta_T_K": block["delta_T_K"],
                   "bath_width_A": block["bath_width_A"], "production_steps": block["production_steps"]}
        if kind == "interface_nemd":
            options["phases"] = task.get("phases")
    try:
        r = getattr(protocols, kind)(ff, atoms, settings=run_settings, thickness_A=task["thickness_A"],
                                     out_prefix=prefix, resume=resumable(task, prefix), log=progress_printer(task),
                                     **options)
    except MDRunError as exc:
        return blown_up(task, exc)
    except MDSetupError as exc:  # e.g. a NEMD cell too short for its baths: name the settings block
        block = {"hnemd": "", "nemd": ".nemd", "interface_nemd": ".interface"}[kind]
        raise MDSetupError(f"md.thermal{block} ({task['name']}): {exc}") from None
    out = {**task, "result": r["properties"], "h5": Path(r["h5"]).name if r.get("h5") else None,
           "n_atoms": r["properties"]["n_atoms"]}
    for key in ("series", "profile", "interfaces_A"):  # for the plots (the protocols keep them short)
        if key in r:
            out[key] = r[key]
    return out


def note(provenance: dict, result: dict) -> None:
    """Nothing: thermal runs keep their own provenance (``thermal.provenance``)."""


def summarise(results: list[dict], settings: dict) -> dict:
    """``{system: {"thermal": entry}}`` (module docstring)."""
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
        blown = [{"run": r["name"], "reason": r["blew_up"]} for r in runs if r.get("blew_up")]
        if blown:
            provenance["blown_up"] = blown
        if ("interface_nemd", "y") in kept:
            done = kept[("interface_nemd", "y")]
            lost_here = len(groups[("interface_nemd", "y")]) - len(done)
            entry = {"conductance_W_per_m2K": _seed_stats(done, "conductance_W_per_m2K", blown_up=lost_here),
                     **{k: mean_sem([r["result"][k] for r in done], blown_up=lost_here)
                        for k in ("temperature_jump_K", "heat_flux_W_per_m2")}}
            provenance.update(n_atoms=done[0]["n_atoms"], repeat=done[0]["repeat"],
                              **{k: th["interface"][k] for k in ("delta_T_K", "bath_width_A", "production_steps")})
        else:
            hnemd = {d: kept[("hnemd", d)] for d in th["directions"] if ("hnemd", d) in kept}
            entry = {"conductivity_W_per_mK": {d: _seed_stats(done, blown_up=len(groups[("hnemd", d)]) - len(done))
                                               for d, done in hnemd.items()},
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
        out[system] = {"thermal": entry}
    return out


def _seed_stats(runs: list[dict], key: str = "conductivity_W_per_mK", blown_up: int | None = None) -> dict:
    """{mean, sem, n} of ``key`` over seeds (with the run counts when ``blown_up`` is given); with one seed
    the sem is that run's block-average sem (``<name>_sem_<unit>``; not null, the run measures its own
    error, which the 1/L fit and the Kapitza lengths need)."""
    stats = mean_sem([r["result"][key] for r in runs], blown_up=blown_up)
    if stats["n"] == 1:
        stats["sem"] = float(runs[0]["result"][key.replace("_W_", "_sem_W_", 1)])
    return stats


def _length_dependence(system: str, per_length: list[list[dict]]) -> dict:
    """kappa(L) over seeds per NEMD length (L in nm, kappa in W/(m K)), and the 1/kappa vs 1/L
    extrapolation to infinite length (left out, with the reason in ``extrapolation_error``, when the data
    give no diffusive limit)."""
    from ..protocols import extrapolate_length

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
