"""The stripe heterostructure of the FE-vs-MD consistency check (md_gpu.heterostructure, md stage wiring)."""
from types import SimpleNamespace

import numpy as np
import pytest

from md_gpu import heterostructure
from md_gpu.md_stage import MD_SETTINGS, plan_tasks, summarize_tasks
from training.structures import LATTICE

H = {"enabled": True, "graphene_cells_y": 8, "borophene_cells_y": 4, "repeat_x": 2, "seeds": 2,
     "compliance_periods": 2}


def test_stripe_cell_geometry():
    atoms, g = heterostructure.stripe_cell(H)
    symbols = np.array(atoms.get_chemical_symbols())
    # graphene: 6 x 8 rectangular 4-atom cells; chi3 borophene: 5 x 4 cells of 8 atoms; twice along x
    assert (symbols == "C").sum() == 2 * 6 * 8 * 4 and (symbols == "B").sum() == 2 * 5 * 4 * 8
    assert g["n_atoms"] == len(atoms) == 704
    a, b = LATTICE["graphene"]["a"], LATTICE["borophene"]["b"]
    assert g["period_nm"] == pytest.approx(atoms.cell[1, 1] / 10) and g["length_nm"] == pytest.approx(2 * 0.6 * a)
    # stripe widths: 8 x sqrt(3) a_C = 34.05 A of graphene and 4 b_B = 33.93 A of borophene
    assert g["fraction_B"] == pytest.approx(4 * b / (4 * b + 8 * 3 ** 0.5 * a), abs=0.01)
    assert not atoms.pbc[2] or atoms.cell[2, 2] >= 15  # a sheet with vacuum


def test_normal_modulus_and_summary():
    c = {"C11": 300.0, "C22": 200.0, "C12": 60.0, "C66": 80.0}
    assert heterostructure.normal_modulus(c) == pytest.approx(200.0 - 60.0 ** 2 / 300.0)
    runs = [{"elastic_N_per_m": {**c, "C22": c22}, "youngs_modulus_normal_N_per_m": e, "geometry": {"period_nm": 6.8}}
            for c22, e in ((190.0, 178.0), (210.0, 198.0))]
    out = heterostructure.summarize(runs, ["graphene", "borophene"])
    assert out["youngs_modulus_normal_N_per_m"]["mean"] == pytest.approx(188.0)
    assert out["youngs_modulus_normal_N_per_m"]["sem"] == pytest.approx(10.0) and out["elastic_N_per_m"]["C22"]["n"] == 2
    assert out["geometry"] == {"period_nm": 6.8, "between": ["graphene", "borophene"]}


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"md.heterostructure.repeat_x: 0 must be >= 1"):
        heterostructure.check_settings({**H, "repeat_x": 0})
    with pytest.raises(ValueError, match=r"md.heterostructure: the interface system's structure 'my.extxyz'"):
        heterostructure.check_settings(H, "my.extxyz")
    heterostructure.check_settings(H, "graphene_borophene_interface")  # the builder, by its alias
    with pytest.raises(ValueError, match=r"md.heterostructure.compliance_periods: 1 must be 0 \(none\) or >= 2: "
                                         r"1 would take the interfaces' compliance from the checked cell itself"):
        heterostructure.check_settings({**H, "compliance_periods": 1})
    assert heterostructure.compliance_cell_settings(H) == {**H, "graphene_cells_y": 16, "borophene_cells_y": 8,
                                                           "repeat_x": 1}


def test_md_stage_plans_and_summarizes_the_heterostructure(tmp_path):
    from multiscale.schema import validate

    fit = tmp_path / "fit"
    fit.mkdir()
    for name in ("graphene", "gb"):
        (fit / f"{name}.mtp").write_text("stand-in")
    ctx = SimpleNamespace(case_dir=tmp_path, out_dir=tmp_path, stage_dir=lambda name: fit,
                          systems={"graphene": {"kind": "phase", "structure": "graphene", "thickness_A": 3.35},
                                   "gb": {"kind": "interface", "structure": "interface",
                                          "between": ["graphene", "borophene"]}})
    settings = validate({"seeds": 1, "heterostructure": H}, MD_SETTINGS, where="md", source="test")
    tasks = [t for t in plan_tasks(settings, ctx) if t["kind"] == "heterostructure"]
    assert [t["name"] for t in tasks] == ["gb_heterostructure_seed0", "gb_heterostructure_seed1"]
    result = {"elastic_N_per_m": {"C11": 300.0, "C22": 200.0, "C12": 60.0, "C66": 80.0},
              "youngs_modulus_normal_N_per_m": 188.0, "geometry": {"period_nm": 6.8}}
    results = [{**tasks[0], "result": result}, {**tasks[1], "blew_up": "exploded", "result": None}]
    summary = summarize_tasks(results, settings)["systems"]["gb"]
    assert summary["heterostructure"]["youngs_modulus_normal_N_per_m"]["n"] == 1
    assert summary["heterostructure"]["geometry"]["between"] == ["graphene", "borophene"]
    assert summary["provenance"]["blown_up"] == [{"run": "gb_heterostructure_seed1", "reason": "exploded"}]
    off = validate({"seeds": 1}, MD_SETTINGS, where="md", source="test")
    assert not [t for t in plan_tasks(off, ctx) if t["kind"] == "heterostructure"]


def test_md_stage_plans_the_low_temperature_twin_with_the_interface_mtp_on_each_phase(tmp_path):
    """md.heterostructure.low_temperature (default): the stripe cell once at md.elastic.low_temperature_K,
    and each phase's own cell with the interface's potential; summarized as heterostructure.low_T."""
    from multiscale.schema import validate

    fit = tmp_path / "fit"
    fit.mkdir()
    for name in ("graphene", "borophene", "gb"):
        (fit / f"{name}.mtp").write_text("stand-in")
    ctx = SimpleNamespace(case_dir=tmp_path, out_dir=tmp_path, stage_dir=lambda name: fit,
                          systems={"graphene": {"kind": "phase", "structure": "graphene"},
                                   "borophene": {"kind": "phase", "structure": "borophene_chi3"},
                                   "gb": {"kind": "interface", "structure": "interface",
                                          "between": ["graphene", "borophene"]}})
    settings = validate({"seeds": 1, "heterostructure": {**H, "seeds": 1}}, MD_SETTINGS, where="md", source="test")
    tasks = plan_tasks(settings, ctx)
    low = {t["name"]: t for t in tasks if t["kind"] in ("heterostructure_low_T", "heterostructure_phase_low_T",
                                                        "heterostructure_compliance_low_T")}
    assert sorted(low) == ["gb_borophene_elastic_low_T", "gb_graphene_elastic_low_T",
                           "gb_heterostructure_compliance_low_T", "gb_heterostructure_low_T"]
    assert {t["potential"] for t in low.values()} == {str(fit / "gb.mtp")}  # one MTP on both sides
    assert low["gb_borophene_elastic_low_T"]["structure"] == "borophene_chi3"
    assert low["gb_graphene_elastic_low_T"]["phase"] == "graphene"
    stripe = {"elastic_N_per_m": {"C11": 300.0, "C22": 200.0, "C12": 60.0, "C66": 80.0},
              "youngs_modulus_normal_N_per_m": 188.0, "geometry": {"period_nm": 6.8}}
    c = {"C11": 400.0, "C22": 390.0, "C12": 130.0, "C66": 135.0}
    results = [{**t, "result": stripe} for t in tasks if t["kind"] in ("heterostructure", "heterostructure_low_T")]
    wide = {**stripe, "youngs_modulus_normal_N_per_m": 195.0, "geometry": {"period_nm": 13.5, "fraction_B": 0.49}}
    results.append({**low["gb_heterostructure_compliance_low_T"], "result": wide})
    results += [{**low["gb_graphene_elastic_low_T"], "result": c, "unit": "N/m", "temperature_K": 1.0},
                {**low["gb_borophene_elastic_low_T"], "result": {k: v / 2 for k, v in c.items()}, "unit": "N/m",
                 "temperature_K": 1.0}]
    entry = summarize_tasks(results, settings)["systems"]["gb"]["heterostructure"]
    assert entry["low_T"]["temperature_K"] == 1.0
    assert entry["low_T"]["youngs_modulus_normal_N_per_m"] == {"mean": 188.0, "sem": 0.0, "n": 1}
    assert entry["low_T"]["phases_elastic_N_per_m"]["borophene"]["C22"]["mean"] == 195.0
    assert entry["low_T"]["compliance_cell"]["youngs_modulus_normal_N_per_m"] == {"mean": 195.0, "sem": 0.0, "n": 1}
    assert entry["low_T"]["compliance_cell"]["geometry"]["period_nm"] == 13.5
    # a phase run that blew up leaves no low_T entry (the twin would mix potentials) and is recorded
    results[-1] = {**low["gb_borophene_elastic_low_T"], "result": None, "blew_up": "exploded"}
    gb = summarize_tasks(results, settings)["systems"]["gb"]
    assert "low_T" not in gb["heterostructure"]
    assert {"run": "gb_borophene_elastic_low_T", "reason": "exploded"} in gb["provenance"]["blown_up"]
    off = validate({"seeds": 1, "heterostructure": {**H, "low_temperature": False}}, MD_SETTINGS, where="md",
                   source="test")
    assert not [t for t in plan_tasks(off, ctx) if "low_T" in t["kind"] and t["system"] == "gb"]


def test_the_low_temperature_stripe_run_takes_second_order_differences(tmp_path, monkeypatch):
    """At temperature the stripe cell is measured by forward differences, its low-temperature twin by
    the second-order one-sided ones (the cell stiffens with strain: the forward difference at delta =
    0.005 read it 2 % stiff, docs/md.md); any other scheme is refused before anything runs."""
    from md_gpu import md_stage
    from md_gpu.errors import MDSetupError
    from md_gpu.forcefields import loading
    from md_gpu import structures
    from multiscale.schema import validate

    with pytest.raises(MDSetupError, match="scheme 'central' is not 'tension' or 'tension2'"):
        heterostructure.run(None, H, {"delta": 0.005, "sample_steps": 10}, None, scheme="central")
    monkeypatch.setattr(loading, "load_forcefield", lambda *a, **k: "ff")
    monkeypatch.setattr(structures, "load_structure", lambda *a, **k: None)
    runs = {}
    monkeypatch.setattr(heterostructure, "run", lambda ff, h, elastic, rs, **k: runs.setdefault(
        len(runs), (rs.temperature_K, k["scheme"], h["graphene_cells_y"], h["borophene_cells_y"])))
    settings = validate({"heterostructure": H}, MD_SETTINGS, where="md", source="test")
    for kind in ("heterostructure", "heterostructure_low_T", "heterostructure_compliance_low_T"):
        md_stage.run_task({"kind": kind, "potential": "gb.mtp", "structure": "interface", "case_dir": str(tmp_path),
                           "out_dir": str(tmp_path), "system": "gb", "seed": 0, "name": kind, "settings": settings})
    # the interface-compliance cell: the low-temperature run of stripes twice as wide
    assert list(runs.values()) == [(300.0, "tension", 8, 4), (1.0, "tension2", 8, 4), (1.0, "tension2", 16, 8)]
