"""Subsampling, summaries, the data stage and the ``multiscale data`` sub-commands."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from training import cli, data_stage, datasets, structures, subsample, summary


def _frames(strains=(0.0, 0.0, 0.1, 0.1, 0.2, 0.2), stress_xx=0.01):
    out = []
    for k, e in enumerate(strains):
        atoms = structures.graphene(repeat=(3, 2))
        atoms.set_cell(atoms.cell.array * [[1 + e], [1], [1]], scale_atoms=True)
        forces = np.zeros((len(atoms), 3))
        forces[0] = [0.5 * k, -1.0, 0.0]
        frame = datasets.with_reference(atoms, energy=-10.0 * len(atoms) + k, forces=forces,
                                        stress=[stress_xx * (1 + k), -0.002, 0, 0, 0, 0.001])
        frame.info.update(system="graphene", temperature_K=300.0 * (1 + k % 2), strain=np.array([e, 0.0]),
                          engine="test")
        out.append(frame)
    return out


def test_every_kth_and_errors():
    np.testing.assert_array_equal(subsample.every_kth(10, 3), [0, 3, 6, 9])
    np.testing.assert_array_equal(subsample.every_kth(10, 4, offset=1), [1, 5, 9])
    with pytest.raises(ValueError, match="k must be >= 1"):
        subsample.every_kth(10, 0)


def test_farthest_point_picks_one_per_cluster_and_is_seeded():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    features = np.vstack([c + rng.normal(0, 0.1, (20, 2)) for c in centres])
    picked = subsample.farthest_point(features, 3, seed=4)
    assert sorted(set(picked // 20)) == [0, 1, 2]
    np.testing.assert_array_equal(picked, subsample.farthest_point(features, 3, seed=4))
    with pytest.raises(ValueError, match="n_frames must be in"):
        subsample.farthest_point(features, 0)


def test_descriptor_separates_strained_frames_and_fps_spans_them():
    frames = _frames()
    x = subsample.descriptors(frames)
    assert x.shape[0] == len(frames)
    np.testing.assert_allclose(x[0], x[1])           # identical structures
    assert np.linalg.norm(x[0] - x[4]) > 0.1          # 0 % and 20 % strain differ
    picked = subsample.subsample(frames, method="fps", n_frames=3, seed=0)
    assert sorted({round(float(f.info["strain"][0]), 2) for f in picked}) == [0.0, 0.1, 0.2]
    assert len(subsample.subsample(frames, method="every", every=2)) == 3
    with pytest.raises(ValueError, match="data.subsample.method"):
        subsample.subsample(frames, method="random")


def test_summary_numbers_and_units(tmp_path):
    frames = _frames()
    info = summary.summarize(frames, thickness_A=3.35)
    assert info["n_frames"] == 6 and info["species"] == {"C": 6 * 24}
    assert info["temperatures_K"] == {"300": 3, "600": 3}
    assert info["strain"]["exx"]["max"] == pytest.approx(0.2) and info["strain"]["states"] == 3
    assert info["energy_eV_per_atom"]["min"] == pytest.approx(-10.0)
    assert info["force_eV_per_A"]["max"] == pytest.approx(2.5)
    lz = frames[0].cell[2, 2]
    # 0.01 eV/A^3 x L_z -> N/m; over 3.35 A -> GPa
    assert info["stress_2d_N_per_m"]["xx"]["min"] == pytest.approx(0.01 * lz * 16.021766208)
    assert info["stress_GPa"]["xx"]["min"] == pytest.approx(0.01 * lz / 3.35 * 160.21766208)
    text = summary.format_summary(info, title="t")
    assert "frames 6" in text and "N/m" in text and "GPa" in text
    png = summary.plot_histograms(frames, tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_prints_reference_engine_numbers():
    meta = {"engine": {"engine": "tblite-gfn1", "method": "GFN1-xTB",
                       "theory": "tight binding (GFN-xTB), not DFT", "versions": {"tblite": "0.8.0"}},
            "reference": {"lattice_A": {"a": 2.45716}, "C11_N_per_m": 350.0, "C22_N_per_m": 351.0,
                          "C12_N_per_m": 60.0, "E_x_N_per_m": 340.0, "E_y_N_per_m": 341.0, "nu_xy": 0.17}}
    text = summary.format_summary(summary.summarize(_frames(), metadata=meta))
    assert "not DFT" in text and "a = 2.4572 A" in text and "E_x 340.0" in text


class _Ctx(SimpleNamespace):
    def log(self, msg):
        self.lines.append(msg)

    def map(self, fn, items):
        return [fn(item) for item in items]

    def progress(self, done, total, what=""):
        pass


def _ctx(tmp_path, systems):
    out = tmp_path / "runs" / "data.partial"
    out.mkdir(parents=True)
    return _Ctx(case_dir=tmp_path, out_dir=out, systems=systems, is_root=True, lines=[])


def _settings(**over):
    from multiscale.schema import validate

    return validate(over, data_stage.DATA_SETTINGS, where="data", source="case.yaml")


def test_data_stage_reads_case_data_and_writes_artifacts(tmp_path):
    datasets.write(tmp_path / "data" / "graphene.extxyz.gz", _frames())
    ctx = _ctx(tmp_path, {"graphene": {"structure": "graphene", "thickness_A": 3.35, "dataset": ""}})
    result = data_stage.run_data(_settings(subsample={"method": "every", "every": 2}), ctx)
    assert result["systems"]["graphene"]["n_frames"] == 3
    assert len(datasets.read(ctx.out_dir / "graphene.extxyz.gz")) == 3
    assert (ctx.out_dir / "graphene_hist.png").is_file()
    assert json.loads((ctx.out_dir / "summary.json").read_text())["systems"]["graphene"]["n_frames"] == 3


def test_data_stage_missing_dataset_and_bad_values(tmp_path):
    ctx = _ctx(tmp_path, {"borophene": {"structure": "borophene_chi3", "dataset": ""}})
    with pytest.raises(datasets.DatasetError, match=r"borophene\.extxyz\.gz: dataset of system 'borophene' "
                                                    r"not found.*data\.generate: true"):
        data_stage.run_data(_settings(), ctx)
    with pytest.raises(ValueError, match="data.engine: 'dft' is not one of"):
        data_stage.run_data(_settings(engine="dft"), ctx)
    with pytest.raises(ValueError, match="data.subsample.method: 'all'"):
        data_stage.run_data(_settings(subsample={"method": "all"}), ctx)


def test_data_stage_generates_missing_dataset(tmp_path):
    ctx = _ctx(tmp_path, {"graphene": {"structure": "graphene", "dataset": ""}})
    settings = _settings(generate=True, reference_scan=False, engine="python:ase.calculators.lj.LennardJones",
                         engine_settings={"sigma": 1.3, "epsilon": 0.2, "rc": 3.0, "smooth": True},
                         aimd={"temperatures_K": [300], "strain_modes": ["x"], "strains": [0.0, 0.05],
                               "equilibration_steps": 2, "settle_steps": 1, "stride_steps": 1,
                               "frames_per_strain": 2}, ripples=2, strain_frames=3)
    result = data_stage.run_data(settings, ctx)
    assert result["systems"]["graphene"]["n_frames"] == 4 + 2 + 3  # AIMD, 2 ripple and 3 strain frames
    assert "LennardJones" in result["systems"]["graphene"]["engine"]
    meta = json.loads((ctx.out_dir / "graphene.meta.json").read_text())
    assert meta["plan"]["strains"] == [0.0, 0.05] and meta["ripples"]["frames"] == 2
    assert meta["strain_frames"]["frames"] == 3 and meta["n_frames"] == 9
    assert [a.info["chain"] for a in datasets.read(ctx.out_dir / "graphene.extxyz.gz")][-5:] == \
        ["ripples"] * 2 + ["strains"] * 3
    assert not list((ctx.out_dir / "generated").glob("*.work"))  # checkpoints removed once finished


def test_cli_summary_convert_subsample(tmp_path, capsys):
    src = datasets.write(tmp_path / "a.extxyz", _frames())
    assert cli.main(["summary", str(src), "--png", str(tmp_path / "h.png")]) == 0
    out = capsys.readouterr().out
    assert "frames 6" in out and (tmp_path / "h.png").is_file()
    assert cli.main(["convert", str(src), str(tmp_path / "b.extxyz.gz")]) == 0
    assert len(datasets.read(tmp_path / "b.extxyz.gz")) == 6
    assert cli.main(["subsample", str(src), str(tmp_path / "c.extxyz"), "--method", "every", "--every", "3"]) == 0
    assert len(datasets.read(tmp_path / "c.extxyz")) == 2
    assert cli.main(["summary", str(tmp_path / "missing.extxyz")]) == 1
    assert "missing.extxyz: dataset file not found" in capsys.readouterr().err


def test_cli_registers_in_the_data_group():
    from multiscale.cli import build_parser

    args = build_parser().parse_args(["data", "summary", "x.extxyz"])
    assert args.func.__name__ == "_cmd_summary" and Path(args.files[0]).name == "x.extxyz"


def test_cli_aimd_generates_from_case_yaml(tmp_path, capsys):
    import yaml

    case = {"systems": {"sheet": {"structure": "graphene"}},
            "data": {"engine": "python:ase.calculators.lj.LennardJones", "reference_scan": False,
                     "engine_settings": {"sigma": 1.3, "epsilon": 0.2, "rc": 3.0, "smooth": True},
                     "aimd": {"temperatures_K": [300], "strain_modes": ["y"], "strains": [0.0, 0.05],
                              "equilibration_steps": 2, "settle_steps": 1, "stride_steps": 1,
                              "frames_per_strain": 1}}}
    (tmp_path / "case.yaml").write_text(yaml.safe_dump(case))
    assert cli.main(["aimd", str(tmp_path), "--out", str(tmp_path / "gen")]) == 0
    frames = datasets.read(tmp_path / "gen" / "sheet.extxyz.gz")
    assert [list(f.info["strain"]) for f in frames] == [[0.0, 0.0], [0.0, 0.05]]
    assert cli.main(["aimd", str(tmp_path), "--system", "nothere"]) == 2
    assert "system 'nothere' is not in" in capsys.readouterr().err
