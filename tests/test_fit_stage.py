"""The fit stage (training/fit_stage.py) on a slice of the embedded graphene dataset."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from training import datasets, fit_stage
from training.mtp.maxvol import ActiveSet

GRAPHENE = Path(__file__).parents[1] / "cases" / "graphene_borophene" / "data" / "graphene.extxyz.gz"


class _Ctx(SimpleNamespace):
    def log(self, msg):
        self.lines.append(msg)

    def map(self, fn, items, costs=None):
        self.costs = costs
        return [fn(item) for item in items]

    def progress(self, done, total, what=""):
        pass

    def stage_dir(self, name):
        return self.case_dir / "runs" / name


def _settings(**over):
    from multiscale.schema import validate

    return validate(over, fit_stage.FIT_SETTINGS, where="fit", source="case.yaml")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    if not GRAPHENE.is_file():
        pytest.skip(f"{GRAPHENE} not there")
    path = tmp_path_factory.mktemp("data") / "graphene.extxyz.gz"
    datasets.write(path, datasets.read(GRAPHENE)[::3])  # 72 frames of all chains
    return path


@pytest.fixture
def ctx(tmp_path, data_file):
    (tmp_path / "runs" / "data").mkdir(parents=True)
    (tmp_path / "runs" / "data" / "graphene.extxyz.gz").symlink_to(data_file)
    out = tmp_path / "runs" / "fit.partial"
    out.mkdir()
    return _Ctx(case_dir=tmp_path, out_dir=out, systems={"graphene": {"kind": "phase"}}, is_root=True, lines=[])


def test_fit_stage_writes_potential_active_set_report_and_plots(ctx):
    from training.mtp import MTP

    settings = _settings(level=8, method="linear", passive={"every_k": 12, "threshold": 1.5})
    summary = fit_stage.run_fit(settings, ctx)
    out = ctx.out_dir
    for name in ("graphene.mtp", "graphene_preliminary.mtp", "graphene.als", "graphene_preliminary.als",
                 "graphene_fit.json", "graphene_parity.png", "graphene_grades.png", "summary.json"):
        assert (out / name).is_file(), name
    mtp = MTP.read(out / "graphene.mtp")
    assert mtp.species == ["C"] and mtp.level == 8
    report = json.loads((out / "graphene_fit.json").read_text())
    assert [s["step"] for s in report["steps"]][:2] == ["preliminary fit", "grade 1"]
    assert report["steps"][0]["n_train"] < report["n_train_final"]
    assert report["max_grade_final"] <= 1.5 < report["max_grade_preliminary"]
    assert {"train", "all", "valid"} <= set(report["steps"][0]["errors"])
    assert summary["systems"]["graphene"]["n_train_final"] == report["n_train_final"]
    # the active set grades the final training frames <= 1 and belongs to the written potential
    active = ActiveSet.load(out / "graphene.als")
    frames = datasets.read(ctx.case_dir / "runs" / "data" / "graphene.extxyz.gz")
    grades, _ = active.frame_grades(mtp, frames)
    np.testing.assert_allclose(grades, report["grades"]["final"], rtol=1e-9)
    assert any("max grade" in line for line in ctx.lines)


@pytest.mark.parametrize("over, match", [
    ({"method": "newton"}, "fit.method: 'newton' is not one of full, linear"),
    ({"passive": {"mode": "atoms"}}, "fit.passive.mode: 'atoms' is not one of"),
    ({"level": 7}, "fit.level: 7 is not one of MLIP's levels"),
    ({"passive": {"threshold": 0.5}}, "fit.passive.threshold: must be > 1"),
    ({"passive": {"every_k": 0}}, "fit.passive.every_k: must be >= 1"),
    ({"validation_fraction": 0.9}, "fit.validation_fraction"),
    ({"min_dist_A": 6.0}, "need 0 <= min_dist_A < cutoff_A"),
    ({"method": "linear", "init": "nothing.mtp"}, "fit.init: .*nothing.mtp does not exist"),
    ({"chain_weights": {"strains": {"stres": 1.0}}}, r"fit.chain_weights.strains: unknown key\(s\) \['stres'\]"),
    ({"chain_weights": {"strains": {"stress": -1.0}}}, "fit.chain_weights.strains: weights.stress: -1.0"),
    ({"chain_weights": {"strains": 1.0}}, "fit.chain_weights.strains: 1.0 must be a mapping"),
    ({"model": "nep", "chain_weights": {"strains": {"stress": 1.0}}}, "fit.chain_weights: applies to MTP fits only"),
])
def test_fit_stage_bad_settings(ctx, over, match):
    with pytest.raises(ValueError, match=match):
        fit_stage.run_fit(_settings(**over), ctx)


def test_per_system_settings_override_the_common_ones(ctx):
    settings = _settings(level=8, method="linear", passive={"every_k": 12}, per_system={"graphene": {"level": 6}})
    summary = fit_stage.run_fit(settings, ctx)
    report = json.loads((ctx.out_dir / "graphene_fit.json").read_text())
    assert report["level"] == 6 and report["settings"]["level"] == 6 and "per_system" not in report["settings"]
    assert summary["systems"]["graphene"]["level"] == 6
    from training.mtp import MTP

    assert MTP.read(ctx.out_dir / "graphene.mtp").basis_size == report["basis_size"]
    assert any("graphene: {'level': 6}" in line for line in ctx.lines)


@pytest.mark.parametrize("per_system, match", [
    ({"borophene": {"level": 12}}, "fit.per_system: borophene is not a system of the case"),
    ({"graphene": {"cutoff_A": 6.0}}, r"fit.per_system.graphene.cutoff_A: not a per-system setting; allowed: level"),
    ({"graphene": {"level": 7}}, r"fit.per_system.graphene: fit.level: 7 is not one of MLIP's levels"),
    ({"graphene": {"level": "12"}}, r"fit.per_system.graphene.level: must be int, got '12'"),
    ({"graphene": 12}, r"fit.per_system.graphene: must be a mapping"),
    ({"graphene": {"chain_weights": {"strains": {"force": 1.0}}}},
     r"fit.per_system.graphene: fit.chain_weights.strains: unknown key\(s\) \['force'\]"),
])
def test_per_system_settings_bad_input(ctx, per_system, match):
    with pytest.raises(ValueError, match=match):
        fit_stage.run_fit(_settings(method="linear", per_system=per_system), ctx)


def test_chain_weights_reach_the_fit_of_their_frames(ctx):
    """fit.chain_weights {strains: {stress: 1.0}} (1000x the default virial weight on the 0 K strain
    frames): the fitted potential's stress error on those frames drops, the report counts the weighted
    frames, and a chain no frame belongs to is reported as weighting nothing."""
    from training import fit_report
    from training.mtp import MTP

    frames = datasets.read(ctx.case_dir / "runs" / "data" / "graphene.extxyz.gz")
    strains = [a for a in frames if a.info["chain"] == "strains"]
    errors = {}
    for label, chain_weights in (("plain", {}), ("weighted", {"strains": {"stress": 1.0}, "ripple": {"energy": 2.0}})):
        ctx.lines.clear()
        fit_stage.run_fit(_settings(level=8, method="linear", chain_weights=chain_weights), ctx)
        report = json.loads((ctx.out_dir / "graphene_fit.json").read_text())
        pred, ref = fit_report.predict(MTP.read(ctx.out_dir / "graphene.mtp"), strains)["stress"]
        errors[label] = float(np.sqrt(np.mean((pred - ref)[:, :2] ** 2)))  # in-plane normal stresses, GPa
    assert report["chain_weighted_frames"] == {"strains": len(strains), "ripple": 0}
    assert any("fit.chain_weights.ripple: no frame of graphene's data is in chain 'ripple'" in line
               for line in report["log"])
    assert errors["weighted"] < 0.5 * errors["plain"], errors


def test_fit_stage_missing_dataset(ctx):
    ctx.systems = {"borophene": {"kind": "phase"}}
    with pytest.raises(datasets.DatasetError, match="borophene.extxyz.gz is missing; the data stage wrote no"):
        fit_stage.run_fit(_settings(method="linear"), ctx)


def test_interface_is_fitted_with_its_phases_data(ctx):
    """An interface system trains on its own frames plus those of the phases in 'between'."""
    data = ctx.case_dir / "runs" / "data"
    frames = datasets.read(data / "graphene.extxyz.gz")[::6]
    datasets.write(data / "interface.extxyz.gz", frames)
    ctx.systems = {"interface": {"kind": "interface", "between": ["graphene", "borophene"]}}
    with pytest.raises(datasets.DatasetError, match="borophene.extxyz.gz is missing .*interface_with_phases"):
        fit_stage.run_fit(_settings(method="linear"), ctx)
    ctx.systems = {"interface": {"kind": "interface", "between": ["graphene"]}}
    fit_stage.run_fit(_settings(level=6, method="linear", passive={"every_k": 12}), ctx)
    report = json.loads((ctx.out_dir / "interface_fit.json").read_text())
    n_graphene = len(datasets.read(data / "graphene.extxyz.gz"))
    assert report["n_frames"] == len(frames) + n_graphene
    assert report["extra_datasets"] == [str(data / "graphene.extxyz.gz")]
    assert report["shortest_distance_A"]["C-C"] > 1.0
    alone = _settings(level=6, method="linear", passive={"every_k": 12}, interface_with_phases=False)
    fit_stage.run_fit(alone, ctx)
    assert json.loads((ctx.out_dir / "interface_fit.json").read_text())["n_frames"] == len(frames)


def test_fits_are_farmed_costliest_first_on_the_cores_they_may_use(ctx):
    """The interface (its frames plus its phases', at a higher level) gets the largest cost, so
    Farm.map starts it first; the threads per fit follow the process's cores, at most FIT_MAX_THREADS."""
    import os

    data = ctx.case_dir / "runs" / "data"
    datasets.write(data / "interface.extxyz.gz", datasets.read(data / "graphene.extxyz.gz")[::6])
    ctx.systems = {"graphene": {"kind": "phase"}, "interface": {"kind": "interface", "between": ["graphene"]}}
    fit_stage.run_fit(_settings(level=6, method="linear", passive={"every_k": 12},
                                per_system={"interface": {"level": 8}}), ctx)
    graphene, interface = ctx.costs
    size = (data / "graphene.extxyz.gz").stat().st_size
    assert graphene == size * 36 and interface == ((data / "interface.extxyz.gz").stat().st_size + size) * 64
    assert interface > graphene
    assert fit_stage.fit_threads() == max(1, min(fit_stage.FIT_MAX_THREADS, len(os.sched_getaffinity(0))))
    assert any(f"{fit_stage.fit_threads()} thread(s) per fit" in line for line in ctx.lines)
