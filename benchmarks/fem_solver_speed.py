"""Speed of the FE solves: one displacement solve and one damage solve, direct vs CG + GAMG (prints a table).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fem_solver_speed.py [--sizes 0.5,0.25,0.125]
    mpirun -n 2 .venv/bin/python benchmarks/fem_solver_speed.py

A 40 x 20 nm graphene/borophene stripe sample (series), AT1; the times are
the median of 3 repeats of: assemble + solve the elastic problem at a fixed
damage field; one bound-constrained damage solve (SNES VI).
"""
import argparse
import time

import numpy as np
from mpi4py import MPI

from fem import fem_stage, materials, study
from fem.mechanics import TensileTest


def timed(fn, repeats=3):
    times = []
    for _ in range(repeats):
        MPI.COMM_WORLD.barrier()
        t = time.perf_counter()
        fn()
        MPI.COMM_WORLD.barrier()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="0.5,0.25,0.125")
    p.add_argument("--properties", default="tests/data/fem/properties_graphene_borophene.json")
    args = p.parse_args()
    props = materials.read_properties(args.properties)
    comm = MPI.COMM_WORLD
    lines = []
    for h in map(float, args.sizes.split(",")):
        s = fem_stage.defaults()
        s["mesh_size_nm"] = h
        msh, ct, _, layout = study.build_sample(s, comm)
        mats, _ = study.sample_materials(layout, props, s)
        for linear in ("direct", "iterative"):
            s["solver"]["linear"] = linear
            test = TensileTest(msh, ct, mats, (layout.length_nm, layout.height_nm), study.options_from_settings(s))
            test.set_strain(0.04)
            t_u = timed(test.solve_displacement)
            t_a = timed(test.solve_damage)
            lines.append(f"{h:6.3f} {test.n_dofs:9d} {test.linear:>18s} {t_u:10.3f} {t_a:10.3f}")
    if comm.rank == 0:
        print(f"# 40 x 20 nm stripes, {comm.size} rank(s); seconds per solve")
        print(f"{'h_nm':>6} {'u_dofs':>9} {'solver':>18s} {'t_disp_s':>10} {'t_damage_s':>10}")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
