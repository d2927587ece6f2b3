"""Grades on the GPU (CuPy) equal the NumPy grades. Skipped without a usable GPU."""
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")
try:
    cupy.zeros(1).sum().item()
except Exception as exc:  # noqa: BLE001 - any CUDA failure means no usable device
    pytest.skip(f"no usable GPU: {exc}", allow_module_level=True)

from training.mtp.maxvol import ActiveSet  # noqa: E402

MLIP = Path(__file__).parent / "data" / "mlip"


def test_neighbourhood_grades_on_the_gpu_equal_numpy():
    from training.mtp import MTP, neighbor_pairs, read_cfg

    mtp = MTP.read(MLIP / "cubic" / "pot_10.mtp")
    frames = read_cfg(MLIP / "cubic" / "training.cfg.gz")
    active = ActiveSet.select(mtp, frames[:200:10])
    atoms = frames[401].copy()
    atoms.positions += np.random.default_rng(0).normal(scale=0.1, size=atoms.positions.shape)
    i, j, d = neighbor_pairs(atoms, mtp.cutoff)
    types = np.zeros(len(atoms), dtype=np.int64)
    cpu = active.neighbourhood_grades(mtp, types, i, j, d)
    gpu = active.neighbourhood_grades(mtp, cupy.asarray(types), cupy.asarray(i), cupy.asarray(j), cupy.asarray(d))
    assert isinstance(gpu, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, rtol=1e-10)
