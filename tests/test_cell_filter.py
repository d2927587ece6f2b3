"""common.cell_filter: the matrix exponential and logarithm of the relaxations, and the filter using them."""
import numpy as np
import pytest
from scipy.linalg import expm as scipy_expm, logm as scipy_logm

from common.cell_filter import SERIES_MAX, expm, frechet_cell_filter, logm


def _deformations(seed: int, scale: float, count: int = 20):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        f = np.eye(3) + rng.normal(0.0, scale, (3, 3))
        f[2, :2] = f[:2, 2] = 0.0  # a sheet: the cell's z row is fixed
        yield f


@pytest.mark.parametrize("scale", [1e-4, 1e-2, 0.1])
def test_logm_and_expm_agree_with_scipy_and_invert_each_other(scale):
    for f in _deformations(1, scale):
        log_f = logm(f)
        np.testing.assert_allclose(log_f, scipy_logm(f).real, rtol=0, atol=2e-15 * max(1.0, np.abs(log_f).max()))
        np.testing.assert_allclose(expm(log_f), f, rtol=0, atol=2e-15)
        np.testing.assert_allclose(expm(log_f), scipy_expm(log_f), rtol=0, atol=2e-15)


def test_a_strain_beyond_the_series_falls_back_to_scipy():
    f = np.diag([3.0, 0.4, 1.0])  # a 200 % stretch and a 60 % compression, sheared
    f[0, 1] = 1.5
    z = np.linalg.solve((f + np.eye(3)).T, (f - np.eye(3)).T).T
    assert np.abs(z).sum(axis=0).max() > SERIES_MAX
    np.testing.assert_allclose(logm(f), scipy_logm(f).real, atol=1e-14)


def test_the_same_input_gives_the_same_bits_after_other_work():
    f = next(_deformations(2, 0.02))
    first = (logm(f).tobytes(), expm(logm(f)).tobytes())
    for g in _deformations(3, 0.05, count=200):  # other sizes of scratch memory in between
        expm(logm(g))
        np.empty(int(1 + 997 * abs(g[0, 1]) * 1e3))
        assert (logm(f).tobytes(), expm(logm(f)).tobytes()) == first


def test_the_filter_relaxes_with_them():
    """A strained Cu cell with EMT relaxes to ASE's own result; the filter calls our functions."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.rattle(0.02, seed=1)
    ours, theirs = atoms.copy(), atoms.copy()
    for a in (ours, theirs):
        a.calc = EMT()
    target = frechet_cell_filter(ours)
    utility = getattr(target, "_utility", target)
    assert utility.expm is expm and utility.logm is logm
    BFGS(target, logfile=None).run(fmax=1e-5, steps=200)
    BFGS(FrechetCellFilter(theirs), logfile=None).run(fmax=1e-5, steps=200)
    assert np.abs(ours.get_forces()).max() < 1e-5
    np.testing.assert_allclose(ours.cell.array, theirs.cell.array, atol=1e-6)
    np.testing.assert_allclose(ours.cell.lengths(), [3.59] * 3, atol=0.01)  # EMT's Cu
