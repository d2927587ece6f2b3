"""``multiscale fem {tensile,sweep,thermal}``: the continuum model without a case directory.

The commands take a ``properties.json`` (docs/properties.md) and the same
settings as the case.yaml ``fem:`` section (:data:`fem.fem_stage.FEM_SETTINGS`),
given as flags; they call the same functions as the stage
(:func:`fem.study.run_tensile`, :func:`fem.study.run_sweep`,
:func:`fem.thermal_study.run_thermal`) and write into
``--out`` (XDMF, PNGs, ``fem_results.json``). Run them under ``mpirun -n N``
to solve on N ranks.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import FemError

# flag -> (dotted settings key, type, help)
FLAGS = {
    "--phases": ("phases", str, "the two phases A,B (fractions are of B), e.g. graphene,borophene; default: "
                                "the two phases of the one interface of properties.json"),
    "--geometry": ("geometry", str, "stripes | islands | mesh_file"),
    "--length-nm": ("length_nm", float, "sample length along x (nm)"),
    "--height-nm": ("height_nm", float, "sample height along y (nm)"),
    "--mesh-size-nm": ("mesh_size_nm", float, "element size (nm)"),
    "--interface-mesh-size-nm": ("interface_mesh_size_nm", float, "element size near interfaces (nm)"),
    "--interface-width-nm": ("interface_width_nm", float, "interface band width (nm); 0: no band"),
    "--interface-fallback": ("interface_fallback", str, "band strength without a usable properties.json "
                                                        "interface strength: weaker_phase | error"),
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


def _floats(text: str) -> list:
    return [float(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list:
    return [v.strip() for v in text.split(",") if v.strip()]


# the heat-conduction command: fem.thermal keys, and --direction is the direction of the heat flow
THERMAL_FLAGS = {
    **FLAGS,
    "--direction": ("thermal.load_direction", str, "heat flows along x | y (hot edge at 0)"),
    "--delta-t-k": ("thermal.delta_T_K", float, "temperature difference between hot and cold edges (K)"),
    "--heat-interface": ("thermal.interface", str, "jump (q.n = G [T]) | perfect (continuous T)"),
    "--conductance-fallback": ("thermal.interface_fallback", str, "without a usable properties.json "
                                                                  "conductance: perfect | error"),
    "--thermal-mesh-size-nm": ("thermal.mesh_size_nm", float, "element size of the thermal samples (nm)"),
    "--thermal-linear": ("thermal.linear", str, "direct | iterative"),
    "--fractions": ("thermal.fractions", _floats, "fraction sweep: comma-separated B fractions ('' for none)"),
    "--samples": ("thermal.fraction_samples", _names,
                  "fraction sweep samples: stripes_parallel,stripes_series,islands"),
    "--periods-nm": ("thermal.periods_nm", _floats, "size sweep: comma-separated periods (nm)"),
    "--period-count": ("thermal.period_count", int, "size sweep: log-spaced periods (0: none)"),
    "--period-min-nm": ("thermal.period_min_nm", float, "size sweep: smallest period (nm)"),
    "--period-max-nm": ("thermal.period_max_nm", float, "size sweep: largest period (nm)"),
    "--size-fraction": ("thermal.size_fraction", float, "size sweep: area fraction of B"),
    "--elements-per-stripe": ("thermal.elements_per_stripe", int, "size sweep: elements across the narrower stripe"),
}


def _settings(args, flags: dict = FLAGS) -> dict:
    from .fem_stage import check_settings, defaults

    s = defaults()
    s["studies"] = []
    for flag, (key, kind, _) in flags.items():
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
    s["allow_unfailed_strength"] = bool(getattr(args, "allow_unfailed_strength", False))
    check_settings(s)
    return s


def _add_common(p, flags: dict = FLAGS) -> None:
    p.add_argument("--properties", required=True, help="properties.json (docs/properties.md)")
    p.add_argument("--out", default="fem_out", help="output folder (default: fem_out)")
    for flag, (_, kind, help_text) in flags.items():
        p.add_argument(flag, type=kind, default=None, help=help_text)
    p.add_argument("--fraction", type=float, default=None, help="area fraction of phase B (stripes and islands)")
    p.add_argument("--no-damage", action="store_true", help="linear elasticity only (effective modulus)")
    p.add_argument("--no-fields", action="store_true", help="do not write XDMF fields")
    p.add_argument("--allow-unfailed-strength", action="store_true",
                   help="use a strength from tensile runs that did not fail (strength_from_unfailed) as the strength")
    p.add_argument("--verbose", action="store_true", help="print every load step")


def _run(args, work, flags: dict = FLAGS) -> int:
    from mpi4py import MPI

    from common.atomic import write_json

    from .materials import input_record, read_properties, resolve_phases

    comm = MPI.COMM_WORLD
    try:
        s = _settings(args, flags)
        props = read_properties(args.properties)
        s["phases"] = resolve_phases(s["phases"], props)
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
        write_json(out / "fem_results.json", {"format": "multiscale-fem-results/1", "settings": s,
                                              "inputs": input_record(props, s), **result})
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


def _thermal(args) -> int:
    from .thermal_study import SampleMaterials, run_thermal

    def work(s, props, comm, out, log):
        r = run_thermal(s, SampleMaterials(s, props, log=log), comm=comm, out_dir=out, log=log)
        main = r["main"]
        lines = [f"kappa_eff {main['kappa_eff_W_per_mK']:.6g} W/(m K) along {main['load_direction']}  "
                 f"(parallel {main['parallel_W_per_mK']:.6g}, series {main['series_W_per_mK']:.6g})  "
                 f"({out / 'fem_results.json'})"]
        if r["size_sweep"]:
            lines.append(f"{'period nm':>12s} {'kappa W/(m K)':>14s} {'exact':>14s}")
            lines += [f"{row['period_nm']:12.4g} {row['kappa_fe']:14.6g} {row['kappa_exact']:14.6g}"
                      for row in r["size_sweep"]["rows"]]
        return {"thermal": r}, "\n".join(lines)

    return _run(args, work, THERMAL_FLAGS)


def register(subparsers) -> None:
    """Add ``tensile``, ``sweep`` and ``thermal`` to the ``multiscale fem`` command group."""
    p = subparsers.add_parser("tensile", help="tension to failure of one sample (stripes, islands or a mesh)")
    _add_common(p)
    p.set_defaults(func=_tensile)
    q = subparsers.add_parser("sweep", help="effective modulus and strength versus one setting")
    _add_common(q)
    q.add_argument("--variable", default="fraction", help="setting to sweep (fraction, period_nm, radius_nm, ...)")
    q.add_argument("--values", required=True, help="comma-separated values, e.g. 0,0.25,0.5,0.75,1")
    q.add_argument("--name", default="sweep", help="name of the study (file names)")
    q.set_defaults(func=_sweep)
    r = subparsers.add_parser("thermal", help="steady heat conduction: kappa_eff, fraction and size sweeps")
    _add_common(r, THERMAL_FLAGS)
    r.set_defaults(func=_thermal)
