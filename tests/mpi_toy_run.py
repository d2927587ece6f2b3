"""Run the toy pipeline on a case directory: ``python mpi_toy_run.py CASE [fail_on]`` (serial or under mpirun)."""
import sys

from multiscale.case import Case
from multiscale.errors import MultiscaleError
from toy_stages import TOY

case = Case.load(sys.argv[1], pipeline=TOY)
if len(sys.argv) > 2:
    case.settings["a"]["fail_on"] = int(sys.argv[2])
try:
    case.run(["a", "b"])
except MultiscaleError as exc:
    print(f"ERROR: {exc}", file=sys.stderr)
    sys.exit(1)
