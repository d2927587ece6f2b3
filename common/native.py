"""C++ kernels for the CPU, compiled on first use into a per-user cache and loaded with ``ctypes``.

Contract: :func:`load_library(source)` (or :func:`load_function(source, name)`) returns a
``ctypes.CDLL`` of ``source`` (C++ text exporting ``extern "C"`` functions) compiled with OpenMP, or
``None`` when compiled kernels are switched off or cannot be built; the caller then runs its array code.
The first failure of each kind gives ONE ``RuntimeWarning`` naming what is missing (no compiler, or the
compiler's first error line), later ones are silent.  Threads follow ``OMP_NUM_THREADS`` (read by
libgomp when the library loads).

Switch: ``MULTISCALE_CPU_KERNELS=numpy`` forces the array code everywhere (the reference the tests
compare against); ``compiled`` (the default, also when unset) uses the compiled kernels where they load.
Compiler: ``$CXX``, else ``g++``, else ``c++``.

Cache: ``$XDG_CACHE_HOME/multiscale/cpu-kernels`` (default ``~/.cache/...``, a temporary folder when
that cannot be written; ``MULTISCALE_KERNEL_CACHE`` overrides the folder), one ``<sha256>.so`` per
(source, compiler version, flags, host CPU).  The library is built under a temporary name in that folder
and renamed into place (``common.atomic.atomic_path``), so MPI ranks that compile the same kernel at once
each produce a complete file and never load a partial one.

Why ``-march=native`` is safe here: the key includes the CPU model and its instruction-set flags
(``/proc/cpuinfo``), so a home directory shared by nodes of different CPUs holds one library per kind of
CPU and no node loads code built for instructions it lacks.  No ``-ffast-math``: the kernels must keep
IEEE arithmetic so they equal the array code to round-off, and ``-ffp-contract=off`` makes each
expression round as written (no fused multiply-adds formed across statements), so a sum does not
change with the code around it (the same virial with and without per-atom virials).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

from .atomic import atomic_path

ENV_VAR = "MULTISCALE_CPU_KERNELS"
CHOICES = ("compiled", "numpy")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC", "-std=c++14")
_warned: set = set()


class NativeSetupError(RuntimeError):
    """``MULTISCALE_CPU_KERNELS`` holds a value that is not one of :data:`CHOICES`."""


def compiled_kernels_requested() -> bool:
    """False when ``MULTISCALE_CPU_KERNELS=numpy``; :class:`NativeSetupError` for an unknown value."""
    value = os.environ.get(ENV_VAR, "").strip().lower() or "compiled"
    if value not in CHOICES:
        raise NativeSetupError(f"{ENV_VAR}={value!r} is not a choice; use one of {', '.join(CHOICES)} or unset it")
    return value == "compiled"


def cache_dir() -> Path:
    """Folder of the compiled libraries (module docstring); where the home cache cannot be written (a
    read-only home), ``<tmp>/multiscale-cpu-kernels-<uid>``."""
    if os.environ.get("MULTISCALE_KERNEL_CACHE"):
        return Path(os.environ["MULTISCALE_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(base) / "multiscale" / "cpu-kernels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"multiscale-cpu-kernels-{os.getuid()}"


def compiler() -> str | None:
    """Path of the C++ compiler (``$CXX``, ``g++``, ``c++``), or None."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@functools.lru_cache(maxsize=None)
def _compiler_version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout


@functools.lru_cache(maxsize=1)
def host_identity() -> str:
    """CPU model and instruction-set flags of this machine (part of the cache key)."""
    keep = ("model name", "flags", "Features", "CPU part")
    lines = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            lines = {line.strip() for line in handle if line.split(":")[0].strip() in keep}
    except OSError:
        pass
    return platform.machine() + "\n" + "\n".join(sorted(lines))


def library_path(source: str, cxx: str, flags=FLAGS) -> Path:
    """Cache file of ``source`` built by ``cxx`` with ``flags`` on this host."""
    key = hashlib.sha256("\0".join([source, _compiler_version(cxx), " ".join(flags), host_identity()]).encode())
    return cache_dir() / f"{key.hexdigest()}.so"


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message + f"; running the NumPy array code instead (set {ENV_VAR}=numpy to silence this)",
                      RuntimeWarning, stacklevel=3)


def build(source: str, cxx: str, flags=FLAGS) -> Path:
    """Compile ``source`` into the cache (if not there yet); the library's path.  Raises
    ``subprocess.CalledProcessError`` (with the compiler's output) when the compiler fails."""
    target = library_path(source, cxx, flags)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        src = tmp.with_suffix(".cpp")
        try:
            src.write_text(source, encoding="utf-8")
            subprocess.run([cxx, *flags, "-o", str(tmp), str(src)], check=True, capture_output=True, text=True,
                           timeout=600)
        finally:
            src.unlink(missing_ok=True)
    return target


@functools.lru_cache(maxsize=64)
def _load(source: str, flags: tuple) -> ctypes.CDLL | None:
    cxx = compiler()
    if cxx is None:
        _warn_once("compiler", "no C++ compiler found (looked for $CXX, g++, c++; on Debian: apt-get install g++) "
                               "to build the CPU kernels")
        return None
    try:
        return ctypes.CDLL(str(build(source, cxx, flags)))
    except subprocess.CalledProcessError as exc:
        first = next((ln for ln in (exc.stderr or "").splitlines() if "error" in ln), (exc.stderr or "").strip())
        _warn_once("compile", f"{cxx} failed to build a CPU kernel (in {cache_dir()}): {first[:300]}")
    except (OSError, subprocess.SubprocessError) as exc:
        _warn_once("compile", f"building or loading a CPU kernel in {cache_dir()} failed ({type(exc).__name__}: {exc})")
    return None


def load_library(source: str, *, flags=FLAGS) -> ctypes.CDLL | None:
    """The compiled library of ``source`` (built on first use), or None: switched off
    (``MULTISCALE_CPU_KERNELS=numpy``) or not buildable (one warning, module docstring)."""
    if not compiled_kernels_requested():
        return None
    return _load(source, tuple(flags))


def load_function(source: str, name: str, restype=None):
    """The function ``name`` of :func:`load_library` ``(source)`` with ``restype`` set, or None."""
    library = load_library(source)
    if library is None:
        return None
    function = getattr(library, name)
    function.restype = restype
    return function


def pointer(array) -> ctypes.c_void_p:
    """``void*`` of a C-contiguous NumPy array (the caller keeps the array alive during the call)."""
    if not array.flags.c_contiguous:
        raise ValueError("a compiled kernel needs C-contiguous arrays")
    return ctypes.c_void_p(array.ctypes.data)
