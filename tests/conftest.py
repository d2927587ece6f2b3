"""Shared test helpers: the MPI launcher, the toy pipeline used by the runner tests, and a machine without a
C++ compiler (``no_compiler``) for the CPU-kernel tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def clean_mpi_env(**extra) -> dict:
    """The environment for a child ``mpirun``: no MPI variables inherited from this
    process (they make a nested mpirun exit silently, ENVIRONMENT.md pitfall 5)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "OPAL_", "PMI_"))}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    env.update(extra)
    return env


def run_mpi(args: list[str], *, n: int = 2, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    """Run ``python args…`` under ``mpirun -n n``; skip the test if mpirun is absent."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun is not installed")
    return subprocess.run([mpirun, "-n", str(n), sys.executable, *args], env=clean_mpi_env(),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture
def mpirun():
    return run_mpi


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    """``common.native`` as on a machine without a C++ compiler: none is found, the kernel cache is the
    empty ``tmp_path`` (returned: nothing should be built there), no warning has been given and no
    library is loaded (the loaded libraries are forgotten again after the test)."""
    import common.native as native

    monkeypatch.setenv("MULTISCALE_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "compiler", lambda: None)
    monkeypatch.setattr(native, "_warned", set())
    native._load.cache_clear()
    yield tmp_path
    native._load.cache_clear()
