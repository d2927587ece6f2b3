"""One GPU per MPI rank: the node-local rank picks the device, more ranks than GPUs is one clear error.

No GPU is needed: a fake ``cupy`` module counts the devices and records which one was made current.
"""
import sys
import types

import numpy
import pytest

from md_gpu import backend

RANK_VARS = backend.LOCAL_RANK_VARS + tuple(backend.LOCAL_SIZE_VARS.values()) + (backend.OVERSUBSCRIBE_VAR,)


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for name in RANK_VARS + (backend.ENV_VAR,):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    backend.get_backend.cache_clear()
    yield
    backend.get_backend.cache_clear()
    backend._binding.clear()


def fake_cupy(n_devices: int):
    """A module that answers like CuPy on a node with ``n_devices`` GPUs; ``used`` lists the devices made current."""
    fake = types.ModuleType("cupy")
    fake.used = []
    fake.current = 0

    class Device:
        def __init__(self, index=None):
            self.id = fake.current if index is None else index

        def use(self):
            if not 0 <= self.id < n_devices:
                raise RuntimeError(f"cudaErrorInvalidDevice: {self.id}")
            fake.current = self.id
            fake.used.append(self.id)

    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: n_devices,
        getDeviceProperties=lambda k: {"name": f"Fake GPU {k}".encode()},
        runtimeGetVersion=lambda: 12040, driverGetVersion=lambda: 12060)
    fake.cuda = types.SimpleNamespace(runtime=runtime, Device=Device)
    fake.arange = lambda n: numpy.arange(n)
    fake.__version__ = "0.0-fake"
    return fake


@pytest.mark.parametrize("variable", backend.LOCAL_RANK_VARS)
def test_each_launcher_variable_picks_the_rank_device(monkeypatch, variable):
    cupy = fake_cupy(4)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setenv(variable, "2")
    assert backend.get_backend() is cupy
    assert cupy.used == [2]
    prov = backend.backend_provenance(cupy)
    assert prov["device_id"] == 2 and prov["device"] == "Fake GPU 2"
    assert prov["rank_binding"]["local_rank"] == 2 and prov["rank_binding"]["local_rank_source"] == variable
    assert prov["rank_binding"]["visible_devices"] == 4 and not prov["rank_binding"]["oversubscribed"]


def test_single_process_uses_gpu_0(monkeypatch):
    cupy = fake_cupy(2)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    assert backend.get_backend() is cupy and cupy.used == [0]
    assert backend.backend_provenance(cupy)["rank_binding"]["local_rank_source"] == "single process"


def test_more_ranks_than_gpus_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(2))
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3")
    with pytest.raises(backend.BackendError, match=r"rank 3 of this node has no GPU, but 2 GPU\(s\) are visible.*"
                                                   "MULTISCALE_GPU_OVERSUBSCRIBE=1"):
        backend.get_backend()


def test_every_rank_fails_alike_when_the_node_has_too_many(monkeypatch):
    """Rank 0 of 3 on a 2-GPU node must not start alone while rank 2 stops."""
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(2))
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "3")
    with pytest.raises(backend.BackendError, match="3 MPI ranks run on this node, but 2 GPU"):
        backend.get_backend()


def test_oversubscription_shares_gpus_round_robin(monkeypatch):
    cupy = fake_cupy(2)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setenv("MPI_LOCALRANKID", "3")
    monkeypatch.setenv("MPI_LOCALNRANKS", "4")
    monkeypatch.setenv(backend.OVERSUBSCRIBE_VAR, "1")
    backend.get_backend()
    assert cupy.used == [1]
    binding = backend.backend_provenance(cupy)["rank_binding"]
    assert binding["oversubscribed"] and binding["local_size"] == 4


def test_bad_rank_variable_is_named(monkeypatch):
    monkeypatch.setenv("SLURM_LOCALID", "abc")
    with pytest.raises(backend.BackendError, match="SLURM_LOCALID='abc' is not a rank number"):
        backend.node_local_rank()


def test_mpi4py_shared_split_when_no_launcher_variable(monkeypatch):
    class Comm:
        def __init__(self, rank, size):
            self.rank, self.size, self.freed = rank, size, False

        def Get_rank(self):
            return self.rank

        def Get_size(self):
            return self.size

        def Split_type(self, kind):
            assert kind == "shared"
            return node

        def Free(self):
            self.freed = True

    node = Comm(1, 2)
    mpi = types.SimpleNamespace(COMM_WORLD=Comm(5, 8), COMM_TYPE_SHARED="shared")
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", mpi)
    assert backend.node_local_rank() == (1, 2, "MPI_COMM_TYPE_SHARED")
    assert node.freed


def test_numpy_runs_record_no_binding(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "numpy")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "7")  # ignored without CuPy
    assert backend.get_backend() is numpy
    assert backend.backend_provenance(numpy)["rank_binding"] is None


@pytest.mark.parametrize("rank, size, n, oversubscribe, expected", [
    (0, None, 1, False, 0), (1, 2, 2, False, 1), (5, 6, 4, True, 1), (4, None, 4, True, 0)])
def test_choose_device_table(rank, size, n, oversubscribe, expected):
    assert backend.choose_device(rank, n, local_size=size, oversubscribe=oversubscribe) == expected


def test_no_visible_device_is_an_error():
    with pytest.raises(backend.BackendError, match="no CUDA device is visible"):
        backend.choose_device(0, 0)
