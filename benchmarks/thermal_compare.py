"""HNEMD against NEMD extrapolated in 1/L: graphene with the test MTP at 300 K (prints a table, writes JSON).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/thermal_compare.py            # ~2 min on 2 cores
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/thermal_compare.py --seeds 11,1,2 --hnemd-steps 30000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/thermal_compare.py --driving-force 1e-3 --json out.json

Potential: ``tests/data/md/graphene_l08.mtp`` (a level-8 MTP fitted to the embedded GFN1-xTB graphene
set); the 60-atom rectangular sheet (12.3 x 12.8 Å) at the data's lattice constant, thickness 3.35 Å.
Per seed: HNEMD (``md_gpu.protocols.hnemd``) on the sheet x ``--hnemd-repeat`` along x with the driving
force ``--driving-force``, and NEMD (``md_gpu.protocols.nemd``, ΔT = 100 K, 5 Å baths) on the sheet
x ``--nemd-repeats`` along x, whose conductivities ``extrapolate_length`` fits as
``1/kappa = 1/kappa_inf + c/L``. The comparison is in 1/kappa (what the extrapolation fits
linearly; its intercept can be within error of 0, where kappa has no symmetric error bar): the
difference in units of its combined standard error, and the NEMD energy bookkeeping.

The defaults are those of the former slow test ``test_graphene_hnemd_and_extrapolated_nemd_agree``
(seed 11, 500 equilibration steps, HNEMD 3e-4 /Å over 15 000 steps on 120 atoms, NEMD 1000 + 3000
steps at 3, 5, 7 cells; it required agreement within 2 combined errors and bookkeeping below 2 %).
These nanometre strips are far below the phonon mean free path: the NEMD extrapolation carries an
error about as large as its value (docs/md.md, "Measured"), so the agreement it shows is a
measurement, not a check that could catch a factor 2 in either method. The test suite checks the
parts instead (tests/test_md_thermal.py: heat current against finite differences, the HNEMD force's
injected power, the NEMD energy balance, the extrapolation on a known limit, and the sign and size of
the HNEMD conductivity).
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

from md_gpu.errors import MDRunError
from md_gpu.forcefields.mtp import MTPForceField
from md_gpu.protocols import RunSettings, extrapolate_length, hnemd, nemd
from md_gpu.structures import as_sheet
from training.structures import graphene

ROOT = Path(__file__).resolve().parents[1]
POT = ROOT / "tests" / "data" / "md" / "graphene_l08.mtp"
A_POT = 2.45716  # Å: the GFN1-xTB graphene lattice constant of the data the potential was fitted to
QUIET = dict(log=lambda line: None)


def compare(ff, sheet, *, seed, driving_force_per_A, hnemd_repeat, hnemd_steps, nemd_repeats, nemd_steps,
            transient_steps, equilibrate_steps, delta_T_K=100.0, bath_width_A=5.0, log=print) -> dict:
    settings = RunSettings(equilibrate_steps=equilibrate_steps, thermo_every=50, seed=seed)
    t0 = time.monotonic()
    h = hnemd(ff, sheet.repeat([hnemd_repeat, 1, 1]), driving_force_per_A=driving_force_per_A,
              production_steps=hnemd_steps, settings=settings, thickness_A=3.35, **QUIET)["properties"]
    h["seconds"] = time.monotonic() - t0
    log(f"  seed {seed} HNEMD {h['n_atoms']} atoms: {h['conductivity_W_per_mK']:.1f} +- "
        f"{h['conductivity_sem_W_per_mK']:.1f} W/(m K) ({h['seconds']:.0f} s)")
    runs = []
    for n in nemd_repeats:
        t0 = time.monotonic()
        r = nemd(ff, sheet.repeat([n, 1, 1]), delta_T_K=delta_T_K, bath_width_A=bath_width_A,
                 production_steps=nemd_steps, transient_steps=transient_steps, settings=settings,
                 thickness_A=3.35, **QUIET)["properties"]
        r["seconds"] = time.monotonic() - t0
        runs.append(r)
        log(f"  seed {seed} NEMD {r['n_atoms']} atoms, L = {r['length_A']:.1f} Å: {r['conductivity_W_per_mK']:.1f} +- "
            f"{r['conductivity_sem_W_per_mK']:.1f} W/(m K), bookkeeping {r['energy_balance_rel']:.1e} "
            f"({r['seconds']:.0f} s)")
    try:
        fit = extrapolate_length([r["length_A"] for r in runs], [r["conductivity_W_per_mK"] for r in runs],
                                 [r["conductivity_sem_W_per_mK"] for r in runs])
    except MDRunError as exc:  # a kappa(L) <= 0: runs too short for these lengths
        log(f"  seed {seed}: no extrapolation ({exc})")
        nan = float("nan")
        fit = {"conductivity_W_per_mK": nan, "sem": nan, "inverse_mK_per_W": nan, "inverse_sem_mK_per_W": nan}
    inv_h = 1 / h["conductivity_W_per_mK"]
    inv_h_sem = h["conductivity_sem_W_per_mK"] / h["conductivity_W_per_mK"] ** 2
    diff = fit["inverse_mK_per_W"] - inv_h
    err = math.hypot(fit["inverse_sem_mK_per_W"], inv_h_sem)
    return {"seed": seed, "hnemd": h, "nemd": runs, "extrapolated": fit,
            "inverse_hnemd_mK_per_W": inv_h, "inverse_hnemd_sem_mK_per_W": inv_h_sem,
            "inverse_diff_mK_per_W": diff, "inverse_diff_sem_mK_per_W": err, "z": abs(diff) / err,
            "max_energy_balance_rel": max(r["energy_balance_rel"] for r in runs)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="11", help="comma-separated seeds")
    p.add_argument("--driving-force", type=float, default=3e-4, help="HNEMD driving force (1/Å)")
    p.add_argument("--hnemd-repeat", type=int, default=2, help="HNEMD cell: the sheet repeated along x")
    p.add_argument("--hnemd-steps", type=int, default=15000)
    p.add_argument("--nemd-repeats", default="3,5,7", help="NEMD cells: the sheet repeated along x")
    p.add_argument("--nemd-steps", type=int, default=3000, help="NEMD production steps")
    p.add_argument("--transient-steps", type=int, default=1000)
    p.add_argument("--equilibrate-steps", type=int, default=500)
    p.add_argument("--json", default="thermal_compare.json")
    args = p.parse_args(argv)
    ff = MTPForceField.read(POT, species=("C",))
    sheet = as_sheet(graphene(a=A_POT))
    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
    results = [compare(ff, sheet, seed=int(seed), driving_force_per_A=args.driving_force,
                       hnemd_repeat=args.hnemd_repeat, hnemd_steps=args.hnemd_steps,
                       nemd_repeats=[int(n) for n in args.nemd_repeats.split(",")], nemd_steps=args.nemd_steps,
                       transient_steps=args.transient_steps, equilibrate_steps=args.equilibrate_steps)
               for seed in args.seeds.split(",")]
    print(f"\ngraphene_l08.mtp, 300 K; HNEMD F_e = {args.driving_force:g} /Å, {args.hnemd_steps} steps; NEMD "
          f"{args.transient_steps} + {args.nemd_steps} steps at {args.nemd_repeats} cells; 1/kappa in m K/W\n")
    print("| seed | HNEMD kappa | NEMD kappa(L) | 1/kappa HNEMD | 1/kappa_inf NEMD | difference / error "
          "| max bookkeeping |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        h, fit = r["hnemd"], r["extrapolated"]
        kl = ", ".join(f"{n['conductivity_W_per_mK']:.1f} ± {n['conductivity_sem_W_per_mK']:.1f}" for n in r["nemd"])
        print(f"| {r['seed']} | {h['conductivity_W_per_mK']:.0f} ± {h['conductivity_sem_W_per_mK']:.0f} | {kl} "
              f"| {r['inverse_hnemd_mK_per_W']:.4f} ± {r['inverse_hnemd_sem_mK_per_W']:.4f} "
              f"| {fit['inverse_mK_per_W']:.4f} ± {fit['inverse_sem_mK_per_W']:.4f} | {r['z']:.1f} "
              f"| {r['max_energy_balance_rel']:.1e} |")
    Path(args.json).write_text(json.dumps({"settings": vars(args), "results": results}, indent=1, default=float))
    print(f"\nall numbers: {args.json}")
    return {"results": results}


if __name__ == "__main__":
    main()
