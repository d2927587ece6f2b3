"""The ``md`` stage: every MD run of the case, farmed over the MPI ranks, and ``summary.json``.

Data flow::

    runs/fit/<system>.mtp or .nep.txt (the one <system>_fit.json names)
      + runs/data/<system>.structure.extxyz (the 0 K cell)
      --plan--> one task (a plain dict) per run: the kinds of the registered task modules (md_gpu.tasks),
                system by system, in the order of md_gpu.tasks.TASKS
      --ctx.map(run_task) over the ranks--> one result dict per task (plan order)
      --summarise--> runs/md/summary.json; figures <system>_*.png on the root rank

The task kinds, their settings blocks, files and ``summary.json`` keys are documented in their modules:
:mod:`md_gpu.tasks.tensile` (uniaxial tension: ``directions`` / ``normal``), :mod:`~md_gpu.tasks.elastic`
(``elastic_<unit>``, ``moduli_<unit>``, ``elastic_low_T_<unit>``), :mod:`~md_gpu.tasks.stability` (``stability``),
:mod:`~md_gpu.tasks.stripes` (``heterostructure``), :mod:`~md_gpu.tasks.thermal` (``thermal``) and
:mod:`~md_gpu.tasks.shear` (``shear_N_per_m``, off by default). ``summary.json`` is what the
``constitutive`` stage reads (docs/properties.md, docs/md.md)::

    {"format": "md_gpu-summary/1", "temperature_K": 300.0, "strain_rate_per_s": 1e9,
     "systems": {<name>: {"provenance": {"potential": <fit potential file>, "md_runs": [...], "strain_rate_per_s",
                                         "temperature_K", "n_atoms", "blown_up": [{"run", "reason"}]},
                          ...the task modules' keys...}}}

The potential of a system is the file that ``<system>_fit.json`` names (``files.potential``,
:func:`fit_potential`): the MTP the fit stage fitted, or the potential the system brings
(``systems.<name>.potential``: a NEP, ``<system>.nep.txt``, or an MTP), which
:func:`md_gpu.forcefields.loading.load_forcefield` reads by its suffix. MTP-only options pass a NEP by:
``md.short_range_core`` (and the core radii of the fit report) act on MTPs only, and the extrapolation
grades of ``md.extrapolation`` need the fit stage's active set (``<system>.als``), which a brought
potential does not have (its runs are not graded, the log says so).

The structures are files, one per system, that the data stage writes (its contract with this stage):
``runs/data/<system>.structure.extxyz``, the system's 0 K cell in ASE extxyz, read with
:func:`md_gpu.structures.load_structure`; a 2D sheet is periodic in x and y with vacuum along z (made
open along z on reading) in a rectangular in-plane cell, an interface system's cell has its interfaces
along x (``normal`` is y), and the stripe cells of :mod:`md_gpu.heterostructure` are built from the
files of the interface's two phases. ``md.supercell`` repeats the cell as written.

Units: 2D stresses and stiffnesses in N/m for sheets (GPa for bulk cells), temperatures in K, strain
rates in 1/s. A checkpoint left in the stage's folder by an interrupted run is resumed when the run's
settings, potential and structure file are unchanged (``<name>.task.json``); otherwise it is deleted. A
finished run's result is kept as ``<name>.result.json`` (:mod:`md_gpu.tasks.common`), so a stage killed
and run again does not repeat it.
"""
from __future__ import annotations

import json

from common.atomic import write_json
from common.contracts import SUMMARY_FORMAT, ContractError, write_summary

from .errors import MDSetupError
from .tasks import TASKS, System, note_blown_up

MD_SETTINGS = TASKS.settings_table()

#: The data stage's file of each system's 0 K cell (ASE extxyz), in its output folder.
STRUCTURE_FILE = "{system}.structure.extxyz"


#: keys of the ``md`` section that must be positive (units in their names); the task modules check the rest
POSITIVE = ("dt_fs", "strain_rate_per_s", "max_strain", "thermostat_tau_fs", "barostat_tau_fs")


def check_settings(settings: dict) -> None:
    """Raise ``ValueError`` naming the key (``md.<block>.<key>``) of the first bad value of ``settings``."""
    for key in POSITIVE:
        if not settings[key] > 0:
            raise ValueError(f"md.{key}: must be > 0, got {settings[key]}")
    if settings["temperature_K"] < 0:
        raise ValueError(f"md.temperature_K: must be >= 0 K, got {settings['temperature_K']}")
    TASKS.check(settings)


def run_task(task: dict) -> dict:
    """One MD run, on any rank (module-level, so that ``ctx.map`` can pickle it): the registered module
    of ``task["kind"]`` runs it and returns plain data."""
    return TASKS.run(task)


def structure_files(ctx) -> dict[str, str]:
    """The 0 K cell of every system of the case, as the data stage wrote it: name -> path (str) of
    ``runs/data/<name>.structure.extxyz`` (:data:`STRUCTURE_FILE`). Raises :class:`MDSetupError` naming
    the missing files and the command that writes them."""
    data_dir = ctx.stage_dir("data")
    files = {name: data_dir / STRUCTURE_FILE.format(system=name) for name in ctx.systems}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        many = len(missing) > 1
        raise MDSetupError(f"md: the data stage's structure file{'s' if many else ''} {', '.join(missing)} "
                           f"{'are' if many else 'is'} missing; run the data stage (`multiscale run "
                           f"{ctx.case_dir} --stages data`), which writes the 0 K cell of every system")
    return {name: str(path) for name, path in files.items()}


def plan_tasks(settings: dict, ctx) -> list[dict]:
    """Every task of the case, system by system (:meth:`md_gpu.tasks.Registry.plan`).

    ``ctx``: ``systems`` (name -> case.yaml block), ``stage_dir(name)`` (the finished output folders of
    the data and fit stages), ``case_dir``, ``out_dir``. Each task's ``structure`` is the system's file
    of :func:`structure_files`."""
    tasks = []
    structures = structure_files(ctx)
    fit_dir = ctx.stage_dir("fit")
    for name, entry in ctx.systems.items():
        potential, report = fit_potential(fit_dir, name, ctx.case_dir)
        files = report.get("files") or {}
        # the fit stage's active set (no report: the .als beside the .mtp); a brought potential has none
        active_set = (fit_dir / files["active_set"] if files.get("active_set") else None) if report \
            else potential.with_suffix(".als")
        if active_set is None and settings["extrapolation"]["every"] > 0:
            ctx.log(f"md.extrapolation: '{name}' runs the {report.get('model', 'potential').upper()} it brings, "
                    "which has no active set: its runs are not graded")
        base = {"system": name, "potential": str(potential), "structure": structures[name],
                "core_radii": report.get("shortest_distance_A"), "active_set": active_set and str(active_set),
                "out_dir": str(ctx.out_dir), "settings": settings, "thickness_A": entry.get("thickness_A")}
        tasks += TASKS.plan(settings, System(name, entry, base, ctx.systems, structures))
    return tasks


def fit_potential(fit_dir, name: str, case_dir="") -> tuple:
    """``(path, report)``: the potential of system ``name`` in the fit stage's folder ``fit_dir`` and that
    stage's report ``<name>_fit.json`` (``{}`` when there is none). The path is the report's
    ``files.potential``: the MTP the stage fitted (``<name>.mtp``) or the potential the system brings
    (``<name>.nep.txt`` or ``<name>.mtp``); without a report, ``<name>.mtp``. Raises
    :class:`MDSetupError` naming the missing file and the command that writes it."""
    report_path = fit_dir / f"{name}_fit.json"
    try:
        report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MDSetupError(f"md: {report_path} is not valid JSON ({exc}): the fit stage's report is damaged; "
                           f"rerun `multiscale run {case_dir} --stages fit --force`") from None
    potential = fit_dir / ((report.get("files") or {}).get("potential") or f"{name}.mtp")
    if not potential.is_file():
        raise MDSetupError(f"md: {potential} is missing; the fit stage did not write a potential for "
                           f"'{name}' (rerun `multiscale run {case_dir} --stages fit`)")
    return potential, report


def summarize_tasks(results: list[dict], settings: dict) -> dict:
    """``summary.json`` from the results (plan order): per system the provenance (each module's ``note``
    on each of its results), then each module's ``summarise`` of its own results."""
    systems: dict = {}
    for r in results:
        entry = systems.setdefault(r["system"], {"provenance": {
            "potential": r["potential"], "md_runs": [], "strain_rate_per_s": settings["strain_rate_per_s"],
            "temperature_K": settings["temperature_K"]}})
        getattr(TASKS.module_of(r["kind"]), "note", note_blown_up)(entry["provenance"], r)
    for module in TASKS.summary_order():
        mine = [r for r in results if r["kind"] in module.KINDS]
        for system, keys in (module.summarise(mine, settings) if mine else {}).items():
            systems[system].update(keys)
    return {"format": SUMMARY_FORMAT, "temperature_K": settings["temperature_K"],
            "strain_rate_per_s": settings["strain_rate_per_s"], "systems": systems}


def run_md(settings: dict, ctx) -> dict:
    """Stage entry point (docs/architecture.md): check the settings, run every task over the ranks, write
    ``summary.json`` and the figures. Returns ``{"runs": number of tasks, "systems": sorted names}``."""
    check_settings(settings)
    tasks = plan_tasks(settings, ctx)
    ctx.log(f"{len(tasks)} MD runs at {settings['temperature_K']} K, strain rate "
            f"{settings['strain_rate_per_s']:.3g} 1/s, over {ctx.farm.size if hasattr(ctx, 'farm') else 1} rank(s)")
    results = ctx.map(run_task, tasks, what="MD runs")
    summary = summarize_tasks(results, settings)
    if ctx.is_root:
        try:
            write_summary(ctx.out_dir / "summary.json", summary)
        except ContractError:  # keep what the runs computed beside the stage's other files, then stop
            write_json(ctx.out_dir / "summary.rejected.json", summary)
            raise
        for system, entry in summary["systems"].items():
            mine = [r for r in results if r["system"] == system and not r.get("blew_up")]
            for module in TASKS.modules.values():
                if hasattr(module, "plots"):
                    module.plots(ctx.out_dir, system, [r for r in mine if r["kind"] in module.KINDS], entry)
    return {"runs": len(tasks), "systems": sorted(summary["systems"])}
