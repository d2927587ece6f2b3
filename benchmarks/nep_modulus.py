"""Graphene's low-temperature stiffness with fitted potentials (NEP, MTP) against the reference engine's 0 K one.

Usage (prints one line per run, then a table; JSON with ``--json``)::

    nice -n 10 python benchmarks/fit.py --nep-vs-mtp --mtp-levels 10 --max-iter 200 --out-dir fits
    nice -n 10 python benchmarks/nep_modulus.py fits/nep/graphene.nep.txt fits/mtp10/graphene.mtp --seeds 0,1

For every potential given (a GPUMD ``nep.txt`` or an MLIP ``.mtp`` naming its species) it runs the md
stage's elastic protocol (:func:`md_gpu.protocols.elastic_constants`: equilibrate at zero in-plane
stress, then the mean stress of cells strained by ±``--delta`` along xx, yy, xy) at ``--temperature``
(default 1 K, the md stage's ``md.elastic.low_temperature_K``) once per seed, on the reference
engine's own 0 K cell of the embedded graphene data (60 atoms, the lattice constant of
``cases/graphene_borophene/data/graphene.meta.json`` ``reference``), and turns each seed's C11, C22, C12
into plane-stress moduli (:func:`md_gpu.tasks.elastic.engineering_constants`: E_x = (C11 C22 − C12²)/C22,
ν_xy = C12/C22; y with C11 and C22 swapped), then mean ± sem over seeds. It also computes the potential's
own static (0 K, relaxed cell and ions) constants (:func:`md_gpu.protocols.static_elastic_constants`),
which separate the fit's error from the thermal one. The reference is GFN2-xTB's relaxed-ion strain
scan recorded by the data stage (``reference``: C11, C22, C12, E_x, E_y, ν_xy).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from md_gpu.analysis import mean_sem
from md_gpu.forcefields.loading import load_forcefield
from md_gpu.protocols import RunSettings, elastic_constants, static_elastic_constants
from md_gpu.structures import as_sheet
from md_gpu.tasks.elastic import engineering_constants
from training.structures import graphene

META = Path(__file__).resolve().parents[1] / "cases" / "graphene_borophene" / "data" / "graphene.meta.json"
QUANTITIES = ("C11", "C22", "C12", "C66", "E_x", "E_y", "nu_xy")


def with_moduli(c: dict) -> dict:
    """``c`` (C11, C22, C12, C66 in N/m) with E_x, E_y (N/m) and ν_xy of a sheet in plane stress."""
    e = engineering_constants(c, sheet=True)
    return {**{k: float(c[k]) for k in ("C11", "C22", "C12", "C66")}, "E_x": e["x"]["youngs_modulus"],
            "E_y": e["y"]["youngs_modulus"], "nu_xy": e["x"]["poisson_ratio"]}


def reference() -> tuple[dict, float]:
    """The reference engine's 0 K constants (N/m; C66 not recorded) and lattice constant (Å)."""
    ref = json.loads(META.read_text())["reference"]
    out = {k: ref.get(f"{k}_N_per_m") for k in ("C11", "C22", "C12", "C66", "E_x", "E_y")}
    out["nu_xy"] = ref["nu_xy"]
    return out, ref["lattice_A"]["a"]


def measure(path: str, seeds, settings: dict) -> dict:
    """Per-seed constants at temperature, their mean ± sem, and the static ones, of the potential at ``path``."""
    ff = load_forcefield(path)
    _, a = reference()
    atoms = as_sheet(graphene(a=a))  # periodic in-plane only, as the md stage loads it
    runs = []
    for seed in seeds:
        t0 = time.perf_counter()
        run = RunSettings(temperature_K=settings["temperature_K"], equilibrate_steps=settings["equilibrate_steps"],
                          seed=seed)
        c = with_moduli(elastic_constants(ff, atoms, delta=settings["delta"], sample_steps=settings["sample_steps"],
                                          settings=run, log=lambda *_: None))
        runs.append(c)
        print(f"{Path(path).name} seed {seed}: " + ", ".join(f"{k} {c[k]:.4g}" for k in QUANTITIES)
              + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    static = with_moduli(static_elastic_constants(ff, atoms, delta=settings["delta"]))
    return {"potential": str(path), "runs": runs, "static_0K": static,
            "stats": {k: mean_sem([r[k] for r in runs]) for k in QUANTITIES}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("potentials", nargs="+", help="nep.txt or .mtp files fitted to the graphene data")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (one elastic run each)")
    parser.add_argument("--temperature", type=float, default=1.0, help="K")
    parser.add_argument("--equilibrate-steps", type=int, default=2000)
    parser.add_argument("--sample-steps", type=int, default=1000, help="steps averaged per strained cell")
    parser.add_argument("--delta", type=float, default=0.005, help="strain amplitude")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    settings = {"temperature_K": args.temperature, "equilibrate_steps": args.equilibrate_steps,
                "sample_steps": args.sample_steps, "delta": args.delta}
    seeds = [int(s) for s in args.seeds.split(",")]
    ref, a = reference()
    results = [measure(p, seeds, settings) for p in args.potentials]
    print(f"\ngraphene, 60 atoms (a = {a:.4f} Å), {args.temperature:g} K, {args.equilibrate_steps} + 8 x "
          f"({args.equilibrate_steps // 4} + {args.sample_steps}) steps per seed; N/m; mean ± sem (n seeds)")
    print(f"{'':<22}" + "".join(f"{k:>22}" for k in QUANTITIES))
    print(f"{'reference 0 K':<22}" + "".join(f"{'-' if ref[k] is None else format(ref[k], '.4g'):>22}"
                                             for k in QUANTITIES))
    for r in results:
        name = Path(r["potential"]).parent.name + "/" + Path(r["potential"]).name
        cells = []
        for k in QUANTITIES:
            s = r["stats"][k]
            sem = "-" if s["sem"] is None else format(s["sem"], ".2g")
            cells.append(f"{s['mean']:.4g} ± {sem} ({s['n']})")
        print(f"{name[-22:]:<22}" + "".join(f"{c:>22}" for c in cells))
        print(f"{'  static 0 K':<22}" + "".join(f"{r['static_0K'][k]:>22.4g}" for k in QUANTITIES))
        print(f"{'  vs reference':<22}" + "".join(
            f"{'-' if ref[k] is None else format(r['stats'][k]['mean'] / ref[k] - 1, '+.1%'):>22}" for k in QUANTITIES))
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings, "seeds": seeds, "reference": ref,
                                               "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
