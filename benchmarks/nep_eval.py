"""Speed of the NEP evaluation (``training.nep``, as ``md_gpu.forcefields.nep`` runs it): atom-evaluations per second,
energy + forces + virial + per-atom virials, by the array code, by the compiled kernel (``training.nep.host_kernel``,
the default CPU path) on one and two OpenMP threads, and by GPUMD's NEP_CPU (calorine's build, serial) on the same
input when the peer venv exists (``make peer-calorine``).

Systems: ``graphene``, a 1012-atom sheet (22x23 cells, 20 Å of vacuum, pbc = (T, T, F), atoms displaced
by 0.03 Å), one species; ``cb``, the same sheet with every third atom B (two species). Model: a NEP4 with
random parameters (seed 0; the cost does not depend on the values) and GPUMD's default hyperparameters
(``cutoff 8 4``, ``n_max 4 4``, ``basis_size 8 8``, ``l_max 4 2 1``, 30 neurons), or ``--cutoff`` rc_r rc_a.

One timed call = the engine's evaluation + ``forces_and_virial`` with per-atom virials; the neighbour
list is built once and reported separately. Printed: pairs, best wall and CPU time per call over
``--repeat`` calls, atom-evals/s = atoms / best time (on a shared machine the CPU-time rate is what the
engine's cores give when free). NEP_CPU (one thread: calorine builds it without OpenMP) is timed inside
its venv, its own neighbour list included.
Engines: ``array`` (``NEPEvaluator.evaluate`` on NumPy), ``compiled`` (the fused kernel on the CPU, once per
``--threads`` count), ``cupy`` (the fused kernel's CUDA build, when CuPy and a CUDA device work).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/nep_eval.py [--systems graphene cb]
        [--engines array compiled cupy] [--threads 1 2] [--repeat 3] [--cutoff 8 4]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before NumPy loads its BLAS

import argparse  # noqa: E402
import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import graphene  # noqa: E402

from md_gpu.forcefields.base import forces_and_virial  # noqa: E402
from md_gpu.forcefields.nep import NEPForceField  # noqa: E402
from md_gpu.neighbors import build_pairs  # noqa: E402
from md_gpu.backend import usable_cupy  # noqa: E402
from training.nep import evaluate_compiled, evaluate_fused, random_nep, write_nep  # noqa: E402
from training.nep.host_kernel import available  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peers" / "calorine" / "bin" / "python"
DRIVER = ROOT / "tests" / "peers" / "calorine_driver.py"


def build(system: str, cutoff):
    """(atoms, NEPForceField) of one benchmark system."""
    rng = np.random.default_rng(0)
    atoms = graphene("C2", a=2.46, vacuum=10.0, size=(22, 23, 1))
    atoms.pbc = (True, True, False)
    atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
    if system == "graphene":
        species = ("C",)
    elif system == "cb":
        species = ("C", "B")
        atoms.symbols[::3] = "B"
    else:
        raise SystemExit(f"nep_eval.py: unknown system {system!r}; choose from graphene, cb")
    model = random_nep(species, version=4, seed=0, rc=tuple(cutoff), n_max=(4, 4), basis_size=(8, 8),
                       l_max=(4, 2, 1), neurons=30)
    return atoms, NEPForceField(model)


def time_ours(atoms, ff, evaluate, xp, repeat: int):
    """(pairs, neighbour-list seconds, best wall s, best CPU s) of ``evaluate(types, i, j, d)`` + forces and
    virials; the first call is not timed (it compiles and self-checks the kernels)."""
    start = time.perf_counter()
    cell = np.asarray(atoms.cell.array)
    pos = np.asarray(atoms.positions)
    i, j, shifts = build_pairs(pos, cell, atoms.pbc, ff.cutoff)
    t_nl = time.perf_counter() - start
    d = pos[j] + shifts @ cell - pos[i]
    types = np.array([ff.species.index(s) for s in atoms.get_chemical_symbols()])
    types, i, j, d = (xp.asarray(a) for a in (types, i, j, d))
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if xp is not np else (lambda: None)
    walls, cpus = [], []
    for k in range(repeat + 1):
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        _, de_dd = evaluate(types, i, j, d)
        forces_and_virial(i, j, d, de_dd, len(atoms), xp, per_atom=True)
        sync()
        if k:
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    return int(i.shape[0]), t_nl, min(walls), min(cpus)


def set_openmp_threads(threads: int) -> None:
    """Threads of the compiled kernel's OpenMP loops (libgomp, loaded with the kernel library)."""
    ctypes.CDLL(ctypes.util.find_library("gomp") or "libgomp.so.1").omp_set_num_threads(int(threads))


def engines(ff, names, threads):
    """(label, evaluate(types, i, j, d), xp, OpenMP threads or None) of each engine asked for."""
    for name in names:
        if name == "array":
            yield "array code, numpy", lambda *a: ff.nep.evaluate(*a, xp=np), np, None
        elif name == "compiled":
            if not available(ff.nep):
                yield "compiled kernel: skipped (no compiler, or MULTISCALE_CPU_KERNELS=numpy)", None, np, None
                continue
            for t in threads:
                yield f"compiled kernel, {t} thread{'s' if t > 1 else ''}", \
                    lambda *a: evaluate_compiled(ff.nep, *a), np, t
        elif name == "cupy":
            xp, why = usable_cupy()
            if xp is None:
                yield f"fused kernel, cupy: skipped ({why})", None, None, None
            else:
                yield "fused kernel, cupy", lambda *a: evaluate_fused(ff.nep, *a, xp=xp), xp, None
        else:
            raise SystemExit(f"nep_eval.py: unknown engine {name!r}; choose from array, compiled, cupy")


def time_nep_cpu(atoms, ff, repeat: int):
    """Best wall time (s) of one NEP_CPU evaluation in the peer venv, or None without it."""
    if not PEER_PYTHON.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_nep(ff.model, tmp / "nep.txt")
        job = {"potential": str(tmp / "nep.txt"), "repeat": repeat,
               "structures": [{"symbols": atoms.get_chemical_symbols(), "positions": atoms.positions.tolist(),
                               "cell": atoms.cell.array.tolist()}]}
        (tmp / "job.json").write_text(json.dumps(job))
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run([str(PEER_PYTHON), str(DRIVER), str(tmp / "job.json"), str(tmp / "out.json")],
                       check=True, env=env, capture_output=True)
        return json.loads((tmp / "out.json").read_text())["results"][0]["seconds"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", nargs="+", default=["graphene", "cb"])
    p.add_argument("--engines", nargs="+", default=["array", "compiled", "cupy"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="OpenMP threads of the compiled kernel")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cutoff", nargs=2, type=float, default=[8.0, 4.0], metavar=("RC_RADIAL", "RC_ANGULAR"))
    args = p.parse_args()
    print("| system | atoms | pairs | engine | neighbour list (s) | best wall (s) | best CPU (s) | "
          "atom-evals/s (wall) | atom-evals/s (CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for system in args.systems:
        atoms, ff = build(system, args.cutoff)
        n = len(atoms)
        for label, evaluate, xp, threads in engines(ff, args.engines, args.threads):
            if evaluate is None:
                print(f"| {system} | {n} | | {label} | | | | | |")
                continue
            if threads is not None:
                set_openmp_threads(threads)
            pairs, t_nl, wall, cpu = time_ours(atoms, ff, evaluate, xp, args.repeat)
            print(f"| {system} | {n} | {pairs} | {label} | {t_nl:.3f} | {wall:.4f} | {cpu:.4f} | "
                  f"{n / wall:.3g} | {n / cpu:.3g} |")
        seconds = time_nep_cpu(atoms, ff, args.repeat)
        if seconds is None:
            print(f"| {system} | {n} | | NEP_CPU | skipped: run `make peer-calorine` | | | | |")
        else:
            print(f"| {system} | {n} | | NEP_CPU (calorine, 1 thread) | (included) | {seconds:.4f} | | "
                  f"{n / seconds:.3g} | |")


if __name__ == "__main__":
    main()
