"""Grade rows from the compiled kernel (training.mtp.host_kernel.grade_rows) against the array code.

The host build of ``fused.KERNEL_BODY`` with ``MTP_ROWS`` writes each atom's row of the extrapolation grade:
dE_i/dθ with respect to the radial coefficients and the basis values B.  Checked to 1e-10 relative
against ``energy_rows.radial_rows`` on MLIP's templates with three species and random coefficients and on
MLIP's trained level-16 potential; the grades an active set gives with these rows equal those of the
array rows; a fault planted in the row accumulation (the last radial basis function off by 1e-8) is
caught by the same comparison.
"""
from pathlib import Path

import numpy as np
import pytest

import common.native as native
from test_mtp_host_kernel import _random_potential, _structure
from training.mtp import MTP, fused, host_kernel, read_cfg
from training.mtp.calculator import atom_types
from training.mtp.energy_rows import neighbourhood_rows, radial_rows
from training.mtp.maxvol import ActiveSet
from training.mtp.neighbors import array_neighbor_pairs

MLIP = Path(__file__).parents[1] / "tests" / "data" / "mlip"
RTOL = 1e-10

pytestmark = pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler (g++) for the CPU kernels")


def assert_rows_equal_the_array_code(mtp, atoms, types, rows=host_kernel.grade_rows):
    """Radial rows and basis values of ``rows`` equal ``radial_rows`` to RTOL of each one's largest entry."""
    i, j, d = array_neighbor_pairs(atoms, mtp.cutoff)
    ref_theta, ref_b = radial_rows(mtp, types, i, j, d)
    theta, b = rows(mtp, types, i, j, d)
    assert theta.shape == ref_theta.shape and b.shape == ref_b.shape
    assert np.abs(ref_theta).max() > 0 and np.abs(ref_b).max() > 0
    np.testing.assert_allclose(theta, ref_theta, rtol=0, atol=RTOL * np.abs(ref_theta).max())
    np.testing.assert_allclose(b, ref_b, rtol=0, atol=RTOL * np.abs(ref_b).max())


@pytest.mark.parametrize("level", [4, 10, 16])
def test_templates_with_three_species_equal_the_array_rows(level):
    mtp = _random_potential(level, 3, seed=level)
    atoms, types = _structure(3, seed=level)
    assert_rows_equal_the_array_code(mtp, atoms, types)


def test_mlip_trained_level_16_equals_the_array_rows():
    mtp = MTP.read(MLIP / "cubic" / "pot_16.mtp")
    for atoms in read_cfg(MLIP / "cubic" / "efs_16.cfg.gz")[::400]:
        assert_rows_equal_the_array_code(mtp, atoms, np.asarray(atoms.arrays["mlip_type"], dtype=np.int64))


def test_grades_from_the_compiled_rows_equal_those_of_the_array_rows():
    """The rows of both parameter sets agree; an active set selected (array rows) on three frames grades
    two more frames the same with both rows."""
    mtp = _random_potential(10, 2, seed=3)
    mtp.species = ["Cu", "Ni"]
    frames = []
    for seed in range(5):
        atoms, types = _structure(2, seed=20 + seed)
        atoms.set_chemical_symbols(np.array(mtp.species)[types])
        frames.append(atoms)
    active = ActiveSet.select(mtp, frames[:3], parameters="all")
    for atoms in frames[3:]:
        types = atom_types(mtp, atoms)
        i, j, d = array_neighbor_pairs(atoms, mtp.cutoff)
        for parameters in ("linear", "all"):
            rows = neighbourhood_rows(mtp, types, i, j, d, parameters=parameters)
            compiled = neighbourhood_rows(mtp, types, i, j, d, parameters=parameters, compiled=True)
            assert compiled.shape == rows.shape
            np.testing.assert_allclose(compiled, rows, rtol=0, atol=RTOL * np.abs(rows).max())
        gamma = active.neighbourhood_grades(mtp, types, i, j, d)
        np.testing.assert_allclose(gamma, active.grade_rows(rows), rtol=1e-8)
        assert gamma.max() > 1.0  # unseen configurations: the check compares extrapolation grades too


def test_a_planted_fault_in_the_rows_is_caught():
    """The last radial basis function's term scaled by 1 + 1e-8: the comparison fails (the run-time
    self-check covers the energies and pair gradients of the same launch, not the rows)."""
    mtp = _random_potential(10, 3, seed=10)
    atoms, types = _structure(3, seed=10)
    term = "out[mu * NX + x] += h * q[x];"
    assert term in fused.KERNEL_BODY

    def faulty_rows(mtp, types, i, j, d):
        body = fused.KERNEL_BODY.replace(term, "out[mu * NX + x] += h * q[x] * (x == NX - 1 ? 1.0 + 1e-8 : 1.0);")
        original = fused.KERNEL_BODY
        try:
            fused.KERNEL_BODY = body
            mtp._fused_tables = None  # rebuild the tables (their source) from the faulty body
            return host_kernel.grade_rows(mtp, types, i, j, d)
        finally:
            fused.KERNEL_BODY = original
            mtp._fused_tables = None

    with pytest.raises(AssertionError):
        assert_rows_equal_the_array_code(mtp, atoms, types, rows=faulty_rows)
    assert_rows_equal_the_array_code(mtp, atoms, types)
