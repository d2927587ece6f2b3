"""Checks shared by the tests of the compiled CPU kernels (tests/test_mtp_host_kernel.py,
tests/test_nep_host_kernel.py): kernel results against the array code's, the switch to the array code, the one
warning of a machine without a C++ compiler (with the ``no_compiler`` fixture of conftest.py), and runs with 1
and 2 OpenMP threads."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT


def assert_results_close(kernel, reference, cutoff: float, rtol: float) -> None:
    """``kernel`` and ``reference`` are (site energies [n] eV, dE/dd [p, 3] eV/Å, forces [n, 3] eV/Å,
    virial [3, 3] eV, per-atom virials [n, 3, 3] eV); each of ``kernel`` equals ``reference`` to ``rtol``
    of the reference's largest entry, for the sums (forces, virials) or of their largest term
    (|dE/dd|, ``cutoff`` (Å) |dE/dd|): the forces of a perfect lattice are round-off.  The reference
    gradients must not be all ~0 (the comparison is not between zeros)."""
    g_max = np.abs(reference[1]).max()
    terms = (0.0, 0.0, g_max, g_max * cutoff, g_max * cutoff)
    names = ("site energies", "dE/dd", "forces", "virial", "per-atom virials")
    for name, a, b, term in zip(names, kernel, reference, terms, strict=True):
        scale = max(np.abs(b).max(), term, 1e-300)
        assert np.abs(a - b).max() <= rtol * scale, f"{name}: {np.abs(a - b).max() / scale:.2e} relative"
    assert g_max > 1e-3


def assert_the_switch_runs_the_array_code(monkeypatch, host_kernel, potential, reference, types, i, j, d) -> None:
    """With ``MULTISCALE_CPU_KERNELS=numpy`` the compiled kernel of ``potential`` is not used
    (``host_kernel.available`` is false) and ``host_kernel.evaluate`` returns the bits of
    ``reference(types, i, j, d)`` (the array code); an unknown value stops with one error naming it."""
    import common.native as native

    monkeypatch.setenv(native.ENV_VAR, "numpy")
    assert not host_kernel.available(potential)
    energies, de_dd = host_kernel.evaluate(potential, types, i, j, d)
    ref = reference(types, i, j, d)
    assert np.array_equal(energies, ref[0]) and np.array_equal(de_dd, ref[1])
    monkeypatch.setenv(native.ENV_VAR, "fortran")
    with pytest.raises(native.NativeSetupError, match="MULTISCALE_CPU_KERNELS='fortran'"):
        host_kernel.evaluate(potential, types, i, j, d)


def one_compiler_warning(call):
    """``call()``'s result; asserts that it gave exactly one RuntimeWarning, the one for the missing compiler."""
    with pytest.warns(RuntimeWarning, match="no C[+][+] compiler found") as caught:
        result = call()
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    return result


def runs_by_openmp_threads(script: str, *args: str, threads=("1", "2")) -> dict:
    """``{OMP_NUM_THREADS: result}``: ``python -c script args`` run once per thread count (compiled CPU
    kernels on: ``MULTISCALE_CPU_KERNELS`` unset), its result the JSON of the last line it prints."""
    runs = {}
    for count in threads:
        env = {**os.environ, "OMP_NUM_THREADS": count, "PYTHONPATH": str(ROOT)}
        env.pop("MULTISCALE_CPU_KERNELS", None)
        out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                             timeout=300, check=True)
        runs[count] = json.loads(out.stdout.strip().splitlines()[-1])
    return runs
