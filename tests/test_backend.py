"""The md_gpu array backend: NumPy fallback, forced choice, no crash without a GPU."""
import sys
import types

import numpy
import pytest

from common.arrays import array_module
from md_gpu import backend


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    backend.get_backend.cache_clear()
    yield
    backend.get_backend.cache_clear()


def test_forced_numpy(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "numpy")
    assert backend.get_backend() is numpy


def test_unknown_backend_named(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "torch")
    with pytest.raises(backend.BackendError, match="MULTISCALE_BACKEND='torch' is not a backend"):
        backend.get_backend()


def _fake_cupy(raise_on_probe):
    """A module that imports like cupy on a machine with no GPU: the device probe raises."""
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=None))

    def count():
        if raise_on_probe:
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
        return 0

    fake.cuda.runtime.getDeviceCount = count
    return fake


@pytest.mark.parametrize("raise_on_probe", [True, False])
def test_cupy_importable_but_no_gpu_falls_back(monkeypatch, raise_on_probe):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(raise_on_probe))
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    usable, reason = backend.cupy_usable()
    assert not usable and "no" in reason
    assert backend.get_backend() is numpy


def test_forced_cupy_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(True))
    monkeypatch.setenv(backend.ENV_VAR, "cupy")
    with pytest.raises(backend.BackendError, match="MULTISCALE_BACKEND=cupy was asked for.*cudaErrorNoDevice"):
        backend.get_backend()


def test_cupy_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import raises ImportError
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    assert backend.get_backend() is numpy
    assert not backend.cupy_usable()[0]


def test_helpers_on_numpy():
    a = numpy.arange(3.0)
    assert array_module(a) is numpy
    assert backend.to_numpy(a) is a
    assert backend.backend_name(numpy) == "numpy"
