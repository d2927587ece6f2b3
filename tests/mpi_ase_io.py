"""``python mpi_ase_io.py DIR`` under mpirun -n 2: the ranks use ASE's file functions out of step.

Rank 1 writes and reads a file of its own while rank 0 reads another; with ASE's MPI behaviour
(read on rank 0, broadcast) this hangs; with multiscale.parallel.serial_ase it finishes.
"""
import sys
from pathlib import Path

from ase import Atoms
from ase.io import read, write

from multiscale.parallel import Farm

farm = Farm.from_environment()
assert farm.size == 2, farm.size
folder = Path(sys.argv[1])
if farm.rank == 1:
    write(folder / "rank1.extxyz", [Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])] * 3)
    assert len(read(folder / "rank1.extxyz", ":")) == 3
else:
    assert len(read(folder / "rank0.extxyz", ":")) == 2
farm.comm.Barrier()
print(f"rank {farm.rank} done")
