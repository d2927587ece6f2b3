"""The simple shear task (md_gpu.tasks.shear, md.shear): off by default, C66 of a phase by a shear test."""
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
from ase.build import bulk
from ase.io import write

from md_gpu.forcefields.loading import load_forcefield
from md_gpu.md_stage import MD_SETTINGS, plan_tasks, run_task, summarize_tasks
from md_gpu.protocols import static_elastic_constants
from md_gpu.tasks import shear


def _settings(**values):
    from multiscale.schema import validate

    return validate(values, MD_SETTINGS, where="md", source="test")


def _ctx(tmp_path):
    """Stand-in potentials in fit/, the data stage's 0 K cells in data/ (the interface's: a stand-in)."""
    (tmp_path / "fit").mkdir()
    (tmp_path / "data").mkdir()
    for name in ("cu", "gb"):
        (tmp_path / "fit" / f"{name}.mtp").write_text("stand-in")
    write(tmp_path / "data" / "cu.structure.extxyz", bulk("Cu", "fcc", a=3.61, cubic=True).repeat((1, 1, 2)))
    (tmp_path / "data" / "gb.structure.extxyz").write_text("stand-in")
    return SimpleNamespace(case_dir=tmp_path, out_dir=tmp_path, stage_dir=lambda name: tmp_path / name,
                           systems={"cu": {"kind": "phase"}, "gb": {"kind": "interface", "between": ["cu"]}})


def test_shear_is_off_by_default_and_plans_one_run_per_phase_and_seed(tmp_path):
    ctx = _ctx(tmp_path)
    assert not [t for t in plan_tasks(_settings(), ctx) if t["kind"] == "shear"]
    tasks = plan_tasks(_settings(seeds=2, directions=["x"], shear={"enabled": True}), ctx)
    assert [t["name"] for t in tasks if t["system"] == "cu"][:4] == ["cu_x_seed0", "cu_elastic_seed0", "cu_shear_seed0",
                                                                     "cu_x_seed1"]
    assert [t["name"] for t in tasks if t["kind"] == "shear"] == ["cu_shear_seed0", "cu_shear_seed1"]  # no interface
    assert shear.strains({"max_strain": 0.01, "points": 2}) == pytest.approx([-0.01, -0.005, 0.0, 0.005, 0.01])


@pytest.mark.parametrize("block, key", [({"max_strain": 0.0}, "md.shear.max_strain"),
                                        ({"max_strain": 0.1}, "md.shear.max_strain"),
                                        ({"points": 0}, "md.shear.points"),
                                        ({"sample_steps": 0}, "md.shear.sample_steps")])
def test_bad_shear_settings_name_the_key(block, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + ":"):
        shear.check(_settings(shear=block))


def test_shear_c66_of_morse_copper_at_1K_matches_static_finite_differences(tmp_path):
    """32 atoms of Girifalco-Weizer Morse Cu at 1 K: the shear test's C66 (= C44, cubic) against the static
    0 K finite differences of the same force field; a test that measured tension instead (C11 = 1.5 x C66
    here) or took the tensor shear strain for the engineering one (a factor of two) would be far off."""
    ctx = _ctx(tmp_path)
    settings = _settings(temperature_K=1.0, dt_fs=2.0, equilibrate_steps=800, thermo_every=5, barostat_tau_fs=200.0,
                         checkpoint_every=0, seeds=1, directions=[], elastic={"enabled": False},
                         stability={"enabled": False}, supercell=[2, 2], shear={"enabled": True, "sample_steps": 200})
    (task,) = [{**t, "potential": "morse-cu", "seed": 3} for t in plan_tasks(settings, ctx) if t["kind"] == "shear"]
    result = pickle.loads(pickle.dumps(run_task))(task)  # what ctx.map sends to a rank
    static = static_elastic_constants(load_forcefield("morse-cu"), bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2))
    assert result["unit"] == "GPa" and result["n_atoms"] == 32
    assert result["result"]["C66"] == pytest.approx(static["C66"], rel=0.02)
    assert static["C11"] > 1.4 * result["result"]["C66"]
    stress = result["result"]["stress_xy"]
    assert stress[0] == pytest.approx(-stress[-1], rel=0.02)  # linear response about the unsheared cell
    entry = summarize_tasks([result], settings)["systems"]["cu"]
    assert entry["shear_GPa"]["C66"] == {"mean": result["result"]["C66"], "sem": None, "n": 1}
    assert entry["shear_GPa"]["temperature_K"] == 1.0 and len(entry["shear_GPa"]["strains"]) == 5
    assert list(entry) == ["provenance", "shear_GPa"]
