"""Two-step passive training (training/passive.py) and fit reports (training/fit_report.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training import datasets, fit_report
from training.passive import (PassiveTrainingError, chain_subsample, linear_design, linear_fit, make_fit_fn,
                              passive_train)

MLIP = Path(__file__).parent / "data" / "mlip"


@pytest.fixture(scope="module")
def cubic():
    from training.mtp import MTP, read_cfg

    return MTP.read(MLIP / "cubic" / "pot_06.mtp"), read_cfg(MLIP / "cubic" / "training.cfg.gz")


def _labelled(mtp, frames):
    """Frames relabelled with ``mtp``'s own energy, forces and stress (an exactly learnable target)."""
    from training.mtp import MTPCalculator

    out = []
    for atoms in frames:
        a = atoms.copy()
        a.calc = MTPCalculator(mtp)
        out.append(datasets.with_reference(a, energy=a.get_potential_energy(), forces=a.get_forces(),
                                           stress=a.get_stress()))
    return out


def test_linear_design_reproduces_the_calculator(cubic):
    from training.mtp import MTPCalculator

    mtp, frames = cubic
    atoms = frames[5].copy()
    atoms.set_cell(atoms.cell * [1.03, 0.99, 1.0], scale_atoms=True)
    e_row, f_rows, s_rows = linear_design(mtp, atoms)
    coeffs = np.concatenate([mtp.species_coeffs, mtp.moment_coeffs])
    atoms.calc = MTPCalculator(mtp)
    assert e_row @ coeffs == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(f_rows @ coeffs, atoms.get_forces(), atol=1e-9)
    np.testing.assert_allclose(s_rows @ coeffs, atoms.get_stress(), atol=1e-10)


def test_linear_fit_recovers_the_linear_coefficients(cubic):
    from training.mtp import MTP

    mtp, frames = cubic
    train = _labelled(mtp, frames[:60:3])
    start = MTP(mtp.fields())
    start.moment_coeffs[:] = 0.0
    start.species_coeffs[:] = 0.0
    fitted, report = linear_fit(start, train, reg=1e-14)
    assert report["method"] == "linear"
    err = fit_report.errors(fitted, train)
    assert err["energy_per_atom"]["rmse"] < 1e-6 and err["forces"]["rmse"] < 1e-5
    pred = fit_report.predict(fitted, train)
    np.testing.assert_allclose(*pred["stress"], atol=1e-5)  # GPa


def test_linear_fit_rejects_frames_without_forces(cubic):
    mtp, frames = cubic
    bare = frames[0].copy()
    bare.calc = None
    with pytest.raises(datasets.DatasetError, match="linear_fit training set: frame 0 has no energy"):
        linear_fit(mtp, [bare])
    with pytest.raises(PassiveTrainingError, match="weights"):
        linear_fit(mtp, frames[:1], weights={"energy": 1, "force": 1})


def test_chain_subsample_takes_every_kth_frame_of_each_chain():
    from ase import Atoms

    frames = [Atoms("H", info={"chain": "a" if k < 7 else "b"}) for k in range(12)]
    pool = np.array([0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11])  # frame 7 held out
    assert chain_subsample(frames, pool, 3).tolist() == [0, 3, 6, 8, 11]
    assert chain_subsample(frames, pool, 1).tolist() == pool.tolist()
    for k in (9, 10):  # independent single points (ripple frames) are all taken
        frames[k].info["independent"] = True
    assert chain_subsample(frames, pool, 3).tolist() == [0, 3, 6, 8, 9, 10]  # chain b is now 8, 11


def test_passive_training_adds_the_extrapolative_frames(cubic):
    """Training set: small thermal displacements; the pool also holds strained and hot frames."""
    mtp, frames = cubic
    base = frames[:30]
    strained = []
    for k, f in enumerate(frames[30:42]):
        a = f.copy()
        a.set_cell(a.cell * (1.0 + 0.02 * (k % 6 + 1)), scale_atoms=True)
        a.positions += np.random.default_rng(k).normal(scale=0.05 * (k % 3), size=a.positions.shape)
        strained.append(a)
    data = _labelled(mtp, base + strained)
    for k, a in enumerate(data):
        a.info["chain"] = "thermal" if k < 30 else "strained"
    res = passive_train(mtp, data, fit_fn=make_fit_fn("linear"), every_k=10, threshold=1.5,
                        validation_fraction=0.1, seed=1, log=lambda line: None)
    rep = res.report
    pool = np.setdiff1d(np.arange(len(data)), res.valid_index)
    assert rep["steps"][0]["step"] == "preliminary fit" and rep["steps"][1]["n_added"] > 0
    assert rep["max_grade_preliminary"] > 1.5  # the strained frames extrapolate for the preliminary fit
    assert rep["max_grade_final"] <= 1.5 and rep["below_threshold"]
    assert res.grades_final[res.train_index].max() <= 1 + 1e-9
    assert set(rep["steps"][1]["added_frames"]) <= set(pool.tolist())
    assert not set(res.train_index.tolist()) & set(res.valid_index.tolist())
    assert rep["steps"][2]["n_train"] == len(res.train_index) == rep["n_train_final"]
    assert rep["steps"][2]["errors"]["train"]["forces"]["rmse"] < 1e-5  # self-labelled: exact
    json.dumps(rep)


@pytest.mark.parametrize("kwargs, match", [
    ({"every_k": 0}, "every_k: must be >= 1"),
    ({"threshold": 1.0}, "threshold: the extrapolation threshold must be > 1"),
    ({"validation_fraction": 0.7}, r"validation fraction: must be in \[0, 0.5\)"),
    ({"max_add": -1}, "max_add must be >= 0"),
])
def test_passive_training_bad_settings(cubic, kwargs, match):
    mtp, frames = cubic
    with pytest.raises(PassiveTrainingError, match=match):
        passive_train(mtp, frames[:4], fit_fn=make_fit_fn("linear"), **kwargs)
    with pytest.raises(PassiveTrainingError, match="fit method 'quadratic' is not one of full, linear"):
        make_fit_fn("quadratic")


def test_report_files(cubic, tmp_path):
    mtp, frames = cubic
    pred = fit_report.predict(mtp, frames[:10])
    m = fit_report.metrics(pred)
    assert set(m) == {"energy_per_atom", "forces", "stress"} and m["forces"]["unit"] == "eV/A"
    png = fit_report.parity_png(pred, tmp_path / "parity.png", title="Cu level 6")
    hist = fit_report.grades_png(np.array([0.5, 3.0]), np.array([0.4, 0.9]), 2.0, tmp_path / "grades.png")
    for path in (png, hist):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = fit_report.write_json(tmp_path / "r.json", {"a": np.float64(1.5), "b": np.arange(3)})
    assert json.loads(out.read_text()) == {"a": 1.5, "b": [0, 1, 2]}
