"""md_gpu.io: provenance without importing the orchestration, atomic writers."""
import importlib.metadata
import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk

from md_gpu import io
from md_gpu.forcefields import Morse
from md_gpu.integrators import make_force_fn, velocity_verlet
from md_gpu.neighbors import NeighborList
from md_gpu.state import from_atoms

FF = Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)


def md_state():
    state = from_atoms(bulk("Cu", "fcc", a=3.61, cubic=True))
    init, _ = velocity_verlet(make_force_fn(FF, NeighborList(FF.cutoff, 1.0, state.pbc)), 1.0)
    return init(state)


def test_versions_come_from_package_metadata_and_not_from_importing_multiscale():
    try:
        expected = importlib.metadata.version("multiscale")
    except importlib.metadata.PackageNotFoundError:
        expected = io.UNKNOWN_VERSION
    assert io.versions()["multiscale"] == expected
    code = "import sys, md_gpu.io as io; io.versions(); print('multiscale' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_failed_checkpoint_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt.npz"
    md = md_state()
    io.write_checkpoint(path, md, meta={"k": 1}, thermo=np.zeros((1, 3)))
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        io.write_checkpoint(path, md, meta={"k": 2}, thermo=np.zeros((1, 3)))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["run.ckpt.npz"]
    monkeypatch.undo()
    _, extra, meta, thermo = io.read_checkpoint(path)
    assert meta == {"k": 1} and thermo.shape == (1, 3)


def test_run_h5_round_trip(tmp_path):
    path = io.write_run_h5(tmp_path / "sub" / "run.h5", thermo={"step": [0, 1]}, settings={"a": 1},
                           results={"kappa": 2.5})
    r = io.read_run_h5(path)
    assert r["settings"] == {"a": 1} and r["results"] == {"kappa": 2.5} and list(r["thermo"]["step"]) == [0, 1]
    # every run records what did its arithmetic: the selected backend, its device, float64
    from md_gpu.backend import backend_name, get_backend

    assert r["backend"]["backend"] == backend_name(get_backend()) and r["backend"]["precision"] == "float64"
    assert r["backend"]["numpy"] == np.__version__ and r["backend"]["device"]
    assert [p.name for p in path.parent.iterdir()] == ["run.h5"]
