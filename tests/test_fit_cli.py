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


@pytest.mark.parametrize("args,message", [
    (["{T}/nothere.mtp", "{R}/train.extxyz"], "nothere.mtp: INIT.mtp not found"),
    (["{T}/06.mtp", "{R}/missing.extxyz"], "missing.extxyz: dataset file not found"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--weights", "forces=abc"], "--weights: forces='abc' is not a number"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--max-iter", "-2"], "--max-iter -2: must be >= 0"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--theta-frames", "0"], "--theta-frames 0: must be >= 1"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--starts", "0"], "--starts 0: must be >= 1"),
    (["{T}/06.mtp", "{R}/train.extxyz", "--species", "Ag"], "element(s) ['Cu'] are not in species=['Ag']"),
])
def test_bad_input_exits_2_with_a_clear_message(small_sets, args, message, capsys):
    root, _ = small_sets
    argv = ["mtp", "train"] + [a.format(T=TEMPLATES, R=root) for a in args] + ["--out", str(root / "x.mtp")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "multiscale mtp train: error:" in err and message in err
