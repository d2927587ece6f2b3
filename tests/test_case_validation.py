"""case.yaml validation: every bad input gives one error naming the file and the key."""
import pytest

from multiscale.case import Case
from multiscale.errors import CaseError
from toy_stages import CASE_YAML, TOY, make_case


def load(tmp_path, text, **kw):
    make_case(tmp_path, yaml_text=text)
    return Case.load(tmp_path, pipeline=TOY, **kw)


@pytest.mark.parametrize("text, fragments", [
    # unknown top-level key, with a suggestion
    (CASE_YAML + "sytems: {}\n", ["case.yaml", "unknown key 'sytems'", "did you mean 'systems'"]),
    # unknown key inside a stage section
    (CASE_YAML.replace("power: 2", "powr: 2"), ["unknown key 'a.powr'", "did you mean 'power'"]),
    # wrong type of a value
    (CASE_YAML.replace("power: 2", "power: two"), ["'a.power' must be an integer", "'two'"]),
    # wrong type in a nested section
    (CASE_YAML.replace("power: 2", "power: 2\n  nested: {label: 3}"), ["'a.nested.label' must be a string"]),
    # a float key given a list
    (CASE_YAML.replace("scale: 3.0", "scale: [1, 2]"), ["'b.scale' must be a number"]),
    # a section that is not a mapping
    (CASE_YAML.replace("b:\n  scale: 3.0", "b: 7"), ["'b' must be a mapping"]),
    # missing dataset file
    (CASE_YAML.replace("alpha: {kind: phase}", "alpha: {kind: phase, dataset: data/nope.extxyz}"),
     ["'systems.alpha.dataset'", "nope.extxyz", "does not exist"]),
    # bad system kind
    (CASE_YAML.replace("kind: phase", "kind: crystal"), ["'systems.alpha.kind' must be one of phase, interface"]),
    # interface between unknown phases
    (CASE_YAML.replace("alpha: {kind: phase}", "alpha: {kind: phase}\n  gb: {kind: interface, between: [alpha, beta]}"),
     ["'systems.gb.between'", "alpha"]),
    # no systems at all
    ("name: toy\n", ["'systems' must map each system name"]),
    # not YAML
    ("name: [unclosed\n", ["not valid YAML"]),
    # unknown preset key
    (CASE_YAML + "presets:\n  quick: {zz: {}}\n", ["unknown key 'presets.quick.zz'"]),
])
def test_bad_case_gives_one_clear_error(tmp_path, text, fragments):
    with pytest.raises(CaseError) as info:
        load(tmp_path, text, preset="quick" if "presets" in text else None)
    message = str(info.value)
    assert str(tmp_path / "case.yaml") in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_case_file(tmp_path):
    with pytest.raises(CaseError, match="no case file here"):
        Case.load(tmp_path, pipeline=TOY)


def test_unknown_preset_is_named(tmp_path):
    with pytest.raises(CaseError, match="preset 'fast' is not defined"):
        load(tmp_path, CASE_YAML + "presets:\n  quick: {a: {power: 3}}\n", preset="fast")


def test_defaults_and_preset_override(tmp_path):
    case = load(tmp_path, CASE_YAML + "presets:\n  quick: {a: {power: 3, nested: {label: q}}}\n", preset="quick")
    assert case.settings["a"] == {"power": 3, "fail_on": -1, "sleep_s": 0.0, "nested": {"label": "q"}}
    assert case.settings["b"] == {"scale": 3.0}
    assert case.systems["alpha"]["structure"] == "alpha"       # default: the system's own name
    assert case.systems["alpha"]["thickness_A"] == 3.35
    plain = Case.load(tmp_path, pipeline=TOY)
    assert plain.settings["a"]["power"] == 2


def test_unwritten_engine_is_reported_unavailable(tmp_path):
    case = load(tmp_path, CASE_YAML + "c: {anything: 1}\n")
    assert case.unavailable["c"] == "module toy_stages_not_written is not part of this installation"


def test_product_case_file_is_valid():
    """The embedded default case validates against every engine that exists."""
    from pathlib import Path

    case = Case.load(Path(__file__).resolve().parents[1] / "cases" / "graphene_borophene", preset="quick")
    assert set(case.systems) >= {"graphene", "borophene"}
    assert case.preset == "quick"
