"""``multiscale mtp train``: fit an MTP to a dataset, modelled on MLIP's ``mlp train``.

Data flow: INIT.mtp (template or trained potential) + TRAIN (``.cfg``/extxyz/VASP, read by
``training.datasets.read``) --``training.fit.train_mtp``--> POT.mtp (+ an optional JSON report with the
train/validation RMSE and MAE).  ``register(subparsers)`` adds the sub-command to the ``mtp`` group; the
handler ``args.func(args)`` returns the exit code: 0 done, 2 bad input (the message names the file or
option), 130 interrupted (the message names the checkpoint to ``--resume`` from).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

#: Defaults of ``--theta-frames`` and ``--max-iter``: the radial coefficients are optimised on this many
#: evenly spaced frames for this many iterations, the linear ones solved on all frames; on MLIP's cubic Cu
#: set that reaches MLIP-2's own accuracy for three seeds (docs/fit.md, "Fitting θ on a subsample of the
#: frames").
THETA_FRAMES = 50
MAX_ITER = 300


def _fail(message: str) -> int:
    print(f"multiscale mtp train: error: {message}", file=sys.stderr)
    return 2


def _theta_frames(text: str):
    """``--theta-frames``: a count >= 1, or ``all`` (None: every frame)."""
    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        return text


def _weights(args):
    """--weights, then the MLIP-style --energy-weight/--force-weight/--stress-weight on top."""
    from training.fit import FitWeights

    base = FitWeights.parse(args.weights).as_dict()
    for key, value in (("energy", args.energy_weight), ("forces", args.force_weight), ("stress", args.stress_weight)):
        if value is not None:
            base[key] = value
    return FitWeights(**base)


def train(args) -> int:
    """Handler of ``mtp train``."""
    from training import datasets
    from common.atomic import atomic_path, write_text
    from training.fit import FitError, FitInterrupted, report_json, train_mtp
    from training.fit_stage import fit_threads
    from training.mtp.errors import MTPError

    if args.max_iter < 0:
        return _fail(f"--max-iter {args.max_iter}: must be >= 0")
    if args.starts < 1:
        return _fail(f"--starts {args.starts}: must be >= 1")
    if args.theta_frames is not None and (not isinstance(args.theta_frames, int) or args.theta_frames < 1):
        return _fail(f"--theta-frames {args.theta_frames}: must be a count >= 1 or 'all'")
    if args.threads is not None and args.threads < 1:
        return _fail(f"--threads {args.threads}: must be >= 1")
    species = [s.strip() for s in args.species.split(",")] if args.species else None
    try:
        weights = _weights(args)
        if not Path(args.init).is_file():
            return _fail(f"{args.init}: INIT.mtp not found (give an MLIP .mtp template, e.g. "
                         "training/mtp/templates/10.mtp, or a trained potential)")
        frames = datasets.read(args.train, species=species)
        valid = datasets.read(args.valid, species=species) if args.valid else None
        mtp, report = train_mtp(args.init, frames, max_iter=args.max_iter, weights=weights, seed=args.seed,
                                validation=valid, species=species, theta_frames=args.theta_frames,
                                checkpoint=args.checkpoint, resume=args.resume, starts=args.starts,
                                threads=args.threads or fit_threads())
        out = Path(args.out)
        with atomic_path(out) as tmp:
            mtp.write(tmp)
        if args.report:
            report = dict(report_json(report), init=str(args.init), train_file=str(args.train),
                          valid_file=str(args.valid) if args.valid else None, potential=str(out))
            write_text(args.report, json.dumps(report, indent=1, default=float) + "\n")
    except FitInterrupted as err:
        print(f"multiscale mtp train: {err}", file=sys.stderr)
        return 130
    except (FitError, datasets.DatasetError, MTPError, OSError) as err:
        return _fail(str(err))
    timing = report["timing"]
    print(f"trained potential: {out} ({report['iterations']} iterations, {report['seconds']:.1f} s)")
    if timing["iterations"]:
        print(f"fit time: {timing['wall_s']:.1f} s wall, {timing['cpu_s']:.1f} s CPU; {timing['iterations']} optimiser "
              f"iterations (random starts included), {timing['wall_per_iteration_s']:.3g} s wall and "
              f"{timing['cpu_per_iteration_s']:.3g} s CPU each")
    for name in ("train", "valid"):
        if name in report:
            m = report[name]
            line = (f"{name} ({m['n_frames']} frames) RMSE: energy {m['energy_per_atom']['rmse']:.3e} eV/atom, "
                    f"forces {m['forces']['rmse']:.3e} eV/A")
            if "stress" in m:
                line += f", stress {m['stress']['rmse']:.3e} GPa"
            print(line)
    return 0


def register(subparsers) -> None:
    """Add ``train`` to the ``mtp`` command group (``subparsers`` from ``add_subparsers()``)."""
    p = subparsers.add_parser(
        "train", help="fit an MTP to energies, forces and stresses (like MLIP's mlp train)",
        description="Fit the radial and linear coefficients of INIT.mtp (an untrained template such as "
                    "training/mtp/templates/10.mtp, or a trained potential to refine) to the configurations "
                    "of TRAIN and write the trained potential to --out.")
    p.add_argument("init", metavar="INIT.mtp", help="MLIP .mtp template or potential")
    p.add_argument("train", metavar="TRAIN", help="training set: .cfg[.gz], .extxyz[.gz], OUTCAR or vasprun.xml")
    p.add_argument("--out", "--trained-pot-name", dest="out", default="Trained.mtp",
                   help="trained potential to write (default Trained.mtp, as mlp train)")
    p.add_argument("--max-iter", type=int, default=MAX_ITER, help="optimiser iterations on the radial "
                   f"coefficients (0: linear coefficients only; default {MAX_ITER})")
    p.add_argument("--weights", default=None,
                   help="loss weights, e.g. energy=1,forces=0.01,stress=0.001 (the MLIP-2 defaults)")
    p.add_argument("--energy-weight", type=float, default=None, help="w_E (overrides --weights)")
    p.add_argument("--force-weight", type=float, default=None, help="w_F (overrides --weights)")
    p.add_argument("--stress-weight", type=float, default=None, help="w_S (overrides --weights)")
    p.add_argument("--species", default=None, help="comma-separated element symbols of MTP types 0,1,... "
                   "(default: the potential's tag, cfg type indices, else the sorted elements of TRAIN)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random radial start (default 0)")
    p.add_argument("--starts", type=int, default=4, help="random starts tried for a template (default 4)")
    p.add_argument("--theta-frames", type=_theta_frames, default=THETA_FRAMES,
                   help=f"optimise the radial coefficients on this many evenly spaced frames, or 'all'; the linear "
                        f"coefficients are always solved on all frames (default {THETA_FRAMES}: with the default "
                        "--max-iter it reaches MLIP-2's accuracy on MLIP's Cu set, docs/fit.md)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads over the frame batches (default: the cores this process may use, at most 4; "
                        "the same potential on any number)")
    p.add_argument("--valid", "--valid-cfgs", dest="valid", default=None, help="validation set (any TRAIN format)")
    p.add_argument("--checkpoint", default=None, help="optimiser checkpoint .npz, written every iteration")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")
    p.add_argument("--report", default=None, help="JSON report (RMSE/MAE, timing, settings) to write")
    p.set_defaults(func=train)
