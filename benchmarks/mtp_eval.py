"""Speed of the MTP on the CPU: atom-evaluations per second of the array code, the compiled kernel and motep.

Systems: (a) ``cu``: an 864-atom fcc Cu cell (6x6x6 cubic cells, a = 3.61 Å, atoms displaced by 0.05 Å)
with MLIP-2's trained ``tests/data/mlip/cubic/pot_NN.mtp``; (b) ``graphene``: a 1012-atom graphene sheet
(22x23 cells, 20 Å of vacuum, pbc = (T, T, F)) with an untrained level-NN MTP (random coefficients, seed 0;
the cost does not depend on the values) of cut-off 5 Å.  Levels 10, 16, 20 by default.

Engines and modes (one row each, per system, level and thread count):

* ``array``: ``MTP.evaluate`` on NumPy (the array code, the reference); ``compiled``: the host build of
  the fused kernel (``training.mtp.host_kernel``); ``cupy``: ``MTP.evaluate`` on a GPU when one works.
* ``eval``: evaluation alone on a fixed pair list: site energies, dE/dd, then forces, virial and
  per-atom virials (``forces_and_virial``).  ``e2e``: end to end through the ASE calculator,
  energy + forces + stress of a moved structure (neighbour list included): ``MTPCalculator`` for
  ``array`` (``MULTISCALE_CPU_KERNELS=numpy``) and ``compiled``, and motep's C engine (``engine="cext"``,
  its own venv ``.venv-peers/motep``) on the same ``.mtp`` file and cell.
* ``nlist``: the neighbour list alone, ``neighbor_pairs`` as the calculator calls it: ``compiled`` (the
  cell list of ``training.mtp.cell_list``, with the vector scan of the host: AVX-512 or AVX2), ``avx2``
  (on an AVX-512 host: the build without AVX-512, as a host with AVX2 only runs it), ``scalar`` (the
  build without vector scans) and ``array`` (the array list), with its cost as a fraction of
  the compiled level-10 evaluation (evaluation alone, forces and virials included) on the same cell,
  also printed as one summary line per list (the issue's goal: at most 0.1).

Each thread count runs in its own process with ``OMP_NUM_THREADS`` = ``OPENBLAS_NUM_THREADS`` = that count.
Printed per row: best wall time of ``--repeat`` calls (after a warm-up call), atom-evals/s = atoms / best
wall time, best process CPU time per call and atoms / that (on a shared, loaded machine the CPU-time rate
is what a free core would give for one thread), and the load average; the compiled neighbour lists take
the best of at least ``NLIST_REPEAT`` calls.  The last lines give the compiled
kernel's end-to-end speed over motep's, per level, on one thread.

    .venv/bin/python benchmarks/mtp_eval.py [--levels 10 16 20] [--threads 1 2] [--systems cu graphene]
        [--engines array compiled cupy motep] [--repeat 5] [--motep-python PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLIP = ROOT / "tests" / "data" / "mlip" / "cubic"
MOTEP_PYTHON = ROOT / ".venv-peers" / "motep" / "bin" / "python"
ENGINES = ("array", "compiled", "cupy", "motep")
NLIST_REPEAT = 50  # the compiled lists take well under a millisecond: best of at least this many calls

MOTEP_SCRIPT = r"""
import json, sys, time
import numpy as np
from ase import Atoms
from motep.calculator import make_calculator
from motep.io.mlip.mtp import read_mtp
request = json.loads(open(sys.argv[1]).read())
data = read_mtp(request["path"])
data.species = request["numbers_of_types"]
calc = make_calculator(data, engine="cext")
atoms = Atoms(numbers=request["numbers"], positions=request["positions"], cell=request["cell"], pbc=request["pbc"])
walls, cpus = [], []
for k in range(request["repeat"] + 1):
    atoms.positions[0, 0] += 1e-6 * (-1) ** k  # a moved structure: the calculator must recompute
    start, cpu = time.perf_counter(), time.process_time()
    atoms.calc = calc
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress()
    if k:
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
print(json.dumps({"walls": walls, "cpus": cpus}))
"""


def build(system: str, level: int):
    """(atoms, MTP) of one benchmark system (atoms carry element symbols matching the MTP's species)."""
    import numpy as np
    from ase.build import bulk, graphene

    from training.mtp import MTP

    rng = np.random.default_rng(0)
    if system == "cu":
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((6, 6, 6))
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        mtp = MTP.read(MLIP / f"pot_{level:02d}.mtp")
        mtp.species = ["Cu"]
    elif system == "graphene":
        atoms = graphene("C2", a=2.46, vacuum=10.0, size=(22, 23, 1))
        atoms.pbc = (True, True, False)
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        mtp = MTP.untrained(level, 1, min_dist=1.0, max_dist=5.0, species=["C"], seed=0)
        mtp.moment_coeffs = rng.normal(0.0, 1e-3, mtp.basis_size)
    else:
        raise SystemExit(f"mtp_eval.py: unknown system {system!r}; choose from cu, graphene")
    return atoms, mtp


def compiled_eval(mtp, types, i, j, d, n):
    """One call of the compiled kernel + the force scatter, as :func:`timed` takes it."""
    import numpy as np

    from training.mtp import forces_and_virial, host_kernel

    def run(_):
        _, g = host_kernel.evaluate(mtp, types, i, j, d)
        forces_and_virial(i, j, d, g, n, np)
    return run


def timed(call, repeat: int) -> dict:
    """Wall and CPU times (s) of ``repeat`` calls of ``call(k)`` after a warm-up call (k = 0)."""
    walls, cpus = [], []
    for k in range(repeat + 1):
        start, cpu = time.perf_counter(), time.process_time()
        call(k)
        if k:
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    return {"walls": walls, "cpus": cpus}


def child(args) -> None:
    """Measure every row of one thread count (this process's OMP_NUM_THREADS); print JSON lines."""
    import numpy as np

    from training.mtp import MTPCalculator, cell_list, forces_and_virial, host_kernel, neighbor_pairs
    from training.mtp.neighbors import array_forces_and_virial, array_neighbor_pairs

    threads = int(os.environ["OMP_NUM_THREADS"])
    cupy = None
    if "cupy" in args.engines:
        from md_gpu.backend import usable_cupy

        cupy, _ = usable_cupy()

    def emit(**row):
        print(json.dumps({"threads": threads, **row}), flush=True)

    def moved(atoms):
        def move(k):
            atoms.positions[0, 0] += 1e-6 * (-1) ** k
        return move

    eval10 = {}
    for system in args.systems:
        for level in args.levels:
            atoms, mtp = build(system, level)
            n = len(atoms)
            types = np.zeros(n, dtype=np.int64)
            i, j, d = neighbor_pairs(atoms, mtp.cutoff)
            if "array" in args.engines:
                def array_eval(_):
                    _, g = mtp.evaluate(types, i, j, d, xp=np)
                    array_forces_and_virial(i, j, d, g, n, np)
                emit(system=system, level=level, engine="array", mode="eval", atoms=n, **timed(array_eval, args.repeat))
            if "compiled" in args.engines and host_kernel.available(mtp):
                row = timed(compiled_eval(mtp, types, i, j, d, n), args.repeat)
                if level == 10:
                    eval10[system] = row
                emit(system=system, level=level, engine="compiled", mode="eval", atoms=n, **row)
            if cupy is not None:
                arrays = [cupy.asarray(a) for a in (types, i, j, d)]

                def gpu_eval(_):
                    _, g = mtp.evaluate(*arrays, xp=cupy)
                    float(forces_and_virial(*arrays[1:], g, n, cupy)[1][0, 0])
                emit(system=system, level=level, engine="cupy", mode="eval", atoms=n, **timed(gpu_eval, args.repeat))
            for engine, switch in (("array", "numpy"), ("compiled", "compiled")):
                if engine not in args.engines:
                    continue
                os.environ["MULTISCALE_CPU_KERNELS"] = switch
                calc, work = MTPCalculator(mtp), atoms.copy()
                move = moved(work)

                def e2e(k):
                    move(k)
                    work.calc = calc
                    work.get_potential_energy(), work.get_forces(), work.get_stress()
                emit(system=system, level=level, engine=engine, mode="e2e", atoms=n, **timed(e2e, args.repeat))
            os.environ.pop("MULTISCALE_CPU_KERNELS", None)
        atoms, mtp = build(system, 10)
        i, j, d = neighbor_pairs(atoms, mtp.cutoff)
        if "compiled" in args.engines and system not in eval10 and host_kernel.available(mtp):
            types = np.zeros(len(atoms), dtype=np.int64)
            eval10[system] = timed(compiled_eval(mtp, types, i, j, d, len(atoms)), args.repeat)

        def build_of(scan):
            return lambda a, r: cell_list.cell_list_pairs(a.positions, a.cell.array, a.pbc, r, images=False, scan=scan)
        lists = (("compiled", "compiled", neighbor_pairs), ("avx2", "compiled", build_of("avx2")),
                 ("scalar", "compiled", build_of("scalar")), ("array", "array", array_neighbor_pairs))
        for engine, needs, pairs in lists:
            if engine == "avx2" and cell_list.simd_width() != 512:
                continue  # the native build is the AVX2 one, or the host has neither
            if needs in args.engines and (engine == "array" or cell_list.available()):
                repeat = args.repeat if engine == "array" else max(args.repeat, NLIST_REPEAT)
                row = timed(lambda _: pairs(atoms, mtp.cutoff), repeat)
                if system in eval10:
                    row["of_level10_eval"] = min(row["cpus"]) / min(eval10[system]["cpus"])
                    row["level10_eval_cpu"] = min(eval10[system]["cpus"])
                emit(system=system, level=0, engine=engine, mode="nlist", atoms=len(atoms), pairs=int(len(i)),
                     cutoff=mtp.cutoff, simd=cell_list.simd_width(), **row)


def motep_rows(args, threads: int) -> list[dict]:
    """motep's end-to-end rows (its own venv), or one row saying why there are none."""
    python = Path(args.motep_python)
    if not python.is_file():
        return [{"threads": threads, "engine": "motep", "skipped": f"no motep venv at {python} (make peer-motep)"}]
    from ase.data import atomic_numbers

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for system in args.systems:
            for level in args.levels:
                atoms, mtp = build(system, level)
                path = Path(tmp) / f"{system}_{level}.mtp"
                mtp.write(path)
                request = {"path": str(path), "numbers_of_types": [atomic_numbers[s] for s in mtp.species],
                           "numbers": atoms.numbers.tolist(), "positions": atoms.positions.tolist(),
                           "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist(), "repeat": args.repeat}
                (Path(tmp) / "request.json").write_text(json.dumps(request))
                env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "OMP_NUM_THREADS": str(threads),
                       "OPENBLAS_NUM_THREADS": str(threads)}
                out = subprocess.run([str(python), "-c", MOTEP_SCRIPT, str(Path(tmp) / "request.json")], env=env,
                                     capture_output=True, text=True, timeout=1800)
                if out.returncode:
                    rows.append({"threads": threads, "engine": "motep", "skipped": out.stderr.strip()[-300:]})
                    continue
                rows.append({"threads": threads, "system": system, "level": level, "engine": "motep", "mode": "e2e",
                             "atoms": len(atoms), **json.loads(out.stdout.strip().splitlines()[-1])})
    return rows


def print_row(row: dict) -> None:
    if "skipped" in row:
        print(f"# {row['engine']} ({row['threads']} thread(s)) skipped: {row['skipped']}")
        return
    walls, cpus, n = row["walls"], row["cpus"], row["atoms"]
    level = "-" if row["mode"] == "nlist" else str(row["level"])
    extra = f"  {row['of_level10_eval']:.3f} of a level-10 eval" if "of_level10_eval" in row else ""
    print(f"{row['system']:9s} {level:>5s} {row['engine']:8s} {row['mode']:5s} {row['threads']:7d} {n:6d} "
          f"{min(walls):8.4f} {statistics.median(walls):8.4f} {n / min(walls):12.0f} {min(cpus):8.4f} "
          f"{n / min(cpus):12.0f}{extra}", flush=True)


def print_nlist_summary(row: dict) -> None:
    """The neighbour list's cost per call and per atom and its ratio to the compiled level-10 evaluation
    (CPU time, best of the repeats; issue goal: at most 0.1)."""
    native = {512: "AVX-512 scan", 256: "AVX2 scan", 0: "scalar scan"}[row["simd"]]
    name = {"compiled": f"compiled cell list ({native})", "avx2": "compiled cell list (build without AVX-512)",
            "scalar": "compiled cell list (scalar build)", "array": "array list"}[row["engine"]]
    cpu, n = min(row["cpus"]), row["atoms"]
    print(f"# neighbour list, {row['system']} ({n} atoms, cut-off {row['cutoff']:g} A, {row['pairs']} pairs), "
          f"{row['threads']} thread(s), {name}: {1e3 * cpu:.3f} ms per call ({1e6 * cpu / n:.2f} us per atom; "
          f"{1e3 * min(row['walls']):.3f} ms wall) = {row['of_level10_eval']:.3f} of the compiled level-10 "
          f"evaluation ({1e3 * row['level10_eval_cpu']:.2f} ms; goal <= 0.1)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[10, 16, 20])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--systems", nargs="+", default=["cu"])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--motep-python", default=str(MOTEP_PYTHON))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    print(f"# {os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'system':9s} {'level':>5s} {'engine':8s} {'mode':5s} {'threads':>7s} {'atoms':>6s} {'best_s':>8s} "
          f"{'median_s':>8s} {'atom-evals/s':>12s} {'cpu_s':>8s} {'per-cpu-s':>12s}")
    e2e = {}
    for threads in args.threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        command = [sys.executable, str(Path(__file__).resolve()), "--child", "--levels", *map(str, args.levels),
                   "--systems", *args.systems, "--engines", *args.engines, "--repeat", str(args.repeat)]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        rows = [json.loads(line) for line in proc.stdout if line.startswith("{")]
        if proc.wait():
            raise SystemExit(f"mtp_eval.py: the measuring process for {threads} thread(s) failed")
        if "motep" in args.engines:
            rows += motep_rows(args, threads)
        for row in rows:
            print_row(row)
            if row.get("mode") == "e2e":
                e2e[(row["system"], row["level"], row["engine"], threads)] = row
        for row in rows:
            if row.get("mode") == "nlist" and "of_level10_eval" in row:
                print_nlist_summary(row)
    print(f"# load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for (system, level, engine, threads), row in sorted(e2e.items()):
        ref = e2e.get((system, level, "motep", threads))
        if engine == "compiled" and ref:
            print(f"# {system} level {level}, {threads} thread(s), end to end: compiled / motep = "
                  f"{min(ref['walls']) / min(row['walls']):.2f}x (wall), "
                  f"{min(ref['cpus']) / min(row['cpus']):.2f}x (CPU time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
