"""Cross-scale checks: the numbers compared, the tolerances applied, missing inputs never pass."""
import json

import pytest

from common.contracts import ContractError
from multiscale.checks import (check_fe_vs_md, check_reference_stiffness, check_structures, run_checks,
                               youngs_moduli)


def stat(value):
    return {"mean": value, "sem": 0.0, "n": 3}


DATA = {"systems": {"graphene": {"reference": {"E_x_N_per_m": 330.0, "E_y_N_per_m": 331.0}}}}


def md_summary(c11=350.0, c22=352.0, c12=60.0, normal=200.0):
    return {"systems": {
        "graphene": {"elastic_low_T_N_per_m": {"C11": stat(c11), "C22": stat(c22), "C12": stat(c12),
                                               "temperature_K": 1.0}},
        "interface": {"normal": {"youngs_modulus_N_per_m": stat(normal)}}}}


def with_stripes(summary, low_t=True, runs=None):
    """``summary`` with the interface system's MD stripe cell (md_gpu.tasks.stripes) and its run record."""
    het = {"youngs_modulus_normal_N_per_m": {"mean": 200.0, "sem": 4.0, "n": 2},
           "geometry": {"n_atoms": 352, "between": ["sheet", "ribbon"]}}
    if low_t:
        het["low_T"] = {"temperature_K": 1.0, "youngs_modulus_normal_N_per_m": {"mean": 200.0, "sem": None, "n": 1}}
    summary["systems"]["interface"].update(heterostructure=het, heterostructure_runs=runs or {
        "at_temperature": {"attempted": 2, "blown_up": 0}, "low_T": {"attempted": 4, "blown_up": 0}})
    return summary


def fem(modulus=190.0, orientation="x", load="y", geometry="stripes"):
    return {"settings": {"geometry": geometry, "load_direction": load,
                         "stripes": {"orientation": orientation, "fraction": 0.5}},
            "tensile": {"modulus_N_per_m": modulus}}


def test_youngs_moduli_of_isotropic_sheet():
    # isotropic: C11 = C22 = E/(1-nu^2), C12 = nu C11
    e, nu = 340.0, 0.17
    c11 = e / (1 - nu ** 2)
    assert youngs_moduli(c11, c11, nu * c11) == pytest.approx((e, e), rel=1e-12)


def test_reference_stiffness_pass_and_fail():
    ex, ey = youngs_moduli(350.0, 352.0, 60.0)
    rows = check_reference_stiffness(DATA, md_summary())
    assert [r["ours"] for r in rows] == pytest.approx([ex, ey])
    assert rows[0]["rel_diff"] == pytest.approx(abs(ex - 330.0) / 330.0)
    assert all(r["passed"] == (r["rel_diff"] <= 0.05) for r in rows)
    far = check_reference_stiffness(DATA, md_summary(c11=500.0, c22=500.0))
    assert not any(r["passed"] for r in far)


def test_reference_poisson_ratio_is_judged_on_its_absolute_difference():
    data = {"systems": {"graphene": {"reference": {"E_x_N_per_m": 330.0, "E_y_N_per_m": 331.0, "nu_xy": 0.25}}}}
    rows = check_reference_stiffness(data, md_summary(c11=350.0, c22=352.0, c12=0.29 * 352.0))
    nu = rows[-1]
    assert nu["check"] == "MTP-MD vs reference engine Poisson's ratio (graphene, nu_xy)"
    assert nu["ours"] == pytest.approx(0.29) and nu["abs_diff"] == pytest.approx(0.04)
    assert nu["passed"] and nu["tolerance_kind"] == "absolute" and nu["rel_diff"] > 0.05  # 16 % off, 0.04 apart
    nu = check_reference_stiffness(data, md_summary(c11=350.0, c22=352.0, c12=0.31 * 352.0))[-1]
    assert not nu["passed"] and nu["abs_diff"] == pytest.approx(0.06)
    missing = check_reference_stiffness(data, {"systems": {"graphene": {}}})
    assert [r["status"] for r in missing] == ["not run"] * 3 and missing[-1]["check"] == rows[-1]["check"]
    assert len(check_reference_stiffness(DATA, md_summary())) == 2  # no nu_xy in the reference: no row


def test_fe_vs_md_in_series_only():
    """A case without stripe runs compares the FE main sample with the interface cell; the stripe rows are
    there, not run, saying why."""
    rows = check_fe_vs_md(fem(190.0), md_summary(normal=200.0))
    assert [r["status"] for r in rows] == ["not run", "not run", "pass"]
    assert all("md.heterostructure.enabled is false" in r["what"] for r in rows[:2])
    assert rows[2]["check"] == "FE stripes vs direct MD (interface)" and rows[2]["rel_diff"] == pytest.approx(0.05)
    assert "FE (fraction of B 0.5)" in rows[2]["what"]  # no fem.phases in these results: phase B unnamed
    named = {**fem(190.0), "settings": {**fem(190.0)["settings"], "phases": ["sheet", "ribbon"]}}
    assert "FE (fraction of ribbon 0.5)" in check_fe_vs_md(named, md_summary(normal=200.0))[2]["what"]
    assert not check_fe_vs_md(fem(170.0), md_summary(normal=200.0))[2]["passed"]
    parallel = check_fe_vs_md(fem(190.0, orientation="y", load="y"), md_summary())
    assert parallel[2]["passed"] is None and "not run" in parallel[2]["what"]


def twin(**extra):
    return {"modulus_N_per_m": 210.0, "period_nm": 6.8, "fraction_B": 0.5,
            "md_modulus_N_per_m": {"mean": 200.0, "sem": 4.0, "n": 2},
            "md_geometry": {"n_atoms": 352, "between": ["sheet", "ribbon"]}, **extra}


def test_fe_twin_of_the_md_heterostructure_is_compared_when_there():
    rows = check_fe_vs_md({**fem(190.0), "consistency": twin()}, with_stripes(md_summary(normal=-5.0), low_t=False,
                          runs={"at_temperature": {"attempted": 2, "blown_up": 0}}))
    assert [r["check"] for r in rows] == ["FE stripes vs direct MD (stripe heterostructure)",
                                          "FE stripes vs direct MD at low T, one MTP (stripe heterostructure)"]
    assert rows[0]["passed"] and rows[0]["ours"] == 210.0 and rows[0]["rel_diff"] == pytest.approx(0.05)
    assert "352 atoms" in rows[0]["what"] and "fraction of ribbon 0.500" in rows[0]["what"]
    assert "2 seeds, sem 4" in rows[0]["what"]
    assert rows[1]["status"] == "not run" and "low_temperature" in rows[1]["what"]  # the interface cell is not used


def test_blown_up_stripe_runs_leave_the_rows_not_run_with_the_reason():
    """Every stripe run blew up: the md summary has no heterostructure, only its run record; the rows stay,
    not run, saying so, and the check does not fall back to the interface cell."""
    summary = md_summary(normal=190.0)
    summary["systems"]["interface"]["heterostructure_runs"] = {
        "at_temperature": {"attempted": 2, "blown_up": 2}, "low_T": {"attempted": 4, "blown_up": 1},
        "blown_up": [{"run": "interface_heterostructure_seed0", "reason": "T = 900 K > 2 T"},
                     {"run": "interface_heterostructure_seed1", "reason": "T = 950 K > 2 T"},
                     {"run": "interface_heterostructure_low_T", "reason": "extrapolation grade 12 > 10"}]}
    results = {**fem(190.0), "consistency": {"skipped": "2 of 2 MD stripe runs blew up"}}
    rows = check_fe_vs_md(results, summary)
    assert [r["status"] for r in rows] == ["not run", "not run"] and all(r["passed"] is None for r in rows)
    assert rows[0]["check"] == "FE stripes vs direct MD (stripe heterostructure)"
    assert rows[0]["what"] == ("not run: 2 of 2 MD stripe runs blew up (interface_heterostructure_seed0: T = 900 K > "
                               "2 T): no MD modulus to compare with")
    assert "2 of 2 MD stripe runs blew up" in rows[1]["what"]
    # an older summary without the run record: the blown-up runs named in the provenance tell the same
    old = md_summary(normal=190.0)
    old["systems"]["interface"]["provenance"] = {"blown_up": summary["systems"]["interface"]["heterostructure_runs"][
        "blown_up"]}
    rows = check_fe_vs_md(results, old)
    assert len(rows) == 2 and rows[0]["what"].startswith("not run: 2 of 2 MD stripe runs blew up")
    # some seeds lost: compared, and said; low-temperature runs lost: that row not run, saying so
    partial = with_stripes(md_summary(), low_t=False, runs={
        "at_temperature": {"attempted": 3, "blown_up": 1}, "low_T": {"attempted": 4, "blown_up": 2},
        "blown_up": [{"run": "interface_heterostructure_seed2", "reason": "T > 2 T"},
                     {"run": "interface_heterostructure_low_T", "reason": "grade 12"},
                     {"run": "interface_heterostructure_compliance_low_T", "reason": "grade 11"}]})
    rows = check_fe_vs_md({**fem(190.0), "consistency": twin()}, partial)
    assert rows[0]["status"] == "compared" and "1 of 3 MD stripe runs blew up" in rows[0]["what"]
    assert rows[1]["status"] == "not run" and rows[1]["what"] == (
        "not run: 2 of 4 low-temperature MD stripe and phase runs blew up (interface_heterostructure_low_T: grade 12)")


def test_fe_twin_skipped_or_missing_is_not_run_with_the_fem_reason():
    summary = with_stripes(md_summary())
    rows = check_fe_vs_md({**fem(), "consistency": {"skipped": "fem.consistency.enabled is false"}}, summary)
    assert [r["status"] for r in rows] == ["not run", "not run"]
    assert all("fem.consistency.enabled is false" in r["what"] for r in rows)
    assert rows[1]["check"] == "FE stripes vs direct MD at 1 K, one MTP (stripe heterostructure)"  # T from the md
    rows = check_fe_vs_md(None, summary)
    assert [r["what"] for r in rows] == ["not run: the fem stage has not run"] * 2


def test_missing_inputs_are_not_run(tmp_path):
    rows = run_checks(tmp_path)
    assert rows and all(r["passed"] is None for r in rows)
    (tmp_path / "md").mkdir()
    (tmp_path / "md" / "summary.json").write_text(json.dumps({"systems": {"graphene": {}}}))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "summary.json").write_text(json.dumps(DATA))
    rows = check_reference_stiffness(DATA, {"systems": {"graphene": {}}})
    assert [r["check"] for r in rows] == ["MTP-MD vs reference engine stiffness (graphene, E_x)",
                                          "MTP-MD vs reference engine stiffness (graphene, E_y)"]  # the rows of a run
    assert all(r["passed"] is None and r["status"] == "not run" and "low-temperature" in r["what"] for r in rows)
    # an MD summary without its format tag (an older or foreign file) is not checked as if it were one
    with pytest.raises(ContractError, match=r"md/summary.json: key 'format' is missing .* rerun the md stage"):
        run_checks(tmp_path)


def stability(changed, steps=20000):
    return {"changed_fraction": changed, "coordination_start": [0, 0, 0, 0, 32, 32],
            "coordination_end": [0, 0, 0, 64] if changed else [0, 0, 0, 0, 32, 32], "cutoff_A": 2.32,
            "steps": steps, "temperature_K": 300.0, "energy_drift_meV_per_atom": -192.0 if changed else 0.1,
            "max_changed": 0.1, "retained": changed <= 0.1}


def test_structure_check_passes_a_kept_structure_and_fails_a_transformed_one():
    summary = {"systems": {"graphene": {"stability": stability(0.0)}, "borophene": {"stability": stability(1.0)},
                           "interface": {"stability": {"retained": False, "blew_up": "barostat: blew up"}}}}
    rows = {r["check"]: r for r in check_structures(summary)}
    kept, gone = rows["structure kept in MD at temperature (graphene)"], rows["structure kept in MD at temperature (borophene)"]
    assert kept["passed"] and kept["ours"] == 0.0
    assert gone["passed"] is False and gone["ours"] == 1.0 and "[0, 0, 0, 64] after" in gone["what"]
    blown = rows["structure kept in MD at temperature (interface)"]
    assert blown["passed"] is False and "blew up" in blown["what"]
    assert check_structures({"systems": {"graphene": {}}})[0]["passed"] is None  # check off: not run, never passed
    assert [r["status"] for r in rows.values()] == ["pass", "fail", "fail"]


def relaxation(hole):
    return {"hole": hole, "converged": not hole, "steps": 148 if hole else 30,
            "energy_change_meV_per_atom": -1088.2 if hole else -0.2,
            "lowest_energy_change_meV_per_atom": -1088.2 if hole else -0.2, "cell_strain": [-0.0086, -0.0175],
            "max_displacement_A": 0.63, "min_distance_A": 1.22, "fmax_eV_per_A": 0.01, "n_atoms": 88}


def test_a_hole_found_by_the_0K_relaxation_fails_its_own_row():
    summary = {"systems": {"graphene": {"stability": {**stability(0.0), "relaxation": relaxation(False)}},
                           "interface": {"stability": {**stability(0.0), "relaxation": relaxation(True)}},
                           "borophene": {"stability": stability(0.0)}}}  # relax_steps: 0, no row
    rows = {r["check"]: r for r in check_structures(summary)}
    assert rows["no hole of the MTP at 0 K (graphene)"]["passed"] is True
    hole = rows["no hole of the MTP at 0 K (interface)"]
    assert hole["passed"] is False and hole["ours"] == -1088.2 and "HOLE" in hole["what"]
    assert "no hole of the MTP at 0 K (borophene)" not in rows
    assert rows["structure kept in MD at temperature (interface)"]["passed"]  # a separate verdict


def test_low_temperature_twin_adds_a_like_for_like_row():
    twin = {"modulus_N_per_m": 230.0, "period_nm": 6.8, "fraction_B": 0.5,
            "md_modulus_N_per_m": {"mean": 200.0, "sem": 4.0, "n": 2}, "md_geometry": {"n_atoms": 352},
            "low_T": {"temperature_K": 1.0, "modulus_N_per_m": 216.0,
                      "md_modulus_N_per_m": {"mean": 200.0, "sem": None, "n": 1}}}
    rows = check_fe_vs_md({**fem(190.0), "consistency": twin}, with_stripes(md_summary(normal=-5.0)))
    # 15 % off at temperature: shown with its numbers, not judged, since the like-for-like row is planned
    assert [r["status"] for r in rows] == ["compared", "pass"] and [r["passed"] for r in rows] == [None, True]
    assert rows[0]["rel_diff"] == pytest.approx(0.15) and rows[0]["tolerance"] is None
    assert "the low-temperature row below is the like-for-like check" in rows[0]["what"]
    # a case that plans no low-temperature twin: the row at temperature is its only verdict, and fails
    alone = with_stripes(md_summary(normal=-5.0), low_t=False, runs={"at_temperature": {"attempted": 2, "blown_up": 0}})
    judged = check_fe_vs_md({**fem(190.0), "consistency": twin}, alone)[0]
    assert judged["status"] == "fail" and judged["tolerance"] == 0.1 and "not judged" not in judged["what"]
    assert "MD: 1 seed" in rows[1]["what"]
    assert rows[1]["check"] == "FE stripes vs direct MD at 1 K, one MTP (stripe heterostructure)"
    assert rows[1]["rel_diff"] == pytest.approx(0.08) and "interface MTP" in rows[1]["what"]
    assert "perfect interfaces (no interface compliance measured" in rows[1]["what"]
    # with the MD interface compliance the rows say so, beside the perfect-interface moduli
    twin.update(interface_compliance_nm_per_N_per_m=2.4e-3, perfect_interface_modulus_N_per_m=240.0)
    twin["low_T"]["perfect_interface_modulus_N_per_m"] = 226.5
    rows = check_fe_vs_md({**fem(190.0), "consistency": twin}, with_stripes(md_summary(normal=-5.0)))
    assert "R = 0.0024 nm per N/m" in rows[0]["what"] and "(perfect interfaces: 240.0 N/m)" in rows[0]["what"]
    assert "(perfect interfaces: 226.5 N/m)" in rows[1]["what"]
