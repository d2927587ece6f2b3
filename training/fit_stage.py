"""The ``fit`` stage: one passively trained MTP (or, ``fit.model: nep``, a NEP) per system of the case, with
its report.

Data flow (docs/architecture.md): ``runs/data/<system>.extxyz.gz`` (the data stage's datasets) +
``case.yaml`` ``fit:`` (:data:`FIT_SETTINGS`; ``fit.per_system.<system>`` changes level, max_iter, method,
radial_basis_size, seed, model or chain_weights for one system, :func:`system_settings`) -> for each system
(farmed with ``ctx.map``; an interface system also gets the frames of the phases in its ``between``,
``fit.interface_with_phases``): an initial MTP (MLIP's level template for the system's species, or
``fit.init``) -> two-step passive training (:func:`training.passive.passive_train`; ``fit.chain_weights``
gives the frames of single chains their own loss weights, :func:`training.fit_data.chain_frame_weights`)
-> ``ctx.out_dir``:

* ``<system>.mtp``        the final potential (MLIP text format, species in ``potential_tag``);
* ``<system>.als``        its MaxVol active set (HDF5, :class:`training.mtp.maxvol.ActiveSet`), read by the
                          MD stage's on-the-fly extrapolation control;
* ``<system>_preliminary.mtp``, ``<system>_preliminary.als``  the step-1 potential and its active set
                          (for comparison);
* ``<system>_fit.json``   report: settings, frames per chain of fit.chain_weights, frames per step, RMSEs
                          before/after (train, all, validation), grades, timings;
* ``<system>_parity.png`` energy / force / stress parity plots of the final potential on all frames;
* ``<system>_grades.png`` histogram of the frame grades with the preliminary and final potentials;
* ``summary.json``        the returned summary: per system the report without its per-frame lists.

While the stage runs, each fit of a system's passive training checkpoints its optimiser state to
``<system>.fit<k>.npz`` (:func:`checkpointed`); the stage run again after a kill continues every fit from
there (a finished one from its last iteration) to the same potentials, and the checkpoints are deleted
when every system is done.

With ``fit.model: nep`` (also per system, ``fit.per_system.<system>.model``) :func:`fit_nep_system`
fits a GPUMD NEP of the sizes in ``fit.nep`` (:func:`training.nep_fit.fit_nep`: L-BFGS with the exact
gradient, ``max_iter`` iterations, the same loss weights and seed) on all frames but the validation
fraction (checkpointed to ``<system>.fit0.npz`` as above), and writes ``<system>.nep.txt``,
``<system>_parity.png`` and ``<system>_fit.json`` (``model: nep``, sizes, errors on the training and
validation frames and on all frames). There is no
active set: MaxVol grades need a model linear in its coefficients, which a NEP is not, and the md
stage's grade checks are off for the system (as for a brought potential).

A system that brings its own potential (``systems.<name>.potential`` of ``case.yaml``: a GPUMD NEP file
or an MLIP ``.mtp``, checked when the case loads, :mod:`multiscale.potentials`) is not fitted:
:func:`bring_potential` copies the file to ``<system>.nep.txt`` or ``<system>.mtp``
(:func:`common.potentials.fit_file_name`) and writes ``<system>_fit.json`` with ``brought: true``, the
source path, its sha256, the model, its elements and, when the system has a dataset, the potential's
errors on it (an MTP's, with ``<system>_parity.png``; a NEP is evaluated by the MD engine only, which
this package does not import, so its errors are ``null`` with the reason in ``errors_note``). No active
set: the md stage's extrapolation grades are off for such a system.

Parallelism: the systems are farmed over the MPI ranks costliest first (an interface fit sees the
frames of its phases too, and its level may be higher: it is the stage's critical path), and each
fit spreads its frame batches over :func:`fit_threads` threads, so the cores of ranks that finished
their share speed up the last fit (``make demo`` starts the ranks unbound, ``--bind-to none``).
The threads change the time, not the potential.
"""
from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from common.atomic import atomic_path
from common.potentials import fit_file_name, nep_species, potential_model

from . import datasets, fit_report
from .mtp.maxvol import MODES, PARAMETERS
from .passive import make_fit_fn, passive_train

FIT_SETTINGS = {
    "model": (str, "mtp", "mtp: an MLIP moment tensor potential, two-step passive training | nep: a GPUMD NEP "
                          "(sizes in fit.nep) fitted on all training frames (training.nep_fit)"),
    "nep": {
        "version": (int, 4, "NEP3 (one network for all species) or NEP4 (one network per species)"),
        "cutoff_A": (list, [5.0, 4.0], "radial and angular cut-offs (Å)"),
        "n_max": (list, [4, 4], "radial and angular descriptor sizes: n_max + 1 radial functions each"),
        "basis_size": (list, [8, 8], "Chebyshev basis of the radial and angular radial functions (basis_size + 1)"),
        "l_max": (list, [4, 2, 0], "l_max of the 3-body part, 4-body term (0 or 2), 5-body term (0 or 1)"),
        "neurons": (int, 30, "neurons of the hidden layer"),
        "reg": (float, 1e-6, "ridge on all parameters, added to the loss per frame"),
    },
    "level": (int, 10, "MTP level (MLIP's templates: 2, 4, ..., 20); higher is more accurate and slower"),
    "min_dist_A": (float, 1.0, "inner radius of the radial basis (Å)"),
    "cutoff_A": (float, 5.0, "cut-off radius max_dist (Å)"),
    "radial_basis_size": (int, 8, "Chebyshev radial basis functions per radial function"),
    "init": (str, "", "start from this .mtp (path relative to the case directory) instead of the level template"),
    "method": (str, "full", "full: radial and linear coefficients (training.fit.train_mtp) | linear: only the "
                            "linear coefficients at fixed random radial coefficients (fast, less accurate)"),
    "max_iter": (int, 100, "optimiser iterations of each fit (MTP method: full; NEP: L-BFGS)"),
    "weights": {
        "energy": (float, 1.0, "weight of the energy per atom (eV/atom)"),
        "forces": (float, 0.01, "weight of the force components (eV/Å)"),
        "stress": (float, 0.001, "weight of the virial per atom (eV/atom)"),
    },
    "chain_weights": (dict, {}, "loss weights of the frames of one dataset chain over fit.weights (MTP only), e.g. "
                               "{strains: {stress: 0.1}}: the 0 K strain frames pin the elastic constants "
                               "(training.fit_data.chain_frame_weights)"),
    "seed": (int, 0, "seed of the initial radial coefficients and of the validation split"),
    "validation_fraction": (float, 0.1, "fraction of the frames held out of training, for validation"),
    "interface_with_phases": (bool, True, "fit an interface system on its own frames plus those of the phases "
                                          "in its 'between' (their environments occur in interface MD too)"),
    "passive": {
        "every_k": (int, 10, "step 1 trains on every k-th frame of each AIMD chain"),
        "threshold": (float, 2.0, "frames graded above this (> 1) are added in step 2"),
        "max_add": (int, 0, "at most this many frames added per round, most extrapolative first (0: no limit)"),
        "mode": (str, "neighbourhood", "active-set mode: neighbourhood (per-atom grades, as MD uses) | configuration"),
        "parameters": (str, "all", "active-set rows: all coefficients incl. radial (as MLIP-2) | linear (faster)"),
        "rounds": (int, 1, "grade-and-refit rounds (1: the two-step scheme)"),
    },
    "per_system": (dict, {}, "settings of single systems over the ones above, e.g. {interface: {level: 12}} "
                             "(keys: level, max_iter, method, radial_basis_size, seed, model, chain_weights)"),
}
#: At most this many threads per fit: each holds one frame batch's arrays (a few hundred MB).
FIT_MAX_THREADS = 4


def fit_threads() -> int:
    """Threads of one fit: the cores this process may run on (its affinity), at most FIT_MAX_THREADS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(FIT_MAX_THREADS, cores))


def fit_cost(task: dict) -> float:
    """A relative cost of fitting ``task`` for scheduling: dataset bytes (~ atoms x frames) x level^2 (a
    brought potential: its dataset's bytes, evaluated once)."""
    if task.get("brought"):
        return float(Path(task["dataset"]).stat().st_size) if task["dataset"] else 1.0
    size = sum(Path(p).stat().st_size for p in [task["dataset"], *task.get("extra_datasets", [])])
    if task["settings"]["model"] == "nep":  # each iteration sees all frames: max_iter passes over the data
        return float(size) * task["settings"]["max_iter"]
    return float(size) * task["settings"]["level"] ** 2


# What fit.per_system may change: the model and its optimisation (chain_weights: the weights of single
# chains, which one system's data may hold and another's not). Cut-offs stay common (the MD stage and
# the MTP files of one case share them) and so do the data and passive-selection settings.
PER_SYSTEM_KEYS = ("level", "max_iter", "method", "radial_basis_size", "seed", "model", "chain_weights")


def defaults(schema: dict) -> dict:
    """The default settings of a schema (nested dicts for sub-sections), for callers without the runner."""
    return {k: defaults(v) if isinstance(v, dict) else (v[1].copy() if isinstance(v[1], (dict, list)) else v[1])
            for k, v in schema.items()}


def system_settings(settings: dict, system: str) -> dict:
    """The settings the fit of ``system`` uses: ``settings`` with ``per_system[system]`` over them
    (and without ``per_system``)."""
    out = {k: v for k, v in settings.items() if k != "per_system"}
    out.update(settings.get("per_system", {}).get(system, {}))
    return out


def _check_per_system(settings: dict) -> None:
    for system, over in settings.get("per_system", {}).items():
        where = f"fit.per_system.{system}"
        if not isinstance(over, dict):
            raise ValueError(f"{where}: must be a mapping of fit settings, e.g. {{level: 12}}, got {over!r}")
        for key, value in over.items():
            if key not in PER_SYSTEM_KEYS:
                raise ValueError(f"{where}.{key}: not a per-system setting; allowed: {', '.join(PER_SYSTEM_KEYS)}")
            kind = FIT_SETTINGS[key][0]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"{where}.{key}: must be {kind.__name__}, got {value!r}")
        try:
            check_settings(system_settings(settings, system))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


def _check_chain_weights(settings: dict) -> None:
    from training.fit_data import FitError, chain_frame_weights

    if settings["chain_weights"] and settings["model"] == "nep":
        raise ValueError("fit.chain_weights: applies to MTP fits only (a NEP has one weight per quantity); set "
                         "fit.chain_weights: {} for fit.model: nep")
    try:
        chain_frame_weights([], settings["weights"], settings["chain_weights"])
    except FitError as exc:
        raise ValueError(f"fit.{exc}") from None


def check_settings(settings: dict) -> None:
    """Value checks of a complete ``fit:`` section; ValueError names the key."""
    _check_per_system(settings)
    if settings["model"] not in ("mtp", "nep"):
        raise ValueError(f"fit.model: {settings['model']!r} is not one of mtp, nep")
    if settings["model"] == "nep":
        nep_sizes(settings)
    if settings["method"] not in ("full", "linear"):
        raise ValueError(f"fit.method: {settings['method']!r} is not one of full, linear")
    _check_chain_weights(settings)
    if settings["passive"]["parameters"] not in PARAMETERS:
        raise ValueError(f"fit.passive.parameters: {settings['passive']['parameters']!r} is not one of "
                         f"{', '.join(PARAMETERS)}")
    if settings["passive"]["mode"] not in MODES:
        raise ValueError(f"fit.passive.mode: {settings['passive']['mode']!r} is not one of {', '.join(MODES)}")
    if settings["level"] not in range(2, 21, 2):
        raise ValueError(f"fit.level: {settings['level']} is not one of MLIP's levels 2, 4, ..., 20")
    if not 0 <= settings["min_dist_A"] < settings["cutoff_A"]:
        raise ValueError(f"fit.min_dist_A, fit.cutoff_A: need 0 <= min_dist_A < cutoff_A, got "
                         f"{settings['min_dist_A']}, {settings['cutoff_A']}")
    if settings["max_iter"] < 0:
        raise ValueError(f"fit.max_iter: must be >= 0, got {settings['max_iter']}")
    for key in ("every_k", "rounds"):
        if settings["passive"][key] < 1:
            raise ValueError(f"fit.passive.{key}: must be >= 1, got {settings['passive'][key]}")
    if settings["passive"]["threshold"] <= 1:
        raise ValueError(f"fit.passive.threshold: must be > 1 (grades <= 1 interpolate), got "
                         f"{settings['passive']['threshold']}")
    if not 0 <= settings["validation_fraction"] < 0.5:
        raise ValueError(f"fit.validation_fraction: must be in [0, 0.5), got {settings['validation_fraction']}")
    if settings["method"] == "full":
        try:
            from training.fit import train_mtp  # noqa: F401
        except ImportError as exc:
            raise ValueError(f"fit.method: 'full' needs training.fit.train_mtp, which cannot be imported ({exc}); "
                             "set fit.method: linear") from None


def nep_sizes(settings: dict):
    """The :class:`training.nep_fit.NEPSizes` of ``fit.nep``; ValueError names the key."""
    from training.nep_fit import NEPSizes

    sizes = {k: v for k, v in settings["nep"].items() if k != "reg"}
    try:
        return NEPSizes.coerce(sizes)
    except ValueError as exc:
        raise ValueError(f"fit.{exc}") from None


def read_frames(task: dict) -> list:
    """The frames of a fit task: its dataset, then its extra datasets (an interface's phases)."""
    frames = []
    for path in [task["dataset"], *task.get("extra_datasets", [])]:
        for atoms in datasets.read(path):
            # chains of different datasets share names (chain_00_T300_x): keep them apart
            atoms.info["chain"] = f"{Path(path).name}:{atoms.info.get('chain', '')}"
            frames.append(atoms)
    return frames


def initial_potential(settings: dict, frames, case_dir):
    """The starting MTP: ``fit.init`` (with the frames' species) or MLIP's template of ``fit.level``."""
    from training.mtp import MTP

    species = sorted({s for a in frames for s in a.get_chemical_symbols()})
    if settings["init"]:
        path = Path(case_dir) / settings["init"]
        if not path.is_file():
            raise ValueError(f"fit.init: {path} does not exist")
        mtp = MTP.read(path)
        if mtp.species is None:
            if mtp.species_count != len(species):
                raise ValueError(f"fit.init: {path} has species_count = {mtp.species_count} and names no elements, "
                                 f"the data has {len(species)} ({', '.join(species)}): start from a potential of "
                                 "as many species or leave fit.init empty (MLIP's template of fit.level)")
            mtp.species = species
        missing = sorted(set(species) - set(mtp.species))
        if missing:
            raise ValueError(f"fit.init: {path} is a potential for {', '.join(mtp.species)}; the data also has "
                             f"{', '.join(missing)}: start from a potential of these elements or leave fit.init "
                             "empty (MLIP's template of fit.level)")
        return mtp
    return MTP.untrained(settings["level"], len(species), species=species, min_dist=settings["min_dist_A"],
                         max_dist=settings["cutoff_A"], radial_basis_size=settings["radial_basis_size"],
                         seed=settings["seed"])


def fit_system(task: dict) -> dict:
    """Passive training of one system's MTP (a ``ctx.map`` task: system, dataset, out_dir, case_dir,
    settings), or :func:`fit_nep_system` with ``model: nep``; writes the system's files (module
    docstring) and returns its report."""
    settings, name, out = task["settings"], task["system"], Path(task["out_dir"])
    if settings["model"] == "nep":
        return fit_nep_system(task)
    t0 = time.time()
    frames = read_frames(task)
    init = initial_potential(settings, frames, task["case_dir"])
    fit_fn = make_fit_fn(settings["method"], max_iter=settings["max_iter"], weights=settings["weights"],
                         chain_weights=settings["chain_weights"], progress=lambda done, total, text: None,
                         threads=fit_threads())
    p = settings["passive"]
    lines: list[str] = []
    weighted = chain_weight_counts(frames, settings["chain_weights"])
    for chain, count in weighted.items():
        lines.append(f"fit.chain_weights.{chain}: {count} frame(s) of chain '{chain}' weighted "
                     f"{settings['chain_weights'][chain]}" if count else
                     f"fit.chain_weights.{chain}: no frame of {name}'s data is in chain '{chain}'; nothing weighted")
    res = passive_train(init, frames, fit_fn=checkpointed(fit_fn, out, name), every_k=p["every_k"],
                        threshold=p["threshold"],
                        max_add=p["max_add"], mode=p["mode"], parameters=p["parameters"],
                        validation_fraction=settings["validation_fraction"],
                        seed=settings["seed"], rounds=p["rounds"], log=lines.append)
    for mtp, path in ((res.mtp, out / f"{name}.mtp"), (res.preliminary, out / f"{name}_preliminary.mtp")):
        with atomic_path(path) as tmp:
            mtp.write(tmp)
    res.active_set.save(out / f"{name}.als")
    res.active_set_preliminary.save(out / f"{name}_preliminary.als")
    pred = fit_report.predict(res.mtp, frames)
    fit_report.parity_png(pred, out / f"{name}_parity.png", title=f"{name}: final MTP on all {len(frames)} frames")
    fit_report.grades_png(res.grades_preliminary, res.grades_final, p["threshold"], out / f"{name}_grades.png",
                          title=f"{name}: extrapolation grades")
    report = {"system": name, "dataset": str(task["dataset"]), "extra_datasets": task.get("extra_datasets", []),
              "model": "mtp", "species": res.mtp.species, "level": settings["level"],
              "basis_size": res.mtp.basis_size, "settings": settings, "chain_weighted_frames": weighted, **res.report,
              "errors_all_frames": fit_report.metrics(pred),
              "shortest_distance_A": datasets.shortest_pair_distances(frames),
              "grades": {"preliminary": res.grades_preliminary.tolist(), "final": res.grades_final.tolist()},
              "log": lines, "seconds_total": time.time() - t0,
              "files": {"potential": f"{name}.mtp", "active_set": f"{name}.als", "parity": f"{name}_parity.png",
                        "grades": f"{name}_grades.png", "preliminary": f"{name}_preliminary.mtp",
                        "preliminary_active_set": f"{name}_preliminary.als"}}
    fit_report.write_json(out / f"{name}_fit.json", report)
    return report


def chain_weight_counts(frames, chain_weights: dict) -> dict:
    """{chain: number of ``frames`` in it} for each chain of ``chain_weights`` (0: the key weights nothing)."""
    from training.fit_data import frame_chain

    chains = [frame_chain(atoms) for atoms in frames]
    return {chain: chains.count(chain) for chain in chain_weights}


def checkpointed(fit_fn, out: Path, name: str):
    """``fit_fn`` with an optimiser checkpoint per call: the k-th fit of the passive training of system
    ``name`` saves its state every iteration to ``<out>/<name>.fit<k>.npz`` and continues from it when the
    stage runs again after a kill (:func:`training.fit.fit`: to the same potential, bit for bit). A
    checkpoint of another fit problem (other data or settings) is deleted and that fit starts afresh."""
    from training.fit_data import FitError
    from training.optimize import CheckpointMismatch

    calls = itertools.count()

    def fit(init, frames, **kwargs):
        checkpoint = out / f"{name}.fit{next(calls)}.npz"
        try:
            return fit_fn(init, frames, checkpoint=checkpoint, resume=True, **kwargs)
        except FitError as exc:
            if not isinstance(exc.__cause__, CheckpointMismatch):
                raise
            checkpoint.unlink()
            return fit_fn(init, frames, checkpoint=checkpoint, resume=True, **kwargs)

    return fit


def fit_nep_system(task: dict) -> dict:
    """Fit a NEP for one system (a ``ctx.map`` task as for :func:`fit_system`, ``fit.model: nep``): on all
    frames but the held-out validation fraction (the MTP's passive selection does not apply,
    :mod:`training.nep_fit`), checkpointed as the MTP's fits (:func:`checkpointed`); writes
    ``<system>.nep.txt``, ``<system>_parity.png`` and ``<system>_fit.json`` and returns the report."""
    from training.nep_fit import NEPTrainingSet, fit_nep, predict, write_nep
    from training.passive import validation_split

    settings, name, out = task["settings"], task["system"], Path(task["out_dir"])
    t0 = time.time()
    frames = read_frames(task)
    species = sorted({s for a in frames for s in a.get_chemical_symbols()})
    valid, train = validation_split(len(frames), settings["validation_fraction"], settings["seed"])
    pick = lambda idx: [frames[k] for k in idx]  # noqa: E731
    sizes = nep_sizes(settings)

    def nep_fn(_init, train_frames, **kwargs):
        return fit_nep(train_frames, species=species, sizes=sizes, max_iter=settings["max_iter"],
                       weights=settings["weights"], reg=settings["nep"]["reg"], seed=settings["seed"],
                       progress=lambda done, total, text: None, source=str(task["dataset"]),
                       threads=fit_threads(), **kwargs)

    model, fit = checkpointed(nep_fn, out, name)(None, pick(train))
    write_nep(model, out / f"{name}.nep.txt")
    errors = {"train": fit["train"]}
    if len(valid):
        errors["valid"] = dict(fit_report.metrics(predict(model, NEPTrainingSet.build(
            pick(valid), species, model.rc_max))), n_frames=int(len(valid)))
    pred = predict(model, NEPTrainingSet.build(frames, species, model.rc_max))
    fit_report.parity_png(pred, out / f"{name}_parity.png", title=f"{name}: NEP on all {len(frames)} frames",
                          model="NEP")
    report = {"system": name, "dataset": str(task["dataset"]), "extra_datasets": task.get("extra_datasets", []),
              "model": "nep", "species": species, "sizes": fit["sizes"], "n_parameters": fit["n_parameters"],
              "settings": settings, "n_frames": len(frames), "n_valid": int(len(valid)),
              "n_train_final": int(len(train)),
              "steps": [{"step": "fit", "n_train": int(len(train)), "seconds": fit["seconds"],
                         "iterations": fit["iterations"], "errors": errors}],
              "loss_history": fit["loss_history"], "passive": "not applied to a NEP: fitted on all training "
              "frames, no extrapolation grades (training.nep_fit)",
              "errors_all_frames": fit_report.metrics(pred),
              "shortest_distance_A": datasets.shortest_pair_distances(frames), "seconds_total": time.time() - t0,
              "files": {"potential": f"{name}.nep.txt", "parity": f"{name}_parity.png"}}
    fit_report.write_json(out / f"{name}_fit.json", report)
    return report


def brought_source(entry: dict, case_dir) -> Path:
    """The file ``systems.<name>.potential`` names: relative to ``case_dir`` unless absolute."""
    path = Path(entry["potential"])
    return path if path.is_absolute() else Path(case_dir) / path


def bring_potential(task: dict) -> dict:
    """Copy the potential a system brings into the stage's folder and report it (module docstring); a
    ``ctx.map`` task: system, source, dataset (a path or None), out_dir. Returns its report."""
    import hashlib
    import shutil

    t0 = time.time()
    name, source, out = task["system"], Path(task["source"]), Path(task["out_dir"])
    model = potential_model(source)
    if model is None:
        raise ValueError(f"systems.{name}.potential: {source} is neither a GPUMD NEP nor an MLIP .mtp file")
    target = out / fit_file_name(name, model)
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    files = {"potential": target.name}
    if model == "mtp":
        from training.mtp import MTP

        mtp = MTP.read(target)
        species = list(mtp.species or [])
    else:
        species = nep_species(target)
    report = {"system": name, "brought": True, "source": str(source),
              "sha256": hashlib.sha256(target.read_bytes()).hexdigest(), "model": model, "species": species,
              "dataset": task["dataset"], "errors_all_frames": None, "files": files}
    if not task["dataset"]:
        report["errors_note"] = f"no dataset of '{name}' in the data stage's folder: nothing to compare with"
    elif model == "nep":
        report["errors_note"] = ("a NEP is evaluated by the MD engine (md_gpu) only, which the fit stage does "
                                 "not import: no errors on the dataset")
    else:
        frames = datasets.read(task["dataset"])
        pred = fit_report.predict(mtp, frames)
        report["n_frames"] = len(frames)
        report["errors_all_frames"] = fit_report.metrics(pred)
        # a potential fitted to another reference method sits at another energy zero: the mean offset
        e_pred, e_ref = pred["energy_per_atom"]
        report["energy_offset_eV_per_atom"] = float((e_pred - e_ref).mean()) if len(frames) else None
        fit_report.parity_png(pred, out / f"{name}_parity.png",
                              title=f"{name}: brought MTP on all {len(frames)} frames")
        files["parity"] = f"{name}_parity.png"
    report["seconds_total"] = time.time() - t0
    fit_report.write_json(out / f"{name}_fit.json", report)
    return report


def fit_or_bring(task: dict) -> dict:
    """One ``ctx.map`` task of the stage: :func:`bring_potential` or :func:`fit_system`."""
    return bring_potential(task) if task.get("brought") else fit_system(task)


def _brought_line(rep: dict) -> str:
    errors = rep.get("errors_all_frames")
    said = (f"force RMSE {errors['forces']['rmse']:.3g} eV/A on {rep['n_frames']} frames" if errors
            else rep.get("errors_note", ""))
    return (f"fit: {rep['system']}: brought {rep['model'].upper()} potential ({', '.join(rep['species'])}) from "
            f"{rep['source']}, copied to {rep['files']['potential']}; {said}")


def run_fit(settings: dict, ctx) -> dict:
    """Run the fit stage (module docstring); returns the per-system summary (also ``summary.json``)."""
    check_settings(settings)
    unknown = sorted(set(settings["per_system"]) - set(ctx.systems))
    if unknown:
        raise ValueError(f"fit.per_system: {', '.join(unknown)} is not a system of the case (systems: "
                         f"{', '.join(ctx.systems)})")
    brought = [name for name, entry in ctx.systems.items() if (entry or {}).get("potential")]
    tuned = sorted(set(settings["per_system"]) & set(brought))
    if tuned:
        raise ValueError(f"fit.per_system: {', '.join(tuned)} brings its own potential (systems.<name>.potential) "
                         f"and is not fitted; remove its entry from fit.per_system")
    data_dir = ctx.stage_dir("data")
    tasks = []
    for name in ctx.systems:
        dataset = Path(data_dir) / f"{name}.extxyz.gz"
        if name in brought:
            tasks.append({"system": name, "brought": True, "source": str(brought_source(ctx.systems[name], ctx.case_dir)),
                          "dataset": str(dataset) if dataset.is_file() else None, "out_dir": str(ctx.out_dir)})
            continue
        if not dataset.is_file():
            raise datasets.DatasetError(f"fit: {dataset} is missing; the data stage wrote no dataset for '{name}' "
                                        f"(rerun `multiscale run {ctx.case_dir} --stages data`)")
        entry = ctx.systems[name] or {}
        extra = [str(Path(data_dir) / f"{phase}.extxyz.gz") for phase in entry.get("between") or []
                 if entry.get("kind") == "interface" and settings["interface_with_phases"]]
        for path in extra:
            if not Path(path).is_file():
                raise datasets.DatasetError(f"fit: {path} is missing (interface '{name}' is fitted with the data of "
                                            f"its phases; set fit.interface_with_phases: false to fit it alone)")
        tasks.append({"system": name, "dataset": str(dataset), "extra_datasets": extra, "out_dir": str(ctx.out_dir),
                      "case_dir": str(ctx.case_dir), "settings": system_settings(settings, name)})
    if len(tasks) > len(brought):
        what = (f"NEP fit of {len(tasks) - len(brought)} potential(s)" if settings["model"] == "nep" else
                f"passive training of {len(tasks) - len(brought)} potential(s), level {settings['level']}, "
                f"method {settings['method']}, {fit_threads()} thread(s) per fit")
        ctx.log(f"fit: {what}" + "".join(f"; {name}: {over}" for name, over in settings["per_system"].items()))
    if brought:
        ctx.log(f"fit: brought potential(s), copied, not fitted: {', '.join(brought)}")
    reports = ctx.map(fit_or_bring, tasks, costs=[fit_cost(t) for t in tasks])
    summary = {"systems": {}}
    for rep in reports:
        if rep.get("brought"):
            summary["systems"][rep["system"]] = rep
            ctx.log(_brought_line(rep))
            continue
        short = {k: v for k, v in rep.items() if k not in ("grades", "log", "settings", "loss_history")}
        short["steps"] = [{k: v for k, v in s.items() if k != "added_frames"} for s in rep["steps"]]
        summary["systems"][rep["system"]] = short
        final = rep["errors_all_frames"]
        if rep["model"] == "nep":
            ctx.log(f"fit: {rep['system']}: NEP{rep['sizes']['version']} ({rep['n_parameters']} parameters) on "
                    f"{rep['n_train_final']} frames, {rep['steps'][0]['iterations']} iterations, force RMSE "
                    f"{final['forces']['rmse']:.3g} eV/A, {rep['seconds_total']:.0f} s")
            continue
        ctx.log(f"fit: {rep['system']}: {rep['steps'][0]['n_train']} -> {rep['n_train_final']} training frames, "
                f"max grade {rep['max_grade_preliminary']:.3g} -> {rep['max_grade_final']:.3g}, force RMSE "
                f"{final['forces']['rmse']:.3g} eV/A, {rep['seconds_total']:.0f} s")
    if ctx.is_root:
        fit_report.write_json(Path(ctx.out_dir) / "summary.json", summary)
        for checkpoint in Path(ctx.out_dir).glob("*.fit[0-9]*.npz"):  # every fit is done: nothing to resume
            checkpoint.unlink()
    return summary
