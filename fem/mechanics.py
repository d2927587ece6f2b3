r"""Quasi-static tension of a plane-stress sheet with phase-field fracture (dolfinx 0.5.2).

Data flow::

    (mesh, cell_tags, Layout) + {cell tag: (PhaseMaterial, Gc)} + TensileOptions
        -> TensileTest(...)          function spaces, per-cell fields, forms, PETSc solvers
        -> .modulus()                one linear elastic solve: effective modulus (N/m)
        -> .run(on_step=...)         displacement-controlled loading to failure
        -> TensileResult             strain [n], stress [n] (N/m), energies, solver records

The model (units: nm, N/m, nN; see :mod:`fem.materials` for the calibration)::

    E(u, a) = int_Omega  g(a) W(eps(u)) + Gc/c_w (w(a)/ell + ell |grad a|^2)  dA
    W(eps)  = 1/2 sigma0(eps) : eps,   sigma0 = C : eps (plane-stress orthotropic C, N/m)
    g(a)    = (1 - k_res) (1 - a)^2 + k_res

solved by alternate minimisation (Bourdin, Francfort & Marigo 2000): with
``a`` fixed, ``u`` solves the linear problem ``int g(a) sigma0(u):eps(v) = 0``
with the end displacement prescribed; with ``u`` fixed, ``a`` minimises the
(quadratic) energy under the bounds ``a_prev <= a <= 1`` (irreversibility), a
variational inequality solved by PETSc's reduced-space Newton (SNESVINEWTONRSLS).
The pair is iterated until ``max |a_k - a_{k-1}| < tol``. Load steps are cut
in half when the damage jumps by more than ``max_damage_increment`` in one
step, down to ``min_step_fraction`` of the initial step (near failure).

The reaction force on the loaded edge is ``int sigma(u, a) : eps(w) dA`` with
``w`` the unit displacement of the loaded edge's dofs (the sum of the nodal
internal forces there, safe in parallel); divided by the sample width it is
the effective 2D stress (N/m). Every rank runs this; PETSc distributes the
solves (CG + GAMG with the rigid-body near-null space, or MUMPS LU).
"""
from __future__ import annotations

import hashlib
import time

import numpy as np
import ufl
from dolfinx import fem, mesh as dmesh
from dolfinx.fem import petsc as fem_petsc
from mpi4py import MPI
from petsc4py import PETSc

from .errors import FemInputError, FemSolveError
from .phase_field import c_w
from .solvers import (DAMAGE_ATOL_RELATIVE, DAMAGE_SNES_OPTIONS, assemble_jacobian, assemble_norm,
                      assemble_residual, assemble_sum, assemble_system, cell_field, create_ksp, create_snes,
                      gather_on_root, global_max, linear_solver_options, quiet_jit, reason_name, rigid_body_modes,
                      solve_linear, untagged)
from .tensile import TensileOptions, TensileResult


class TensileTest:
    """A tensile test of one meshed sample.

    ``materials``: cell tag -> ``(PhaseMaterial, Gc_nN)``; every cell tag of
    ``cell_tags`` must be present. ``size_nm``: ``(L, H)``, the sample is
    ``[0, L] x [0, H]``.
    """

    @quiet_jit()
    def __init__(self, msh, cell_tags, materials: dict, size_nm: tuple, options: TensileOptions):
        options.check()
        self.mesh, self.opts, self.comm = msh, options, msh.comm
        self.length, self.height = size_nm
        missing = untagged(self.comm, cell_tags, materials)
        if missing:
            raise FemInputError(f"the mesh has cell tags {missing} with no material; "
                                f"known tags: {sorted(materials)}")
        self.V = fem.VectorFunctionSpace(msh, ("CG", 1))
        self.W = fem.FunctionSpace(msh, ("CG", 1))
        Q = fem.FunctionSpace(msh, ("DG", 0))
        C = {t: m.stiffness() for t, (m, _) in materials.items()}
        self.C11, self.C22, self.C12, self.C66 = (
            cell_field(Q, cell_tags, {t: c[i, j] for t, c in C.items()})
            for i, j in ((0, 0), (1, 1), (0, 1), (2, 2)))
        self.Gc = cell_field(Q, cell_tags, {t: gc for t, (_, gc) in materials.items()})
        self.phase = cell_field(Q, cell_tags, {t: float(t) for t in materials})
        self.phase.name = "phase"
        self.u = fem.Function(self.V, name="displacement")
        self.alpha = fem.Function(self.W, name="damage")
        self.alpha_prev = fem.Function(self.W)
        self.work = {"displacement_solves": 0, "damage_solves": 0, "damage_newton_iterations": 0,
                     "damage_jacobians": 0}
        self._jacobian_u = None   # the displacement the damage Jacobian was last assembled at
        self._build_forms()
        self._build_bcs()
        self._build_solvers()

    # -- the model, read as the equations ------------------------------------------------------
    def eps(self, v):
        return ufl.sym(ufl.grad(v))

    def sigma0(self, v):
        """Undamaged plane-stress stress (N/m) of the displacement ``v``."""
        e = self.eps(v)
        sxx = self.C11 * e[0, 0] + self.C12 * e[1, 1]
        syy = self.C12 * e[0, 0] + self.C22 * e[1, 1]
        sxy = self.C66 * 2.0 * e[0, 1]
        return ufl.as_matrix([[sxx, sxy], [sxy, syy]])

    def g(self, a):
        return (1.0 - self.opts.k_res) * (1.0 - a) ** 2 + self.opts.k_res

    def w(self, a):
        return a if self.opts.model == "AT1" else a ** 2

    def _build_forms(self):
        u, a = self.u, self.alpha
        ell, cw = self.opts.ell_nm, c_w(self.opts.model)
        dx = ufl.dx
        self.elastic_density = 0.5 * self.g(a) * ufl.inner(self.sigma0(u), self.eps(u))
        self.fracture_density = self.Gc / cw * (self.w(a) / ell + ell * ufl.inner(ufl.grad(a), ufl.grad(a)))
        # displacement problem (linear in u at fixed damage)
        du, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        self.a_u = fem.form(self.g(a) * ufl.inner(self.sigma0(du), self.eps(v)) * dx)
        zero = fem.Constant(self.mesh, PETSc.ScalarType((0.0, 0.0)))
        self.L_u = fem.form(ufl.inner(zero, v) * dx)
        # damage problem: residual and Jacobian of the energy in a
        energy = (self.elastic_density + self.fracture_density) * dx
        beta, da = ufl.TestFunction(self.W), ufl.TrialFunction(self.W)
        F = ufl.derivative(energy, a, beta)
        self.F_a = fem.form(F)
        self.J_a = fem.form(ufl.derivative(F, a, da))
        self.energy_forms = (fem.form(self.elastic_density * dx), fem.form(self.fracture_density * dx))

    def _build_bcs(self):
        msh, L, H = self.mesh, self.length, self.height
        fdim = msh.topology.dim - 1
        i = 0 if self.opts.direction == "x" else 1
        extent = L if i == 0 else H
        tol = 1e-8 * max(L, H)
        fixed = dmesh.locate_entities_boundary(msh, fdim, lambda x: np.isclose(x[i], 0.0, atol=tol))
        loaded = dmesh.locate_entities_boundary(msh, fdim, lambda x: np.isclose(x[i], extent, atol=tol))
        corner = dmesh.locate_entities_boundary(
            msh, 0, lambda x: np.isclose(x[0], 0.0, atol=tol) & np.isclose(x[1], 0.0, atol=tol))
        msh.topology.create_connectivity(0, msh.topology.dim)
        Vi, Vj = self.V.sub(i), self.V.sub(1 - i)
        self.u_end = fem.Constant(msh, PETSc.ScalarType(0.0))
        loaded_dofs = fem.locate_dofs_topological(Vi, fdim, loaded)
        self.bcs = [fem.dirichletbc(PETSc.ScalarType(0.0), fem.locate_dofs_topological(Vi, fdim, fixed), Vi),
                    fem.dirichletbc(self.u_end, loaded_dofs, Vi),
                    fem.dirichletbc(PETSc.ScalarType(0.0), fem.locate_dofs_topological(Vj, 0, corner), Vj)]
        n_loaded = self.comm.allreduce(len(loaded_dofs), op=MPI.SUM)
        if n_loaded == 0 or self.comm.allreduce(len(corner), op=MPI.SUM) == 0:
            raise FemInputError(f"the mesh has no edge at {'x' if i == 0 else 'y'} = {extent} nm or no corner "
                                f"at (0, 0): the sample must be the rectangle [0, L] x [0, H]")
        # unit displacement of the loaded edge: the reaction is the internal force it works against
        self.w_edge = fem.Function(self.V)
        fem.set_bc(self.w_edge.vector, [fem.dirichletbc(PETSc.ScalarType(1.0), loaded_dofs, Vi)])
        self.w_edge.x.scatter_forward()
        self.reaction_form = fem.form(self.g(self.alpha) * ufl.inner(self.sigma0(self.u), self.eps(self.w_edge)) * ufl.dx)
        self.width = H if i == 0 else L
        self.extent = extent

    def _build_solvers(self):
        opts, comm = self.opts, self.comm
        self.A = fem_petsc.create_matrix(self.a_u)
        self.b = fem_petsc.create_vector(self.L_u)
        n_dofs = self.V.dofmap.index_map.size_global * self.V.dofmap.index_map_bs
        self.n_dofs = n_dofs
        direct = opts.linear == "direct" or (opts.linear == "auto" and n_dofs <= opts.direct_max_dofs)
        self.linear = "direct (MUMPS LU)" if direct else "CG + GAMG"
        if not direct:
            self.A.setNearNullSpace(rigid_body_modes(self.V))
        # both matrices are symmetric (the elastic one has its Dirichlet rows and columns zeroed together, the
        # damage one is a Hessian, of which the bound-constrained Newton solves a principal submatrix): LDL^T
        self.ksp = create_ksp(comm, self.A, prefix=f"fem_u_{id(self)}_",
                              options=linear_solver_options(direct, opts.rtol, symmetric=True))
        # damage: bound-constrained Newton (SNES VI) with alpha_prev <= alpha <= 1
        # bound methods: the test lives until gc frees the cycle (GAMG round-off depends on when PETSc frees)
        self.snes, self.Fa, self.Ja = create_snes(
            comm, self._damage_residual, self._damage_jacobian, self.F_a, self.J_a, prefix=f"fem_a_{id(self)}_",
            options={**DAMAGE_SNES_OPTIONS, **linear_solver_options(direct, opts.rtol, symmetric=True)})
        self.snes.setTolerances(atol=DAMAGE_ATOL_RELATIVE * self.damage_residual_scale())
        self.upper = self.alpha.vector.copy()
        self.upper.set(1.0)

    def damage_residual_scale(self) -> float:
        """The damage residual's scale (nN nm): the norm of its fracture term ``int Gc/(c_w ell) beta``
        over the nodes, the force that one node's damage works against."""
        beta, ell = ufl.TestFunction(self.W), self.opts.ell_nm
        return assemble_norm(fem.form(self.Gc / (c_w(self.opts.model) * ell) * beta * ufl.dx))

    def fingerprint(self) -> str:
        """A digest (hex) of the discrete problem: node coordinates, cells, ghost layout, the per-cell
        stiffness and ``Gc``, the sample size, the options and the number of ranks.

        Two tests with the same fingerprint assemble the same matrices in the same order and solve them
        with the same settings, so their :meth:`run` results are the same numbers; the stage solves such
        a sample once (e.g. the all-A end points of a stripe and an island sweep). Collective.
        """
        h = hashlib.sha256()
        index_map = self.V.dofmap.index_map
        for array in (self.mesh.geometry.x, self.mesh.geometry.dofmap.array, self.V.dofmap.list.array,
                      np.array([index_map.size_local, index_map.num_ghosts]),
                      *(f.x.array for f in (self.C11, self.C22, self.C12, self.C66, self.Gc))):
            h.update(np.ascontiguousarray(array).tobytes())
        h.update(repr((self.length, self.height, sorted(self.opts.__dict__.items()))).encode())
        return hashlib.sha256("".join(self.comm.allgather(h.hexdigest())).encode()).hexdigest()

    # -- sub-problems ------------------------------------------------------------------------------
    def _damage_residual(self, snes, x, F):  # SNES callbacks
        assemble_residual(x, self.alpha, F, self.F_a)

    def _damage_jacobian(self, snes, x, J, P):
        # g(a) and w(a) are quadratic in the damage, so the energy's Hessian in a depends on u alone:
        # one assembly per displacement serves every Newton step of every damage solve at that u
        # (tests/test_fem_mechanics.py checks that the Jacobian does not depend on a)
        u = self.u.x.array
        stale = self._jacobian_u is None or not np.array_equal(self._jacobian_u, u)
        if self.comm.allreduce(stale, op=MPI.LOR):
            assemble_jacobian(J, self.J_a)
            self._jacobian_u = u.copy()
            self.work["damage_jacobians"] += 1

    def solve_displacement(self) -> int:
        """Solve the elastic problem at the current damage; returns the Krylov iterations."""
        assemble_system(self.A, self.b, self.a_u, self.L_u, self.bcs)
        self.work["displacement_solves"] += 1
        return solve_linear(self.ksp, self.b, self.u, what=f"displacement solve ({self.linear})",
                            setting="fem.solver.linear")

    def solve_damage(self) -> int:
        """Minimise the energy in the damage at fixed displacement, ``alpha_prev <= alpha <= 1``.

        Returns the Newton iterations, or the (negative) PETSc reason when the
        solve failed; the caller then treats the load step as not converged.
        """
        self.snes.setVariableBounds(self.alpha_prev.vector, self.upper)
        x = self.alpha.vector.copy()
        self.snes.solve(None, x)
        reason = self.snes.getConvergedReason()
        self.work["damage_solves"] += 1
        self.work["damage_newton_iterations"] += self.snes.getIterationNumber()
        if reason >= 0:
            x.copy(self.alpha.vector)
            self.alpha.x.scatter_forward()
        x.destroy()
        return self.snes.getIterationNumber() if reason >= 0 else reason

    # -- observables -------------------------------------------------------------------------------
    def stress(self) -> float:
        """Effective 2D stress (N/m): reaction on the loaded edge / sample width."""
        return assemble_sum(self.comm, self.reaction_form) / self.width

    def energies(self) -> tuple[float, float]:
        """Elastic and fracture energies (nN nm = 1e-18 J)."""
        return assemble_sum(self.comm, self.energy_forms[0]), assemble_sum(self.comm, self.energy_forms[1])

    def _max(self, array) -> float:
        return global_max(self.comm, array, self.W.dofmap.index_map.size_local)

    def gather_damage(self):
        """``(xy [n, 2] nm, damage [n])`` of all nodes on rank 0 (None on the other ranks)."""
        n = self.W.dofmap.index_map.size_local
        xy = self.W.tabulate_dof_coordinates()[:n, :2]
        return gather_on_root(self.comm, xy, self.alpha.x.array[:n].copy())

    def set_strain(self, strain: float) -> None:
        self.u_end.value = strain * self.extent

    def modulus(self) -> float:
        """Effective Young's modulus (N/m) along the load direction from one elastic solve at zero damage."""
        saved = self.alpha.x.array.copy()
        self.alpha.x.array[:] = 0.0
        self.set_strain(1.0)
        self.solve_displacement()
        E = self.stress()
        self.alpha.x.array[:] = saved
        self.u.x.array[:] = 0.0
        return E

    # -- loading -----------------------------------------------------------------------------------
    def staggered(self, reject_above: float | None) -> tuple[bool, int, float]:
        """Alternate minimisation at the current load; returns (converged, iterations, max damage growth).

        Stops early (not converged) once the damage has grown by more than
        ``reject_above`` since the last accepted step, so that a step to be
        cut costs little.
        """
        growth = 0.0
        self.failure = f"staggered loop did not converge in {self.opts.max_iterations} iterations (tol {self.opts.tol})"
        for k in range(1, self.opts.max_iterations + 1):
            self.solve_displacement()
            if not self.opts.damage:
                return True, k, 0.0
            before = self.alpha.x.array.copy()
            if self.solve_damage() < 0:
                reason = self.snes.getConvergedReason()
                self.failure = (f"damage solve (SNES VI) did not converge (PETSc reason {reason}, "
                                f"{reason_name(PETSc.SNES, reason)})")
                return False, k, float("inf")
            change = self._max(np.abs(self.alpha.x.array - before))
            growth = self._max(self.alpha.x.array - self.alpha_prev.x.array)
            if reject_above is not None and growth > reject_above:
                return False, k, growth
            if change < self.opts.tol:
                self.solve_displacement()
                return True, k, growth
        return False, self.opts.max_iterations, growth

    def run(self, on_step=None, log=None) -> TensileResult:
        """Load to failure (or ``max_strain``); ``on_step(test, strain)`` after each accepted step.

        Before the peak, a step is cut in half (down to ``min_step_fraction`` of
        the first step) when the damage grows by more than
        ``max_damage_increment``, when its tangent stiffness is below half that
        of the previous step (the elastic limit of AT1, or the peak, lies in
        it) or when the stress falls for the first time, so the peak is
        located to within the smallest step. Past the peak the
        step doubles back to the first step: the crack then runs within a
        step, and only the end of the curve (``stop_fraction``) is sought.
        """
        opts = self.opts
        start = time.perf_counter()
        res = TensileResult(n_dofs=self.n_dofs)
        res.modulus = self.modulus()
        step0 = opts.max_strain / opts.n_steps
        step, strain, peak, softening = step0, 0.0, 0.0, False
        last_tangent = res.modulus
        while strain < opts.max_strain * (1 - 1e-12):
            trial = min(strain + step, opts.max_strain)
            u0, a0 = self.u.x.array.copy(), self.alpha.x.array.copy()
            # steps are cut only to locate the peak; past it the crack runs at whatever step is taken
            can_cut = not softening and step > step0 * opts.min_step_fraction * (1 + 1e-9)
            self.set_strain(trial)
            ok, iters, growth = self.staggered(opts.max_damage_increment if can_cut else None)
            s = self.stress() if ok else float("nan")
            tangent = (s - (res.stress[-1] if res.stress else 0.0)) / (trial - strain)
            first_drop = ok and not softening and bool(res.stress) and s < res.stress[-1]
            # a step across the elastic limit (AT1) or close to the peak shows a sudden loss of tangent stiffness
            kink = ok and not softening and tangent < 0.5 * last_tangent
            if can_cut and (not ok or first_drop or kink):
                self.u.x.array[:], self.alpha.x.array[:] = u0, a0
                res.rejected_steps += 1
                step *= 0.5
                continue
            if not ok and softening:
                # past the peak the strength and failure strain are known: end the test, say why
                self.u.x.array[:], self.alpha.x.array[:] = u0, a0
                res.stopped = f"at strain {trial:.6g} past the peak: {self.failure}; loading ended at strain {strain:.6g}"
                if log is not None:
                    log(res.stopped)
                break
            if not ok:
                raise FemSolveError(f"load step to strain {trial:.6g} (the smallest step): {self.failure}; "
                                    f"raise fem.solver.max_iterations, lower fem.loading.min_step_fraction "
                                    f"or refine the mesh")
            softening = softening or first_drop
            last_tangent = tangent
            strain = trial
            self.alpha_prev.x.array[:] = self.alpha.x.array
            e_el, e_fr = self.energies()
            res.strain.append(strain)
            res.stress.append(s)
            res.elastic_energy.append(e_el)
            res.fracture_energy.append(e_fr)
            res.max_damage.append(self._max(self.alpha.x.array))
            res.iterations.append(iters)
            if log is not None:
                log(f"strain {strain:.5f}  stress {s:.4f} N/m  max damage {res.max_damage[-1]:.3f}  "
                    f"iterations {iters}")
            if on_step is not None:
                on_step(self, strain)
            peak = max(peak, s)
            if peak > 0 and s < opts.stop_fraction * peak:
                res.failed = True
                break
            if softening or growth < 0.25 * opts.max_damage_increment:
                step = min(2 * step, step0)
        k = int(np.argmax(res.stress))
        res.strength, res.failure_strain = float(res.stress[k]), float(res.strain[k])
        res.work = {**self.work, "solve_s": time.perf_counter() - start}
        return res
