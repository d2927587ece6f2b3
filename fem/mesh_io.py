"""Meshes in, fields out: the dolfinx mesh and XDMF calls of ``fem/`` (with :mod:`fem.mechanics`).

Data flow::

    geometry builder (gmsh model on rank 0) --mesh_from_gmsh--> (mesh, cell_tags, facet_tags, Layout)
    user XDMF mesh with cell tags          --mesh_from_xdmf--> (mesh, cell_tags, facet_tags, Layout)
    FieldWriter(path).write(t, *functions)  --> one XDMF + HDF5 file, one time per load step (ParaView)

dolfinx 0.5.2 names are used here (``gmshio.model_to_mesh``; ``read_from_msh``
is broken in 0.5.2); a dolfinx upgrade changes this module and
:mod:`fem.mechanics` only. Lengths in nm.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from mpi4py import MPI

from .errors import FemInputError
from .geometry import Layout


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

    with XDMFFile(mesh.comm, str(path), "w") as xdmf:
        xdmf.write_mesh(mesh)
        cell_tags.name = "cell_tags"
        xdmf.write_meshtags(cell_tags)
        if facet_tags is not None:
            mesh.topology.create_connectivity(mesh.topology.dim - 1, mesh.topology.dim)
            facet_tags.name = "facet_tags"
            xdmf.write_meshtags(facet_tags)


class FieldWriter:
    """An XDMF time series of fields: ``write(t, *functions)`` per load step (``t`` = applied strain)."""

    def __init__(self, path: str | Path, mesh):
        from dolfinx.io import XDMFFile

        self.file = XDMFFile(mesh.comm, str(path), "w")
        self.file.write_mesh(mesh)

    def write(self, t: float, *functions) -> None:
        for f in functions:
            self.file.write_function(f, t)

    def close(self) -> None:
        self.file.close()
