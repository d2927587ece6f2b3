r"""Steady heat conduction of a two-phase sheet with interfacial thermal conductance (dolfinx 0.5.2).

Data flow::

    (mesh, cell_tags, Layout) + {cell tag: (kappa_x, kappa_y)} + G + ConductionOptions
        -> Conduction(...)      DG1 space, per-cell conductivity, interface facets, forms, PETSc solver
        -> .solve()             ConductionResult: kappa_eff (W/(m K)), heat flow, solver record
        -> .temperature         the DG1 temperature field (K), discontinuous across interfaces

The model (units: lengths nm, kappa W/(m K), G_fe = G / 1e9, see
:func:`fem.thermal_limits.conductance_per_nm`)::

    -div(K grad T) = 0               in each phase,  K = diag(kappa_x, kappa_y)
    -K grad T . n  = G_fe [T]        on the interfaces (q.n = G [T], Kapitza)
    T = T_hot on the hot edge, T = T_cold on the opposite one, K grad T . n = 0 on the others

Interface formulation: the temperature is discontinuous (DG1) everywhere and
the symmetric interior penalty method (SIPG; Arnold 1982, Arnold, Brezzi,
Cockburn & Marini 2002) ties it together inside each phase; on the facets
between two phases the SIPG terms are replaced by the interface law itself,
``int G_fe [T][v] dS``. This is the exact weak form of the jump condition (no
band width to choose), and the method is consistent: a solution that is
linear in each phase (stripes parallel or in series, homogeneous orthotropic
samples) is reproduced to round-off. The Dirichlet edges use Nitsche's
method, so the heat flow through the hot edge is the (conservative)
numerical flux, equal to the flow out through the cold one.

Sheet thickness: the 2D heat flow per unit length is ``kappa t grad T``; with
one common thickness ``t`` it cancels from ``kappa_eff = Q L / (H t dT)``, so
the solver works per unit thickness. Phases of different thickness enter
through their conductivities scaled by ``t_i / t_ref`` (done by the caller,
:mod:`fem.thermal_study`).

Interior facet integrals need the facet-sharing ghost layer, which is the
default of dolfinx 0.5.2 meshes (``GhostMode.shared_facet``), so the same code
runs under ``mpirun -n N``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import ufl
from dolfinx import fem, mesh as dmesh
from dolfinx.fem import petsc as fem_petsc
from mpi4py import MPI
from petsc4py import PETSc

from .errors import FemInputError
from .solvers import (assemble_sum, cell_field, create_ksp, gather_on_root, linear_solver_options, quiet_jit,
                      solve_linear, untagged)
from .thermal_limits import conductance_per_nm

DIRECTIONS = ("x", "y")
LINEAR = ("direct", "iterative")
# facet markers of the forms
BULK, INTERFACE, HOT, COLD = 0, 1, 2, 3


@dataclass
class ConductionOptions:
    """Options of a steady conduction test (keyword-only defaults shown).

    ``direction``: 'x' (hot edge x = 0, cold x = L) or 'y'; ``delta_T_K``:
    imposed temperature difference (K, > 0); ``T_cold_K``: temperature of the
    cold edge (K; the problem is linear, it changes nothing but the field);
    ``linear``: 'direct' (MUMPS LU) or 'iterative' (CG + GAMG, ``rtol``);
    ``penalty``: SIPG/Nitsche penalty factor (10 is stable for P1 triangles).
    """

    direction: str = "x"
    delta_T_K: float = 10.0
    T_cold_K: float = 300.0
    linear: str = "direct"
    rtol: float = 1e-12
    penalty: float = 10.0

    def check(self) -> None:
        if self.direction not in DIRECTIONS:
            raise FemInputError(f"fem.thermal.load_direction must be 'x' or 'y', got {self.direction!r}")
        if self.linear not in LINEAR:
            raise FemInputError(f"fem.thermal.linear must be one of {', '.join(LINEAR)}, got {self.linear!r}")
        if not (isinstance(self.delta_T_K, (int, float)) and self.delta_T_K > 0):
            raise FemInputError(f"fem.thermal.delta_T_K must be > 0 K, got {self.delta_T_K!r}")


@dataclass
class ConductionResult:
    """``kappa_eff`` (W/(m K)) along the load direction; ``heat_flow_W_per_m``: the
    heat entering the hot edge per unit sheet thickness (W/m); ``imbalance``:
    |in - out| / in (round-off of the conservative flux); ``n_dofs``; ``iterations``."""

    kappa_eff: float
    heat_flow_W_per_m: float
    imbalance: float
    n_dofs: int
    iterations: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def interface_facets(msh, phase: fem.Function) -> np.ndarray:
    """Local facets (owned and ghost) whose two cells carry different ``phase`` values (a DG0 field)."""
    tdim = msh.topology.dim
    msh.topology.create_connectivity(tdim - 1, tdim)
    f2c = msh.topology.connectivity(tdim - 1, tdim)
    n = msh.topology.index_map(tdim - 1).size_local + msh.topology.index_map(tdim - 1).num_ghosts
    values = phase.x.array
    found = [f for f in range(n) if len(c := f2c.links(f)) == 2 and values[c[0]] != values[c[1]]]
    return np.asarray(found, dtype=np.int32)


class Conduction:
    """A steady conduction test of one meshed sample.

    ``kappas``: cell tag -> ``(kappa_x, kappa_y)`` (W/(m K)), every cell tag of
    ``cell_tags`` present; ``G_W_per_m2K``: interfacial conductance on every
    facet between cells of different tags (``math.inf``: perfect contact, T
    continuous there); ``size_nm``: ``(L, H)``, the sample is ``[0, L] x [0, H]``.
    """

    @quiet_jit()
    def __init__(self, msh, cell_tags, kappas: dict, G_W_per_m2K: float, size_nm: tuple,
                 options: ConductionOptions):
        options.check()
        if not G_W_per_m2K > 0:
            raise FemInputError(f"interface conductance must be > 0 W/(m^2 K), got {G_W_per_m2K}; "
                                f"check interfaces.*.thermal.conductance_W_per_m2K in properties.json")
        self.mesh, self.opts, self.comm = msh, options, msh.comm
        self.length, self.height = size_nm
        missing = untagged(self.comm, cell_tags, kappas)
        if missing:
            raise FemInputError(f"the mesh has cell tags {missing} with no thermal conductivity; known tags: "
                                f"{sorted(kappas)} (an interface band, tag 100, is a mechanics device: mesh the "
                                f"thermal sample without it)")
        self.G_fe = conductance_per_nm(G_W_per_m2K)
        self.V = fem.FunctionSpace(msh, ("DG", 1))
        Q = fem.FunctionSpace(msh, ("DG", 0))
        self.kx = cell_field(Q, cell_tags, {t: k[0] for t, k in kappas.items()})
        self.ky = cell_field(Q, cell_tags, {t: k[1] for t, k in kappas.items()})
        self.phase = cell_field(Q, cell_tags, {t: float(t) for t in kappas})
        self.phase.name = "phase"
        self.temperature = fem.Function(self.V, name="temperature")
        self._mark_facets()
        self._build_forms()
        self._build_solver()

    # -- the model, read as the equations ------------------------------------------------------
    def K(self):
        """Conductivity tensor (W/(m K)), orthotropic in the sample axes."""
        return ufl.as_matrix([[self.kx, 0.0], [0.0, self.ky]])

    def _mark_facets(self):
        msh, tdim = self.mesh, self.mesh.topology.dim
        i = 0 if self.opts.direction == "x" else 1
        self.extent = self.length if i == 0 else self.height
        self.width = self.height if i == 0 else self.length
        tol = 1e-8 * max(self.length, self.height)
        hot = dmesh.locate_entities_boundary(msh, tdim - 1, lambda x: np.isclose(x[i], 0.0, atol=tol))
        cold = dmesh.locate_entities_boundary(msh, tdim - 1, lambda x: np.isclose(x[i], self.extent, atol=tol))
        if self.comm.allreduce(len(hot), op=MPI.SUM) == 0 or self.comm.allreduce(len(cold), op=MPI.SUM) == 0:
            raise FemInputError(f"the mesh has no edge at {'xy'[i]} = 0 or {'xy'[i]} = {self.extent} nm: the sample "
                                f"must be the rectangle [0, L] x [0, H]")
        iface = interface_facets(msh, self.phase)
        self.n_interface_facets = self.comm.allreduce(
            int(np.sum(iface < msh.topology.index_map(tdim - 1).size_local)), op=MPI.SUM)
        n = msh.topology.index_map(tdim - 1).size_local + msh.topology.index_map(tdim - 1).num_ghosts
        markers = np.full(n, BULK, dtype=np.int32)
        # perfect contact: the phase boundaries are ordinary facets of the SIPG method
        if math.isfinite(self.G_fe):
            markers[iface] = INTERFACE
        markers[hot], markers[cold] = HOT, COLD
        self.facet_tags = dmesh.meshtags(msh, tdim - 1, np.arange(n, dtype=np.int32), markers)

    def _build_forms(self):
        msh, K, opts = self.mesh, self.K(), self.opts
        T, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        n, h = ufl.FacetNormal(msh), ufl.CellDiameter(msh)
        dx = ufl.dx
        dS = ufl.Measure("dS", domain=msh, subdomain_data=self.facet_tags)
        ds = ufl.Measure("ds", domain=msh, subdomain_data=self.facet_tags)
        kn = ufl.dot(n, ufl.dot(K, n))
        # penalty ~ conductivity / element size, the larger side on interior facets
        gamma_S = opts.penalty * ufl.max_value(kn("+"), kn("-")) / ufl.avg(h)
        gamma_s = opts.penalty * kn / h
        flux_avg = lambda w: ufl.avg(ufl.dot(K, ufl.grad(w)))  # noqa: E731
        a = ufl.inner(ufl.dot(K, ufl.grad(T)), ufl.grad(v)) * dx
        a += (-ufl.inner(flux_avg(T), ufl.jump(v, n)) - ufl.inner(ufl.jump(T, n), flux_avg(v))
              + gamma_S * ufl.inner(ufl.jump(T, n), ufl.jump(v, n))) * dS(BULK)
        if math.isfinite(self.G_fe):
            a += self.G_fe * ufl.jump(T) * ufl.jump(v) * dS(INTERFACE)
        self.T_hot = fem.Constant(msh, PETSc.ScalarType(opts.T_cold_K + opts.delta_T_K))
        self.T_cold = fem.Constant(msh, PETSc.ScalarType(opts.T_cold_K))
        Kn_grad = lambda w: ufl.dot(ufl.dot(K, ufl.grad(w)), n)  # noqa: E731
        L = fem.Constant(msh, PETSc.ScalarType(0.0)) * v * dx
        for mark, T_D in ((HOT, self.T_hot), (COLD, self.T_cold)):
            a += (-Kn_grad(T) * v - Kn_grad(v) * T + gamma_s * T * v) * ds(mark)
            L += (-Kn_grad(v) * T_D + gamma_s * T_D * v) * ds(mark)
        self.a, self.L = fem.form(a), fem.form(L)
        # heat entering through the hot edge / leaving through the cold one: the Nitsche numerical flux
        Tf = self.temperature
        self.inflow = fem.form((Kn_grad(Tf) - gamma_s * (Tf - self.T_hot)) * ds(HOT))
        self.outflow = fem.form((-Kn_grad(Tf) + gamma_s * (Tf - self.T_cold)) * ds(COLD))

    def _build_solver(self):
        self.n_dofs = self.V.dofmap.index_map.size_global
        self.A = fem_petsc.assemble_matrix(self.a)
        self.A.assemble()
        self.b = fem_petsc.assemble_vector(self.L)
        self.b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        direct = self.opts.linear == "direct"
        self.linear = "direct (MUMPS LU)" if direct else "CG + GAMG"
        self.ksp = create_ksp(self.comm, self.A, prefix=f"fem_T_{id(self)}_",
                              options=linear_solver_options(direct, self.opts.rtol))

    # -- solve and observe --------------------------------------------------------------------
    def solve(self) -> ConductionResult:
        """Solve for the temperature; return the effective conductivity along the load direction.

        ``kappa_eff = Q L / (H dT)`` with ``Q`` the heat entering the hot edge
        per unit thickness: ``(Q t / (H t)) L / dT`` with the thickness
        cancelled (module docstring).
        """
        iterations = solve_linear(self.ksp, self.b, self.temperature, what=f"heat conduction solve ({self.linear})",
                                  setting="fem.thermal.linear")
        q_in, q_out = assemble_sum(self.comm, self.inflow), assemble_sum(self.comm, self.outflow)
        kappa = q_in * self.extent / (self.width * self.opts.delta_T_K)
        return ConductionResult(kappa_eff=kappa, heat_flow_W_per_m=q_in,
                                imbalance=abs(q_in - q_out) / abs(q_in) if q_in else 0.0,
                                n_dofs=self.n_dofs, iterations=iterations)

    def gather_temperature(self):
        """``(xy [3 m, 2] nm, T [3 m] K)`` at the three corners of all ``m`` cells, on rank 0 (None elsewhere).

        DG1 values per cell corner, so a plot shows the jumps at the interfaces.
        """
        tdim = self.mesh.topology.dim
        n_cells = self.mesh.topology.index_map(tdim).size_local
        dofs = np.array([self.V.dofmap.cell_dofs(c) for c in range(n_cells)]).reshape(-1)
        xy = self.V.tabulate_dof_coordinates()[dofs, :2]
        return gather_on_root(self.comm, xy, self.temperature.x.array[dofs].copy())
