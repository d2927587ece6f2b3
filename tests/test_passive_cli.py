"""``multiscale mtp grade | select-add | passive`` (training/passive_cli.py)."""
from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest

from training import datasets
from training.mtp.maxvol import select_add
from training.passive_cli import register

MLIP = Path(__file__).parent / "data" / "mlip"
GRAPHENE = Path(__file__).parents[1] / "cases" / "graphene_borophene" / "data" / "graphene.extxyz.gz"


def _main(argv):
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def cu(tmp_path_factory):
    from training.mtp import read_cfg, write_cfg

    frames = read_cfg(MLIP / "cubic" / "training.cfg.gz")
    tmp = tmp_path_factory.mktemp("cu")
    write_cfg(tmp / "train.cfg", frames[:300:10])
    far = frames[1].copy()
    far.set_cell(far.cell * 1.2, scale_atoms=True)
    hot = frames[2].copy()
    hot.positions += np.random.default_rng(0).normal(scale=0.3, size=hot.positions.shape)
    new = [frames[0].copy(), far, hot]  # frames[0] is a training frame
    write_cfg(tmp / "new.cfg", new)
    return tmp, MLIP / "cubic" / "pot_06.mtp"


def test_grade_writes_mlip_grades_and_reuses_the_active_set(cu, capsys):
    tmp, pot = cu
    assert _main(["grade", str(pot), str(tmp / "train.cfg"), str(tmp / "new.cfg"), str(tmp / "g.extxyz"),
                  "--als", str(tmp / "pot.als")]) == 0
    graded = ase.io.read(tmp / "g.extxyz", ":")
    gamma = [a.info["MV_grade"] for a in graded]
    assert gamma[0] <= 1 + 1e-9 and min(gamma[1:]) > 10
    assert gamma[0] == pytest.approx(graded[0].arrays["nbh_grades"].max())
    assert "graded 3 configurations" in capsys.readouterr().out
    assert _main(["grade", str(pot), str(tmp / "pot.als"), str(tmp / "new.cfg"), str(tmp / "g2.extxyz")]) == 0
    again = [a.info["MV_grade"] for a in ase.io.read(tmp / "g2.extxyz", ":")]
    np.testing.assert_allclose(again, gamma, rtol=1e-12)


def test_grade_bad_inputs_name_the_file(cu, capsys):
    tmp, pot = cu
    assert _main(["grade", str(pot), str(tmp / "missing.cfg"), str(tmp / "new.cfg"), str(tmp / "x.extxyz")]) == 1
    assert "missing.cfg: file not found" in capsys.readouterr().err
    (tmp / "bad.als").write_text("nope")
    assert _main(["grade", str(pot), str(tmp / "bad.als"), str(tmp / "new.cfg"), str(tmp / "x.extxyz")]) == 1
    assert "bad.als: cannot read it as HDF5" in capsys.readouterr().err


def test_select_add_picks_the_new_extrapolative_configurations(cu):
    tmp, pot = cu
    assert _main(["select-add", str(pot), str(tmp / "train.cfg"), str(tmp / "new.cfg"), str(tmp / "add.extxyz")]) == 0
    added = ase.io.read(tmp / "add.extxyz", ":")
    assert len(added) == 2 and all(a.info["MV_grade"] > 10 for a in added)
    assert _main(["select-add", str(pot), str(tmp / "train.cfg"), str(tmp / "new.cfg"), str(tmp / "one.extxyz"),
                  "--max-add", "1"]) == 0
    assert len(ase.io.read(tmp / "one.extxyz", ":")) == 1


def test_select_add_never_picks_training_frames(cu):
    from training.mtp import MTP, read_cfg

    tmp, pot = cu
    mtp, train = MTP.read(pot), read_cfg(tmp / "train.cfg")
    picked, gamma = select_add(mtp, train, train[:5], mode="configuration")
    assert len(picked) == 0 and len(gamma) == 0


def test_passive_on_a_dataset_file(tmp_path, capsys):
    if not GRAPHENE.is_file():
        pytest.skip(f"{GRAPHENE} not there")
    data = tmp_path / "graphene.extxyz.gz"
    datasets.write(data, datasets.read(GRAPHENE)[::6])
    out = tmp_path / "pots"
    assert _main(["passive", str(data), "--out-dir", str(out), "--level", "6", "--method", "linear",
                  "--every-k", "4", "--threshold", "1.5"]) == 0
    assert "graphene: " in capsys.readouterr().out
    report = json.loads((out / "graphene_fit.json").read_text())
    assert report["level"] == 6 and report["every_k"] == 4 and report["method"] == "linear"
    assert (out / "graphene.als").is_file() and (out / "graphene_parity.png").is_file()
    assert _main(["passive", str(tmp_path / "nothing.extxyz"), "--out-dir", str(out)]) == 1
    assert "nothing.extxyz: no such case directory or dataset file" in capsys.readouterr().err
    assert _main(["passive", str(data), "--out-dir", str(out), "--threshold", "0.9"]) == 1
    assert "fit.passive.threshold: must be > 1" in capsys.readouterr().err
