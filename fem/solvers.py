"""dolfinx/PETSc plumbing shared by the FE problems (:mod:`fem.mechanics`, :mod:`fem.thermal`), dolfinx 0.5.2.

The problem modules hold the physics (spaces, UFL forms, boundary conditions); this module holds what
every solve needs around them, so that a move to a newer dolfinx changes these few functions:

    quiet_jit()                        context manager / decorator: no compiler chatter from the FFCx JIT
    cell_field(Q, cell_tags, values)   DG0 Function from {cell tag: value}
    untagged(comm, cell_tags, known)   cell tags of the mesh without a material
    linear_solver_options(direct, rtol), DAMAGE_SNES_OPTIONS   PETSc options as plain dicts
    DAMAGE_ATOL_RELATIVE               the damage solve's absolute tolerance per unit residual scale
    configure(ksp_or_snes, prefix, options)                    apply such a dict
    rigid_body_modes(V)                near-null space of 2D elasticity (for GAMG)
    create_ksp(comm, A, ...), create_snes(comm, residual, jacobian, ...)  configured PETSc solvers
    assemble_residual(x, u, F, F_form), assemble_jacobian(J, J_form)     SNES callback bodies
    assemble_system(A, b, a, L, bcs)   A, b of a linear problem with Dirichlet lifting
    solve_linear(ksp, b, u, ...)       solve, check the PETSc reason, update ghosts
    assemble_sum(comm, form), assemble_norm(form), global_max(comm, array, n_owned), gather_on_root(comm, xy, values)

Everything is collective over the mesh's communicator (every rank calls it) except where a
docstring says rank 0.
"""
from __future__ import annotations

import logging
from contextlib import ContextDecorator

import numpy as np
from dolfinx import fem, la
from dolfinx.fem import petsc as fem_petsc
from mpi4py import MPI
from petsc4py import PETSc

from .errors import FemSolveError


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


class quiet_jit(ContextDecorator):
    """Drop the INFO/DEBUG records logged on the root logger while dolfinx JIT-compiles forms and elements.

    FFCx compiles through cffi, whose distutils build logs every compiler command line on the root
    logger at INFO (cffi raises the root level to INFO for the build) and FFCx installs a root
    handler at import (``logging.basicConfig``), so ``INFO:root:x86_64-linux-gnu-gcc ...`` lines
    reach the terminal. A filter on the root logger itself sees only records logged there directly
    (not those of named loggers, which propagate past it), and passes warnings and errors.
    """

    _filter = _BelowWarning()
    _depth = 0   # nested blocks: the filter stays until the outermost one ends

    def __enter__(self):
        if quiet_jit._depth == 0:
            logging.getLogger().addFilter(self._filter)
        quiet_jit._depth += 1
        return self

    def __exit__(self, *exc):
        quiet_jit._depth -= 1
        if quiet_jit._depth == 0:
            logging.getLogger().removeFilter(self._filter)
        return False


def cell_field(Q, cell_tags, values: dict) -> fem.Function:
    """A function of the DG0 space ``Q`` equal to ``values[tag]`` on the cells with that tag (NaN elsewhere)."""
    f = fem.Function(Q)
    f.x.array[:] = np.nan
    for tag, value in values.items():
        f.x.array[cell_tags.find(tag)] = value
    f.x.scatter_forward()
    return f


def untagged(comm, cell_tags, known) -> list[int]:
    """The cell tags present in the mesh (on any rank) that are not keys of ``known``, sorted."""
    tags = np.unique(np.concatenate(comm.allgather(np.unique(cell_tags.values))))
    return sorted(set(tags.tolist()) - set(known))


DAMAGE_SNES_OPTIONS = {"snes_type": "vinewtonrsls", "snes_rtol": 1e-9, "snes_stol": 0.0,
                       "snes_max_it": 200, "snes_linesearch_type": "basic"}
# The damage solve's absolute tolerance, relative to the residual's own scale (fem.mechanics): its
# round-off floor grows with the fracture energy per node and the node count, so a fixed atol can lie
# below it (1e-12 against a floor of 2.5e-12 on a 17640-node stripe mesh: Newton stalled 200 steps).
DAMAGE_ATOL_RELATIVE = 1e-12


def linear_solver_options(direct: bool, rtol: float, *, symmetric: bool = False) -> dict:
    """PETSc options of a linear solve: MUMPS LU (MUMPS LDL^T when the matrix is ``symmetric``: a third
    less time than LU on the elastic matrices of the fem stage, the same solution to round-off), or
    CG + GAMG (SPD systems) to relative tolerance ``rtol``."""
    if direct:
        return {"ksp_type": "preonly", "pc_type": "cholesky" if symmetric else "lu",
                "pc_factor_mat_solver_type": "mumps"}
    return {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": rtol, "ksp_atol": 1e-30, "ksp_max_it": 2000}


def configure(solver, prefix: str, options: dict) -> None:
    """Apply the plain dict ``options`` to a KSP or SNES through a private options prefix."""
    db = PETSc.Options()
    solver.setOptionsPrefix(prefix)
    for key, value in options.items():
        db[prefix + key] = value
    solver.setFromOptions()
    for key in options:
        del db[prefix + key]


def rigid_body_modes(V) -> PETSc.NullSpace:
    """Near-null space of 2D elasticity on the vector space ``V``: translations in x and y, in-plane rotation."""
    x = V.tabulate_dof_coordinates()[:, :2]
    modes = [fem.Function(V) for _ in range(3)]
    for m in modes:
        m.x.array[:] = 0.0
    n = x.shape[0]
    a0, a1, a2 = (m.x.array.reshape(-1, 2)[:n] for m in modes)
    a0[:, 0] = 1.0
    a1[:, 1] = 1.0
    a2[:, 0], a2[:, 1] = -x[:, 1], x[:, 0]
    vecs = [m.vector for m in modes]
    for v in vecs:
        v.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
    la.orthonormalize(vecs)
    return PETSc.NullSpace().create(vectors=vecs, comm=V.mesh.comm)


def assemble_system(A, b, a, L, bcs) -> None:
    """Assemble the compiled bilinear form ``a`` into ``A`` and ``L`` into ``b`` with the Dirichlet ``bcs``
    (rows and columns of ``A``; lifting and values in ``b``), overwriting both."""
    A.zeroEntries()
    fem_petsc.assemble_matrix(A, a, bcs=bcs)
    A.assemble()
    with b.localForm() as b_local:
        b_local.set(0.0)
    fem_petsc.assemble_vector(b, L)
    fem_petsc.apply_lifting(b, [a], bcs=[bcs])
    b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
    fem_petsc.set_bc(b, bcs)


def create_ksp(comm, A, *, prefix: str, options: dict):
    """A PETSc KSP on the matrix ``A`` configured by the plain dict ``options`` (see :func:`configure`)."""
    ksp = PETSc.KSP().create(comm)
    ksp.setOperators(A)
    configure(ksp, prefix, options)
    return ksp


def create_snes(comm, residual, jacobian, F_form, J_form, *, prefix: str, options: dict):
    """``(snes, F, J)``: a PETSc SNES with its residual vector ``F`` and Jacobian matrix ``J``.

    ``residual(snes, x, F)``/``jacobian(snes, x, J, P)``: the callbacks (see :func:`assemble_residual`,
    :func:`assemble_jacobian`); ``F_form``/``J_form``: the compiled forms that size ``F`` and ``J``.
    Configured by the plain dict ``options``.
    """
    J = fem_petsc.create_matrix(J_form)
    F = fem_petsc.create_vector(F_form)
    snes = PETSc.SNES().create(comm)
    snes.setFunction(residual, F)
    snes.setJacobian(jacobian, J)
    configure(snes, prefix, options)
    return snes, F, J


def assemble_residual(x, u: fem.Function, F, F_form) -> None:
    """SNES residual: copy the iterate ``x`` into ``u`` (ghosts updated), assemble ``F_form`` into ``F``."""
    x.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
    x.copy(u.vector)
    u.vector.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
    with F.localForm() as f_local:
        f_local.set(0.0)
    fem_petsc.assemble_vector(F, F_form)
    F.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)


def assemble_jacobian(J, J_form) -> None:
    """SNES Jacobian: assemble ``J_form`` into ``J`` (no Dirichlet rows)."""
    J.zeroEntries()
    fem_petsc.assemble_matrix(J, J_form)
    J.assemble()


def reason_name(kind, reason: int) -> str:
    """PETSc's name of a converged/diverged ``reason`` of ``kind`` (``PETSc.KSP`` or ``PETSc.SNES``), e.g.
    ``DIVERGED_MAX_IT``, for messages (the number alone means little to a user)."""
    names = {v: k for k, v in vars(kind.ConvergedReason).items() if isinstance(v, int) and not k.startswith("_")}
    return names.get(int(reason), "unknown reason")


def solve_linear(ksp, b, u: fem.Function, *, what: str, setting: str) -> int:
    """Solve ``A u = b`` with the configured ``ksp``, update ghosts; return the Krylov iterations.

    A diverged solve raises :class:`FemSolveError` naming ``what`` and the ``setting`` to change.
    """
    ksp.solve(b, u.vector)
    reason = ksp.getConvergedReason()
    if reason < 0:
        raise FemSolveError(f"{what} diverged, PETSc reason {reason} ({reason_name(PETSc.KSP, reason)}); "
                            f"try {setting}: direct")
    u.x.scatter_forward()
    return ksp.getIterationNumber()


def assemble_sum(comm, form) -> float:
    """The compiled scalar ``form`` summed over all ranks."""
    return comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM)


def assemble_norm(form) -> float:
    """Euclidean norm of the compiled linear ``form`` assembled into a vector (all ranks' entries)."""
    vector = fem_petsc.assemble_vector(form)
    vector.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
    norm = vector.norm()
    vector.destroy()
    return norm


def global_max(comm, array, n_owned: int) -> float:
    """Largest of the first ``n_owned`` (owned) entries of ``array`` over all ranks; 0 when all are below 0."""
    return comm.allreduce(float(np.max(array[:n_owned], initial=0.0)), op=MPI.MAX)


def gather_on_root(comm, xy, values):
    """``(xy [n, 2], values [n])`` of all ranks stacked on rank 0 (None on the other ranks)."""
    parts = comm.gather((xy, values), root=0)
    if comm.rank != 0:
        return None
    return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
