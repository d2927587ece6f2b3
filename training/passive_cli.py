"""``multiscale mtp grade``, ``select-add`` and ``passive``: extrapolation grades and passive training.

``register(subparsers)`` adds the three sub-commands to the ``mtp`` group; each handler ``args.func(args)``
returns an exit code (0 ok, 1 a bad input, reported on one line naming the file or option).

* ``grade POT TRAIN IN OUT`` (MLIP's ``mlp calc-grade``): the MaxVol active set of TRAIN (or an ``.als``
  given as TRAIN) for POT, then every configuration of IN graded; OUT gets ``MV_grade`` per configuration
  (``atoms.info``) and ``nbh_grades`` per atom, as MLIP writes them.  ``--als FILE`` saves the active set.
* ``select-add POT TRAIN NEW OUT`` (MLIP's ``mlp select-add``): the configurations of NEW that MaxVol
  would add to TRAIN's active set, written to OUT.
* ``passive CASE|DATA…``: two-step passive training (the fit stage's :func:`training.fit_stage.fit_system`)
  of every system of a case directory, or of each dataset file (system name = file name up to the first
  dot); the potentials, active sets, reports and plots go to ``--out-dir``.

Files: ``.cfg``/``.cfg.gz`` are MLIP's format, anything else is read and written by ASE (extxyz).
"""
from __future__ import annotations

import sys
from pathlib import Path


def _is_cfg(path) -> bool:
    name = Path(path).name
    return name.endswith(".cfg") or name.endswith(".cfg.gz")


def _read(path, mtp, *, labelled: bool = False):
    from training import datasets
    from training.mtp import read_cfg

    if labelled:
        return datasets.read(path, species=mtp.species)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if _is_cfg(path):
        return read_cfg(path, species=mtp.species)
    import ase.io

    return ase.io.read(path, ":")


def _write(path, frames, mtp) -> None:
    """Write ``frames`` to ``path`` atomically: MLIP ``.cfg`` (``.cfg.gz``) or any format ASE picks from the name."""
    from common.atomic import atomic_path

    with atomic_path(path) as tmp:
        if _is_cfg(path):
            from training.mtp import write_cfg

            write_cfg(tmp, frames, species=mtp.species)
        else:
            import ase.io

            ase.io.write(tmp, frames)


def _potential(args):
    from training.mtp import MTP

    mtp = MTP.read(args.potential)
    if args.species:
        mtp.species = args.species.split(",")
    return mtp


def _errors():
    from training.mtp.maxvol import ActiveSetError
    from training.mtp import MTPError
    from training.passive import PassiveTrainingError

    return (MTPError, ActiveSetError, PassiveTrainingError, OSError, ValueError, KeyError)


def grade(args) -> int:
    """Handler of ``grade``."""
    import numpy as np

    from training.mtp.maxvol import ActiveSet

    try:
        mtp = _potential(args)
        if str(args.train).endswith(".als"):
            active = ActiveSet.load(args.train)
        else:
            active = ActiveSet.select(mtp, _read(args.train, mtp), mode=args.mode, parameters=args.parameters)
        if args.als:
            active.save(args.als)
        frames = _read(args.input, mtp)
        gamma, per_atom = active.frame_grades(mtp, frames)
        for atoms, g, atom_g in zip(frames, gamma, per_atom):
            atoms.info["MV_grade"] = float(g)
            atoms.arrays["nbh_grades"] = np.asarray(atom_g, dtype=float)
        _write(args.output, frames, mtp)
    except _errors() as error:
        print(f"multiscale mtp grade: error: {error}", file=sys.stderr)
        return 1
    print(f"graded {len(frames)} configurations ({active.mode} mode): max grade {gamma.max():.4g}, "
          f"{int(np.sum(gamma > 1 + 1e-9))} above 1")
    return 0


def select_add(args) -> int:
    """Handler of ``select-add``."""
    from training.mtp.maxvol import select_add as select

    try:
        mtp = _potential(args)
        train, new = _read(args.train, mtp), _read(args.new, mtp)
        picked, gamma = select(mtp, train, new, mode=args.mode, parameters=args.parameters, max_add=args.max_add)
        chosen = [new[k] for k in picked]
        for atoms, g in zip(chosen, gamma):
            atoms.info["MV_grade"] = float(g)
        _write(args.output, chosen, mtp)
    except _errors() as error:
        print(f"multiscale mtp select-add: error: {error}", file=sys.stderr)
        return 1
    print(f"selected {len(chosen)} of {len(new)} configurations to add; written to {args.output}")
    return 0


def _systems(inputs) -> dict:
    """{system: dataset path} of a case directory or of dataset files."""
    systems = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            import yaml

            from training.data_stage import dataset_path

            case = path / "case.yaml"
            if not case.is_file():
                raise FileNotFoundError(f"{path}: a directory argument must be a case directory with case.yaml")
            for name, system in (yaml.safe_load(case.read_text()) or {}).get("systems", {}).items():
                systems[name] = dataset_path(path, name, system or {})
        elif path.is_file():
            systems[path.name.split(".")[0]] = path
        else:
            raise FileNotFoundError(f"{path}: no such case directory or dataset file")
    return systems


def passive(args) -> int:
    """Handler of ``passive``."""
    from training.fit_stage import FIT_SETTINGS, check_settings, defaults, fit_system

    try:
        settings = defaults(FIT_SETTINGS)
        settings.update({k: v for k, v in (("level", args.level), ("method", args.method), ("max_iter", args.max_iter),
                                           ("seed", args.seed), ("init", args.init)) if v is not None})
        settings["passive"].update({k: v for k, v in (("every_k", args.every_k), ("threshold", args.threshold),
                                                      ("max_add", args.max_add), ("rounds", args.rounds),
                                                      ("mode", args.mode), ("parameters", args.parameters))
                                   if v is not None})
        check_settings(settings)
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, dataset in _systems(args.inputs).items():
            rep = fit_system({"system": name, "dataset": str(dataset), "out_dir": str(out), "case_dir": ".",
                              "settings": settings})
            print(f"{name}: {rep['steps'][0]['n_train']} -> {rep['n_train_final']} training frames, max grade "
                  f"{rep['max_grade_preliminary']:.3g} -> {rep['max_grade_final']:.3g}, force RMSE "
                  f"{rep['errors_all_frames']['forces']['rmse']:.3g} eV/A; {out / (name + '.mtp')}")
    except _errors() as error:
        print(f"multiscale mtp passive: error: {error}", file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    """Add ``grade``, ``select-add`` and ``passive`` to the ``mtp`` command group."""
    def common(parser):
        parser.add_argument("--mode", default="neighbourhood", choices=["neighbourhood", "configuration"],
                            help="active-set mode (default: neighbourhood, per-atom grades as MD uses)")
        parser.add_argument("--parameters", default="all", choices=["all", "linear"],
                            help="active-set rows over all coefficients (default, as MLIP-2) or the linear ones")
        parser.add_argument("--species", default=None,
                            help="comma-separated element symbols of MTP types 0,1,... (default: the potential's)")

    p = subparsers.add_parser("grade", help="extrapolation grades of configurations (like MLIP's mlp calc-grade)",
                              description="MaxVol active set of TRAIN for POT, then the grade of every "
                                          "configuration of IN; OUT gets MV_grade and per-atom nbh_grades.")
    p.add_argument("potential", metavar="POT.mtp")
    p.add_argument("train", metavar="TRAIN", help="training set (.cfg[.gz], extxyz) or an .als active set")
    p.add_argument("input", metavar="IN", help="configurations to grade")
    p.add_argument("output", metavar="OUT", help="graded configurations (.cfg[.gz] or extxyz)")
    p.add_argument("--als", default=None, help="also save the active set to this file (HDF5)")
    common(p)
    p.set_defaults(func=grade)

    p = subparsers.add_parser("select-add", help="configurations to add to a training set (like mlp select-add)",
                              description="The configurations of NEW that MaxVol would add to the active set "
                                          "of TRAIN, written to OUT.")
    p.add_argument("potential", metavar="POT.mtp")
    p.add_argument("train", metavar="TRAIN")
    p.add_argument("new", metavar="NEW")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--max-add", type=int, default=0, help="keep at most this many, most extrapolative first")
    common(p)
    p.set_defaults(func=select_add)

    p = subparsers.add_parser("passive", help="two-step passive training of MTPs on AIMD data",
                              description="Fit on every k-th frame, grade all frames, add those above the "
                                          "threshold, refit; one potential per system of a case directory "
                                          "or per dataset file.")
    p.add_argument("inputs", nargs="+", metavar="CASE|DATA", help="case directory or dataset files")
    p.add_argument("--out-dir", default="passive", help="output folder (default: ./passive)")
    p.add_argument("--level", type=int, default=None, help="MTP level (default 10)")
    p.add_argument("--method", default=None, choices=["full", "linear"], help="fit method (default full)")
    p.add_argument("--max-iter", type=int, default=None, help="optimiser iterations per fit")
    p.add_argument("--every-k", type=int, default=None, help="step 1 uses every k-th frame of each chain")
    p.add_argument("--threshold", type=float, default=None, help="grade above which frames are added (> 1)")
    p.add_argument("--max-add", type=int, default=None, help="at most this many frames added per round")
    p.add_argument("--rounds", type=int, default=None, help="grade-and-refit rounds (default 1)")
    p.add_argument("--mode", default=None, choices=["neighbourhood", "configuration"], help="active-set mode")
    p.add_argument("--parameters", default=None, choices=["all", "linear"], help="active-set rows (default all)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--init", default=None, help="start from this .mtp instead of the level template")
    p.set_defaults(func=passive)
