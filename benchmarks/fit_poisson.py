"""Poisson's ratio of fitted MTPs over fit seeds: the fit stage's recipe against the reference engine.

For each seed, the fit stage's own passive training (``training.fit_stage.fit_system``, the embedded
case's ``fit:`` section with the ``quick`` preset over it, ``--set`` overrides on top) fits one system
of ``cases/<case>`` (default ``graphene_borophene``) to its dataset (``--dataset``: another file, e.g. a
scratch copy with more frames); the fitted MTP's 0 K relaxed cell (``training.reference.relax_cell``)
and relaxed-ion C11, C22, C12 from small static strains (``training.reference.strain_scan``, the same
scan that gives the reference engine's numbers in ``data/<system>.meta.json``) follow.  One JSON line
per seed: ν = C12/C22 (as the reference), the constants (N/m), the validation and all-frame RMSEs of the
final potential (``--errors-on``: the RMSEs on the frames of that dataset too, so that fits to
different datasets compare on the same frames) and the seconds; then the mean and spread of ν, E_x
and E_y and the reference's.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/fit_poisson.py --seeds 0,1,2,3      # the case's recipe
    python benchmarks/fit_poisson.py --seeds 0,1,2,3 --set 'chain_weights={}'           # MLIP-2's weights
    python benchmarks/fit_poisson.py --seeds 0,1,2 --set level=10 --set 'chain_weights={}'  # level 10, MLIP-2's
    python benchmarks/fit_poisson.py --system borophene --seeds 0,1 --out-dir fits/boro
    python benchmarks/fit_poisson.py --dataset /tmp/graphene_relaxed.extxyz.gz \
        --errors-on cases/graphene_borophene/data/graphene.extxyz.gz                  # a dataset with more frames
    python benchmarks/fit_poisson.py --case graphene_hbn --system hbn --seeds 0

``--set key=JSON`` replaces one of the system's fit settings (the case's, with its
``fit.per_system.<system>`` entry over them; dotted keys for sub-sections, e.g.
``weights.stress=0.1``).  Each fit of the graphene set (264 frames, 80 iterations) takes 1-11 min at
level 10 and 2-11 min at the quick preset's level 14 on one shared core.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "cases"


def case_fit_settings(preset: str) -> dict:
    """The embedded case's ``fit:`` settings with ``presets.<preset>.fit`` over them and the stage's
    defaults under them (``per_system`` kept)."""
    from multiscale.schema import deep_merge
    from training.fit_stage import FIT_SETTINGS, defaults

    case = yaml.safe_load((CASES / ARGS.case / "case.yaml").read_text())
    settings = deep_merge(defaults(FIT_SETTINGS), case.get("fit") or {})
    return deep_merge(settings, ((case.get("presets") or {}).get(preset) or {}).get("fit") or {})


def apply_set(settings: dict, items: list[str]) -> dict:
    """``settings`` with each ``key=JSON`` of ``items`` (dotted keys) replaced."""
    for item in items:
        key, _, text = item.partition("=")
        *path, last = key.strip().split(".")
        node = settings
        for part in path:
            node = node[part]
        if last not in node:
            raise SystemExit(f"--set {item}: fit.{key} is not a fit setting")
        node[last] = json.loads(text)
    return settings


def static_constants(mtp) -> dict:
    """0 K relaxed-ion C11, C22, C12 (N/m) and ν = C12/C22 of ``mtp``'s relaxed cell of the system."""
    import ase.io

    from training.mtp import MTPCalculator
    from training.reference import relax_cell, strain_scan

    start = ase.io.read(ARGS.dataset, index="0")
    relaxed = relax_cell(start, MTPCalculator(mtp), free="lattice")
    scan = strain_scan(relaxed, MTPCalculator(mtp))
    return {"cell_A": relaxed.cell.lengths()[:2].round(4).tolist(), **{k: round(v, 2) for k, v in scan.items()
            if k.startswith(("C", "E_"))}, "nu": round(scan["nu_xy"], 4)}


def one_seed(settings: dict, seed: int) -> dict:
    """Fit with ``seed`` and measure; a JSON-able row."""
    from training import datasets, fit_report
    from training.fit_stage import fit_system
    from training.mtp import MTP

    settings = dict(settings, seed=seed)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(ARGS.out_dir or scratch) / f"seed{seed}"
        out.mkdir(parents=True, exist_ok=True)
        report = fit_system({"system": ARGS.system, "dataset": ARGS.dataset, "out_dir": str(out),
                             "case_dir": str(CASES / ARGS.case), "settings": settings})
        mtp = MTP.read(out / f"{ARGS.system}.mtp")
    seconds = time.time() - t0
    # the last fit's errors: the refit's, or the preliminary fit's when the grading added no frame
    valid = [step for step in report["steps"] if "errors" in step][-1]["errors"]["valid"]
    rmse = lambda m, key: round(m[key]["rmse"], 5)  # noqa: E731
    keys = ("energy_per_atom", "forces", "stress")
    row = {"seed": seed, **static_constants(mtp), "valid_rmse": {k: rmse(valid, k) for k in keys},
           "all_rmse": {k: rmse(report["errors_all_frames"], k) for k in keys}, "fit_seconds": round(seconds, 1)}
    if ARGS.errors_on:
        errors_on = fit_report.errors(mtp, datasets.read(ARGS.errors_on))
        row["errors_on_rmse"] = {k: rmse(errors_on, k) for k in keys}
    return row


def main(argv=None) -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="graphene_borophene", help="case folder under cases/")
    parser.add_argument("--system", default="graphene", help="a phase of the case (its data/<system>.meta.json "
                                                             "holds the reference)")
    parser.add_argument("--dataset", default="", help="fit to this dataset (default: the case's data/<system>)")
    parser.add_argument("--errors-on", default="", help="also report RMSEs on all frames of this dataset")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--set", action="append", default=[], help="fit setting key=JSON (repeatable)")
    parser.add_argument("--out-dir", default="", help="keep each seed's fit files in OUT_DIR/seed<k>")
    ARGS = parser.parse_args(argv)
    ARGS.dataset = ARGS.dataset or str(CASES / ARGS.case / "data" / f"{ARGS.system}.extxyz.gz")
    from training.fit_stage import system_settings

    settings = apply_set(system_settings(case_fit_settings(ARGS.preset), ARGS.system), ARGS.set)
    print(json.dumps({"system": ARGS.system, "dataset": ARGS.dataset, "weights": settings["weights"],
                      "chain_weights": settings.get("chain_weights"), "level": settings["level"],
                      "max_iter": settings["max_iter"]}), flush=True)
    rows = []
    for seed in (int(s) for s in ARGS.seeds.split(",")):
        rows.append(one_seed(settings, seed))
        print(json.dumps(rows[-1]), flush=True)
    meta = json.loads((CASES / ARGS.case / "data" / f"{ARGS.system}.meta.json").read_text())["reference"]
    nus = np.array([r["nu"] for r in rows])
    summary = {"nu_mean": round(float(nus.mean()), 4), "nu_sd": round(float(nus.std(ddof=1)), 4)
               if len(nus) > 1 else None, "reference_nu": round(meta["nu_xy"], 4),
               "max_abs_nu_error": round(float(np.abs(nus - meta["nu_xy"]).max()), 4)}
    for key in ("E_x_N_per_m", "E_y_N_per_m"):
        summary[key] = round(float(np.mean([r[key] for r in rows])), 1)
        summary[f"reference_{key}"] = round(meta[key], 1)
    for name in ("valid_rmse", "all_rmse", "errors_on_rmse"):
        if name in rows[0]:
            summary[f"{name}_forces_mean"] = round(float(np.mean([r[name]["forces"] for r in rows])), 4)
            summary[f"{name}_energy_per_atom_mean"] = round(float(np.mean([r[name]["energy_per_atom"] for r in rows])), 5)
    print(json.dumps(summary), flush=True)
    return 0


ARGS = None

if __name__ == "__main__":
    raise SystemExit(main())
