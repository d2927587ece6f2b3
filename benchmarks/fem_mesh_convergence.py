"""Mesh convergence of the effective strength of one heterostructure (prints a Markdown table).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fem_mesh_convergence.py [--geometry stripes|islands]
        [--sizes 0.5,0.35,0.25] [--ell-nm 1.0] [--fraction 0.5]
        [--properties tests/data/fem/properties_graphene_borophene.json]

A 40 x 20 nm graphene/borophene sample with the stage's default geometry
(stripes across the load, period 40 nm, or islands of radius 4 nm, seed 0),
a 2 nm interface band, AT1, tension along x. The element size h is refined
at fixed ell, so the phase-field solution converges to that of the
regularised problem (docs/fem.md). Run under ``mpirun -n N`` to solve on N ranks.
"""
import argparse
import time

from mpi4py import MPI

from fem import fem_stage, materials, study


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--geometry", default="stripes", choices=["stripes", "islands"])
    p.add_argument("--sizes", default="0.5,0.35,0.25", help="element sizes h (nm), comma-separated")
    p.add_argument("--ell-nm", type=float, default=1.0)
    p.add_argument("--fraction", type=float, default=0.5, help="area fraction of borophene")
    p.add_argument("--properties", default="tests/data/fem/properties_graphene_borophene.json")
    args = p.parse_args()
    props = materials.read_properties(args.properties)
    comm = MPI.COMM_WORLD
    rows = []
    for h in map(float, args.sizes.split(",")):
        s = fem_stage.defaults()
        s.update(geometry=args.geometry, mesh_size_nm=h, ell_nm=args.ell_nm, write_fields=False)
        s[args.geometry]["fraction"] = args.fraction
        start = time.perf_counter()
        r = study.run_tensile(s, props, comm=comm, out_dir=None, label=f"h{h}")
        rows.append((h, r["n_dofs_displacement"], r["modulus_N_per_m"], r["strength_N_per_m"],
                     r["failure_strain"], time.perf_counter() - start))
    if comm.rank == 0:
        print(f"{args.geometry}, borophene fraction {args.fraction}, AT1, ell = {args.ell_nm} nm, band 2 nm, "
              f"40 x 20 nm, {comm.size} rank(s)\n")
        print("| h (nm) | u dofs | modulus (N/m) | strength (N/m) | failure strain | change of strength | wall (s) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for i, (h, n, E, S, e, t) in enumerate(rows):
            change = f"{100 * (S - rows[i - 1][3]) / S:+.2f} %" if i else "-"
            print(f"| {h:.3f} | {n} | {E:.3f} | {S:.4f} | {e:.5f} | {change} | {t:.1f} |")


if __name__ == "__main__":
    main()
