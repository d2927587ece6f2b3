"""Speed of the FE solves: one tensile test to failure with each direct solver (prints a table).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fem_solver_speed.py [--sizes 0.5,0.25] [--geometry islands]
    mpirun -n 2 .venv/bin/python benchmarks/fem_solver_speed.py

A graphene/borophene sample of the stage's defaults (stripes in series, or islands), AT1, loaded to
failure twice, the displacement problem and the damage Newton steps solved by

* ``MUMPS LU``: LU factors;
* ``MUMPS LDL^T``: the symmetric factorisation (the stage's direct solver).

(``fem.solver.linear: iterative``, CG + GAMG, stops in the damage solve: docs/fem.md, Limitations.)

Printed per run: displacement dofs, accepted load steps, displacement and damage solves, CPU and wall
seconds of the run, dofs per second (dofs x accepted load steps / wall seconds) and the largest
difference of its stress curve from the first run's, relative to the peak.
"""
import argparse
import time

import numpy as np
from mpi4py import MPI

from fem import fem_stage, materials, study
from fem.mechanics import TensileTest
from fem.solvers import configure, create_ksp, linear_solver_options


class LUSolves(TensileTest):
    """The displacement problem and the damage Newton steps solved by MUMPS LU factors."""

    def _build_solvers(self):
        super()._build_solvers()
        self.ksp = create_ksp(self.comm, self.A, prefix=f"bench_u_{id(self)}_",
                              options=linear_solver_options(True, self.opts.rtol))
        configure(self.snes, f"bench_a_{id(self)}_", {"pc_type": "lu"})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="0.5", help="element sizes (nm), comma-separated")
    p.add_argument("--geometry", default="stripes", choices=("stripes", "islands"))
    p.add_argument("--properties", default="tests/data/fem/properties_graphene_borophene.json")
    args = p.parse_args()
    props = materials.read_properties(args.properties)
    comm = MPI.COMM_WORLD
    lines = []
    for h in map(float, args.sizes.split(",")):
        s = fem_stage.defaults()
        s.update(phases=["graphene", "borophene"], geometry=args.geometry, mesh_size_nm=h, ell_nm=2 * h,
                 interface_width_nm=8 * h)
        s["islands"].update(radius_nm=4.0, fraction=0.2)
        reference = None
        for name, cls in (("MUMPS LU", LUSolves), ("MUMPS LDL^T", TensileTest)):
            s["solver"]["linear"] = "direct"
            msh, ct, _, layout = study.build_sample(s, comm)
            mats, _ = study.sample_materials(layout, props, s)
            test = cls(msh, ct, mats, (layout.length_nm, layout.height_nm), study.options_from_settings(s))
            comm.barrier()
            start, cpu = time.perf_counter(), time.process_time()
            res = test.run()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            stress = np.array(res.stress)
            reference = stress if reference is None else reference
            same = len(stress) == len(reference)
            diff = np.abs(stress - reference).max() / res.strength if same else float("nan")
            w = res.work
            lines.append(f"{h:6.3f} {test.n_dofs:8d} {name:>12s} {len(res.strain):6d} {w['displacement_solves']:7d} "
                         f"{w['damage_solves']:7d} {cpu:8.1f} {wall:8.1f} {test.n_dofs * len(res.strain) / wall:10.4g} "
                         f"{diff:10.2e}")
    if comm.rank == 0:
        print(f"# {args.geometry}, AT1, loaded to failure, {comm.size} rank(s)")
        print(f"{'h_nm':>6} {'u_dofs':>8} {'solver':>12s} {'steps':>6} {'u_solve':>7} {'a_solve':>7} {'cpu_s':>8} "
              f"{'wall_s':>8} {'dofs/s':>10} {'d_stress':>10}")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
