"""Speed of the MTP evaluation (``training.mtp``): atom-evaluations per second, energy + forces + stress.

Systems: (a) ``cu``: an 864-atom fcc Cu cell (6x6x6 cubic cells, a = 3.61 Å, atoms displaced by 0.05 Å)
with MLIP-2's trained ``tests/data/mlip/cubic/pot_NN.mtp``; (b) ``graphene``: a 1012-atom graphene sheet
(22x23 cells, 20 Å of vacuum, pbc = (T, T, F)) with an untrained level-NN MTP (random coefficients, seed 0;
the cost does not depend on the values) of cut-off 5 Å.  Levels 10, 16, 20 by default.

One timed call = ``MTP.evaluate`` (site energies, dE/dd) + ``forces_and_virial`` (forces, virial = stress·V,
per-atom virials); the neighbour list (``neighbor_pairs``, CPU) is built once and reported separately.
Printed: pairs, neighbour-list time, best and median wall time of a call over ``--repeat`` calls,
atom-evals/s = atoms / best wall time, and the best CPU time of this process per call (``time.process_time``)
with atoms / that: on a shared, loaded machine the CPU-time rate is what one free core would give (with one
thread; on GPU only the wall numbers mean anything).  Backends: ``numpy`` always; ``cupy`` when CuPy imports and a CUDA device works (else a
line saying it was skipped).  One CPU thread unless OMP_NUM_THREADS / OPENBLAS_NUM_THREADS are set.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/mtp_eval.py [--levels 10 16 20]
        [--systems cu graphene] [--backends numpy cupy] [--repeat 5]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before NumPy loads its BLAS

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk, graphene  # noqa: E402

from training.mtp import MTP, forces_and_virial, neighbor_pairs  # noqa: E402
from md_gpu.backend import usable_cupy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MLIP = ROOT / "tests" / "data" / "mlip" / "cubic"


def build(system: str, level: int):
    """(atoms, types [n], MTP) of one benchmark system."""
    rng = np.random.default_rng(0)
    if system == "cu":
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((6, 6, 6))
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        mtp = MTP.read(MLIP / f"pot_{level:02d}.mtp")
    elif system == "graphene":
        atoms = graphene("C2", a=2.46, vacuum=10.0, size=(22, 23, 1))
        atoms.pbc = (True, True, False)
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        mtp = MTP.untrained(level, 1, min_dist=1.0, max_dist=5.0, species=["C"], seed=0)
        mtp.moment_coeffs = rng.normal(0.0, 1e-3, mtp.basis_size)
    else:
        raise SystemExit(f"mtp_eval.py: unknown system {system!r}; choose from cu, graphene")
    return atoms, np.zeros(len(atoms), dtype=np.int64), mtp


def time_calls(mtp: MTP, arrays, n_atoms: int, xp, repeat: int) -> tuple[list[float], list[float]]:
    """Wall and CPU times (s) of ``repeat`` calls of evaluate + forces_and_virial (after a warm-up call)."""
    types, i, j, d = arrays
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if xp is not np else (lambda: None)
    walls, cpus = [], []
    for k in range(repeat + 1):
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        _, de_dd = mtp.evaluate(types, i, j, d, xp=xp)
        forces, virial, _ = forces_and_virial(i, j, d, de_dd, n_atoms, xp)
        float(virial[0, 0])  # forces the result (and a device sync on GPU)
        sync()
        if k:
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    return walls, cpus


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[10, 16, 20])
    parser.add_argument("--systems", nargs="+", default=["cu", "graphene"])
    parser.add_argument("--backends", nargs="+", default=["numpy", "cupy"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    cupy, why = usable_cupy() if "cupy" in args.backends else (None, "not asked for")
    print(f"# OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} OPENBLAS_NUM_THREADS="
          f"{os.environ['OPENBLAS_NUM_THREADS']} numpy {np.__version__}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'system':9s} {'level':>5s} {'backend':7s} {'atoms':>6s} {'pairs':>7s} {'nlist_s':>8s} "
          f"{'best_s':>8s} {'median_s':>8s} {'atom-evals/s':>12s} {'cpu_s':>8s} {'per-cpu-s':>12s}")
    for system in args.systems:
        for level in args.levels:
            atoms, types, mtp = build(system, level)
            start = time.perf_counter()
            i, j, d = neighbor_pairs(atoms, mtp.cutoff)
            nlist = time.perf_counter() - start
            for backend in args.backends:
                if backend == "cupy" and cupy is None:
                    print(f"{system:9s} {level:5d} cupy    skipped: {why}")
                    continue
                xp = np if backend == "numpy" else cupy
                arrays = tuple(xp.asarray(a) for a in (types, i, j, d))
                walls, cpus = time_calls(mtp, arrays, len(atoms), xp, args.repeat)
                print(f"{system:9s} {level:5d} {backend:7s} {len(atoms):6d} {len(i):7d} {nlist:8.3f} "
                      f"{min(walls):8.4f} {statistics.median(walls):8.4f} {len(atoms) / min(walls):12.0f} "
                      f"{min(cpus):8.4f} {len(atoms) / min(cpus):12.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
