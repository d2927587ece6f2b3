"""MaxVol active sets and extrapolation grades (training/mtp/maxvol.py, training/mtp/energy_rows.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.mtp.energy_rows import fingerprint, frame_rows, neighbourhood_rows
from training.mtp.maxvol import ActiveSet, ActiveSetError, maxvol

MLIP = Path(__file__).parent / "data" / "mlip"


# ------------------------------------------------------------------------------ generic MaxVol algebra
def test_maxvol_determinant_never_decreases_and_ends_dominant():
    rows = np.random.default_rng(1).normal(size=(400, 12))
    res = maxvol(rows, start=np.arange(12))  # a poor start: many swaps
    assert len(res.swaps) > 5
    assert np.all(np.diff(res.log_det) > 0)
    # replay the swaps from scratch: |det| of every intermediate matrix is non-decreasing
    index, dets = np.arange(12), []
    dets.append(np.linalg.slogdet(rows[index])[1])
    for i, j in res.swaps:
        index[j] = i
        dets.append(np.linalg.slogdet(rows[index])[1])
    assert np.all(np.diff(dets) > 0)
    np.testing.assert_allclose(dets, res.log_det, rtol=0, atol=1e-8)
    assert np.array_equal(index, res.index)
    assert np.linalg.matrix_rank(res.matrix) == 12
    assert np.abs(rows @ np.linalg.inv(res.matrix)).max() <= 1 + 1e-9
    np.testing.assert_allclose(res.inverse @ res.matrix, np.eye(12), atol=1e-10)


def test_maxvol_finds_the_global_optimum_of_a_small_problem():
    from itertools import combinations

    rows = np.random.default_rng(2).normal(size=(9, 3))
    best = max(abs(np.linalg.det(rows[list(c)])) for c in combinations(range(9), 3))
    res = maxvol(rows)
    # a dominant submatrix is within a factor k^(k/2) of the best volume; on this small case it is the best
    assert abs(np.linalg.det(res.matrix)) >= best / 3 ** 1.5
    assert np.abs(rows @ res.inverse).max() <= 1 + 1e-9


def test_maxvol_rank_deficient_rows_are_regularised():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 6))  # rank 3 in 6 columns
    res = maxvol(rows, regularization=1e-5)
    assert res.rank == 3 and np.sum(res.index >= 0) == 3
    assert np.abs(rows @ res.inverse).max() <= 1 + 1e-9  # training rows interpolate
    outside = rows[0] + 0.1 * np.linalg.svd(rows)[2][-1]  # leave the span of the training rows
    assert np.abs(outside @ res.inverse).max() > 1e3
    with pytest.raises(ActiveSetError, match="rank 3 < 6"):
        maxvol(rows, regularization=0)


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.zeros(4)])
def test_maxvol_rejects_empty_input(bad):
    with pytest.raises(ActiveSetError, match="non-empty 2D"):
        maxvol(bad)


# ------------------------------------------------------------------------------ MTP grades
@pytest.fixture(scope="module")
def cubic():
    from training.mtp import MTP, read_cfg

    frames = read_cfg(MLIP / "cubic" / "training.cfg.gz")
    return MTP.read(MLIP / "cubic" / "pot_10.mtp"), frames[:400:8], frames


def _strained(atoms, factor):
    a = atoms.copy()
    a.set_cell(a.cell * factor, scale_atoms=True)
    return a


def _heated(atoms, sigma, seed=0):
    a = atoms.copy()
    a.positions += np.random.default_rng(seed).normal(scale=sigma, size=a.positions.shape)
    return a


@pytest.mark.parametrize("mode", ["neighbourhood", "configuration"])
@pytest.mark.parametrize("parameters", ["all", "linear"])
def test_training_frames_interpolate_and_far_frames_extrapolate(cubic, mode, parameters):
    mtp, train, _ = cubic
    active = ActiveSet.select(mtp, train, mode=mode, parameters=parameters)
    n_theta = mtp.radial_coeffs.size if parameters == "all" else 0
    assert len(active.scale) == mtp.species_count + n_theta + mtp.basis_size
    if parameters == "linear":
        assert active.rank == len(active.scale)  # the training rows have full rank
    else:  # exact or near (relative pivot < 1e-7) dependencies among the radial columns leave a few null
        # directions (e.g. Euler's relation for scaling one radial function); the radial rows still add many
        assert mtp.species_count + mtp.basis_size < active.rank < len(active.scale)
    assert np.linalg.matrix_rank(active.matrix / active.scale) == len(active.scale)
    assert np.all(np.diff(active.log_det) > 0)
    gamma, per_atom = active.frame_grades(mtp, train)
    assert gamma.max() <= 1 + 1e-9
    if mode == "neighbourhood":
        assert max(g.max() for g in per_atom) <= 1 + 1e-9
        assert np.sum(np.concatenate(per_atom) > 1 - 1e-9) >= active.rank  # the active rows grade 1
    far, _ = active.frame_grades(mtp, [_strained(train[0], 1.15), _heated(train[0], 0.3)])
    assert far.min() > 50


def test_grade_functions_agree(cubic):
    from training.mtp.neighbors import FIT_PAIRS  # the pair list (and pair order) frame_grades uses

    mtp, train, frames = cubic
    active = ActiveSet.select(mtp, train, parameters="linear")  # full rank: no regularised directions
    atoms = _heated(frames[3], 0.05)
    i, j, d = FIT_PAIRS(atoms, mtp.cutoff)
    types = np.zeros(len(atoms), dtype=np.int64)
    per_atom = active.neighbourhood_grades(mtp, types, i, j, d)
    np.testing.assert_allclose(per_atom, active.frame_grades(mtp, [atoms])[1][0], rtol=1e-12)
    np.testing.assert_allclose(active.grades(mtp, types, i, j, d, len(atoms)), per_atom)
    assert active.configuration_grade(mtp, types, i, j, d) == pytest.approx(per_atom.max())
    # the grade is max |x A^-1| by definition
    rows = neighbourhood_rows(mtp, types, i, j, d)
    direct = np.abs(np.linalg.solve((active.matrix).T, rows.T)).max(axis=0)
    np.testing.assert_allclose(per_atom, direct, rtol=1e-8)


def test_rows_are_the_energy_derivative_with_respect_to_the_linear_coefficients(cubic):
    from training.mtp import neighbor_pairs

    mtp, train, _ = cubic
    atoms = train[1]
    i, j, d = neighbor_pairs(atoms, mtp.cutoff)
    types = np.zeros(len(atoms), dtype=np.int64)
    rows = neighbourhood_rows(mtp, types, i, j, d)
    energies, _ = mtp.evaluate(types, i, j, d)
    coeffs = np.concatenate([mtp.species_coeffs, mtp.moment_coeffs])
    np.testing.assert_allclose(rows @ coeffs, energies, rtol=1e-12, atol=1e-10)
    cfg_rows, frame, atom = frame_rows(mtp, [atoms, atoms], mode="configuration")
    np.testing.assert_allclose(cfg_rows @ coeffs, [energies.sum()] * 2, rtol=1e-12)
    assert list(frame) == [0, 1] and list(atom) == [-1, -1]


def test_multispecies_rows_carry_one_hot_species():
    from training.mtp import MTP, neighbor_pairs, read_cfg

    mtp = MTP.read(MLIP / "multi" / "pot_06.mtp")
    atoms = read_cfg(MLIP / "multi" / "efs_06.cfg.gz")[0]
    types = np.asarray(atoms.arrays["mlip_type"])
    rows = neighbourhood_rows(mtp, types, *neighbor_pairs(atoms, mtp.cutoff))
    np.testing.assert_array_equal(rows[:, :3], np.eye(3)[types])


# ------------------------------------------------------------------------------ files and errors
def test_save_load_round_trip(cubic, tmp_path):
    mtp, train, frames = cubic
    active = ActiveSet.select(mtp, train)
    path = active.save(tmp_path / "pot.als")
    again = ActiveSet.read(path)
    assert again.mode == active.mode and again.parameters == active.parameters == "all"
    assert again.fingerprint == active.fingerprint == fingerprint(mtp, "all")
    for name in ("matrix", "scale", "inverse", "source_frame", "source_atom"):
        np.testing.assert_array_equal(getattr(again, name), getattr(active, name))
    np.testing.assert_array_equal(again.frame_grades(mtp, frames[1:5])[0], active.frame_grades(mtp, frames[1:5])[0])
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_files_and_mismatched_potential(cubic, tmp_path):
    from training.mtp import MTP

    mtp, train, _ = cubic
    with pytest.raises(ActiveSetError, match="does not exist"):
        ActiveSet.load(tmp_path / "missing.als")
    junk = tmp_path / "junk.als"
    junk.write_text("not hdf5")
    with pytest.raises(ActiveSetError, match="junk.als: cannot read it as HDF5"):
        ActiveSet.load(junk)
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(ActiveSetError, match="is not a multiscale-mtp-active-set file"):
        ActiveSet.load(tmp_path / "other.h5")
    active = ActiveSet.select(mtp, train[:10])
    other = MTP(mtp.fields())
    other.radial_coeffs = other.radial_coeffs * 1.01
    with pytest.raises(ActiveSetError, match="built for another potential"):
        active.frame_grades(other, train[:1])
    with pytest.raises(ActiveSetError, match="mode 'atoms' is not one of"):
        ActiveSet.select(mtp, train[:10], mode="atoms")
    with pytest.raises(ActiveSetError, match="columns but the active set has"):
        active.grade_rows(np.zeros((2, 5)))


def test_md_grader_hook_reads_the_active_set(cubic, tmp_path):
    """md_gpu.extrapolation.mtp_grader reads the fit stage's active set and grades every atom."""
    from md_gpu.extrapolation import mtp_grader
    from training.mtp import neighbor_pairs

    mtp, train, frames = cubic
    path = ActiveSet.select(mtp, train).save(tmp_path / "pot.als")
    grade = mtp_grader(mtp, path)
    atoms = _heated(frames[7], 0.1)
    i, j, d = neighbor_pairs(atoms, mtp.cutoff)
    types = np.zeros(len(atoms), dtype=np.int64)
    gamma = grade(atoms.positions, atoms.cell.array, types, i, j, d)
    np.testing.assert_allclose(gamma, ActiveSet.load(path).neighbourhood_grades(mtp, types, i, j, d))


@pytest.mark.parametrize("pot, cfg", [("cubic/pot_10.mtp", "cubic/training.cfg.gz"),
                                      ("multi/pot_06.mtp", "multi/efs_06.cfg.gz")])
def test_radial_rows_are_the_site_energy_derivatives(pot, cfg):
    """dE_i/dθ of radial_rows against central finite differences of MTP.evaluate's site energies."""
    from training.mtp.energy_rows import radial_rows
    from training.mtp import MTP, neighbor_pairs, read_cfg

    mtp = MTP.read(MLIP / pot)
    atoms = read_cfg(MLIP / cfg)[3]
    types = np.asarray(atoms.arrays["mlip_type"], dtype=np.int64)
    i, j, d = neighbor_pairs(atoms, mtp.cutoff)
    rows, b = radial_rows(mtp, types, i, j, d)
    np.testing.assert_allclose(b, mtp.basis_values(types, i, j, d), atol=1e-12)
    h = 1e-6
    for idx in np.random.default_rng(0).choice(mtp.radial_coeffs.size, 6, replace=False):
        shifted = []
        for sign in (1, -1):
            other = MTP(mtp.fields())
            other.radial_coeffs = mtp.radial_coeffs.copy()
            other.radial_coeffs.reshape(-1)[idx] += sign * h
            shifted.append(other.evaluate(types, i, j, d)[0])
        fd = (shifted[0] - shifted[1]) / (2 * h)
        np.testing.assert_allclose(rows[:, idx], fd, atol=1e-7 * max(1.0, np.abs(fd).max()))


def test_all_parameter_grades_follow_mlip(tmp_path):
    """MLIP-2's neighbourhood grades of its own training set (multi/efs_10: MaxVol over all 235 parameters):
    ours, selected on the same configurations, have about as many active atoms and the same mean."""
    from training.mtp import MTP, read_cfg

    mtp = MTP.read(MLIP / "multi" / "pot_10.mtp")
    frames = read_cfg(MLIP / "multi" / "efs_10.cfg.gz")[::4]
    mlip = np.concatenate([a.arrays["nbh_grades"] for a in frames])
    active = ActiveSet.select(mtp, frames)
    ours = np.concatenate(active.frame_grades(mtp, frames)[1])
    assert len(active.scale) == 3 + 9 * 3 * 8 + 16 and ours.max() <= 1 + 1e-9
    assert abs(ours.mean() - mlip.mean()) < 0.1
    assert np.corrcoef(ours, mlip)[0, 1] > 0.3
