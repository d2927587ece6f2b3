"""``multiscale data ...``: the dataset sub-commands (summary, aimd, ripples, strains, subsample, convert).

Data flow: command-line arguments -> the same functions the ``data`` stage
calls (:mod:`training.datasets`, :mod:`training.aimd`, :mod:`training.ripples`,
:mod:`training.strain_frames`, :mod:`training.subsample`, :mod:`training.summary`) -> files and printed lines.
Each handler takes the parsed ``args`` and returns an exit code.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from . import aimd, datasets, subsample, summary


def _cmd_summary(args) -> int:
    for path in args.files:
        frames = datasets.read(path)
        info = summary.summarize(frames, metadata=aimd.read_metadata(path), thickness_A=args.thickness)
        print(summary.format_summary(info, title=f"{path}:"))
        if args.png:
            png = Path(args.png) if len(args.files) == 1 else Path(args.png).with_name(
                f"{Path(path).name.split('.')[0]}_{Path(args.png).name}")
            summary.plot_histograms(frames, png, title=Path(path).name)
            print(f"  histogram: {png}")
        if args.json:
            print(json.dumps(info, indent=1))
    return 0


def _cmd_aimd(args) -> int:
    import ase.io
    import yaml

    from .data_stage import DATA_SETTINGS, build_cell, in_build_order, plan_from_settings

    case_dir = Path(args.case)
    if not (case_dir / "case.yaml").is_file():
        print(f"multiscale data aimd: {case_dir / 'case.yaml'} not found; give a case folder", file=sys.stderr)
        return 2
    raw = yaml.safe_load((case_dir / "case.yaml").read_text()) or {}
    section = raw.get("data") or {}
    systems = raw.get("systems") or {}
    names = args.system or list(systems)
    for name in names:
        if name not in systems:
            print(f"multiscale data aimd: system {name!r} is not in {case_dir / 'case.yaml'} "
                  f"(systems: {', '.join(systems)})", file=sys.stderr)
            return 2
    defaults = {k: spec[1] for k, spec in DATA_SETTINGS.items() if not isinstance(spec, dict)}
    settings = {**defaults, **{k: v for k, v in section.items() if k in defaults},
                "aimd": {k: section.get("aimd", {}).get(k, spec[1]) for k, spec in DATA_SETTINGS["aimd"].items()}}
    plan = plan_from_settings(settings)
    engine = args.engine or settings["engine"]
    out = Path(args.out) if args.out else case_dir / "data"
    entries = {n: {"kind": "phase", "structure": n, "between": [], **(e or {})} for n, e in systems.items()}
    built = {}
    for name in in_build_order(entries):
        atoms, record = build_cell(name, entries[name], built, case_dir, settings)
        if name not in names:
            built[name] = atoms
            continue
        print(f"[aimd] {name}: {len(plan.chains)} chains x {plan.frames_per_chain} frames, "
              f"{plan.steps_per_chain} MD steps each, engine {engine}", flush=True)
        phase = entries[name]["kind"] != "interface"
        path = aimd.generate(name, out, atoms=atoms, free="lattice" if phase else "normal", source=record["source"],
                             plan=plan, engine=engine, engine_settings=settings["engine_settings"],
                             reference_scan=settings["reference_scan"] and phase)
        built[name] = ase.io.read(aimd.structure_path(path), format="extxyz")
        print(f"[aimd] {name}: {path}")
    return 0


def _cmd_subsample(args) -> int:
    frames = datasets.read(args.input)
    picked = subsample.subsample(frames, method=args.method, every=args.every, n_frames=args.n, seed=args.seed)
    datasets.write(args.output, picked)
    print(f"{args.input}: kept {len(picked)} of {len(frames)} frames ({args.method}) -> {args.output}")
    return 0


def _cmd_ripples(args) -> int:
    from .engines import DEFAULT_ENGINE
    from .ripples import add_ripples

    for path in args.files:
        n = add_ripples(path, engine=args.engine or DEFAULT_ENGINE, count=args.count,
                        slope=(args.min_slope, args.max_slope), seed=args.seed, force=args.force)
        print(f"[ripples] {path}: {n} frames added")
    return 0


def _cmd_strains(args) -> int:
    from .engines import DEFAULT_ENGINE
    from .strain_frames import add_relaxed_strain_frames, add_strain_frames

    for path in args.files:
        if args.relaxed:
            n = add_relaxed_strain_frames(path, engine=args.engine or DEFAULT_ENGINE, strains=args.strains,
                                          fmax=args.fmax, force=args.force)
        else:
            n = add_strain_frames(path, engine=args.engine or DEFAULT_ENGINE, count=args.count,
                                  max_strain=args.max_strain, rattle_A=args.rattle, seed=args.seed, force=args.force)
        print(f"[strains] {path}: {n} {'relaxed-ion ' if args.relaxed else ''}frames added")
    return 0


def _numbers(text: str) -> list[float]:
    """``"-0.01,0.005"`` -> [-0.01, 0.005]; argparse turns the ValueError into a usage error."""
    return [float(part) for part in text.split(",")]


def _cmd_convert(args) -> int:
    frames = datasets.read_many(args.inputs)
    species = args.species.split(",") if args.species else None
    datasets.write(args.output, frames, species=species)
    print(f"wrote {len(frames)} frames -> {args.output}")
    return 0


def _guarded(handler):
    """A bad input (missing or broken file, wrong value) prints one line and returns 1."""
    @functools.wraps(handler)
    def run(args) -> int:
        try:
            return handler(args)
        except (OSError, ValueError) as err:  # DatasetError and EngineError are ValueErrors
            print(f"multiscale data: error: {err}", file=sys.stderr)
            return 1
    return run


def _single_points_parser(subparsers, name: str, what: str, module: str, handler):
    """``multiscale data <name> FILES``: append ``what`` (reference engine single points, ``module``)."""
    p = subparsers.add_parser(name, help=f"append {what} (reference engine single points) to 2D-sheet datasets "
                                         f"({module})")
    p.add_argument("files", nargs="+", help="datasets to extend in place (extxyz[.gz]; .meta.json beside is updated)")
    p.add_argument("--engine", default=None, help="reference engine (as data.engine; default: "
                                                  "training.engines.DEFAULT_ENGINE)")
    p.add_argument("--count", type=int, default=24, help=f"{what} per dataset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help=f"replace {what} already in a dataset")
    p.set_defaults(func=_guarded(handler))
    return p


def register_data(subparsers) -> None:
    """Add ``summary``, ``aimd``, ``ripples``, ``strains``, ``subsample`` and ``convert`` to the ``data`` command group."""
    p = subparsers.add_parser("summary", help="frames, species, T/strain coverage, E/F/stress ranges, histogram")
    p.add_argument("files", nargs="+", help="dataset files (extxyz[.gz], cfg, OUTCAR, vasprun.xml)")
    p.add_argument("--png", help="write a histogram PNG here")
    p.add_argument("--thickness", type=float, default=3.35, help="effective thickness for GPa (A)")
    p.add_argument("--json", action="store_true", help="also print the summary as JSON")
    p.set_defaults(func=_guarded(_cmd_summary))

    p = subparsers.add_parser("aimd", help="generate AIMD datasets of a case (resumable)")
    p.add_argument("case", help="case directory (its case.yaml data: section sets the grid)")
    p.add_argument("--system", action="append", help="system to generate (repeatable; default: all)")
    p.add_argument("--engine", help="override data.engine (tblite-gfn1 | tblite-gfn2 | gpaw | python:mod.Class)")
    p.add_argument("--out", help="output folder (default: CASE/data)")
    p.set_defaults(func=_guarded(_cmd_aimd))

    p = subparsers.add_parser("subsample", help="subsample correlated frames (every k-th, or farthest point)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--method", choices=("every", "fps"), default="fps")
    p.add_argument("--every", type=int, default=1, help="k for --method every")
    p.add_argument("-n", type=int, default=0, help="frames to keep for --method fps")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_guarded(_cmd_subsample))

    p = _single_points_parser(subparsers, "ripples", "out-of-plane ripple frames", "training.ripples",
                              _cmd_ripples)
    p.add_argument("--min-slope", type=float, default=0.05, help="smallest largest-slope 2 pi A / lambda of a ripple")
    p.add_argument("--max-slope", type=float, default=0.3, help="largest largest-slope 2 pi A / lambda of a ripple")

    p = _single_points_parser(subparsers, "strains", "small-strain 0 K frames", "training.strain_frames",
                              _cmd_strains)
    p.add_argument("--max-strain", type=float, default=0.02, help="largest |e_xx|, |e_yy|, |e_xy| (uniform draws)")
    p.add_argument("--rattle", type=float, default=0.03, help="Gaussian displacement of every atom (A)")
    p.add_argument("--relaxed", action="store_true",
                   help="instead: relaxed-ion frames (chain strains_relaxed): the unstrained cell and uniaxial x, "
                        "uniaxial y, equi-biaxial and shear strains of --strains, positions relaxed at fixed cell "
                        "(--count, --max-strain, --rattle, --seed do not apply)")
    p.add_argument("--strains", type=_numbers, default=[-0.01, -0.005, 0.005, 0.01],
                   help="with --relaxed: the strains of each mode, comma-separated (--strains=-0.01,-0.005,0.005,0.01, "
                        "the default)")
    p.add_argument("--fmax", type=float, default=2e-3, help="with --relaxed: largest force left (eV/A)")

    p = subparsers.add_parser("convert", help="convert datasets between extxyz[.gz], cfg, OUTCAR, vasprun.xml")
    p.add_argument("inputs", nargs="+")
    p.add_argument("output", help="output file (.extxyz, .extxyz.gz or .cfg)")
    p.add_argument("--species", help="cfg type order, e.g. B,C (default: by atomic number)")
    p.set_defaults(func=_guarded(_cmd_convert))


def main(argv=None) -> int:
    """Stand-alone entry (``python -m training.cli summary FILE``), same as ``multiscale data``."""
    parser = argparse.ArgumentParser(prog="multiscale data")
    register_data(parser.add_subparsers(dest="subcommand", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
