"""``multiscale md {tensile, elastic, thermal, bench}``: the MD engine from the command line.

Each sub-command calls the same Python functions as the staging API
(:func:`md_gpu.protocols.tensile`, :func:`md_gpu.protocols.elastic_constants`,
:func:`md_gpu.protocols.hnemd` / ``nemd`` / ``interface_nemd``, :func:`md_gpu.bench.benchmark`). ``register(subparsers)`` adds them to the
``md`` command group of ``multiscale.cli``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from common.atomic import write_json

from .protocols.common import THERMOSTATS, TRANSVERSE


def _common(p, *, structure_required=True):
    p.add_argument("--potential", required=True, help="MLIP .mtp file, GPUMD NEP .txt file, or a built-in: morse-cu")
    p.add_argument("--species", help="comma-separated element per MTP type, if the .mtp file does not name them "
                                     "(for a NEP: the file's own elements)")
    p.add_argument("--structure", required=structure_required,
                   help="structure file ASE reads (extxyz, POSCAR, ...); a built-in cell of training.structures as a "
                        "file: python -m training.structures graphene graphene.extxyz")
    p.add_argument("--repeat", help="supercell repeats, e.g. 4,4,1")
    p.add_argument("--temperature", type=float, default=300.0, help="temperature (K)")
    p.add_argument("--dt", type=float, default=1.0, help="time step (fs)")
    p.add_argument("--thermostat", default="bussi", choices=THERMOSTATS)
    p.add_argument("--tau", type=float, default=100.0, help="thermostat time constant (fs)")
    p.add_argument("--barostat-tau", type=float, default=500.0, help="barostat time constant (fs)")
    p.add_argument("--equilibrate-steps", type=int, default=10000, help="equilibration steps before measuring")
    p.add_argument("--thermo-every", type=int, default=10, help="steps between thermo rows")


def _load(args):
    from .forcefields.loading import load_forcefield
    from .structures import load_structure

    species = args.species.split(",") if args.species else None
    ff = load_forcefield(args.potential, species=species)
    repeat = [int(r) for r in args.repeat.split(",")] if getattr(args, "repeat", None) else None
    atoms = load_structure(args.structure, repeat=repeat, key="--structure") if args.structure else None
    return ff, atoms


def _settings(args, seed: int, **extra):
    from .protocols import RunSettings

    return RunSettings(temperature_K=args.temperature, dt_fs=args.dt, thermostat=args.thermostat,
                       thermostat_tau_fs=args.tau, barostat_tau_fs=args.barostat_tau,
                       equilibrate_steps=args.equilibrate_steps, thermo_every=args.thermo_every, seed=seed,
                       **extra)


def _guard(fn):
    def handler(args) -> int:
        from .errors import MDError

        try:
            return fn(args)
        except MDError as exc:
            print(f"multiscale md: error: {exc}", file=sys.stderr)
            return 1

    return handler


def _over_seeds(args, run_one, summary_name: str, **fields) -> int:
    """``run_one(ff, atoms, seed, out) -> {"properties", "h5", ...}`` for each of ``--seeds``; prints each
    run and writes ``<out>/<summary_name>`` (``fields`` + mean and sem over the seeds)."""
    from .analysis import summarize

    ff, atoms = _load(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        r = run_one(ff, atoms, seed, out)
        print(json.dumps({"seed": seed, **r["properties"], "h5": str(r["h5"])}))
        runs.append(r["properties"])
    summary = {**fields, "n_atoms": len(atoms), "temperature_K": args.temperature, "statistics": summarize(runs)}
    write_json(out / summary_name, summary)
    print(json.dumps(summary, indent=2))
    return 0


@_guard
def cmd_tensile(args) -> int:
    from .protocols import tensile

    def run_one(ff, atoms, seed, out):
        settings = _settings(args, seed, traj_every=args.traj_every, checkpoint_every=args.checkpoint_every)
        prefix = out / f"tensile_{args.direction}_seed{seed}"
        resume = args.resume and Path(f"{prefix}.ckpt.npz").is_file()
        return tensile(ff, atoms, direction=args.direction, strain_rate_per_s=args.strain_rate,
                       max_strain=args.max_strain, transverse=args.transverse, settings=settings,
                       thickness_A=args.thickness, fit_window=(0.0, args.fit_max_strain), out_prefix=prefix,
                       resume=resume)

    return _over_seeds(args, run_one, f"tensile_{args.direction}_summary.json", direction=args.direction,
                       strain_rate_per_s=args.strain_rate)


@_guard
def cmd_elastic(args) -> int:
    from .protocols import elastic_constants, static_elastic_constants

    from .protocols.elastic import choose_scheme

    ff, atoms = _load(args)
    scheme, why = args.scheme, {}
    if scheme == "auto":
        scheme, why = choose_scheme(ff, atoms, args.delta, low_temperature=args.temperature < 50.0)
    result = {"md": elastic_constants(ff, atoms, delta=args.delta, sample_steps=args.sample_steps,
                                      settings=_settings(args, args.seed), scheme=scheme)}
    result["md"].update(why)
    if args.static:
        result["static"] = static_elastic_constants(ff, atoms, delta=args.delta)
    print(json.dumps(result, indent=2))
    return 0


def _nemd_lengths(args, ff, atoms, seed, out, common) -> dict:
    """NEMD at each repeat of ``--lengths`` along ``--direction``; the last run, plus the 1/kappa vs 1/L
    extrapolation (``properties["extrapolated"]``) when there are several lengths."""
    from .protocols import extrapolate_length, nemd

    series = []
    for n in [int(x) for x in args.lengths.split(",")] if args.lengths else [1]:
        reps = [n if "xyz"[k] == args.direction else 1 for k in range(3)]
        series.append(nemd(ff, atoms.repeat(reps), direction=args.direction, delta_T_K=args.delta_t,
                           bath_width_A=args.bath_width, out_prefix=out / f"nemd_{args.direction}_x{n}_seed{seed}",
                           **common))
        print(json.dumps({"seed": seed, "repeat": n, **series[-1]["properties"]}))
    r = series[-1]
    if len(series) > 1:
        p = [x["properties"] for x in series]
        r["properties"] = {**r["properties"], "extrapolated": extrapolate_length(
            [x["length_A"] for x in p], [x["conductivity_W_per_mK"] for x in p],
            [x["conductivity_sem_W_per_mK"] for x in p])}
    return r


@_guard
def cmd_thermal(args) -> int:
    from .protocols import hnemd, interface_nemd

    args.direction = args.direction or ("y" if args.method == "interface" else "x")

    def run_one(ff, atoms, seed, out):
        common = dict(production_steps=args.steps, settings=_settings(args, seed), thickness_A=args.thickness)
        if args.method == "hnemd":
            return hnemd(ff, atoms, direction=args.direction, driving_force_per_A=args.driving_force,
                         out_prefix=out / f"hnemd_{args.direction}_seed{seed}", **common)
        if args.method == "nemd":
            return _nemd_lengths(args, ff, atoms, seed, out, common)
        return interface_nemd(ff, atoms, axis=args.direction, delta_T_K=args.delta_t, bath_width_A=args.bath_width,
                              out_prefix=out / f"interface_{args.direction}_seed{seed}", **common)

    return _over_seeds(args, run_one, f"thermal_{args.method}_{args.direction}_summary.json", method=args.method,
                       direction=args.direction)


@_guard
def cmd_bench(args) -> int:
    from .backend import get_backend
    from .bench import benchmark
    from .structures import repeat_to

    ff, atoms = _load(args)
    if atoms is None:
        from ase.build import bulk

        atoms = bulk(ff.species[0], "fcc", a=3.61, cubic=True)
    atoms = repeat_to(atoms, args.atoms)
    r = benchmark(ff, atoms, steps=args.steps, check_every=args.check_every, xp=get_backend(args.backend))
    print(f"{r['n_atoms']} atoms, {r['steps']} steps on {r['backend']}: "
          f"{r['atom_steps_per_s']:.4g} atom-steps/s ({r['seconds']:.3g} s), {r['syncs_per_step']:.3g} host syncs/step"
          + (f", neighbour list checked every {r['check_every']} steps ({r['replays']} replays, "
             f"{r['overflows']} overflows)"
             if r["check_every"] > 1 else ""))
    return 0


def register(subparsers) -> None:
    """Add ``tensile``, ``elastic``, ``thermal`` and ``bench`` to the ``md`` group."""
    p = subparsers.add_parser("tensile", help="uniaxial tensile test to failure, over seeds")
    _common(p)
    p.add_argument("--direction", default="x", help="x or y (rotate the sheet for other directions)")
    p.add_argument("--strain-rate", type=float, default=1e9, help="engineering strain rate (1/s)")
    p.add_argument("--max-strain", type=float, default=0.3, help="stop here if the sample has not failed")
    p.add_argument("--transverse", default="stress", choices=TRANSVERSE,
                   help="transverse in-plane axis: zero stress (barostat) or fixed length")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated random seeds")
    p.add_argument("--thickness", type=float, default=None, help="effective thickness of a sheet (Å) to quote GPa")
    p.add_argument("--fit-max-strain", type=float, default=0.05, help="upper bound of the Young's modulus fit window (strain)")
    p.add_argument("--traj-every", type=int, default=0, help="steps between extxyz frames (0: none)")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints (0: none)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--out", default="md_tensile", help="output folder (HDF5, extxyz, checkpoints, summary)")
    p.set_defaults(func=cmd_tensile)

    p = subparsers.add_parser("elastic", help="in-plane elastic constants C11, C22, C12, C66 at temperature")
    _common(p)
    p.add_argument("--delta", type=float, default=0.005, help="strain amplitude of the finite differences")
    p.add_argument("--sample-steps", type=int, default=2000, help="steps averaged per strained cell")
    p.add_argument("--scheme", default="auto", choices=("auto", "central", "tension", "tension2"),
                   help="finite differences (auto: central unless a sheet buckles under the compressed cell, "
                        "then tension, or tension2 below 50 K; md.elastic.scheme)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--static", action="store_true", help="also print the 0 K static finite-difference values")
    p.set_defaults(func=cmd_elastic)

    p = subparsers.add_parser("thermal", help="thermal conductivity (HNEMD, NEMD) or interface conductance")
    _common(p)
    p.add_argument("--method", default="hnemd", choices=("hnemd", "nemd", "interface"))
    p.add_argument("--direction", default=None, help="transport axis (default x; interface: the normal, y)")
    p.add_argument("--steps", type=int, default=100000, help="production steps per run")
    p.add_argument("--driving-force", type=float, default=1e-4, help="HNEMD driving force F_e (1/Å)")
    p.add_argument("--delta-t", type=float, default=60.0, help="NEMD hot minus cold bath temperature (K)")
    p.add_argument("--bath-width", type=float, default=5.0, help="NEMD bath width (Å)")
    p.add_argument("--lengths", help="NEMD: comma-separated repeats along --direction (one run each, then the "
                                     "1/kappa vs 1/L extrapolation), e.g. 4,8,12")
    p.add_argument("--thickness", type=float, default=3.35, help="effective thickness of a sheet (Å)")
    p.add_argument("--seeds", default="0", help="comma-separated random seeds")
    p.add_argument("--out", default="md_thermal", help="output folder (HDF5 per run, summary)")
    p.set_defaults(func=cmd_thermal)

    p = subparsers.add_parser("bench", help="MD speed in atom-steps per second")
    _common(p, structure_required=False)
    p.add_argument("--atoms", type=int, default=1000, help="approximate number of atoms (structure repeated)")
    p.add_argument("--steps", type=int, default=100, help="timed steps")
    p.add_argument("--check-every", type=int, default=1,
                   help="steps between neighbour-list checks (1: exact every step; md.neighbor_check_every)")
    p.add_argument("--backend", choices=("numpy", "cupy"), default=None, help="default: CuPy when a GPU is usable")
    p.set_defaults(func=cmd_bench)
