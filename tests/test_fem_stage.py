"""The fem stage and CLI end to end on a tiny sample; serial vs ``mpirun -n 2``."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.contracts import ContractError
from fem import fem_stage, materials as M
from fem.__main__ import main as fem_main
from fem.errors import FemInputError

PROPS = Path("tests/data/fem/properties_graphene_borophene.json").resolve()


def tiny_settings():
    s = fem_stage.defaults()
    s.update(length_nm=8.0, height_nm=6.0, mesh_size_nm=0.5, interface_width_nm=1.0, ell_nm=1.0)
    s["stripes"].update(period_nm=4.0, fraction=0.5, orientation="y")
    s["islands"].update(radius_nm=1.2, fraction=0.15)
    s["loading"].update(max_strain=0.2, n_steps=10)
    s["thermal"]["enabled"] = False   # heat conduction has its own stage test (tests/test_fem_thermal.py)
    s["studies"] = [{"name": "stripes_fraction", "geometry": "stripes", "variable": "fraction", "values": [0.0, 1.0]},
                    {"name": "islands_fraction", "geometry": "islands", "variable": "fraction", "values": [0.15, 0.0]}]
    return s


class Ctx:
    """The part of the runner's context the stage uses."""

    comm = None

    def __init__(self, case_dir: Path):
        self.case_dir = case_dir
        self.out_dir = case_dir / "runs" / "fem.partial"
        self.out_dir.mkdir(parents=True)
        self.lines = []

    def stage_dir(self, name):
        return self.case_dir / "runs" / name

    def log(self, msg):
        self.lines.append(msg)


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    case = tmp_path_factory.mktemp("case")
    (case / "runs" / "constitutive").mkdir(parents=True)
    shutil.copy(PROPS, case / "runs" / "constitutive" / "properties.json")
    ctx = Ctx(case)
    summary = fem_stage.run_fem(tiny_settings(), ctx)
    return ctx, summary


def test_stage_writes_results_fields_and_plots(stage_run):
    ctx, summary = stage_run
    out = ctx.out_dir
    results = json.loads((out / "fem_results.json").read_text())
    assert results["format"] == fem_stage.RESULTS_FORMAT and summary["results"] == "fem_results.json"
    assert results["properties"] == str(ctx.case_dir / "runs" / "constitutive" / "properties.json")
    # fem.phases [] (default): the two phases of the one interface of properties.json (no case systems here)
    assert results["settings"]["phases"] == ["graphene", "borophene"]
    main = results["tensile"]
    assert main["reuss_N_per_m"] <= main["modulus_N_per_m"] <= main["voigt_N_per_m"]
    assert main["failed"] and 0 < main["strength_N_per_m"] < 12.0   # below the weaker phase's strength
    for name in ("tensile_fields.xdmf", "tensile_fields.h5", "tensile_curve.png", "tensile_damage.png",
                 "stripes_fraction.json", "stripes_fraction.csv", "stripes_fraction.png", "islands_fraction.json",
                 "islands_fraction.png"):
        assert (out / name).stat().st_size > 0, name
    # the sweep tables: a JSON file per study and, compact, in the stage summary the report shows
    table = json.loads((out / "islands_fraction.json").read_text())
    assert table["variable"] == "fraction" and table["units"]["strength_N_per_m"] == "N/m"
    assert summary["studies"]["stripes_fraction"][1]["fraction"] == 1.0
    assert summary["studies"]["islands_fraction"][0]["fraction_borophene"] == pytest.approx(
        table["rows"][0]["fraction_borophene"], abs=1e-4)
    assert main["materials"]["graphene|borophene"]["strength_source"].endswith("= 9.5 N/m")
    assert any("interface band 1 nm < 4 ell" in n for n in main["notes"])
    assert ctx.lines and "main run" in " ".join(ctx.lines)


def test_sweep_end_points_are_the_homogeneous_phases(stage_run):
    ctx, _ = stage_run
    props = M.read_properties(PROPS)
    rows = json.loads((ctx.out_dir / "fem_results.json").read_text())["studies"][0]["rows"]
    for row, phase in zip(rows, ("graphene", "borophene")):
        mat = M.phase_material(props, phase)
        assert row["modulus_N_per_m"] == pytest.approx(mat.E1, rel=1e-6)
        assert row["strength_N_per_m"] == pytest.approx(mat.strength_x, rel=0.02)
    table = (ctx.out_dir / "stripes_fraction.csv").read_text().splitlines()
    assert table[0].startswith("value,fraction_borophene,modulus_N_per_m") and len(table) == 3


def test_a_one_phase_island_point_takes_the_stripe_points_result_and_the_work_is_summed(stage_run):
    ctx, _ = stage_run
    results = json.loads((ctx.out_dir / "fem_results.json").read_text())
    work = json.loads((ctx.out_dir / fem_stage.WORK_FILE).read_text())
    stripes, islands = results["studies"]
    assert [w["label"] for w in work["runs"]] == ["tensile", "stripes_fraction_0", "stripes_fraction_1",
                                                  "islands_fraction_0", "islands_fraction_1"]
    reused = work["runs"][-1]
    assert reused["reused_from"] == "stripes_fraction_0" and reused["displacement_solves"] == 0
    point = json.loads((ctx.out_dir / "points" / "islands_fraction_1.json").read_text())["result"]
    assert point["reused_from"] == "stripes_fraction_0" and point["geometry"]["kind"] == "islands"
    same = ("modulus_N_per_m", "strength_N_per_m", "failure_strain", "failed", "voigt_N_per_m", "reuss_N_per_m")
    assert {k: islands["rows"][1][k] for k in same} == {k: stripes["rows"][0][k] for k in same}
    assert (ctx.out_dir / "islands_fraction_1_damage.png").stat().st_size > 0
    assert work["samples"] == 5 and work["reused"] == 1 and results["tensile"]["reused_from"] is None
    assert work["displacement_solves"] == sum(w["displacement_solves"] for w in work["runs"]) > 0
    main = results["tensile"]
    assert work["runs"][0]["load_steps"] == len(main["curve"]["strain"]) > 1
    assert work["runs"][0]["displacement_solves"] >= len(main["curve"]["strain"])
    dof_steps = sum(w["n_dofs_displacement"] * w["load_steps"] for w in work["runs"])
    assert work["dof_steps"] == dof_steps and work["dofs_per_s"] == pytest.approx(dof_steps / work["wall_s"])


def test_rerun_reuses_finished_sweep_points(stage_run):
    ctx, _ = stage_run
    point = ctx.out_dir / "points" / "stripes_fraction_0.json"
    stamp = point.stat().st_mtime_ns
    from fem.study import run_sweep

    s = {**tiny_settings(), "phases": ["graphene", "borophene"]}  # as the stage resolved them
    again = run_sweep(s, s["studies"][0], 0, M.read_properties(PROPS), out_dir=ctx.out_dir)
    assert point.stat().st_mtime_ns == stamp
    assert again["rows"][0]["modulus_N_per_m"] == pytest.approx(M.phase_material(M.read_properties(PROPS),
                                                                                 "graphene").E1, rel=1e-6)


@pytest.mark.parametrize("change,message", [
    ({"geometry": "hexagons"}, "fem.geometry"),
    ({"model": "AT3"}, "fem.model"),
    ({"load_direction": "z"}, "fem.load_direction"),
    ({"mesh_size_nm": 0.0}, "fem.mesh_size_nm"),
    ({"geometry": "mesh_file"}, "fem.mesh_file"),
    ({"studies": [{"name": "s", "geometry": "stripes", "variable": "colour", "values": [1]}]},
     r"fem.studies\[0\].variable"),
    ({"studies": [{"name": "s", "geometry": "stripes", "variable": "fraction"}]}, r"fem.studies\[0\].values"),
])
def test_bad_settings_name_the_key(tmp_path, change, message):
    s = {**tiny_settings(), **change}
    props = M.read_properties(PROPS)
    with pytest.raises(FemInputError, match=message):
        if "studies" in change:
            from fem.study import run_sweep

            run_sweep(s, s["studies"][0], 0, props, out_dir=tmp_path)
        else:
            fem_stage.run_all(s, props, out_dir=tmp_path)


def test_stage_refuses_properties_of_another_version_before_any_solve(tmp_path):
    (tmp_path / "runs" / "constitutive").mkdir(parents=True)
    path = tmp_path / "runs" / "constitutive" / "properties.json"
    path.write_text(PROPS.read_text().replace('"multiscale-properties/2"', '"multiscale-properties/1"'))
    ctx = Ctx(tmp_path)
    with pytest.raises(ContractError, match=rf"^{re.escape(str(path))}: key 'format': found version 1 of "
                                            r"multiscale-properties, expected version 2 .* rerun the constitutive "
                                            r"stage that writes it with --force"):
        fem_stage.run_fem(tiny_settings(), ctx)
    assert not any(ctx.out_dir.iterdir())


CLI_ARGS = ["--length-nm", "8", "--height-nm", "4", "--mesh-size-nm", "0.5", "--period-nm", "4",
            "--fraction", "0.5", "--ell-nm", "1", "--interface-width-nm", "1", "--max-strain", "0.2", "--n-steps", "10",
            "--no-fields"]


def test_cli_tensile_and_sweep(tmp_path, capsys):
    assert fem_main(["tensile", "--properties", str(PROPS), "--out", str(tmp_path / "t"), *CLI_ARGS]) == 0
    result = json.loads((tmp_path / "t" / "fem_results.json").read_text())
    assert result["tensile"]["failed"] and "strength" in capsys.readouterr().out
    assert fem_main(["sweep", "--properties", str(PROPS), "--out", str(tmp_path / "s"), "--no-damage",
                     "--variable", "fraction", "--values", "0,1", *CLI_ARGS]) == 0
    rows = json.loads((tmp_path / "s" / "fem_results.json").read_text())["studies"][0]["rows"]
    assert rows[1]["modulus_N_per_m"] == pytest.approx(M.phase_material(M.read_properties(PROPS), "borophene").E1,
                                                       rel=1e-6)
    assert fem_main(["tensile", "--properties", str(tmp_path / "none.json"), "--out", str(tmp_path / "x")]) == 1
    assert "properties file not found" in capsys.readouterr().err


def _clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "OPAL_"))}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    return env


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("geometry", ["stripes", "islands"])
def test_serial_and_two_ranks_give_the_same_curve(tmp_path, geometry):
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed")
    curves = {}
    for n in (1, 2):
        out = tmp_path / f"n{n}"
        cmd = [sys.executable, "-m", "fem", "tensile", "--properties", str(PROPS), "--out", str(out),
               "--linear", "direct", *CLI_ARGS, "--geometry", geometry]
        if geometry == "islands":   # two seeded islands with their bands, placed on rank 0
            cmd += ["--length-nm", "12", "--height-nm", "8", "--radius-nm", "1.5", "--fraction", "0.1"]
        if n > 1:
            cmd = ["mpirun", "--oversubscribe", "-n", str(n), *cmd]
        proc = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, timeout=300,
                              cwd=Path(__file__).resolve().parents[1])
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = json.loads((out / "fem_results.json").read_text())["tensile"]
        assert result["n_ranks"] == n and result["geometry"]["kind"] == geometry
        curves[n] = result
    a, b = curves[1], curves[2]
    assert a["curve"]["strain"] == pytest.approx(b["curve"]["strain"], rel=1e-12)
    assert a["curve"]["stress"] == pytest.approx(b["curve"]["stress"], rel=1e-8, abs=1e-8 * a["strength_N_per_m"])
    assert a["modulus_N_per_m"] == pytest.approx(b["modulus_N_per_m"], rel=1e-8)


def test_unfailed_strength_stops_the_stage_unless_allowed_and_is_recorded(tmp_path):
    """A strength from runs that never failed (properties.json strength_from_unfailed) stops the stage before
    any solve, naming the phase, direction and the setting; allowed, the results record it."""
    props = M.read_properties(PROPS)
    props["phases"]["borophene"]["directions"]["x"].update(strength_from_unfailed=True, runs_failed=0,
                                                           runs_yielded=0, runs_unfailed=2)
    s = tiny_settings()
    s.update(damage=False, studies=[], write_fields=False)
    s["loading"].update(max_strain=0.01, n_steps=1)
    s["consistency"]["enabled"] = False
    with pytest.raises(FemInputError, match=r"phases.borophene.directions.x.ultimate_strength_N_per_m' = 12 N/m comes "
                                            r"from tensile runs that did not fail .*fem.allow_unfailed_strength: true"):
        fem_stage.run_all(s, props, out_dir=tmp_path / "a")
    assert not (tmp_path / "a" / "fem_results.json").exists()
    s["allow_unfailed_strength"] = True
    summary = fem_stage.run_all(s, props, out_dir=tmp_path / "b")
    results = json.loads((tmp_path / "b" / "fem_results.json").read_text())
    assert results["settings"]["allow_unfailed_strength"] is True
    assert results["inputs"]["unfailed_strength"] == ["phases.borophene.directions.x.ultimate_strength_N_per_m"]
    assert results["consistency"] == {"skipped": "fem.consistency.enabled is false"}
    assert any("allow_unfailed_strength" in n for n in summary["input_notes"])
