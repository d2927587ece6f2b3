"""Array backend for the MD engine: CuPy when a GPU is usable, NumPy otherwise.

Every array function in ``md_gpu`` takes its namespace ``xp`` from here, so the
same code runs on both. The choice is made once per process:

* ``MULTISCALE_BACKEND=numpy`` forces NumPy; ``MULTISCALE_BACKEND=cupy`` forces
  CuPy and fails with a clear error when no GPU is usable;
* otherwise CuPy is used when it imports *and* a CUDA device answers, else NumPy.

One GPU per MPI rank: when CuPy is chosen, :func:`bind_rank_device` makes the process use GPU
``local_rank`` of its node (:func:`node_local_rank`: ``OMPI_COMM_WORLD_LOCAL_RANK``,
``MPI_LOCALRANKID``, ``SLURM_LOCALID``, else an ``MPI_COMM_TYPE_SHARED`` split of mpi4py's
``COMM_WORLD`` when mpi4py is loaded, else 0). More local ranks than visible GPUs is a
:class:`BackendError` unless ``MULTISCALE_GPU_OVERSUBSCRIBE=1`` (then rank ``k`` uses GPU
``k mod n_gpus``). The binding is part of :func:`backend_provenance`.

Device-to-host reads: the MD step loop reads device data only through :func:`to_host` (and
:func:`host_scalar`), which counts its calls in :data:`SYNCS` on every backend, so a test on the CPU
counts the synchronising reads that a GPU run of the same code makes (``tests/test_md_syncs.py``); the
hook lives in :mod:`common.host_reads`, so the kernel launcher the force fields share counts its reads too.
:func:`to_numpy` is the uncounted conversion for setup and output code outside the loop.

``import cupy`` succeeds on machines without a GPU (or without a driver), and
``cupy.cuda.is_available()`` then *raises* instead of returning False
(ENVIRONMENT.md, pitfall 6), so every probe here catches ``Exception``.
"""
from __future__ import annotations

import functools
import os
import platform
from types import ModuleType

import numpy

from common.host_reads import SYNCS, SyncCounter, host_scalar, to_host  # noqa: F401  (the MD loop's hook)

ENV_VAR = "MULTISCALE_BACKEND"
CHOICES = ("numpy", "cupy")
OVERSUBSCRIBE_VAR = "MULTISCALE_GPU_OVERSUBSCRIBE"
LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID")
LOCAL_SIZE_VARS = {"OMPI_COMM_WORLD_LOCAL_RANK": "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALRANKID": "MPI_LOCALNRANKS"}
_binding: dict = {}  # the device this process bound to (bind_rank_device), for the provenance


class BackendError(RuntimeError):
    """The requested array backend cannot be used on this machine."""


def cupy_usable() -> tuple[bool, str]:
    """Return ``(usable, reason)``: whether CuPy imports and a CUDA device runs a kernel."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA runtime at import
        return False, f"cupy does not import ({type(exc).__name__}: {exc})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False, "cupy imports but sees no CUDA device"
        # A tiny computation proves that the driver, runtime and device all work.
        int((cupy.arange(4) * 2).sum())
    except Exception as exc:
        return False, f"cupy imports but no GPU is usable ({type(exc).__name__}: {exc})"
    return True, "CUDA device available"


def usable_cupy() -> tuple[ModuleType | None, str]:
    """``(cupy, reason)`` when CuPy runs on a CUDA device, else ``(None, why not)`` (:func:`cupy_usable`)."""
    usable, reason = cupy_usable()
    if not usable:
        return None, reason
    import cupy

    return cupy, reason


@functools.lru_cache(maxsize=None)
def get_backend(name: str | None = None) -> ModuleType:
    """Return the array module (``numpy`` or ``cupy``).

    ``name`` overrides the environment variable; ``None`` means: read
    ``MULTISCALE_BACKEND``, and if it is unset pick CuPy when usable.
    """
    requested = (name or os.environ.get(ENV_VAR, "")).strip().lower()
    if requested and requested not in CHOICES:
        raise BackendError(
            f"{ENV_VAR}={requested!r} is not a backend; use one of {', '.join(CHOICES)} or unset it"
        )
    if requested == "numpy":
        return numpy
    usable, reason = cupy_usable()
    if requested == "cupy" and not usable:
        raise BackendError(
            f"{ENV_VAR}=cupy was asked for, but {reason}; unset {ENV_VAR} "
            "or set it to numpy to run on the CPU"
        )
    if usable:
        import cupy

        bind_rank_device(cupy)
        return cupy
    return numpy


def node_local_rank() -> tuple[int, int | None, str]:
    """``(local_rank, local_size or None, source)``: this process's rank among the MPI ranks of its node.

    Read from the launcher's environment (:data:`LOCAL_RANK_VARS`, in that order, with the node's rank
    count from :data:`LOCAL_SIZE_VARS` where the launcher sets one), else from an
    ``MPI_COMM_TYPE_SHARED`` split of ``mpi4py.MPI.COMM_WORLD`` when mpi4py is already imported
    (it is not imported here: importing it initialises MPI), else ``(0, None, 'single process')``.
    """
    import sys

    def number(name):
        value = os.environ.get(name, "").strip()
        if not value:
            return None
        try:
            return int(value)
        except ValueError:
            raise BackendError(f"{name}={value!r} is not a rank number; the MPI launcher sets it to an "
                               "integer (unset it outside mpirun)") from None

    for name in LOCAL_RANK_VARS:
        rank = number(name)
        if rank is not None:
            return rank, number(LOCAL_SIZE_VARS[name]) if name in LOCAL_SIZE_VARS else None, name
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.COMM_WORLD.Get_size() > 1:
        node = mpi.COMM_WORLD.Split_type(mpi.COMM_TYPE_SHARED)
        try:
            return int(node.Get_rank()), int(node.Get_size()), "MPI_COMM_TYPE_SHARED"
        finally:
            node.Free()
    return 0, None, "single process"


def _too_many_ranks(local_rank: int, local_size: int | None, n_devices: int) -> bool:
    """More node-local ranks than visible GPUs (rank ``local_rank`` beyond them, or ``local_size`` above)."""
    return local_rank >= n_devices or (local_size is not None and local_size > n_devices)


def choose_device(local_rank: int, n_devices: int, *, local_size: int | None = None,
                  oversubscribe: bool | None = None) -> int:
    """The GPU index for node-local rank ``local_rank`` (of ``local_size`` ranks, None: unknown) of ``n_devices``.

    Rank ``k`` gets GPU ``k``. More ranks than GPUs (``local_size > n_devices``: an error on every rank
    alike, so none starts work alone; or ``k >= n_devices``) is a :class:`BackendError` unless
    oversubscription is asked for (``oversubscribe``, default: ``MULTISCALE_GPU_OVERSUBSCRIBE=1``), then
    rank ``k`` gets GPU ``k mod n_devices``.
    """
    if n_devices < 1:
        raise BackendError("no CUDA device is visible to this process (CUDA_VISIBLE_DEVICES?); set "
                           f"{ENV_VAR}=numpy to run on the CPU")
    if oversubscribe is None:
        oversubscribe = os.environ.get(OVERSUBSCRIBE_VAR, "").strip().lower() in ("1", "true", "yes")
    if not _too_many_ranks(local_rank, local_size, n_devices):
        return local_rank
    if oversubscribe:
        return local_rank % n_devices
    ranks = f"{local_size} MPI ranks run on this node" if local_size else f"MPI rank {local_rank} of this node has no GPU"
    raise BackendError(f"{ranks}, but {n_devices} GPU(s) are visible "
                       f"and one GPU per rank is the rule. Start at most {n_devices} rank(s) per node (mpirun "
                       f"-n {n_devices}, or --map-by ppr:{n_devices}:node), or set {OVERSUBSCRIBE_VAR}=1 to share "
                       "GPUs between ranks")


def bind_rank_device(cupy) -> dict:
    """Make this process use the GPU of its node-local MPI rank (:func:`choose_device`); return the binding.

    ``{"device_id", "local_rank", "local_size", "local_rank_source", "visible_devices", "oversubscribed"}``, also kept
    for :func:`backend_provenance`. Called by :func:`get_backend` when it picks CuPy.
    """
    local_rank, local_size, source = node_local_rank()
    n_devices = int(cupy.cuda.runtime.getDeviceCount())
    device = choose_device(local_rank, n_devices, local_size=local_size)
    cupy.cuda.Device(device).use()
    _binding.clear()
    _binding.update(device_id=device, local_rank=local_rank, local_size=local_size, local_rank_source=source,
                    visible_devices=n_devices,
                    oversubscribed=_too_many_ranks(local_rank, local_size, n_devices))
    return dict(_binding)


def backend_name(xp: ModuleType) -> str:
    """``'numpy'`` or ``'cupy'`` for an array module."""
    return "cupy" if xp.__name__.startswith("cupy") else "numpy"


def _cuda_version(number: int) -> str:
    """CUDA's integer version (1000 major + 10 minor, e.g. 12040) as ``'12.4'``."""
    return f"{number // 1000}.{number % 1000 // 10}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def backend_provenance(xp: ModuleType | None = None, *, precision: str = "float64") -> dict:
    """What did the arithmetic of a run, for its provenance (a JSON-able dict; never raises).

    ``xp``: the run's array module (default: :func:`get_backend`); ``precision``: the floating-point type
    of its positions, velocities, forces and energies (md_gpu runs in ``float64``).  Keys:

    * ``backend``: ``'numpy'`` or ``'cupy'``; ``precision``;
    * ``device``: the GPU's name (``'NVIDIA H100 80GB HBM3'``) on CuPy, the CPU's model name on NumPy;
      ``device_id``: the CUDA device number (CuPy only);
    * ``numpy``, ``cupy``: versions (``cupy`` None when it does not import);
    * ``cuda_runtime``, ``cuda_driver``: CUDA versions as ``'major.minor'`` (None on NumPy or when a
      query fails);
    * ``rank_binding``: how this process chose its GPU (:func:`bind_rank_device`: device_id, local_rank,
      local_rank_source, visible_devices, oversubscribed); None on NumPy.
    """
    if xp is None:
        xp = get_backend()
    name = backend_name(xp)
    out = {"backend": name, "precision": str(precision), "device": None, "numpy": numpy.__version__,
           "cupy": None, "cuda_runtime": None, "cuda_driver": None, "rank_binding": None}
    try:
        import cupy

        out["cupy"] = cupy.__version__
    except Exception:
        pass
    if name == "numpy":
        out["device"] = _cpu_name()
        return out
    try:
        import cupy

        device = cupy.cuda.Device()
        out["device_id"] = int(device.id)
        out["rank_binding"] = dict(_binding) or None
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
        label = props.get("name", b"")
        out["device"] = label.decode(errors="replace") if isinstance(label, bytes) else str(label)
        out["cuda_runtime"] = _cuda_version(int(cupy.cuda.runtime.runtimeGetVersion()))
        out["cuda_driver"] = _cuda_version(int(cupy.cuda.runtime.driverGetVersion()))
    except Exception as exc:  # no usable device, or a query this CuPy lacks
        out["device"] = out["device"] or f"unknown CUDA device ({type(exc).__name__})"
    return out


def to_numpy(array) -> numpy.ndarray:
    """A host (NumPy) copy of a NumPy or CuPy array; NumPy arrays are returned as they are."""
    if type(array).__module__.startswith("cupy"):
        return array.get()
    return numpy.asarray(array)
