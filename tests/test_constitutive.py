"""The constitutive stage: MD summary -> properties.json, with clear errors for gaps."""
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
    assert props["format"] == "multiscale-properties/1" and props["temperature_K"] == 300.0
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
def test_unresolved_conductance_is_kept_apart_with_a_note(g):
    data = thermal_summary()
    data["systems"]["gb"]["thermal"]["conductance_W_per_m2K"] = g
    thermal = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")["interfaces"]["graphene|borophene"][
        "thermal"]
    assert "conductance_W_per_m2K" not in thermal and "kapitza_length_nm" not in thermal
    assert thermal["conductance_unresolved_W_per_m2K"] == g and "not resolved" in thermal["note"]


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
    from fem.materials import laminate_modulus, stiffness_of

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
    assert c["nm_per_N_per_m"]["sem"] == pytest.approx(0.5 * period * 0.5 / E ** 2)
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


def test_unresolved_conductivity_gets_a_note_and_no_kapitza_length():
    data = thermal_summary()
    data["systems"]["graphene"]["thermal"]["conductivity_W_per_mK"]["y"] = stat(-14.0, 3.0, 2)
    props = build_properties(data, SYSTEMS, SETTINGS, source="md/summary.json")
    assert "along y is not positive" in props["phases"]["graphene"]["thermal"]["note"]
    assert props["phases"]["graphene"]["thermal"]["conductivity_W_per_mK"]["y"]["mean"] == -14.0  # kept as measured
    assert "kapitza_length_nm" not in props["interfaces"]["graphene|borophene"]["thermal"]


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
