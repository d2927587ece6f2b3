"""MD speed: atom-steps per second vs number of atoms, for MTP levels 10 and 16 and a NEP4 (NVE, float64).

Each row also gives the device-to-host reads per step of the timed steps (``md_gpu.backend.SYNCS``,
counted on the CPU too: the reads the same code makes on a GPU; list rebuilds included) and the
number of neighbour-list rebuilds.

Usage (prints one line per run, then a table)::

    python benchmarks/md_speed.py                            # CPU here: 1e3 and 1e4 atoms
    python benchmarks/md_speed.py --sizes 1000,10000,100000,1000000   # sizes too slow or too big are skipped
    python benchmarks/md_speed.py --sizes 1000,10000,100000,1000000 --backend cupy   # on a GPU
    python benchmarks/md_speed.py --structure g.extxyz --potential graphene.mtp --nep graphene.nep.txt
    python benchmarks/md_speed.py --check-every 1,20          # also with deferred neighbour-list checks
    python benchmarks/md_speed.py --check-every 20 --padded   # their rebuilds by the device builder, on the CPU

The potentials are MLIP-2's own fcc Cu MTPs of levels 10 and 16 (tests/data/md/,
from /work/shared/mlip_reference/cubic); the structure is fcc Cu (a = 3.61 Å)
repeated to the requested size, or any structure file given with --structure
(e.g. graphene written by ``python -m training.structures graphene graphene.extxyz``, which
then needs a graphene MTP via --potential). ``--check-every`` times each run with those steps between
the neighbour-list checks (``md.neighbor_check_every``; 1: exact every step; the steps run through the
MD loop, :func:`md_gpu.bench.benchmark`); the rebuilds at those checks use the padded builder
(``md_gpu.neighbors.padded_build_pairs``, no host read) on a GPU, and on the CPU with ``--padded``.
Goal on an H100: >= 1e7 atom-steps/s at >= 1e5 atoms, level 16.

The NEP rows (``--nep``, default ``random``) run on the same cells: a NEP4 with random parameters and
the fit stage's default sizes (``fit.nep`` of :data:`training.fit_stage.FIT_SETTINGS`: cut-offs 5/4 Å,
n_max 4/4, basis 8/8, l_max 4/2/0, 30 neurons; the sizes of the NEP4 that fits the embedded graphene
set to 0.375 eV/Å on held-out frames, against 0.475 for the level-10 MTP, docs/fit.md) for the
structure's elements; the cost of a NEP does not depend on its parameter values. Or a nep.txt path,
or ``none``. The NEP runs through ``md_gpu.forcefields.nep.NEPForceField`` and its default path on the
backend (``MULTISCALE_CPU_KERNELS=numpy`` times the array code on the CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
from pathlib import Path

from ase.build import bulk

from md_gpu.backend import get_backend
from md_gpu.bench import benchmark
from md_gpu.errors import MDRunError
from md_gpu.forcefields.loading import load_forcefield
from md_gpu.structures import load_structure, repeat_to

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "md"


def _peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (bytes; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _skip_reason(n_atoms, steps, rate, bytes_per_atom, max_seconds, xp) -> str:
    """Why a size should not be run here ('' to run it): projected time or host memory from the previous size."""
    if rate and n_atoms * steps / rate > max_seconds:
        return (f"projected {n_atoms * steps / rate:.0f} s at {rate:.3g} atom-steps/s > --max-seconds "
                f"{max_seconds:g}; run it on a GPU")
    if bytes_per_atom and xp.__name__ == "numpy":
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if n_atoms * bytes_per_atom > 0.8 * available:
            return (f"projected {n_atoms * bytes_per_atom / 2**30:.1f} GiB > 80 % of the "
                    f"{available / 2**30:.1f} GiB of free memory")
    return ""


def nep_rows(spec: str, species) -> dict:
    """{row name: NEPForceField}: the nep.txt ``spec``, or for ``random`` a NEP4 with random parameters
    and the fit stage's default sizes for ``species`` (module docstring)."""
    if spec != "random":
        return {f"NEP {Path(spec).name}": load_forcefield(spec)}
    from md_gpu.forcefields.nep import NEPForceField
    from training.fit_stage import FIT_SETTINGS, defaults, nep_sizes

    sizes = nep_sizes(defaults(FIT_SETTINGS))
    model = sizes.random_model(species, seed=0)
    return {f"NEP{sizes.version} {''.join(species)} (fit defaults)": NEPForceField(model)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated atom counts")
    parser.add_argument("--levels", default="10,16", help="MTP levels (Cu potentials in tests/data/md)")
    parser.add_argument("--potential", help="use this .mtp (or morse-cu) instead of the Cu levels")
    parser.add_argument("--species", help="element per type of --potential, comma-separated")
    parser.add_argument("--structure", help="structure file ASE reads (default fcc Cu)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (0: about 2e5 atom-steps, >= 2)")
    parser.add_argument("--backend", choices=("numpy", "cupy"), default=None)
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="skip a size whose run would take longer (projected from the previous size)")
    parser.add_argument("--nep", default="random",
                        help="also time this nep.txt, 'random' (a NEP4 of the fit stage's default sizes) or 'none'")
    parser.add_argument("--check-every", default="1",
                        help="comma-separated steps between neighbour-list checks (1: exact every step)")
    parser.add_argument("--padded", action="store_true",
                        help="deferred checks rebuild with the padded (device) builder on the CPU too")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    xp = get_backend(args.backend)
    if args.potential:
        species = args.species.split(",") if args.species else None
        potentials = {args.potential: load_forcefield(args.potential, species=species)}
    else:
        potentials = {f"Cu MTP level {lv}": load_forcefield(DATA / f"cu_pot_{int(lv):02d}.mtp", species=("Cu",))
                      for lv in args.levels.split(",")}
    base = load_structure(args.structure) if args.structure else bulk("Cu", "fcc", a=3.61, cubic=True)
    if args.nep != "none":
        potentials.update(nep_rows(args.nep, sorted(set(base.get_chemical_symbols()))))
    rows = []
    for name, ff in potentials.items():
        rate = bytes_per_atom = None
        for size in (int(s) for s in args.sizes.split(",")):
            atoms = repeat_to(base, size)
            steps = args.steps or max(2, int(2e5 / len(atoms)))
            reason = _skip_reason(len(atoms), steps + 2, rate, bytes_per_atom, args.max_seconds, xp)
            if reason:
                print(f"{name}: {len(atoms)} atoms: skipped ({reason})", flush=True)
                continue
            for every in (int(c) for c in args.check_every.split(",")):
                rss_before = _peak_rss_bytes()
                try:
                    r = benchmark(ff, atoms, steps=steps, warmup=2, check_every=every, xp=xp,
                                  padded=True if args.padded else None)
                except MemoryError as exc:
                    print(f"{name}: {len(atoms)} atoms: out of memory ({exc})", flush=True)
                    break
                except MDRunError as exc:  # e.g. a potential with random parameters whose atoms fly apart
                    print(f"{name}: {len(atoms)} atoms, check every {every}: the run stopped ({exc})", flush=True)
                    continue
                except Exception as exc:  # e.g. cupy.cuda.memory.OutOfMemoryError
                    if "OutOfMemory" not in type(exc).__name__:
                        raise
                    print(f"{name}: {len(atoms)} atoms: out of device memory", flush=True)
                    break
                r["potential"] = name
                rate = r["atom_steps_per_s"]
                grown = _peak_rss_bytes() - rss_before
                if grown > 0:
                    bytes_per_atom = max(bytes_per_atom or 0.0, grown / len(atoms))
                rows.append(r)
                print(f"{name}: {r['n_atoms']} atoms, {r['steps']} steps on {r['backend']}, check every "
                      f"{every}: {r['atom_steps_per_s']:.4g} atom-steps/s, {r['syncs_per_step']:.3g} host "
                      f"syncs/step ({r['neighbor_builds']} rebuilds, {r['replays']} replays, {r['overflows']} overflows)",
                      flush=True)
    print(f"\n{'potential':<32}{'atoms':>10}{'check':>7}{'atom-steps/s':>16}{'syncs/step':>12}{'rebuilds':>10}"
          f"{'replays':>9}{'overflows':>10}  backend")
    for r in rows:
        print(f"{r['potential']:<32}{r['n_atoms']:>10}{r['check_every']:>7}{r['atom_steps_per_s']:>16.4g}"
              f"{r['syncs_per_step']:>12.3g}{r['neighbor_builds']:>10}{r['replays']:>9}{r['overflows']:>10}"
              f"  {r['backend']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
