"""``python -m fem {tensile,sweep} ...``: the ``multiscale fem`` commands without the runner (used under mpirun)."""
import argparse
import sys

from .cli import register


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fem", description="FEniCSx continuum model of heterostructures")
    sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    sub.required = True
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
