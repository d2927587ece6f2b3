"""The ``multiscale`` command line.

``multiscale run CASE [--stages a,b] [--preset quick|full] [--force]`` and
``multiscale status CASE`` drive the stage graph; one command group per engine
(``data``, ``mtp``, ``md``, ``fem``) lets each engine work alone. An engine adds
its sub-commands through a ``register(subparsers)`` function in its own
``cli`` module, so the CLI and the Python API call the same functions.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import MultiscaleError
from .stages import from_import_error

# group -> [(module, function)]: the engines' sub-command registrations.
ENGINE_COMMANDS = {
    "data": [("training.cli", "register_data")],
    "mtp": [("training.mtp.cli", "register"), ("training.fit_cli", "register"), ("training.passive_cli", "register")],
    "md": [("md_gpu.cli", "register")],
    "fem": [("fem.cli", "register")],
}
GROUP_HELP = {
    "data": "AIMD datasets: summary, generation, subsampling, conversion",
    "mtp": "moment tensor potentials (names and arguments mirror MLIP's mlp)",
    "md": "GPU molecular dynamics: tensile and elastic tests, speed benchmark",
    "fem": "FEniCSx continuum model of heterostructures",
}


def _cmd_run(args) -> int:
    from .case import Case

    case = Case.load(args.case, preset=args.preset)
    stages = args.stages.split(",") if args.stages else None
    case.run(stages, force=args.force)
    return 0


def _cmd_status(args) -> int:
    from .case import Case
    from .runner import format_status

    print(format_status(Case.load(args.case, preset=args.preset)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multiscale", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run the stages of a case (skipping unchanged ones)")
    run.add_argument("case", help="case directory (holds case.yaml)")
    run.add_argument("--stages", help="comma-separated stages to run (default: all, in order)")
    run.add_argument("--preset", help="preset of case.yaml to apply (e.g. quick, full)")
    run.add_argument("--force", action="store_true", help="rerun the selected stages even if unchanged, from scratch "
                     "(discards the files of an interrupted run in runs/<stage>.partial)")
    run.set_defaults(func=_cmd_run)

    status = sub.add_parser("status", help="show each stage as done / stale / missing, with timings")
    status.add_argument("case", help="case directory (holds case.yaml)")
    status.add_argument("--preset", help="preset to resolve the settings with")
    status.set_defaults(func=_cmd_status)

    for group, registrations in ENGINE_COMMANDS.items():
        registers, reasons = [], []
        for module_name, function in registrations:
            try:
                registers.append(getattr(importlib.import_module(module_name), function))
            except ImportError as exc:
                unavailable = from_import_error(exc, module_name)
                if unavailable is None:
                    raise
                reasons.append(str(unavailable))
            except AttributeError:
                reasons.append(f"{module_name} does not provide {function}")
        reasons = list(dict.fromkeys(reasons))
        epilog = f"Some commands are not available here: {'; '.join(reasons)}" if reasons else None
        group_parser = sub.add_parser(group, help=GROUP_HELP[group], epilog=epilog)
        if not registers:  # every command of the group is missing: any command line gets the reason
            group_parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            group_parser.set_defaults(func=_unavailable(group, reasons))
            continue
        group_sub = group_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
        group_sub.required = True
        for register in registers:
            register(group_sub)
    return parser


def _unavailable(group: str, reasons: list[str]):
    def handler(args) -> int:
        print(f"multiscale {group}: not available: {'; '.join(reasons)}", file=sys.stderr)
        return 2

    return handler


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MultiscaleError as exc:
        print(f"multiscale: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # an engine command whose package is missing (fem tensile without dolfinx)
        unavailable = from_import_error(exc)
        if unavailable is None:
            raise
        print(f"multiscale {args.command}: not available: {unavailable}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("multiscale: interrupted; finished stages are kept, a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
