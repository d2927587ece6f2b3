"""Meshes in, fields out: the dolfinx mesh and XDMF calls of ``fem/`` (with :mod:`fem.mechanics`).

Data flow::

    geometry builder (gmsh model on rank 0) --mesh_from_gmsh--> (mesh, cell_tags, facet_tags, Layout)
    user XDMF mesh with cell tags          --mesh_from_xdmf--> (mesh, cell_tags, facet_tags, Layout)
    FieldWriter(path).write(t, *functions)  --> one XDMF + HDF5 file, one time per load step (ParaView)

dolfinx 0.5.2 names are used here (``gmshio.model_to_mesh``; ``read_from_msh``
is broken in 0.5.2); a dolfinx upgrade changes this module, :mod:`fem.solvers`,
:mod:`fem.mechanics` and :mod:`fem.thermal`. Lengths in nm.

XDMF output is a pair, ``name.xdmf`` naming ``name.h5``: both are written in a
scratch folder ``.name.xdmf.partial`` beside the target and moved into place
when complete (the ``.h5`` first), so a reader never finds a half-written pair;
a writer that fails leaves the previous pair as it was.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from mpi4py import MPI

from .errors import FemInputError
from .geometry import Layout
from .solvers import quiet_jit


def _scratch_path(path: Path, comm) -> Path:
    """Where to write the XDMF pair of ``path`` before it is complete (collective)."""
    scratch = path.parent / f".{path.name}.partial"
    if comm.rank == 0:
        scratch.mkdir(parents=True, exist_ok=True)
    comm.barrier()
    return scratch / path.name


def _publish(tmp: Path, path: Path, comm, *, complete: bool) -> None:
    """Move the finished pair ``tmp`` (.xdmf, .h5) to ``path`` (``complete``) or drop it; collective."""
    comm.barrier()
    if comm.rank == 0:
        if complete:
            for suffix in (".h5", ".xdmf"):
                src = tmp.with_suffix(suffix)
                if src.exists():
                    with open(src, "rb") as handle:
                        os.fsync(handle.fileno())
                    os.replace(src, path.with_suffix(suffix))
        shutil.rmtree(tmp.parent, ignore_errors=True)
    comm.barrier()


@quiet_jit()
def mesh_from_gmsh(build, comm=MPI.COMM_WORLD, **kwargs):
    """Run ``build(**kwargs) -> Layout`` on rank 0 and distribute its gmsh model over ``comm``.

    Returns ``(mesh, cell_tags, facet_tags, layout)``. An error raised by the
    builder on rank 0 is raised on every rank (so no rank waits forever).
    """
    import gmsh
    from dolfinx.io import gmshio

    layout, error = None, None
    if comm.rank == 0:
        try:
            layout = build(**kwargs)
        except Exception as exc:  # re-raised below on every rank
            error = exc
    layout, error = comm.bcast((layout, error), root=0)
    if error is not None:
        if comm.rank == 0 and gmsh.isInitialized():
            gmsh.model.remove()
        raise error
    try:
        mesh, cell_tags, facet_tags = gmshio.model_to_mesh(gmsh.model, comm, 0, gdim=2)
    finally:
        if comm.rank == 0:
            gmsh.model.remove()
    return mesh, cell_tags, facet_tags, layout


@quiet_jit()
def mesh_from_xdmf(path: str | Path, phases: list[str], comm=MPI.COMM_WORLD, *, mesh_name: str = "mesh",
                   tags_name: str = "cell_tags"):
    """Read a triangle mesh and its cell tags from an XDMF file (tags: phase ``i`` is ``i + 1``, band 100).

    Returns ``(mesh, cell_tags, None, layout)``; the sample must span
    ``[0, L] x [0, H]``.
    """
    from dolfinx.io import XDMFFile

    path = Path(path)
    if not path.is_file():
        raise FemInputError(f"fem.mesh_file: {path} not found")
    try:
        with XDMFFile(comm, str(path), "r") as xdmf:
            mesh = xdmf.read_mesh(name=mesh_name)
            mesh.topology.create_connectivity(mesh.topology.dim, 0)
            cell_tags = xdmf.read_meshtags(mesh, name=tags_name)
    except RuntimeError as exc:
        raise FemInputError(f"fem.mesh_file: cannot read mesh '{mesh_name}' and tags '{tags_name}' "
                            f"from {path} ({exc})") from None
    x = mesh.geometry.x
    lo = comm.allreduce(x[:, :2].min(axis=0) if len(x) else np.full(2, np.inf), op=MPI.MIN)
    hi = comm.allreduce(x[:, :2].max(axis=0) if len(x) else np.full(2, -np.inf), op=MPI.MAX)
    if np.abs(lo).max() > 1e-9:
        raise FemInputError(f"fem.mesh_file: {path} must have its lower-left corner at (0, 0), got {lo}")
    from .geometry import BAND_TAG

    has_band = comm.allreduce(bool(np.any(cell_tags.values == BAND_TAG)), op=MPI.LOR)
    return mesh, cell_tags, None, Layout(phases=list(phases), band=tuple(phases[:2]) if has_band else None,
                                         length_nm=float(hi[0]), height_nm=float(hi[1]),
                                         info={"kind": "mesh_file", "path": str(path)})


def write_mesh_xdmf(path: str | Path, mesh, cell_tags, facet_tags=None) -> None:
    """Write ``mesh`` (name ``mesh``) and its tags (``cell_tags``, ``facet_tags``) to XDMF."""
    from dolfinx.io import XDMFFile

    path = Path(path)
    tmp = _scratch_path(path, mesh.comm)
    complete = False
    try:
        with XDMFFile(mesh.comm, str(tmp), "w") as xdmf:
            xdmf.write_mesh(mesh)
            cell_tags.name = "cell_tags"
            xdmf.write_meshtags(cell_tags)
            if facet_tags is not None:
                mesh.topology.create_connectivity(mesh.topology.dim - 1, mesh.topology.dim)
                facet_tags.name = "facet_tags"
                xdmf.write_meshtags(facet_tags)
        complete = True
    finally:
        _publish(tmp, path, mesh.comm, complete=complete)


class FieldWriter:
    """An XDMF time series of fields: ``write(t, *functions)`` per load step (``t`` = applied strain).

    The pair appears at ``path`` on :meth:`close`; :meth:`abort` (or leaving a ``with`` block on an
    error) drops it and leaves any previous pair in place. Collective: every rank calls every method.
    """

    def __init__(self, path: str | Path, mesh):
        from dolfinx.io import XDMFFile

        self.path, self.comm = Path(path), mesh.comm
        self.tmp = _scratch_path(self.path, self.comm)
        self.file = XDMFFile(self.comm, str(self.tmp), "w")
        self.file.write_mesh(mesh)

    def write(self, t: float, *functions) -> None:
        for f in functions:
            self.file.write_function(f, t)

    def close(self) -> None:
        """Finish the file and move it into place."""
        self._end(complete=True)

    def abort(self) -> None:
        """Drop the partial file."""
        self._end(complete=False)

    def _end(self, *, complete: bool) -> None:
        if self.file is None:
            return
        self.file.close()
        self.file = None
        _publish(self.tmp, self.path, self.comm, complete=complete)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self._end(complete=exc_type is None)
        return False
