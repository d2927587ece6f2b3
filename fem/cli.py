"""``multiscale fem {tensile,sweep}``: the continuum model without a case directory.

Both commands take a ``properties.json`` (docs/properties.md) and the same
settings as the case.yaml ``fem:`` section (:data:`fem.fem_stage.FEM_SETTINGS`),
given as flags; they call the same functions as the stage
(:func:`fem.study.run_tensile`, :func:`fem.study.run_sweep`) and write into
``--out`` (XDMF, PNGs, ``fem_results.json``). Run them under ``mpirun -n N``
to solve on N ranks.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import FemError

# flag -> (dotted settings key, type, help)
FLAGS = {
    "--phases": ("phases", str, "the two phases A,B (fractions are of B), e.g. graphene,borophene"),
    "--geometry": ("geometry", str, "stripes | islands | mesh_file"),
    "--length-nm": ("length_nm", float, "sample length along x (nm)"),
    "--height-nm": ("height_nm", float, "sample height along y (nm)"),
    "--mesh-size-nm": ("mesh_size_nm", float, "element size (nm)"),
    "--interface-mesh-size-nm": ("interface_mesh_size_nm", float, "element size near interfaces (nm)"),
    "--interface-width-nm": ("interface_width_nm", float, "interface band width (nm); 0: no band"),
    "--interface-fallback": ("interface_fallback", str, "band strength without a properties.json interface "
                                                        "entry: weaker_phase | error"),
    "--period-nm": ("stripes.period_nm", float, "stripes: period (nm)"),
    "--orientation": ("stripes.orientation", str, "stripes: x (along x) | y (across x)"),
    "--radius-nm": ("islands.radius_nm", float, "islands: radius (nm)"),
    "--shape": ("islands.shape", str, "islands: circle | polygon"),
    "--seed": ("islands.seed", int, "islands: placement seed"),
    "--mesh-file": ("mesh_file", str, "user mesh (.msh or .xdmf) for --geometry mesh_file"),
    "--elasticity": ("elasticity", str, "orthotropic | isotropic"),
    "--model": ("model", str, "AT1 | AT2"),
    "--ell-nm": ("ell_nm", float, "phase-field length scale (nm)"),
    "--direction": ("load_direction", str, "tension along x | y"),
    "--max-strain": ("loading.max_strain", float, "largest applied strain"),
    "--n-steps": ("loading.n_steps", int, "initial number of load steps"),
    "--linear": ("solver.linear", str, "auto | direct | iterative"),
}


def _settings(args) -> dict:
    from .fem_stage import check_settings, defaults

    s = defaults()
    s["studies"] = []
    for flag, (key, kind, _) in FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is None:
            continue
        if key == "phases":
            value = value.split(",")
        node = s
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    if args.fraction is not None:
        s["stripes"]["fraction"] = s["islands"]["fraction"] = args.fraction
    s["damage"] = not args.no_damage
    s["write_fields"] = not args.no_fields
    check_settings(s)
    return s


def _add_common(p) -> None:
    p.add_argument("--properties", required=True, help="properties.json (docs/properties.md)")
    p.add_argument("--out", default="fem_out", help="output folder (default: fem_out)")
    for flag, (_, kind, help_text) in FLAGS.items():
        p.add_argument(flag, type=kind, default=None, help=help_text)
    p.add_argument("--fraction", type=float, default=None, help="area fraction of phase B (stripes and islands)")
    p.add_argument("--no-damage", action="store_true", help="linear elasticity only (effective modulus)")
    p.add_argument("--no-fields", action="store_true", help="do not write XDMF fields")
    p.add_argument("--verbose", action="store_true", help="print every load step")


def _run(args, work) -> int:
    from mpi4py import MPI

    from .materials import read_properties
    from .study import write_json

    comm = MPI.COMM_WORLD
    try:
        s = _settings(args)
        props = read_properties(args.properties)
        out = Path(args.out)
        if comm.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
        comm.barrier()
        log = (lambda m: print(m, flush=True)) if args.verbose and comm.rank == 0 else None
        result, summary = work(s, props, comm, out, log)
    except FemError as exc:
        if comm.rank == 0:
            print(f"multiscale fem: error: {exc}", file=sys.stderr)
        return 1
    if comm.rank == 0:
        write_json(out / "fem_results.json", {"format": "multiscale-fem-results/1", "settings": s, **result})
        print(summary)
    return 0


def _tensile(args) -> int:
    from .study import run_tensile

    def work(s, props, comm, out, log):
        r = run_tensile(s, props, comm=comm, out_dir=out, label="tensile", write_fields=s["write_fields"], log=log)
        return {"tensile": r}, (f"modulus {r['modulus_N_per_m']:.4f} N/m  strength {r['strength_N_per_m']:.4f} N/m  "
                                f"failure strain {r['failure_strain']:.5f}  ({out / 'fem_results.json'})")

    return _run(args, work)


def _sweep(args) -> int:
    from .study import run_sweep

    def work(s, props, comm, out, log):
        values = [float(v) for v in args.values.split(",")]
        st = {"name": args.name, "geometry": s["geometry"], "variable": args.variable, "values": values}
        r = run_sweep(s, st, 0, props, comm=comm, out_dir=out, log=log)
        lines = [f"{args.variable:>12s} {'modulus N/m':>12s} {'strength N/m':>12s}"]
        lines += [f"{row['value']:12.4g} {row['modulus_N_per_m']:12.4f} {row['strength_N_per_m']:12.4f}"
                  for row in r["rows"]]
        return {"studies": [r]}, "\n".join(lines)

    return _run(args, work)


def register(subparsers) -> None:
    """Add ``tensile`` and ``sweep`` to the ``multiscale fem`` command group."""
    p = subparsers.add_parser("tensile", help="tension to failure of one sample (stripes, islands or a mesh)")
    _add_common(p)
    p.set_defaults(func=_tensile)
    q = subparsers.add_parser("sweep", help="effective modulus and strength versus one setting")
    _add_common(q)
    q.add_argument("--variable", default="fraction", help="setting to sweep (fraction, period_nm, radius_nm, ...)")
    q.add_argument("--values", required=True, help="comma-separated values, e.g. 0,0.25,0.5,0.75,1")
    q.add_argument("--name", default="sweep", help="name of the study (file names)")
    q.set_defaults(func=_sweep)
