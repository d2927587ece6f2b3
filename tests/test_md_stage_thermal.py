"""The thermal part of the md stage (md.thermal): settings, tasks, summary.json, plots.

Fast tests run the stage with stand-in protocols (``fake_protocols``) that return known numbers; the
slow test runs the real ``md_gpu.protocols.thermal`` on a tiny graphene case.
"""
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ase.io import write

import md_gpu.protocols as protocols
from md_gpu.errors import MDRunError
from md_gpu.io import write_run_h5
from md_gpu.md_stage import MD_SETTINGS, plan_tasks, run_md, summarize_tasks
from training.structures import LATTICE, graphene

POT = Path(__file__).parent / "data" / "md" / "graphene_l08.mtp"

THERMAL = {"enabled": True, "seeds": 2, "directions": ["x", "y"], "supercell": [1, 1], "equilibrate_steps": 5,
           "production_steps": 10, "nemd": {"repeats": [1, 2], "production_steps": 10},
           "interface": {"repeats_normal": 2, "production_steps": 10}}


def _settings(thermal=None, **overrides):
    from multiscale.schema import validate

    values = {"seeds": 1, "directions": [], "elastic": {"enabled": False}, "checkpoint_every": 0,
              "stability": {"enabled": False},
              "thermal": THERMAL if thermal is None else thermal, **overrides}
    return validate(values, MD_SETTINGS, where="md", source="test")


def _ctx(tmp_path):
    """Two phases (graphene and a 'soft' copy with another thickness) and their interface."""
    fit = tmp_path / "runs" / "fit"
    fit.mkdir(parents=True)
    for system in ("graphene", "soft", "interface"):
        shutil.copy(POT, fit / f"{system}.mtp")
    data = tmp_path / "runs" / "data"
    data.mkdir()
    for system in ("graphene", "soft", "interface"):  # the data stage's 0 K cells: graphene's 60 atoms each
        write(data / f"{system}.structure.extxyz", graphene())
    out = tmp_path / "runs" / "md.partial"
    out.mkdir()
    systems = {"graphene": {"kind": "phase", "thickness_A": 3.35},
               "soft": {"kind": "phase", "thickness_A": 4.05},
               "interface": {"kind": "interface", "thickness_A": 3.35,
                             "between": ["graphene", "soft"]}}
    return SimpleNamespace(case_dir=tmp_path, out_dir=out, stage_dir=lambda name: tmp_path / "runs" / name,
                           systems=systems, map=lambda fn, items, what="": [fn(item) for item in items],
                           log=lambda msg: None, is_root=True)


K_INF, SLOPE_A = 400.0, 30.0  # fake NEMD: 1/kappa(L) = 1/K_INF + SLOPE_A / (K_INF * L)


@pytest.fixture
def fake_protocols(monkeypatch):
    """Stand-ins for hnemd, nemd, interface_nemd (and interface_tensile); ``calls`` records
    (protocol, n_atoms, keyword arguments) of every call."""
    calls = []

    def record(name, atoms, kwargs):
        calls.append((name, len(atoms), kwargs))
        return kwargs["settings"].seed

    def hnemd(ff, atoms, **kw):
        seed = record("hnemd", atoms, kw)
        kappa = {"x": 100.0, "y": 200.0}[kw["direction"]] + seed
        return {"properties": {"conductivity_W_per_mK": kappa, "conductivity_sem_W_per_mK": 1.0,
                               "length_A": atoms.cell.lengths()[0], "n_atoms": len(atoms)},
                "series": {"time_ps": [0.001 * k for k in range(2500)],
                           "running_conductivity_W_per_mK": [kappa] * 2500},
                "settings": {}, "h5": f"{kw['out_prefix']}.h5"}

    def nemd(ff, atoms, **kw):
        seed = record("nemd", atoms, kw)
        length = atoms.cell.lengths()[0]
        kappa = 1.0 / (1.0 / K_INF + SLOPE_A / (K_INF * length)) * (1 + 0.01 * seed)
        return {"properties": {"conductivity_W_per_mK": kappa, "conductivity_sem_W_per_mK": 1.0,
                               "heat_flux_W_per_m2": 1e10, "gradient_K_per_m": 1e10 / kappa, "length_A": length,
                               "n_atoms": len(atoms), "energy_balance_rel": 0.01},
                "profile": {"position_A": [0.0, length / 2], "temperature_K": [320.0, 280.0]},
                "settings": {}, "h5": f"{kw['out_prefix']}.h5"}

    def interface_nemd(ff, atoms, **kw):
        seed = record("interface_nemd", atoms, kw)
        return {"properties": {"conductance_W_per_m2K": 2e9 + 1e8 * seed, "conductance_sem_W_per_m2K": 1e8,
                               "temperature_jump_K": 5.0 - seed, "heat_flux_W_per_m2": 1e10, "n_atoms": len(atoms)},
                "profile": {"position_A": [1.0, 5.0, 9.0, 13.0], "temperature_K": [320.0, 310.0, 290.0, 280.0]},
                "interfaces_A": [7.0], "settings": {}, "h5": f"{kw['out_prefix']}.h5"}

    def interface_tensile(ff, atoms, **kw):
        record("interface_tensile", atoms, kw)
        write_run_h5(f"{kw['out_prefix']}.h5", thermo={}, settings={},
                     stress_strain={"strain": [0.0, 0.01], "stress_N_per_m": [0.0, 3.0]})
        return {"properties": {"youngs_modulus_N_per_m": 300.0}, "settings": {"n_atoms": len(atoms), "events": []}}

    for fn in (hnemd, nemd, interface_nemd, interface_tensile):
        monkeypatch.setattr(protocols, fn.__name__, fn, raising=False)
    return calls


def test_plan_tasks_adds_thermal_runs(tmp_path):
    tasks = [t for t in plan_tasks(_settings(), _ctx(tmp_path)) if t["kind"] not in ("tensile", "interface")]
    names = [t["name"] for t in tasks]
    assert names[:6] == ["graphene_hnemd_x_seed0", "graphene_hnemd_y_seed0", "graphene_nemd_L1_seed0",
                         "graphene_nemd_L2_seed0", "graphene_hnemd_x_seed1", "graphene_hnemd_y_seed1"]
    assert len(names) == 2 * 2 * 4 + 2 and names[-2:] == ["interface_nemd_seed0", "interface_nemd_seed1"]
    by_name = {t["name"]: t for t in tasks}
    assert by_name["graphene_nemd_L2_seed1"]["repeat"] == [2, 1] and by_name["interface_nemd_seed1"]["repeat"] == [1, 2] and by_name["soft_hnemd_y_seed0"]["repeat"] == [1, 1]
    assert by_name["interface_nemd_seed0"]["direction"] == "y"
    # the interface cell is half of each phase: the mean of their effective thicknesses
    assert by_name["interface_nemd_seed0"]["thickness_A"] == pytest.approx(3.7)
    assert by_name["soft_nemd_L1_seed0"]["thickness_A"] == 4.05
    only_hnemd = {**THERMAL, "nemd": {"enabled": False}, "interface": {"enabled": False}, "seeds": 1}
    assert {t["kind"] for t in plan_tasks(_settings(only_hnemd), _ctx(tmp_path / "b"))} == {"hnemd", "interface"}


def test_a_disabled_thermal_block_changes_neither_tasks_nor_summary(tmp_path, fake_protocols):
    ctx = _ctx(tmp_path)
    off = _settings({"enabled": False, "seeds": 5, "nemd": {"repeats": [3, 6]}})
    tasks = plan_tasks(off, ctx)
    assert [t["name"] for t in tasks] == [t["name"] for t in plan_tasks(_settings({}), ctx)]
    assert {t["kind"] for t in tasks} == {"interface"}
    run_md(off, ctx)
    summary = json.loads((ctx.out_dir / "summary.json").read_text())
    assert all("thermal" not in entry for entry in summary["systems"].values())
    assert set(summary["systems"]["interface"]) == {"normal", "provenance"}
    assert not list(ctx.out_dir.glob("*thermal*")) and not list(ctx.out_dir.glob("*hnemd*"))


def test_run_md_writes_the_thermal_summary_and_plots(tmp_path, fake_protocols):
    ctx = _ctx(tmp_path)
    run_md(_settings(), ctx)
    summary = json.loads((ctx.out_dir / "summary.json").read_text())
    graphene = summary["systems"]["graphene"]["thermal"]
    assert graphene["method"] == "hnemd"
    counts = {"attempted": 2, "failed": 0, "blown_up": 0}
    assert graphene["conductivity_W_per_mK"] == {"x": {"mean": 100.5, "sem": 0.5, "n": 2, **counts},
                                                 "y": {"mean": 200.5, "sem": 0.5, "n": 2, **counts}}
    length = graphene["length_dependence"]["x"]
    a = LATTICE["graphene"]["a"]  # the 60-atom cell is 5 a long
    assert length["length_nm"] == pytest.approx([0.5 * a, a], rel=1e-4)
    assert length["n_atoms"] == [60, 120]
    assert [k["n"] for k in length["conductivity_W_per_mK"]] == [2, 2]
    assert length["conductivity_W_per_mK"][0]["mean"] < length["conductivity_W_per_mK"][1]["mean"]
    # the fake kappa(L) is exactly linear in 1/L (seeds: +0 % and +1 %): the real extrapolation finds K_INF
    assert length["extrapolated_W_per_mK"]["mean"] == pytest.approx(K_INF * 1.005)
    # its sem: two lengths fix the line, a = (x2 y1 - x1 y2) / (x2 - x1) in y = 1/kappa, x = 1/L, so
    # var(a) = (x2^2 s1^2 + x1^2 s2^2) / (x2 - x1)^2 with s = sem / kappa^2 of each length's seed statistics
    # (2 seeds 1 % apart: sem 0.5 %), carried to kappa as sqrt(var(a)) kappa^2
    (x1, x2) = (1.0 / (10.0 * L) for L in length["length_nm"])
    (s1, s2) = (k["sem"] / k["mean"] ** 2 for k in length["conductivity_W_per_mK"])
    sa = np.sqrt(x2 ** 2 * s1 ** 2 + x1 ** 2 * s2 ** 2) / abs(x2 - x1)
    assert length["extrapolated_W_per_mK"]["sem"] == pytest.approx(sa * (K_INF * 1.005) ** 2, rel=1e-9)
    prov = graphene["provenance"]
    assert sorted(prov["runs"]) == sorted(f"graphene_{run}_seed{seed}.h5" for seed in (0, 1)
                                          for run in ("hnemd_x", "hnemd_y", "nemd_L1", "nemd_L2"))
    assert prov["temperature_K"] == 300.0 and prov["n_atoms"] == 60 and prov["thickness_A"] == 3.35
    assert prov["driving_force_per_A"] == MD_SETTINGS["thermal"]["driving_force_per_A"][1]
    assert prov["nemd"]["repeats"] == [1, 2] and "blown_up" not in prov
    assert summary["systems"]["soft"]["thermal"]["provenance"]["thickness_A"] == 4.05
    interface = summary["systems"]["interface"]["thermal"]
    assert interface["conductance_W_per_m2K"] == {"mean": 2.05e9, "sem": pytest.approx(5e7), "n": 2, **counts}
    assert interface["temperature_jump_K"]["mean"] == 4.5 and interface["heat_flux_W_per_m2"]["n"] == 2
    assert interface["provenance"]["thickness_A"] == pytest.approx(3.7)
    assert interface["provenance"]["delta_T_K"] == 40.0 and interface["provenance"]["n_atoms"] == 120
    assert "normal" in summary["systems"]["interface"]  # the tensile part is unchanged
    for name in ("graphene_hnemd", "graphene_thermal_length", "soft_hnemd", "interface_thermal_profile"):
        assert (ctx.out_dir / f"{name}.png").stat().st_size > 10_000, name
    # what the protocols were given: the thermal cell, the block's settings, the seed, the stage folder
    hnemd = [kw for name, n, kw in fake_protocols if name == "hnemd"]
    assert hnemd[0]["direction"] == "x" and hnemd[0]["production_steps"] == 10
    assert hnemd[0]["settings"].equilibrate_steps == 5 and hnemd[0]["settings"].checkpoint_every == 0
    assert hnemd[0]["out_prefix"] == ctx.out_dir / "graphene_hnemd_x_seed0"
    assert {(n, kw["axis"], kw["delta_T_K"]) for name, n, kw in fake_protocols if name == "interface_nemd"} \
        == {(120, "y", 40.0)}
    assert sorted(n for name, n, _ in fake_protocols if name == "nemd")[::2] == [60, 60, 120, 120]


def test_summary_keeps_only_the_runs_that_did_not_blow_up(tmp_path, fake_protocols, monkeypatch):
    good = protocols.hnemd

    def fragile(ff, atoms, **kw):
        if kw["settings"].seed == 1 and kw["direction"] == "y":
            raise MDRunError("heat current: the system blew up at step 9 (at thermal.py:1)")
        return good(ff, atoms, **kw)

    monkeypatch.setattr(protocols, "hnemd", fragile)
    ctx = _ctx(tmp_path)
    run_md(_settings(), ctx)
    graphene = json.loads((ctx.out_dir / "summary.json").read_text())["systems"]["graphene"]["thermal"]
    assert graphene["conductivity_W_per_mK"]["y"] == {"mean": 200.0, "sem": 1.0, "n": 1,  # the run's block sem
                                                      "attempted": 2, "failed": 0, "blown_up": 1}
    assert graphene["provenance"]["blown_up"] == [{"run": "graphene_hnemd_y_seed1",
                                                   "reason": "heat current: the system blew up at step 9"}]
    assert "graphene_hnemd_y_seed1.h5" not in graphene["provenance"]["runs"]

    def broken(ff, atoms, **kw):
        raise MDRunError("the system blew up")

    monkeypatch.setattr(protocols, "interface_nemd", broken)
    with pytest.raises(MDRunError, match=r"every seed of a thermal run of interface blew up "
                                         r"\(interface_nemd_seed0, interface_nemd_seed1\)"):
        run_md(_settings(), ctx)


def test_one_seed_quotes_the_block_sem_and_a_failed_extrapolation_is_named(tmp_path, fake_protocols, monkeypatch):
    good = protocols.nemd

    def noisy(ff, atoms, **kw):
        r = good(ff, atoms, **kw)
        if len(atoms) == 120:  # the longer cell: noise made kappa negative
            r["properties"]["conductivity_W_per_mK"] = -5.0
        return r

    monkeypatch.setattr(protocols, "nemd", noisy)
    ctx = _ctx(tmp_path)
    run_md(_settings({**THERMAL, "seeds": 1, "interface": {"enabled": False}}), ctx)
    graphene = json.loads((ctx.out_dir / "summary.json").read_text())["systems"]["graphene"]["thermal"]
    assert graphene["conductivity_W_per_mK"]["x"] == {"mean": 100.0, "sem": 1.0, "n": 1, "attempted": 1, "failed": 0,
                                                      "blown_up": 0}
    length = graphene["length_dependence"]["x"]
    assert "extrapolated_W_per_mK" not in length and "positive conductivities" in length["extrapolation_error"]
    assert (ctx.out_dir / "graphene_thermal_length.png").is_file()


def test_a_protocol_setup_error_names_the_settings_block(tmp_path, fake_protocols, monkeypatch):
    from md_gpu.errors import MDSetupError

    def short(ff, atoms, **kw):
        raise MDSetupError("NEMD: a 12.3 Å cell leaves fewer than 5 bins between the baths")

    monkeypatch.setattr(protocols, "nemd", short)
    with pytest.raises(MDSetupError, match=r"md.thermal.nemd \(graphene_nemd_L1_seed0\): NEMD: a 12.3 Å cell"):
        run_md(_settings(), _ctx(tmp_path))


def test_summarize_tasks_without_thermal_results_has_no_thermal_entry():
    result = {"system": "g", "kind": "tensile", "direction": "x", "potential": "g.mtp", "h5": "g_x_seed0.h5",
              "n_atoms": 60, "result": {"youngs_modulus_N_per_m": 340.0}, "name": "g_x_seed0"}
    summary = summarize_tasks([result], _settings())
    assert set(summary["systems"]["g"]) == {"directions", "provenance"}


@pytest.mark.parametrize("thermal, key", [
    ({"seeds": 0}, "md.thermal.seeds"),
    ({"directions": ["z"]}, "md.thermal.directions"),
    ({"directions": []}, "md.thermal.directions"),
    ({"directions": ["x", "x"]}, "md.thermal.directions"),
    ({"driving_force_per_A": 0.0}, "md.thermal.driving_force_per_A"),
    ({"production_steps": 9}, "md.thermal.production_steps"),
    ({"equilibrate_steps": -1}, "md.thermal.equilibrate_steps"),
    ({"supercell": [2]}, "md.thermal.supercell"),
    ({"supercell": [2, 0]}, "md.thermal.supercell"),
    ({"nemd": {"repeats": [4]}}, "md.thermal.nemd.repeats"),
    ({"nemd": {"repeats": [4, 4]}}, "md.thermal.nemd.repeats"),
    ({"nemd": {"repeats": [2, "8"]}}, "md.thermal.nemd.repeats"),
    ({"nemd": {"delta_T_K": 0.0}}, "md.thermal.nemd.delta_T_K"),
    ({"nemd": {"delta_T_K": 700.0}}, "md.thermal.nemd.delta_T_K"),
    ({"nemd": {"bath_width_A": -1.0}}, "md.thermal.nemd.bath_width_A"),
    ({"nemd": {"production_steps": 0}}, "md.thermal.nemd.production_steps"),
    ({"interface": {"repeats_normal": 3}}, "md.thermal.interface.repeats_normal"),
    ({"interface": {"repeats_normal": 0}}, "md.thermal.interface.repeats_normal"),
    ({"interface": {"delta_T_K": -5.0}}, "md.thermal.interface.delta_T_K"),
    ({"interface": {"bath_width_A": 0.0}}, "md.thermal.interface.bath_width_A"),
    ({"interface": {"production_steps": 0}}, "md.thermal.interface.production_steps"),
])
def test_bad_thermal_settings_name_the_key(tmp_path, thermal, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + ":"):
        run_md(_settings({"enabled": True, **thermal}), _ctx(tmp_path))


def test_a_wrong_thermal_key_or_type_is_named():
    from multiscale.errors import CaseError

    with pytest.raises(CaseError, match="unknown key 'md.thermal.nemd.repeat'"):
        _settings({"nemd": {"repeat": [2, 4]}})
    with pytest.raises(CaseError, match="'md.thermal.enabled' must be true/false"):
        _settings({"enabled": "yes"})


@pytest.mark.slow
def test_real_thermal_protocols_through_the_stage(tmp_path):
    """HNEMD along x and NEMD at two lengths with md_gpu.protocols.thermal on the 60-atom graphene cell
    (graphene_l08.mtp; tiny runs: the numbers are noise, the plumbing is real). No interface: the test data
    hold no C/B potential."""
    from md_gpu.io import read_run_h5

    ctx = _ctx(tmp_path)
    ctx.systems = {"graphene": ctx.systems["graphene"]}
    tiny = {"enabled": True, "seeds": 1, "directions": ["x"], "supercell": [1, 1], "equilibrate_steps": 200,
            "production_steps": 400, "nemd": {"repeats": [3, 6], "production_steps": 400},
            "interface": {"enabled": False}}
    start = time.perf_counter()
    assert run_md(_settings(tiny, thermo_every=20), ctx)["runs"] == 3
    elapsed = time.perf_counter() - start
    thermal = json.loads((ctx.out_dir / "summary.json").read_text())["systems"]["graphene"]["thermal"]
    kappa = thermal["conductivity_W_per_mK"]["x"]
    # one seed: the summary carries that run's conductivity and its own sem (noise at 400 steps)
    run = read_run_h5(ctx.out_dir / "graphene_hnemd_x_seed0.h5")["results"]
    assert kappa["n"] == 1 and kappa["mean"] == run["conductivity_W_per_mK"]
    assert kappa["sem"] == run["conductivity_sem_W_per_mK"] > 0
    length = thermal["length_dependence"]["x"]
    # NEMD length: distance between the bath centres, half the cell (3 and 6 cells of 12.29 Å)
    assert length["length_nm"] == pytest.approx([1.843, 3.686], rel=0.02) and length["n_atoms"] == [180, 360]
    # 400 steps (seeded, deterministic): kappa(1.83 nm) = -4.0 +- 21, kappa(3.67 nm) = 389 +- 1.8e3 W/(m K):
    # no diffusive limit, so no extrapolated value, and the reason names the numbers
    short, long_ = (k["mean"] for k in length["conductivity_W_per_mK"])
    assert short <= 0 and "extrapolated_W_per_mK" not in length
    assert length["extrapolation_error"].startswith("extrapolate_length needs >= 2 lengths with positive")
    assert f"kappa = [{short}, {long_}]" in length["extrapolation_error"]
    assert sorted(thermal["provenance"]["runs"]) == ["graphene_hnemd_x_seed0.h5", "graphene_nemd_L3_seed0.h5",
                                                     "graphene_nemd_L6_seed0.h5"]
    stored = read_run_h5(ctx.out_dir / "graphene_nemd_L6_seed0.h5")
    assert stored["settings"]["delta_T_K"] == 40.0 and stored["settings"]["seed"] == 0
    assert stored["results"]["conductivity_W_per_mK"] == pytest.approx(length["conductivity_W_per_mK"][1]["mean"])
    for name in ("graphene_hnemd", "graphene_thermal_length"):
        assert (ctx.out_dir / f"{name}.png").stat().st_size > 10_000
    print(f"3 thermal runs (60 + 180 + 360 atoms, 200 + 400 (+100 transient) steps): {elapsed:.1f} s")
