"""Array backend for the MD engine: CuPy when a GPU is usable, NumPy otherwise.

Every array function in ``md_gpu`` takes its namespace ``xp`` from here, so the
same code runs on both. The choice is made once per process:

* ``MULTISCALE_BACKEND=numpy`` forces NumPy; ``MULTISCALE_BACKEND=cupy`` forces
  CuPy and fails with a clear error when no GPU is usable;
* otherwise CuPy is used when it imports *and* a CUDA device answers, else NumPy.

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

ENV_VAR = "MULTISCALE_BACKEND"
CHOICES = ("numpy", "cupy")


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
    if requested == "cupy":
        if not usable:
            raise BackendError(
                f"{ENV_VAR}=cupy was asked for, but {reason}; unset {ENV_VAR} "
                "or set it to numpy to run on the CPU"
            )
        import cupy

        return cupy
    if usable:
        import cupy

        return cupy
    return numpy


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
      query fails).
    """
    if xp is None:
        xp = get_backend()
    name = backend_name(xp)
    out = {"backend": name, "precision": str(precision), "device": None, "numpy": numpy.__version__,
           "cupy": None, "cuda_runtime": None, "cuda_driver": None}
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
