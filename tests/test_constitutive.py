"""The constitutive stage: MD summary -> properties.json, with clear errors for gaps."""
import pytest

from multiscale.constitutive import CONSTITUTIVE_SETTINGS, build_properties
from multiscale.errors import StageError

SETTINGS = {k: v[1] for k, v in CONSTITUTIVE_SETTINGS.items()}
SYSTEMS = {"graphene": {"kind": "phase", "thickness_A": 3.35, "between": []},
           "gb": {"kind": "interface", "thickness_A": 3.35, "between": ["graphene", "borophene"]}}


def stat(mean, sem=0.0, n=3):
    return {"mean": mean, "sem": sem, "n": n}


def summary():
    direction = {"youngs_modulus_N_per_m": stat(340.0, 3.0), "poisson_ratio": stat(0.17, 0.01),
                 "ultimate_strength_N_per_m": stat(33.0, 0.4), "failure_strain": stat(0.21, 0.01),
                 "label": "not a statistic, ignored"}
    return {"temperature_K": 300.0, "systems": {
        "graphene": {"directions": {"x": dict(direction), "y": dict(direction)},
                     "elastic_N_per_m": {"C11": stat(350.0), "C12": stat(60.0)},
                     "provenance": {"strain_rate_per_s": 1e9, "n_atoms": 1008}},
        "gb": {"normal": {"ultimate_strength_N_per_m": stat(20.0, 1.0), "failure_strain": stat(0.1)},
               "provenance": {"n_atoms": 2000}}}}


def test_properties_follow_the_contract():
    props = build_properties(summary(), SYSTEMS, SETTINGS, source="md/summary.json")
    graphene = props["phases"]["graphene"]
    assert props["format"] == "multiscale-properties/1" and props["temperature_K"] == 300.0
    assert graphene["thickness_A"] == 3.35
    assert graphene["directions"]["x"]["youngs_modulus_N_per_m"] == {"mean": 340.0, "sem": 3.0, "n": 3}
    assert "label" not in graphene["directions"]["x"]
    assert graphene["elastic_N_per_m"]["C11"]["mean"] == 350.0
    assert graphene["provenance"]["strain_rate_per_s"] == 1e9
    interface = props["interfaces"]["graphene|borophene"]
    assert interface["ultimate_strength_N_per_m"]["mean"] == 20.0 and interface["name"] == "gb"


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
