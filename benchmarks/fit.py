"""Fit speed and accuracy: seconds to fit MTP levels 10 and 16 on MLIP's cubic Cu set, next to MLIP-2.

Each fit line gives the wall and CPU time of the whole fit and of one optimiser iteration (the mean
over all iterations, random starts included; CPU time counts every thread of the process, so CPU / wall
is the number of cores kept busy), and the JSON summary holds them with the setup (pair lists, training
sets) and final (linear solve on all frames, metrics) phases: ``training.fit_timing.FitClock``.

Usage (prints one line per fit, then a JSON summary)::

    OMP_NUM_THREADS=1 python benchmarks/fit.py                       # levels 10 and 16, cubic, defaults
    python benchmarks/fit.py --levels 10 --set multi --theta-frames 100 --max-iter 60
    python benchmarks/fit.py --levels 10 --theta-frames all --max-iter 3 --threads 2   # per iteration, all frames
    python benchmarks/fit.py --levels 10 --max-iter 200 --seeds 0,10,20 --refine-all 20   # θ on 50 frames or all
    python benchmarks/fit.py --levels 10 --passes 50      # CPU time of one design-matrix, gradient, Jacobian pass
    python benchmarks/fit.py --quick-preset       # the demo's case: 200 graphene frames (60 atoms), level 8
    nice -n 10 python benchmarks/fit.py --nep-vs-mtp --max-iter 150   # fit stage: NEP vs level-10 MTP, graphene
    nice -n 10 python benchmarks/fit.py --nep-vs-mtp --mtp-levels 10,16 --out-dir fits   # both levels, keep files

Data: ``tests/data/fit/{cubic,multi}_training.cfg.gz`` (1001 frames; MLIP reference data, see the README
there).  The fit starts from MLIP's untrained template of each level, optimises the radial coefficients
on ``--theta-frames`` evenly spaced frames and solves the linear coefficients on all frames.  The MLIP-2
columns are the RMSE of MLIP-2's own ``pot_NN.mtp`` (``tests/data/mlip/<set>/efs_NN.cfg.gz`` against
the training set).  ``--quick-preset`` times the demo's situation: the first 200 frames of the embedded
graphene set (``cases/graphene_borophene/data/graphene.extxyz.gz``, 60 atoms), level 8, 50 θ frames,
30 iterations.

``--nep-vs-mtp`` runs the fit stage's own recipes (``training.fit_stage.fit_system``) on the embedded
graphene set (264 frames, 60 atoms): the quick preset's MTP (level 10, 80 iterations, two-step passive
training; ``--mtp-levels`` fits each level given with that recipe) and a NEP (``fit.model: nep`` with
``--nep-sizes`` as JSON, default the stage's defaults; ``--max-iter`` L-BFGS iterations on all 238
non-validation frames), all with seed 0 and the same 26 held-out validation frames, and prints the RMSE
of each on its training frames, on the validation frames and on all frames. ``--out-dir`` keeps each
fit's files (``<out-dir>/nep/graphene.nep.txt``, ``<out-dir>/mtp<level>/graphene.mtp``, their
``_fit.json``) and its checkpoint, from which the same command continues an interrupted fit.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from training.fit import train_mtp
from training.mtp import read_cfg

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
TEMPLATES = ROOT / "training" / "mtp" / "templates"


def mlip_rmse(kind: str, level: int, frames) -> dict | None:
    """Energy-per-atom (eV/atom) and force (eV/Å) RMSE of MLIP-2's ``pot_NN.mtp`` on ``frames``."""
    path = DATA / "mlip" / kind / f"efs_{level:02d}.cfg.gz"
    if not path.is_file():
        return None
    efs = read_cfg(path)
    de = [(a.get_potential_energy() - b.get_potential_energy()) / len(a) for a, b in zip(efs, frames)]
    df = np.concatenate([(a.get_forces() - b.get_forces()).ravel() for a, b in zip(efs, frames)])
    return {"energy_per_atom": float(np.sqrt(np.mean(np.square(de)))), "forces": float(np.sqrt(np.mean(df ** 2)))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="cubic", choices=["cubic", "multi"])
    parser.add_argument("--levels", default="10,16")
    parser.add_argument("--theta-frames", default="50", help="θ frames: a count or 'all' (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="threads over the frame batches (default 1)")
    parser.add_argument("--max-iter", type=int, default=60)
    parser.add_argument("--frames", type=int, default=None, help="use the first N frames (default: all 1001)")
    parser.add_argument("--quick-preset", action="store_true",
                        help="200 graphene frames, level 8, 30 iterations, 50 θ frames")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, one fit each (overrides --seed)")
    parser.add_argument("--refine-all", type=int, default=0, metavar="N",
                        help="after each fit, N more iterations from the fitted θ (one start), with θ on all frames "
                             "and on the same θ frames: what fitting θ on all frames would still gain")
    parser.add_argument("--starts", type=int, default=4, help="random starts (train_mtp's starts)")
    parser.add_argument("--nep-vs-mtp", action="store_true",
                        help="the fit stage's level-10 MTP and a NEP on the embedded graphene set")
    parser.add_argument("--nep-sizes", default="{}", help="fit.nep settings as JSON (with --nep-vs-mtp)")
    parser.add_argument("--skip-mtp", action="store_true", help="with --nep-vs-mtp: fit the NEP only")
    parser.add_argument("--skip-nep", action="store_true", help="with --nep-vs-mtp: fit the MTPs only")
    parser.add_argument("--mtp-levels", default="10", help="with --nep-vs-mtp: MTP levels, comma-separated")
    parser.add_argument("--out-dir", help="with --nep-vs-mtp: keep each fit's files under this folder")
    parser.add_argument("--passes", type=int, default=0, metavar="N",
                        help="only time one design-matrix, θ-gradient and Jacobian pass (CPU, best of 4) on N evenly "
                             "spaced frames of --set or --data, at each of --levels")
    parser.add_argument("--data", default=None, help="with --passes: a dataset file instead of --set (e.g. "
                        "cases/graphene_borophene/data/interface.extxyz.gz)")
    args = parser.parse_args(argv)
    args.theta_frames = None if args.theta_frames == "all" else int(args.theta_frames)
    if args.passes:
        return passes(args)
    if args.nep_vs_mtp:
        return nep_vs_mtp(args)
    if args.quick_preset:
        args.levels, args.frames, args.max_iter, args.theta_frames = "8", 200, 30, 50
    t0 = time.perf_counter()
    if args.quick_preset:
        from training import datasets

        args.set = "graphene"
        frames = datasets.read(ROOT / "cases" / "graphene_borophene" / "data" / "graphene.extxyz.gz")
    else:
        frames = read_cfg(DATA / "fit" / f"{args.set}_training.cfg.gz")
    print(f"read {len(frames)} frames in {time.perf_counter() - t0:.1f} s")
    train = frames[: args.frames] if args.frames else frames
    rows = []
    for seed in (int(v) for v in (args.seeds or str(args.seed)).split(",")):
        for level in (int(v) for v in args.levels.split(",")):
            rows.append(fit_row(args, level, seed, frames, train))
    print(json.dumps(rows, indent=1))
    return 0


def fit_row(args, level: int, seed: int, frames, train) -> dict:
    """Fit ``train`` from MLIP's level template with the command line's settings and ``seed``; print and
    return the row (times, RMSE, MLIP-2's RMSE when ``train`` is the whole set; with ``--refine-all N``
    also the RMSE after N more iterations from the fitted θ with θ on all frames, ``refined_*``, and on the
    same θ frames, ``continued_*``)."""
    mtp, report = train_mtp(TEMPLATES / f"{level:02d}.mtp", train, max_iter=args.max_iter, seed=seed,
                            theta_frames=args.theta_frames, starts=args.starts, threads=args.threads,
                            progress=lambda done, total, text: None)
    ref = mlip_rmse(args.set, level, frames) if len(train) == len(frames) else None
    m = report["train"]
    row = {"set": args.set, "level": level, "frames": len(train), "theta_frames": args.theta_frames,
           "starts": args.starts, "seed": seed, "threads": args.threads,
           "iterations": report["iterations"], "seconds": round(report["seconds"], 1),
           **timing_columns(report["timing"]),
           "energy_rmse": m["energy_per_atom"]["rmse"], "force_rmse": m["forces"]["rmse"],
           "mlip_energy_rmse": ref and ref["energy_per_atom"], "mlip_force_rmse": ref and ref["forces"]}
    ratio = (f" (x{row['force_rmse'] / ref['forces']:.2f} MLIP-2 force, "
             f"x{row['energy_rmse'] / ref['energy_per_atom']:.2f} energy)") if ref else ""
    print(f"{args.set} level {level} seed {seed}: {row['wall_s']:.1f} s wall, {row['cpu_s']:.1f} s CPU for "
          f"{len(train)} frames ({row['threads']} thread(s)), {row['timed_iterations']} iterations (starts "
          f"included), each {row['wall_per_iteration_s']:.3g} s wall, {row['cpu_per_iteration_s']:.3g} s CPU; "
          f"RMSE energy {row['energy_rmse']:.2e} eV/atom, forces {row['force_rmse']:.2e} eV/A{ratio}", flush=True)
    if args.refine_all:
        # N more iterations from the fitted θ, once with θ on all frames and once on the same θ frames: a
        # fresh Levenberg-Marquardt run gains on both, the difference is what the other frames add
        for label, theta_frames in (("refined", None), ("continued", args.theta_frames)):
            _, more = train_mtp(mtp, train, max_iter=args.refine_all, seed=seed, theta_frames=theta_frames,
                                threads=args.threads, progress=lambda done, total, text: None)
            m = more["train"]
            row.update({f"{label}_iterations": more["iterations"],
                        f"{label}_wall_s": round(more["timing"]["wall_s"], 1),
                        f"{label}_energy_rmse": m["energy_per_atom"]["rmse"],
                        f"{label}_force_rmse": m["forces"]["rmse"]})
            ratio = f" (x{m['forces']['rmse'] / ref['forces']:.2f} MLIP-2 force)" if ref else ""
            where = f"all {len(train)}" if theta_frames is None else f"the same {theta_frames}"
            print(f"  then {more['iterations']} iterations with θ on {where} frames ({row[f'{label}_wall_s']} s): "
                  f"RMSE energy {m['energy_per_atom']['rmse']:.2e} eV/atom, forces {m['forces']['rmse']:.2e} "
                  f"eV/A{ratio}", flush=True)
    return row


def passes(args) -> int:
    """CPU seconds (best of 4, ``time.process_time``) of one pass of ``TrainingSet.matrix``,
    ``.theta_gradient`` and ``.jacobian`` (after a design pass at the same θ, as Levenberg-Marquardt
    runs it) on ``--passes`` evenly spaced frames, at each level, θ from ``initial_theta(seed)``."""
    from training import datasets
    from training.fit import TrainingSet, frame_types_of, initial_theta, load_template, solve_linear

    frames = datasets.read(args.data) if args.data else read_cfg(DATA / "fit" / f"{args.set}_training.cfg.gz")
    types, species = frame_types_of(frames)
    count = len(species) if species else max(int(t.max()) for t in types) + 1
    pick = np.unique(np.linspace(0, len(frames) - 1, args.passes).round().astype(int))
    rows = []
    for level in (int(v) for v in args.levels.split(",")):
        spec, _ = load_template(TEMPLATES / f"{level:02d}.mtp", species_count=count)
        tset = TrainingSet.build(spec, [frames[k] for k in pick], [types[k] for k in pick], threads=args.threads)
        theta = initial_theta(spec, args.seed)
        a = tset.matrix(theta)
        coeffs = solve_linear(a, tset.y, 1e-10 * np.einsum("rk,rk->k", a, a))
        residual = a @ coeffs - tset.y
        row = {"data": args.data or args.set, "level": level, "frames": len(pick), "threads": args.threads}
        for name, work in (("matrix", lambda: tset.matrix(theta)),
                           ("gradient", lambda: tset.theta_gradient(theta, coeffs, residual)),
                           ("jacobian", lambda: tset.jacobian(theta, coeffs))):
            best = np.inf
            for _ in range(4):
                t0 = time.process_time()
                work()
                best = min(best, time.process_time() - t0)
            row[f"{name}_cpu_s"] = round(best, 4)
        rows.append(row)
        print(f"{row['data']} level {level}, {len(pick)} frames: CPU per pass: design matrix "
              f"{row['matrix_cpu_s']:.3f} s, θ-gradient {row['gradient_cpu_s']:.3f} s, Jacobian "
              f"{row['jacobian_cpu_s']:.3f} s", flush=True)
    print(json.dumps(rows, indent=1))
    return 0


def timing_columns(timing: dict) -> dict:
    """The benchmark's time columns (s) from a fit report's ``timing`` (``FitClock.summary``): wall and
    CPU time in all, of the setup and final phases, and per optimiser iteration (None without iterations)."""
    keys = ("wall_s", "cpu_s", "setup_wall_s", "setup_cpu_s", "final_wall_s", "final_cpu_s",
            "wall_per_iteration_s", "cpu_per_iteration_s")
    out = {key: None if timing.get(key) is None else round(timing[key], 4) for key in keys}
    out["timed_iterations"] = timing["iterations"]
    return out


def nep_vs_mtp(args) -> int:
    """The fit stage's quick MTPs (``--mtp-levels``) and a NEP on the embedded graphene set (module docstring)."""
    import tempfile

    from training.fit_stage import FIT_SETTINGS, defaults, fit_system

    data = ROOT / "cases" / "graphene_borophene" / "data" / "graphene.extxyz.gz"
    rows = []
    runs = [] if args.skip_mtp else [
        (f"mtp{level}", f"MTP level {level}", {"model": "mtp", "level": level, "max_iter": 80, "seed": args.seed})
        for level in (int(v) for v in args.mtp_levels.split(","))]
    if not args.skip_nep:
        runs.append(("nep", "NEP", {"model": "nep", "max_iter": args.max_iter, "seed": args.seed}))
    for label, model, over in runs:
        settings = defaults(FIT_SETTINGS)
        settings.update(over)
        settings["nep"].update(json.loads(args.nep_sizes))
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(args.out_dir) / label if args.out_dir else Path(scratch)
            out.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            report = fit_system({"system": "graphene", "dataset": str(data), "out_dir": str(out),
                                 "case_dir": str(out), "settings": settings})
            seconds = time.perf_counter() - t0
        final = report["steps"][-1]["errors"] if label == "nep" else next(
            s["errors"] for s in reversed(report["steps"]) if "errors" in s)
        row = {"model": model, "train_frames": report["n_train_final"],
               "parameters": report.get("n_parameters"), "seconds": round(seconds, 1),
               "sizes": report.get("sizes"), "iterations": report["steps"][-1].get("iterations")}
        for subset, errors in (("all", report["errors_all_frames"]), ("train", final.get("train", {})),
                               ("valid", final.get("valid", {}))):
            for key in ("energy_per_atom", "forces", "stress"):
                row[f"{key}_rmse_{subset}"] = (errors.get(key) or {}).get("rmse")
        # the MTP's fits (passive training: the preliminary fit and the refit), each with its own time
        row["fits"] = [dict(step=step["step"], n_train=step["n_train"], **timing_columns(step["timing"]))
                       for step in report["steps"] if step.get("timing")]
        rows.append(row)
        print(f"{row['model']}: {row['seconds']} s, {row['train_frames']} training frames; RMSE on all frames: energy "
              f"{row['energy_per_atom_rmse_all']:.3e} eV/atom, forces {row['forces_rmse_all']:.3f} eV/A, stress "
              f"{row['stress_rmse_all']:.3f} GPa; validation: energy {row['energy_per_atom_rmse_valid']:.3e}, "
              f"forces {row['forces_rmse_valid']:.3f}", flush=True)
        for fit in row["fits"]:
            print(f"  {fit['step']} on {fit['n_train']} frames: {fit['wall_s']:.1f} s wall, {fit['cpu_s']:.1f} s CPU, "
                  f"{fit['timed_iterations']} iterations, {fit['wall_per_iteration_s']:.3g} s wall and "
                  f"{fit['cpu_per_iteration_s']:.3g} s CPU each", flush=True)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
