"""``multiscale mtp train``: a small fit end to end, the report, and the bad-input exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest

from multiscale.cli import main
from training.mtp import MTP, MTPCalculator, read_cfg

DATA = Path(__file__).resolve().parent / "data" / "fit"
TEMPLATES = Path(__file__).resolve().parents[1] / "training" / "mtp" / "templates"


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory):
    """Three training and one validation Cu frame, as .cfg (types) and as extxyz (elements)."""
    frames = read_cfg(DATA / "cubic_training.cfg.gz", species=["Cu"])[:4]
    root = tmp_path_factory.mktemp("fitcli")
    ase.io.write(root / "train.extxyz", frames[:3])
    ase.io.write(root / "valid.extxyz", frames[3:])
    return root, frames


def test_train_writes_potential_and_report(small_sets, capsys):
    root, frames = small_sets
    out, report = root / "pot.mtp", root / "fit.json"
    code = main(["mtp", "train", str(TEMPLATES / "06.mtp"), str(root / "train.extxyz"), "--out", str(out),
                 "--max-iter", "3", "--starts", "2", "--valid", str(root / "valid.extxyz"), "--report", str(report),
                 "--weights", "energy=1,forces=0.01", "--stress-weight", "0.002"])
    assert code == 0
    text = capsys.readouterr().out
    assert "trained potential" in text and "valid (1 frames) RMSE" in text
    mtp = MTP.read(out)
    assert mtp.species == ["Cu"] and mtp.level == 6
    data = json.loads(report.read_text())
    assert data["weights"] == {"energy": 1.0, "forces": 0.01, "stress": 0.002}
    assert data["iterations"] <= 3 and "predictions" not in data
    atoms = frames[3].copy()
    atoms.calc = MTPCalculator(mtp)
    rmse = np.sqrt(np.mean((atoms.get_forces() - frames[3].get_forces()) ** 2))
    assert data["valid"]["forces"]["rmse"] == pytest.approx(rmse, rel=1e-8)


def test_theta_frames_default_and_all(small_sets, monkeypatch, capsys):
    """By default θ is fitted on THETA_FRAMES evenly spaced frames (the linear coefficients on all);
    ``--theta-frames all`` fits it on every frame; the run prints its wall and CPU time per iteration."""
    import training.fit_cli as fit_cli

    root, _ = small_sets
    monkeypatch.setattr(fit_cli, "THETA_FRAMES", 2)
    seen = {}
    for name, extra in (("default", []), ("all", ["--theta-frames", "all"])):
        report = root / f"{name}.json"
        code = main(["mtp", "train", str(TEMPLATES / "06.mtp"), str(root / "train.extxyz"), "--out",
                     str(root / f"{name}.mtp"), "--max-iter", "2", "--starts", "1", "--report", str(report),
                     "--threads", "2"] + extra)
        assert code == 0
        seen[name] = json.loads(report.read_text())
        assert "fit time:" in capsys.readouterr().out
    assert seen["default"]["theta_frames"] == 2 and seen["all"]["theta_frames"] is None
    assert seen["default"]["train"]["n_frames"] == seen["all"]["train"]["n_frames"] == 3
    assert seen["default"]["loss_history"] != seen["all"]["loss_history"]  # another loss: 2 of 3 frames


@pytest.mark.parametrize("args,message", [
    (["{T}/nothere.mtp", "{R}/train.extxyz"], "nothere.mtp: INIT.mtp not found"),
    (["{T}/06.mtp", "{R}/missing.extxyz"], "missing.extxyz: dataset file not found"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--weights", "forces=abc"], "--weights: forces='abc' is not a number"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--max-iter", "-2"], "--max-iter -2: must be >= 0"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--theta-frames", "0"], "--theta-frames 0: must be a count >= 1 or 'all'"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--theta-frames", "half"], "--theta-frames half: must be a count >= 1"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--threads", "0"], "--threads 0: must be >= 1"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--starts", "0"], "--starts 0: must be >= 1"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--species", "Ag"], "element(s) ['Cu'] are not in species=['Ag']"),
])
def test_bad_input_exits_2_with_a_clear_message(small_sets, args, message, capsys):
    root, _ = small_sets
    argv = ["mtp", "train"] + [a.format(T=TEMPLATES, R=root) for a in args] + ["--out", str(root / "x.mtp")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "multiscale mtp train: error:" in err and message in err
