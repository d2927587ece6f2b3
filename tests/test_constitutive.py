"""The constitutive stage: MD summary -> properties.json, with clear errors for gaps."""
import copy

import pytest

from common.contracts import ContractError, validate_properties, validate_summary
from multiscale.constitutive import CONSTITUTIVE_SETTINGS, build_properties
from multiscale.errors import StageError

SETTINGS = {k: v[1] for k, v in CONSTITUTIVE_SETTINGS.items()}
SYSTEMS = {"graphene": {"kind": "phase", "thickness_A": 3.35, "between": []},
           "gb": {"kind": "interface", "thickness_A": 3.35, "between": ["graphene", "borophene"]}}


def stat(mean, sem=0.0, n=3):
    return {"mean": mean, "sem": sem, "n": n}


def provenance(system, n_atoms):
    return {"potential": f"runs/fit/{system}.mtp", "md_runs": [f"{system}_x_seed0.h5"], "strain_rate_per_s": 1e9,
            "temperature_K": 300.0, "n_atoms": n_atoms}


def summary():
    """A summary.json as the md stage writes it (common.contracts.shapes.Summary)."""
    direction = {"youngs_modulus_N_per_m": stat(340.0, 3.0), "poisson_ratio": stat(0.17, 0.01),
                 "ultimate_strength_N_per_m": stat(33.0, 0.4), "failure_strain": stat(0.21, 0.01),
                 "label": "not a statistic, ignored", "runs_failed": 3, "runs_blown_up": 0}
    return {"format": "md_gpu-summary/1", "temperature_K": 300.0, "strain_rate_per_s": 1e9, "systems": {
        "graphene": {"directions": {"x": dict(direction), "y": dict(direction)},
                     "elastic_N_per_m": {"C11": stat(350.0), "C22": stat(352.0), "C12": stat(60.0),
                                         "C66": stat(145.0)},
                     "provenance": provenance("graphene", 1008)},
        "gb": {"normal": {"ultimate_strength_N_per_m": stat(20.0, 1.0), "failure_strain": stat(0.1),
                          "runs_failed": 3, "runs_blown_up": 0},
               "provenance": provenance("gb", 2000)}}}


def test_properties_follow_the_contract():
    validate_summary(summary())
    props = build_properties(summary(), SYSTEMS, SETTINGS, source="md/summary.json")
    validate_properties(props)
    graphene = props["phases"]["graphene"]
    assert props["format"] == "multiscale-properties/2" and props["temperature_K"] == 300.0
    assert graphene["thickness_A"] == 3.35
    assert graphene["directions"]["x"]["youngs_modulus_N_per_m"] == {"mean": 340.0, "sem": 3.0, "n": 3}
    assert "label" not in graphene["directions"]["x"] and graphene["directions"]["x"]["runs_failed"] == 3
    # the summary has constants but no per-seed moduli (an older md stage): the tensile values, so marked
    assert graphene["directions"]["x"]["sources"]["youngs_modulus_N_per_m"] == "tensile"
    assert graphene["directions"]["x"]["tensile_poisson_ratio"] == {"mean": 0.17, "sem": 0.01, "n": 3}
    assert interface_sources(props) == {"ultimate_strength_N_per_m": "tensile", "failure_strain": "tensile"}
    assert graphene["elastic_N_per_m"]["C11"]["mean"] == 350.0
    assert graphene["provenance"]["strain_rate_per_s"] == 1e9
    interface = props["interfaces"]["graphene|borophene"]
    assert interface["ultimate_strength_N_per_m"]["mean"] == 20.0 and interface["name"] == "gb"


def interface_sources(props):
    return props["interfaces"]["graphene|borophene"]["sources"]


def test_missing_quantity_is_named():
    data = summary()
    del data["systems"]["graphene"]["directions"]["y"]["failure_strain"]
    with pytest.raises(StageError, match=r"systems.graphene.directions.y lacks failure_strain"):
        build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")


def test_missing_system_is_named():
    data = summary()
    del data["systems"]["gb"]
    with pytest.raises(StageError, match="no MD results for system 'gb'"):
        build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")


def test_malformed_statistic_is_named():
    data = summary()
    data["systems"]["graphene"]["directions"]["x"]["poisson_ratio"] = {"mean": 0.2}
    with pytest.raises(StageError, match=r"directions.x.poisson_ratio: expected a statistic"):
        build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")


def thermal_summary():
    data = summary()
    data["systems"]["graphene"]["thermal"] = {
        "conductivity_W_per_mK": {"x": stat(400.0, 40.0, 2), "y": stat(500.0, 50.0, 2)}, "method": "hnemd",
        "provenance": {"runs": ["graphene_hnemd_x_seed0.h5"], "temperature_K": 300.0}}
    data["systems"]["gb"]["thermal"] = {"conductance_W_per_m2K": stat(2.0e9, 2.0e8, 2),
                                        "temperature_jump_K": stat(5.0, 0.5, 2),
                                        "provenance": {"runs": ["gb_nemd_seed0.h5"], "temperature_K": 300.0}}
    return data


def test_thermal_properties_and_kapitza_length():
    validate_summary(thermal_summary())
    props = build_properties(thermal_summary(), SYSTEMS, SETTINGS, source="md/summary.json")
    validate_properties(props)
    thermal = props["phases"]["graphene"]["thermal"]
    assert thermal["conductivity_W_per_mK"]["y"] == {"mean": 500.0, "sem": 50.0, "n": 2}
    assert thermal["method"] == "hnemd" and thermal["provenance"]["runs"] == ["graphene_hnemd_x_seed0.h5"]
    interface = props["interfaces"]["graphene|borophene"]["thermal"]
    assert interface["conductance_W_per_m2K"]["mean"] == 2.0e9
    # kappa_y / G = 500 / 2e9 m = 250 nm; 10 % and 10 % relative errors add to 14.1 %
    kapitza = interface["kapitza_length_nm"]["graphene"]
    assert kapitza["mean"] == pytest.approx(250.0) and kapitza["sem"] == pytest.approx(250.0 * 2 ** 0.5 * 0.1)
    assert "borophene" not in interface["kapitza_length_nm"]  # no measured conductivity, no Kapitza length


def test_thermal_without_conductance_is_named():
    data = thermal_summary()
    del data["systems"]["gb"]["thermal"]["conductance_W_per_m2K"]
    with pytest.raises(StageError, match=r"systems.gb.thermal: no conductance_W_per_m2K"):
        build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")


def test_thermal_malformed_conductivity_is_named():
    data = thermal_summary()
    data["systems"]["graphene"]["thermal"]["conductivity_W_per_mK"]["x"] = 400.0
    with pytest.raises(StageError, match=r"thermal.conductivity_W_per_mK.x: expected a statistic"):
        build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")


@pytest.mark.parametrize("g", [stat(-1.0e8, 1.0e8, 2), stat(1.0e8, 0.6e8, 2)])
def test_unresolved_conductance_is_withheld_with_the_reason(g):
    data = thermal_summary()
    data["systems"]["gb"]["thermal"]["conductance_W_per_m2K"] = g
    thermal = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")["interfaces"]["graphene|borophene"][
        "thermal"]
    kept = thermal["conductance_W_per_m2K"]
    assert {k: kept[k] for k in ("mean", "sem", "n")} == g and "kapitza_length_nm" not in thermal
    assert kept["withheld"].startswith(f"G = {g['mean']:.4g} +- {g['sem']:.2g} W/(m^2 K) is not positive by two "
                                       "standard errors (n = 2)")


def stripe_geometry(period_nm, fraction_B, n_atoms):
    return {"period_nm": period_nm, "fraction_B": fraction_B, "length_nm": 1.47, "n_atoms": n_atoms, "stripes": "x"}


def elastic(c11, c22, c12, c66):
    return {"C11": stat(c11), "C22": stat(c22), "C12": stat(c12), "C66": stat(c66)}


def test_heterostructure_is_passed_on_for_the_fe_consistency_run():
    data = summary()
    data["systems"]["gb"]["heterostructure"] = {
        "youngs_modulus_normal_N_per_m": stat(180.0, 5.0, 1), "elastic_N_per_m": elastic(300.0, 200.0, 50.0, 80.0),
        "geometry": {**stripe_geometry(6.8, 0.5, 352), "between": ["graphene", "borophene"]}}
    validate_summary(data)
    out = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")["interfaces"]["graphene|borophene"]
    assert out["heterostructure"]["youngs_modulus_normal_N_per_m"]["mean"] == 180.0
    assert out["heterostructure"]["geometry"]["period_nm"] == 6.8
    data["systems"]["gb"]["heterostructure"]["low_T"] = {
        "temperature_K": 1.0, "youngs_modulus_normal_N_per_m": stat(200.0, 0.0, 1),
        "elastic_N_per_m": elastic(330.0, 220.0, 55.0, 90.0),
        "phases_elastic_N_per_m": {"graphene": elastic(410.0, 407.0, 137.0, 135.0)}}
    validate_summary(data)
    out = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")["interfaces"]["graphene|borophene"]
    low = out["heterostructure"]["low_T"]
    assert low["temperature_K"] == 1.0 and low["phases_elastic_N_per_m"]["graphene"]["C22"]["mean"] == 407.0
    # the shape of the block is the summary's contract (read_summary checks it before build_properties)
    del data["systems"]["gb"]["heterostructure"]["low_T"]["temperature_K"]
    with pytest.raises(ContractError, match=r"key 'systems.gb.heterostructure.low_T.temperature_K' is missing"):
        validate_summary(data)
    del data["systems"]["gb"]["heterostructure"]["low_T"]
    del data["systems"]["gb"]["heterostructure"]["geometry"]["fraction_B"]
    with pytest.raises(ContractError, match=r"key 'systems.gb.heterostructure.geometry.fraction_B' is missing"):
        validate_summary(data)


def test_interface_compliance_comes_from_the_wider_stripe_cell_and_its_phases_laminate():
    """A compliance cell whose modulus is the laminate of its phases with springs R at its two interfaces
    per period gives back R; its equivalent length is R times each phase's modulus across."""
    from fem.laminate import laminate_modulus, stiffness_of

    g = {"C11": stat(410.0), "C22": stat(407.0), "C12": stat(137.0), "C66": stat(135.0)}
    b = {"C11": stat(167.0), "C22": stat(168.0), "C12": stat(55.0), "C66": stat(38.0)}
    period, f, R = 13.5, 0.49, 2.4e-3
    layers = [(1 - f, stiffness_of(g)), (f, stiffness_of(b))]
    E = laminate_modulus(layers, extra_normal_compliance=2 * R / period)
    data = summary()
    data["systems"]["gb"]["heterostructure"] = {
        "youngs_modulus_normal_N_per_m": stat(180.0, 5.0, 1), "elastic_N_per_m": elastic(300.0, 200.0, 50.0, 80.0),
        "geometry": stripe_geometry(6.8, 0.5, 352),
        "low_T": {"temperature_K": 1.0, "youngs_modulus_normal_N_per_m": stat(200.0, 0.0, 1),
                  "elastic_N_per_m": elastic(330.0, 220.0, 55.0, 90.0),
                  "phases_elastic_N_per_m": {"graphene": g, "borophene": b},
                  "compliance_cell": {"youngs_modulus_normal_N_per_m": stat(E, 0.5, 1),
                                      "elastic_N_per_m": elastic(330.0, 220.0, 55.0, 90.0),
                                      "geometry": stripe_geometry(period, f, 704)}}}
    validate_summary(data)
    props = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")
    validate_properties(props)
    out = props["interfaces"]["graphene|borophene"]
    c = out["normal_compliance"]
    assert c["nm_per_N_per_m"]["mean"] == pytest.approx(R, rel=1e-9)
    assert c["nm_per_N_per_m"]["sem"] == pytest.approx(0.5 * period * 0.5 / E ** 2)  # the run's own error
    one = copy.deepcopy(data)  # one run without an error of its own: no sem, a single seed
    one["systems"]["gb"]["heterostructure"]["low_T"]["compliance_cell"]["youngs_modulus_normal_N_per_m"] = \
        {"mean": E, "sem": None, "n": 1}
    r = build_properties(one, SYSTEMS, SETTINGS, source="s")["interfaces"]["graphene|borophene"]["normal_compliance"]
    assert r["nm_per_N_per_m"]["sem"] is None and r["nm_per_N_per_m"]["single_seed"] is True
    assert c["temperature_K"] == 1.0 and c["cell"]["laminate_N_per_m"] == pytest.approx(laminate_modulus(layers))
    assert c["equivalent_length_nm"]["graphene"] == pytest.approx(R * (407.0 - 137.0 ** 2 / 410.0))
    assert out["heterostructure"]["low_T"]["compliance_cell"]["geometry"]["n_atoms"] == 704
    del data["systems"]["gb"]["heterostructure"]["low_T"]["compliance_cell"]["geometry"]["fraction_B"]
    with pytest.raises(ContractError, match=r"'systems.gb.heterostructure.low_T.compliance_cell.geometry.fraction_B' "
                                             "is missing"):
        validate_summary(data)
    data["systems"]["gb"]["heterostructure"]["low_T"]["compliance_cell"]["geometry"]["fraction_B"] = f
    del data["systems"]["gb"]["heterostructure"]["low_T"]["phases_elastic_N_per_m"]["borophene"]
    with pytest.raises(StageError, match=r"low_T.phases_elastic_N_per_m: no constants for borophene"):
        build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")


def test_unresolved_conductivity_is_withheld_and_gives_no_kapitza_length():
    data = thermal_summary()
    data["systems"]["graphene"]["thermal"]["conductivity_W_per_mK"]["y"] = stat(-14.0, 3.0, 2)
    props = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")
    validate_properties(props)
    kappa = props["phases"]["graphene"]["thermal"]["conductivity_W_per_mK"]["y"]
    assert kappa["mean"] == -14.0  # kept as measured, marked
    assert kappa["withheld"] == "kappa_y = -14 +- 3 W/(m K) is not positive by two standard errors (n = 2)"
    assert "withheld" not in props["phases"]["graphene"]["thermal"]["conductivity_W_per_mK"]["x"]
    assert "kapitza_length_nm" not in props["interfaces"]["graphene|borophene"]["thermal"]


@pytest.mark.parametrize("where,key,value,reason", [
    ("elastic", "C11", stat(35.0, 20.0, 2), "C11 = 35 +- 20 N/m is not positive by two standard errors (n = 2)"),
    ("direction", "ultimate_strength_N_per_m", stat(-1.0, 0.5, 3),
     "strength_x = -1 +- 0.5 N/m is not positive by two standard errors (n = 3)"),
    ("direction", "youngs_modulus_N_per_m", {"mean": float("nan"), "sem": float("nan"), "n": 0, "attempted": 3,
                                              "failed": 1, "blown_up": 2},
     "E_x: no run gave a number (2 blew up, 1 gave no number)"),
])
def test_one_rule_withholds_moduli_and_strengths(where, key, value, reason):
    """The rule of the conductivities also decides for the moduli, elastic constants and strengths."""
    data = summary()
    system = data["systems"]["graphene"]
    (system["elastic_N_per_m"] if where == "elastic" else system["directions"]["x"])[key] = value
    props = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")
    validate_properties(props)
    graphene = props["phases"]["graphene"]
    node = graphene["elastic_N_per_m"] if where == "elastic" else graphene["directions"]["x"]
    assert node[key]["withheld"] == reason
    assert "withheld" not in graphene["directions"]["y"][key if where == "direction" else "youngs_modulus_N_per_m"]


def test_the_rule_itself():
    from common.uncertainty import resolved, screen, withheld_reason

    assert withheld_reason(stat(10.0, 4.0, 2), "G", "W/(m^2 K)") is None  # 10 > 2 x 4
    assert withheld_reason(stat(10.0, 5.0, 2), "G", "W/(m^2 K)") == ("G = 10 +- 5 W/(m^2 K) is not positive by two "
                                                                     "standard errors (n = 2)")
    assert withheld_reason(stat(-0.2, 0.01, 3), "nu", positive=False) is None  # a free sign needs only a number
    one = {"mean": 12.0, "sem": None, "n": 1}
    assert resolved(one) and screen(one, "E")["single_seed"] is True and "withheld" not in screen(one, "E")
    assert screen({"mean": 12.0, "sem": 0.0, "n": 1}, "E")["single_seed"]  # an older summary's 0: one seed
    assert screen({"mean": -3.0, "sem": None, "n": 1}, "E", "N/m")["withheld"] == "E = -3 N/m (1 seed) is not positive"
    assert "single_seed" not in screen(stat(12.0, 1.0, 3), "E")


def test_single_seed_statistics_have_no_sem_and_are_marked():
    data = summary()
    for direction in data["systems"]["graphene"]["directions"].values():
        direction.update({k: {"mean": v["mean"], "sem": None, "n": 1, "attempted": 2, "failed": 0, "blown_up": 1}
                          for k, v in direction.items() if isinstance(v, dict)})
    data["systems"]["graphene"]["elastic_N_per_m"]["C11"] = {"mean": 350.0, "sem": 0.0, "n": 1}  # older md stage
    validate_summary(data)
    props = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")
    validate_properties(props)
    x = props["phases"]["graphene"]["directions"]["x"]
    assert x["youngs_modulus_N_per_m"] == {"mean": 340.0, "sem": None, "n": 1, "attempted": 2, "failed": 0,
                                           "blown_up": 1, "single_seed": True}
    assert x["failure_strain"] == {"mean": 0.21, "sem": None, "n": 1, "attempted": 2, "failed": 0, "blown_up": 1}
    assert props["phases"]["graphene"]["elastic_N_per_m"]["C11"] == {"mean": 350.0, "sem": None, "n": 1,
                                                                     "single_seed": True}


def test_run_counts_reach_properties_json_for_every_group():
    data = thermal_summary()
    x = data["systems"]["graphene"]["directions"]["x"]
    x.update(runs_attempted=4, runs_blown_up=1, runs_yielded=0, runs_unfailed=0)
    x["ultimate_strength_N_per_m"] = {**stat(33.0, 0.4), "attempted": 4, "failed": 0, "blown_up": 1}
    data["systems"]["graphene"]["elastic_N_per_m"]["C22"] = {**stat(352.0), "attempted": 3, "failed": 0, "blown_up": 0}
    data["systems"]["graphene"]["thermal"]["conductivity_W_per_mK"]["x"] = {**stat(400.0, 40.0, 2), "attempted": 3,
                                                                            "failed": 0, "blown_up": 1}
    data["systems"]["gb"]["thermal"]["conductance_W_per_m2K"].update(attempted=2, failed=0, blown_up=0)
    validate_summary(data)
    props = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")
    validate_properties(props)
    graphene = props["phases"]["graphene"]
    px = graphene["directions"]["x"]
    assert (px["runs_attempted"], px["runs_failed"], px["runs_blown_up"], px["runs_unfailed"]) == (4, 3, 1, 0)
    assert {k: px["ultimate_strength_N_per_m"][k] for k in ("attempted", "failed", "blown_up")} == \
        {"attempted": 4, "failed": 0, "blown_up": 1}
    assert graphene["elastic_N_per_m"]["C22"]["attempted"] == 3
    assert graphene["thermal"]["conductivity_W_per_mK"]["x"]["blown_up"] == 1
    assert props["interfaces"]["graphene|borophene"]["thermal"]["conductance_W_per_m2K"]["attempted"] == 2


@pytest.mark.parametrize("counts,flag", [
    ({"runs_failed": 0, "runs_yielded": 3, "runs_unfailed": 0}, False),   # yield is a failure of the material
    ({"runs_failed": 2, "runs_yielded": 0, "runs_unfailed": 1}, True),    # one run's peak is the end of the loading
    ({"runs_failed": 0, "runs_yielded": 0, "runs_unfailed": 3}, True),
    ({"runs_failed": 0, "runs_yielded": 0}, True),                        # older summary: derived from the n
    ({"runs_failed": 1, "runs_yielded": 2}, False),
])
def test_strength_from_runs_that_did_not_fail_is_flagged(counts, flag):
    data = summary()
    data["systems"]["graphene"]["directions"]["y"].update(counts)
    data["systems"]["gb"]["normal"].update(counts)
    props = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")
    validate_properties(props)
    y = props["phases"]["graphene"]["directions"]["y"]
    assert y["strength_from_unfailed"] is flag and (y["runs_unfailed"] > 0) is flag
    assert props["phases"]["graphene"]["directions"]["x"]["strength_from_unfailed"] is False
    assert props["interfaces"]["graphene|borophene"]["strength_from_unfailed"] is flag


def test_stripe_runs_that_blew_up_reach_properties_json():
    data = summary()
    runs = {"at_temperature": {"attempted": 2, "blown_up": 2},
            "blown_up": [{"run": "gb_heterostructure_seed0", "reason": "T > 2 T0"},
                         {"run": "gb_heterostructure_seed1", "reason": "T > 2 T0"}]}
    data["systems"]["gb"]["heterostructure_runs"] = runs
    validate_summary(data)
    props = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")
    validate_properties(props)
    interface = props["interfaces"]["graphene|borophene"]
    assert interface["heterostructure_runs"] == runs and "heterostructure" not in interface
    # an older summary: only provenance.blown_up names them
    data = summary()
    data["systems"]["gb"]["provenance"]["blown_up"] = runs["blown_up"]
    interface = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")["interfaces"]["graphene|borophene"]
    assert interface["heterostructure_runs"]["at_temperature"] == {"attempted": 2, "blown_up": 2}
    assert "heterostructure_runs" not in build_properties(summary(), SYSTEMS, SETTINGS, source="s")["interfaces"][
        "graphene|borophene"]


def test_stage_reads_the_summary_through_its_contract(tmp_path):
    """run_constitutive: a summary of another version stops with the contract's error; a valid one gives
    properties.json through write_properties."""
    import json
    from types import SimpleNamespace

    from multiscale.constitutive import run_constitutive

    (tmp_path / "md").mkdir()
    ctx = SimpleNamespace(stage_dir=lambda name: tmp_path / name, systems=SYSTEMS, is_root=True,
                          out_dir=tmp_path / "constitutive")
    source = tmp_path / "md" / "summary.json"
    source.write_text(json.dumps({**summary(), "format": "md_gpu-summary/0"}))
    with pytest.raises(ContractError, match=r"md/summary.json: key 'format': found version 0 of md_gpu-summary, "
                                            r"expected version 1 .* rerun the md stage that writes it with --force"):
        run_constitutive(SETTINGS, ctx)
    source.write_text(json.dumps(summary()))
    run_constitutive(SETTINGS, ctx)
    written = json.loads((tmp_path / "constitutive" / "properties.json").read_text())
    assert written == build_properties(summary(), SYSTEMS, SETTINGS, source=str(source))
