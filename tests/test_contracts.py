"""The file contracts between stages (common.contracts): real files pass, a round trip is exact, and every
way a file can be wrong stops with one message naming the file, the key and the stage to rerun."""
import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from common.atomic import write_json
from common.contracts import (PROPERTIES_FORMAT, SUMMARY_FORMAT, ContractError, read_properties, read_summary,
                              validate_properties, validate_summary, write_properties, write_summary)

DATA = Path(__file__).resolve().parent / "data" / "contracts"
SUMMARY = DATA / "summary.json"        # runs/md/summary.json of a finished run (tests/data/contracts/README.md)
PROPERTIES = DATA / "properties.json"  # runs/constitutive/properties.json of the same run

READ = {"summary": (read_summary, SUMMARY, "md"), "properties": (read_properties, PROPERTIES, "constitutive")}


def _same(a, b) -> bool:
    """Equal data, NaN included (NaN != NaN, but both print as NaN)."""
    return json.dumps(a) == json.dumps(b)


def test_formats():
    assert SUMMARY_FORMAT == "md_gpu-summary/1" and PROPERTIES_FORMAT == "multiscale-properties/2"


def test_real_summary_is_valid_and_read_as_plain_json():
    summary = read_summary(SUMMARY)
    assert _same(summary, json.loads(SUMMARY.read_text()))
    graphene = summary["systems"]["graphene"]
    assert set(graphene["directions"]) == {"x", "y"} and graphene["directions"]["x"]["youngs_modulus_N_per_m"]["n"] >= 1
    assert summary["systems"]["interface"]["heterostructure"]["low_T"]["compliance_cell"]["geometry"]["n_atoms"] > 0


def test_real_properties_are_valid_and_read_as_plain_json():
    props = read_properties(PROPERTIES)
    assert _same(props, json.loads(PROPERTIES.read_text()))
    interface = props["interfaces"]["graphene|borophene"]
    compliance = interface["normal_compliance"]["nm_per_N_per_m"]
    assert compliance["n"] == 1 and compliance["sem"] is None and compliance["single_seed"] is True
    assert "not positive by two standard errors" in interface["thermal"]["conductance_W_per_m2K"]["withheld"]
    assert "withheld" in props["phases"]["borophene"]["thermal"]["conductivity_W_per_mK"]["x"]
    assert interface["strength_from_unfailed"] is False and interface["runs_unfailed"] == 0


def test_the_hand_written_fem_input_is_valid():
    """properties.json written by hand for the fem stage alone: no provenance, no interface name."""
    read_properties(Path(__file__).resolve().parent / "data" / "fem" / "properties_graphene_borophene.json")


@pytest.mark.parametrize("kind", ["summary", "properties"])
def test_round_trip_is_exact(tmp_path, kind):
    read, source, _ = READ[kind]
    write = {"summary": write_summary, "properties": write_properties}[kind]
    data = read(source)
    path = write(tmp_path / source.name, data)
    assert _same(read(path), data)
    write_json(tmp_path / "plain.json", data)  # the contract writes what write_json writes, byte for byte
    assert path.read_bytes() == (tmp_path / "plain.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.name, "plain.json"])  # no temporary left


def test_writer_takes_numpy_scalars_and_nan_statistics(tmp_path):
    data = read_summary(SUMMARY)
    stat = data["systems"]["graphene"]["directions"]["x"]["youngs_modulus_N_per_m"]
    stat.update(mean=np.float64(stat["mean"]), n=np.int64(stat["n"]))
    data["systems"]["graphene"]["directions"]["x"]["failure_strain"] = {"mean": math.nan, "sem": math.nan, "n": 0}
    back = read_summary(write_summary(tmp_path / "summary.json", data))
    assert math.isnan(back["systems"]["graphene"]["directions"]["x"]["failure_strain"]["mean"])


def _written(tmp_path, data, name="summary.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("kind", ["summary", "properties"])
@pytest.mark.parametrize("tag,message", [
    ("fem-results/1", r"key 'format' is 'fem-results/1', another kind of file than '{fmt}'"),
    (None, r"key 'format' is missing or not a string \(got None\), expected '{fmt}'"),
    (1, r"key 'format' is missing or not a string \(got 1\)"),
])
def test_foreign_file_is_refused(tmp_path, kind, tag, message):
    read, source, stage = READ[kind]
    data = json.loads(source.read_text())
    data["format"] = tag
    if tag is None:
        del data["format"]
    path = _written(tmp_path, data, source.name)
    fmt = SUMMARY_FORMAT if kind == "summary" else PROPERTIES_FORMAT
    with pytest.raises(ContractError, match=f"^{re.escape(str(path))}: {message.format(fmt=fmt)}.*: rerun the "
                                            f"{stage} stage that writes it with --force"):
        read(path)


@pytest.mark.parametrize("kind,old,found,expected", [
    ("summary", "md_gpu-summary/0", "0", "1"),
    ("summary", "md_gpu-summary/2", "2", "1"),
    ("properties", "multiscale-properties/1", "1", "2"),
])
def test_other_version_names_found_and_expected(tmp_path, kind, old, found, expected):
    read, source, stage = READ[kind]
    data = json.loads(source.read_text())
    data["format"] = old
    path = _written(tmp_path, data, source.name)
    name = old.split("/")[0]
    with pytest.raises(ContractError) as err:
        read(path)
    assert str(err.value) == (
        f"{path}: key 'format': found version {found} of {name}, expected version {expected} ('{old}' instead of "
        f"'{name}/{expected}'); not a valid {'MD summary' if kind == 'summary' else 'properties file'} "
        f"({name}/{expected}): rerun the {stage} stage that writes it with --force "
        f"(`multiscale run CASE --stages {stage} --force`)")


def test_missing_key_is_named_by_its_path(tmp_path):
    data = json.loads(SUMMARY.read_text())
    del data["systems"]["graphene"]["directions"]["x"]["youngs_modulus_N_per_m"]["mean"]
    path = _written(tmp_path, data)
    with pytest.raises(ContractError, match=r"summary.json: key 'systems.graphene.directions.x.youngs_modulus_N_per_m"
                                            r".mean' is missing; not a valid MD summary \(md_gpu-summary/1\): rerun "
                                            r"the md stage"):
        read_summary(path)


@pytest.mark.parametrize("change,message", [
    (lambda d: d["systems"]["graphene"]["directions"]["x"]["youngs_modulus_N_per_m"].update(mean="340"),
     r"key 'systems.graphene.directions.x.youngs_modulus_N_per_m.mean' must be a number, got '340' \(str\)"),
    (lambda d: d["systems"]["graphene"]["directions"]["x"]["youngs_modulus_N_per_m"].update(n=1.5),
     r"key 'systems.graphene.directions.x.youngs_modulus_N_per_m.n' must be an integer, got 1.5 \(float\)"),
    (lambda d: d["systems"]["graphene"]["stability"].update(retained="yes"),
     r"key 'systems.graphene.stability.retained' must be true or false, got 'yes' \(str\)"),
    (lambda d: d["systems"]["graphene"].update(directions=[]),
     r"key 'systems.graphene.directions' must be an object \{name: ...\}, got \[\] \(list\)"),
    (lambda d: d["systems"]["graphene"]["provenance"].update(md_runs="graphene_x_seed0.h5"),
     r"key 'systems.graphene.provenance.md_runs' must be a list \[...\], got 'graphene_x_seed0.h5' \(str\)"),
    (lambda d: d["systems"]["interface"]["heterostructure"]["low_T"]["compliance_cell"]["geometry"].pop("fraction_B"),
     r"key 'systems.interface.heterostructure.low_T.compliance_cell.geometry.fraction_B' is missing"),
    (lambda d: d.update(temperature_K=True), r"key 'temperature_K' must be a number, got True \(bool\)"),
    (lambda d: d.update(systems=None), r"key 'systems' must be an object \{name: ...\}, got None \(NoneType\)"),
])
def test_wrong_type_is_named_by_its_path(tmp_path, change, message):
    data = json.loads(SUMMARY.read_text())
    change(data)
    with pytest.raises(ContractError, match=f"^{re.escape(str(tmp_path / 'summary.json'))}: {message}"):
        read_summary(_written(tmp_path, data))


def test_properties_key_path(tmp_path):
    data = json.loads(PROPERTIES.read_text())
    del data["phases"]["borophene"]["thickness_A"]
    with pytest.raises(ContractError, match=r"key 'phases.borophene.thickness_A' is missing; not a valid properties "
                                            r"file \(multiscale-properties/2\): rerun the constitutive stage"):
        read_properties(_written(tmp_path, data, "properties.json"))
    data = json.loads(PROPERTIES.read_text())
    data["interfaces"]["graphene|borophene"]["normal_compliance"]["equivalent_length_nm"]["graphene"] = "0.9 nm"
    with pytest.raises(ContractError, match=r"'interfaces.graphene\|borophene.normal_compliance.equivalent_length_nm"
                                            r".graphene' must be a number, got '0.9 nm' \(str\)"):
        validate_properties(data)


@pytest.mark.parametrize("kind", ["summary", "properties"])
def test_truncated_or_empty_file(tmp_path, kind):
    read, source, stage = READ[kind]
    text = source.read_text()
    for cut in (text[: len(text) // 2], ""):
        path = tmp_path / source.name
        path.write_text(cut)
        with pytest.raises(ContractError, match=rf"^{re.escape(str(path))}: not valid JSON \(.*\), the file is "
                                                rf"truncated or corrupt; rerun the {stage} stage that writes it "
                                                r"with --force"):
            read(path)


def test_missing_file_names_the_stage(tmp_path):
    with pytest.raises(ContractError, match=rf"^{re.escape(str(tmp_path / 'summary.json'))} is missing; rerun the md "
                                            r"stage that writes it with --force \(`multiscale run CASE --stages md "
                                            r"--force`\)"):
        read_summary(tmp_path / "summary.json")


def test_not_an_object(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("[1, 2]")
    with pytest.raises(ContractError, match=r"key 'format' is missing or not a string"):
        read_summary(path)


def test_writer_refuses_bad_data_and_keeps_the_old_file(tmp_path):
    path = write_summary(tmp_path / "summary.json", read_summary(SUMMARY))
    before = path.read_bytes()
    bad = copy.deepcopy(read_summary(SUMMARY))
    del bad["systems"]["borophene"]["provenance"]["potential"]
    with pytest.raises(ContractError, match=r"summary.json \(not written\): key 'systems.borophene.provenance."
                                            r"potential' is missing; .*: the md stage built data outside its contract"):
        write_summary(path, bad)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_statistics_may_have_a_null_sem_and_run_counts_but_no_wrong_count():
    """One seed: sem null (never 0); run counts and the properties-only markers are optional, typed."""
    data = json.loads(SUMMARY.read_text())
    stat = data["systems"]["graphene"]["directions"]["x"]["youngs_modulus_N_per_m"]
    stat.update(sem=None, n=1, attempted=2, failed=0, blown_up=1)
    validate_summary(data)
    stat["blown_up"] = "one"
    with pytest.raises(ContractError, match=r"youngs_modulus_N_per_m.blown_up' must be an integer"):
        validate_summary(data)
    props = json.loads(PROPERTIES.read_text())
    props["phases"]["graphene"]["directions"]["x"]["ultimate_strength_N_per_m"].update(withheld=3)
    with pytest.raises(ContractError, match=r"ultimate_strength_N_per_m.withheld' must be a string"):
        validate_properties(props)


def test_unknown_keys_are_allowed_within_a_version():
    data = json.loads(SUMMARY.read_text())
    data["systems"]["graphene"]["directions"]["x"]["new_quantity"] = {"mean": 1.0, "sem": 0.0, "n": 1}
    data["note"] = "written by a newer md stage of the same format version"
    validate_summary(data)
