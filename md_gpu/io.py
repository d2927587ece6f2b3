"""Files of an MD run: HDF5 per run, checkpoints (.npz), all written atomically.

* :func:`write_run_h5` - ``thermo/<column>`` datasets (units in the names),
  ``stress_strain/<column>`` datasets, ``settings``, ``versions`` and ``backend`` (what did the
  arithmetic: NumPy or CuPy, device name, CuPy/CUDA versions, precision) as JSON attributes, ``results`` (scalars) as attributes of the ``results`` group.
* :func:`write_checkpoint` / :func:`read_checkpoint` - the configuration
  (positions Å, velocities Å/ASE-time, cell Å, masses amu, types, species,
  pbc), the integrator bookkeeping (step, time_fs, heat eV), a JSON ``meta``
  dict (stage index, random generator state, ...), the thermo rows so far and,
  for a resume that repeats the uninterrupted run bit for bit, the configuration
  the neighbour list in use was built for (``nlist_ref_*``: building it again
  from there gives the same pairs in the same order) and the accumulators of
  the run's observers (``arrays``).
  A file that cannot be read is one :class:`~md_gpu.errors.MDSetupError`
  naming it (:data:`CORRUPT_HINT` says what to do).

Writes go through :func:`common.atomic.atomic_path` (a temporary file in the
same folder, renamed over the target), so an interrupted run never leaves a
half-written file behind.
"""
from __future__ import annotations

import io
import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from common.atomic import atomic_path, write_bytes

from .backend import backend_provenance, to_numpy
from .errors import MDSetupError
from .state import State

UNKNOWN_VERSION = "unknown"  # the multiscale version when the package is not installed (a bare checkout)


def versions() -> dict:
    """Versions of the software that produced a run (``multiscale`` from the installed package's metadata)."""
    import ase
    import scipy

    out = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
           "ase": ase.__version__}
    try:
        import cupy

        out["cupy"] = cupy.__version__
    except Exception:
        pass
    try:
        out["multiscale"] = metadata.version("multiscale")
    except metadata.PackageNotFoundError:
        out["multiscale"] = UNKNOWN_VERSION
    return out


CORRUPT_HINT = ("delete it (or, in a case, rerun the stage with `multiscale run CASE --stages md --force`, which "
                "discards the interrupted run's files in runs/md.partial) to start that run afresh")


def write_checkpoint(path, md, *, meta: dict, thermo: np.ndarray, nlist=None, arrays: dict | None = None) -> Path:
    """Save an MDState (see module docstring) to ``path`` (.npz), atomically.

    nlist: the :class:`~md_gpu.neighbors.NeighborList` in use (its reference positions [n, 3] and cell
    [3, 3], Å, are saved); arrays: name -> NumPy array (or number) of further state, e.g. observer
    accumulators, returned as ``extra["arrays"]``."""
    s = md.state
    fields = {}
    if nlist is not None and nlist.i is not None:
        fields.update(nlist_ref_positions=to_numpy(nlist.ref_positions), nlist_ref_cell=np.asarray(nlist.ref_cell))
    fields.update({f"array_{name}": to_numpy(value) for name, value in (arrays or {}).items()})
    # built in memory, then written in one piece: a failed write (a full disk) leaves no half-closed zip
    buffer = io.BytesIO()
    np.savez(buffer, positions=to_numpy(s.positions), velocities=to_numpy(s.velocities),
             masses=to_numpy(s.masses), types=to_numpy(s.types), cell=s.cell,
             pbc=np.array(s.pbc), species=np.array(s.species),
             step=md.step, time_fs=md.time_fs, heat=to_numpy(md.heat), thermo=thermo,
             meta=np.array(json.dumps(meta)), **fields)
    return write_bytes(path, buffer.getvalue())


def read_checkpoint(path, *, xp=None):
    """``(state, extra, meta dict, thermo rows)`` from a checkpoint file; ``extra``: ``step``, ``time_fs``,
    ``heat``, ``nlist`` (``{"ref_positions", "ref_cell"}`` of the neighbour list in use, or None) and
    ``arrays`` (name -> the further arrays saved)."""
    path = Path(path)
    if not path.is_file():
        raise MDSetupError(f"checkpoint {path} does not exist; run without --resume to start afresh")
    xp = xp or np
    try:
        with np.load(path, allow_pickle=False) as data:
            state = State(positions=xp.asarray(data["positions"]), velocities=xp.asarray(data["velocities"]),
                          masses=xp.asarray(data["masses"]), types=xp.asarray(data["types"]),
                          cell=np.asarray(data["cell"]), pbc=tuple(bool(p) for p in data["pbc"]),
                          species=tuple(str(s) for s in data["species"]))
            extra = {"step": int(data["step"]), "time_fs": float(data["time_fs"]), "heat": float(data["heat"])}
            names = set(data.files)
            extra["nlist"] = ({"ref_positions": data["nlist_ref_positions"], "ref_cell": data["nlist_ref_cell"]}
                              if "nlist_ref_positions" in names else None)
            extra["arrays"] = {n[len("array_"):]: data[n] for n in names if n.startswith("array_")}
            return state, extra, json.loads(str(data["meta"])), data["thermo"]
    except Exception as exc:  # a truncated zip raises BadZipFile, EOFError, ValueError, KeyError, ...
        raise MDSetupError(f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
                           f"{CORRUPT_HINT}") from None


def write_run_h5(path, *, thermo: dict, settings: dict, stress_strain: dict | None = None,
                 results: dict | None = None) -> Path:
    """One HDF5 file per run (see module docstring); returns the path."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = "md_gpu-run/1"
        f.attrs["settings"] = json.dumps(settings, default=str)
        f.attrs["versions"] = json.dumps(versions())
        f.attrs["backend"] = json.dumps(backend_provenance())
        group = f.create_group("thermo")
        for name, values in thermo.items():
            group.create_dataset(name, data=np.asarray(values, dtype=float))
        if stress_strain:
            group = f.create_group("stress_strain")
            for name, values in stress_strain.items():
                group.create_dataset(name, data=np.asarray(values, dtype=float))
        group = f.create_group("results")
        for name, value in (results or {}).items():
            group.attrs[name] = json.dumps(value, default=float)
    return Path(path)


def read_run_h5(path) -> dict:
    """``{'thermo': {...}, 'stress_strain': {...}, 'settings': {...}, 'versions': {...}, 'results': {...},
    'backend': {...}}`` (``backend``: :func:`md_gpu.backend.backend_provenance` of the run; empty for files
    written before it was recorded)."""
    import h5py

    with h5py.File(path, "r") as f:
        return {"thermo": {k: v[()] for k, v in f["thermo"].items()},
                "stress_strain": {k: v[()] for k, v in f["stress_strain"].items()} if "stress_strain" in f else {},
                "settings": json.loads(f.attrs["settings"]), "versions": json.loads(f.attrs["versions"]),
                "results": {k: json.loads(v) for k, v in f["results"].attrs.items()},
                "backend": json.loads(f.attrs["backend"]) if "backend" in f.attrs else {}}
