"""A system that brings its own potential (``systems.<name>.potential``): case validation, the fit stage's
copy and report, the md stage's plan, reruns when the file changes.

The case is a tiny copy of the default one (every 8th embedded frame); the potentials are random (a NEP4
from training.nep.random_nep, an untrained level-2 MTP): the checks are of the plumbing,
not of the physics.
"""
import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from multiscale.case import Case
from multiscale.errors import CaseError
from multiscale.runner import case_status
from training import datasets
from training.mtp import MTP
from training.nep import random_nep, write_nep

DEFAULT = Path(__file__).resolve().parents[1] / "cases" / "graphene_borophene"
SYSTEMS = ("graphene", "borophene", "interface")


def _nep(path: Path, species, seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_nep(random_nep(tuple(species), version=4, seed=seed, neurons=4, n_max=(2, 2), basis_size=(4, 4),
                                l_max=(2, 0, 0)), path)


def _mtp(path: Path, species, *, tag=True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    MTP.untrained(2, len(species), species=list(species) if tag else None, seed=0).write(path)
    return path


def _case(root: Path, potentials: dict, *, frames=True, edit=None) -> Path:
    """The default case's systems (builders), ``potentials`` (system -> path relative to the case) added,
    with every 8th embedded frame in data/ when ``frames``; ``edit(raw)`` changes the yaml."""
    raw = yaml.safe_load((DEFAULT / "case.yaml").read_text())
    raw.pop("presets")
    raw.pop("default_preset")
    raw["fit"] = {"level": 2, "method": "linear", "passive": {"every_k": 3}}
    for name, spec in potentials.items():
        raw["systems"][name]["potential"] = spec
    if edit:
        edit(raw)
    case = root / "tiny"
    (case / "data").mkdir(parents=True, exist_ok=True)
    (case / "case.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for system in SYSTEMS if frames else ():
        datasets.write(case / "data" / f"{system}.extxyz.gz", datasets.read(DEFAULT / "data" / f"{system}.extxyz.gz")[::8])
        shutil.copy(DEFAULT / "data" / f"{system}.meta.json", case / "data" / f"{system}.meta.json")
    return case


def _error(case_dir: Path) -> str:
    with pytest.raises(CaseError) as info:
        Case.load(case_dir)
    message = str(info.value)
    assert message.startswith(str(case_dir / "case.yaml")) and "\n" not in message, message
    return message


# ----------------------------------------------------------------------------- validation
def test_brought_potentials_validate(tmp_path):
    case_dir = tmp_path / "tiny"
    _nep(case_dir / "potentials" / "graphene_nep.txt", ["C"])
    _nep(case_dir / "potentials" / "cb.nep", ["B", "C"])  # any name: the model is read from the first line
    _mtp(case_dir / "boro.mtp", ["B"])
    case = Case.load(_case(tmp_path, {"graphene": "potentials/graphene_nep.txt", "borophene": "boro.mtp",
                                      "interface": "potentials/cb.nep"}, frames=False))
    assert case.systems["graphene"]["potential"] == "potentials/graphene_nep.txt"


def test_a_system_without_potential_keeps_its_entry_as_before(tmp_path):
    case = Case.load(_case(tmp_path, {}, frames=False))
    assert all("potential" not in entry for entry in case.systems.values())


def test_missing_potential_file(tmp_path):
    case_dir = _case(tmp_path, {"graphene": "potentials/nope.txt"}, frames=False)
    message = _error(case_dir)
    assert (f"systems.graphene.potential: {case_dir / 'potentials' / 'nope.txt'} does not exist; give a GPUMD NEP "
            f"file (nep.txt) or an MLIP .mtp file relative to the case folder") in message
    (case_dir / "potentials" / "nope.txt").mkdir(parents=True)
    assert "nope.txt is a folder, not a potential file" in _error(case_dir)


def test_unreadable_potential_files(tmp_path):
    case_dir = tmp_path / "tiny"
    bad = case_dir / "bad.txt"
    bad.parent.mkdir(parents=True)
    bad.write_text("hello 1 C\n1.0\n")
    _case(tmp_path, {"graphene": "bad.txt"}, frames=False)
    assert (f"systems.graphene.potential: {bad} is neither a GPUMD NEP file (first line the model, e.g. 'nep4 1 C') "
            f"nor an MLIP .mtp file (first line 'MTP'): its first line is 'hello 1 C'") in _error(case_dir)
    bad.write_text("")
    assert f"{bad} is neither a GPUMD NEP file" in _error(case_dir) and "it is empty" in _error(case_dir)
    # a NEP cut short: the NEP reader's reason, with the file and line
    good = _nep(tmp_path / "full.txt", ["C"]).read_text().splitlines()
    bad.write_text("\n".join(good[:12]) + "\n")
    message = _error(case_dir)
    assert f"systems.graphene.potential: {bad} is not a readable NEP potential: {bad}, end of file:" in message
    assert "wrong parameter count" in message
    bad.write_text("nep4_dipole 1 C\n")
    assert "'nep4_dipole' is a dipole model" in _error(case_dir)
    # an .mtp that does not parse, and one without its elements
    mtp = _mtp(case_dir / "g.mtp", ["C"])
    _case(tmp_path, {"graphene": "g.mtp"}, frames=False)
    mtp.write_text(mtp.read_text().replace("alpha_moments_count", "alpha_moments_kount"))
    assert f"systems.graphene.potential: {mtp} is not a readable MTP potential: {mtp}: line" in _error(case_dir)
    _mtp(mtp, ["C"], tag=False)
    assert (f"systems.graphene.potential: {mtp} does not name its elements; add them to its potential_tag in the "
            f"order of its types, e.g. 'potential_tag = species:C,B'") in _error(case_dir)


def test_potential_must_cover_the_species_of_its_system(tmp_path):
    case_dir = tmp_path / "tiny"
    boron = _nep(case_dir / "b.txt", ["B"])
    _case(tmp_path, {"graphene": "b.txt"}, frames=False)
    assert (f"systems.graphene.potential: {boron} is a NEP potential for B, but the system holds C too (graphene: C); "
            f"a brought potential must cover every element of its system") in _error(case_dir)
    # the interface, given as a builder: its structure's elements
    carbon = _nep(case_dir / "c.txt", ["C"])
    _case(tmp_path, {"interface": "c.txt"}, frames=False)
    assert (f"systems.interface.potential: {carbon} is a NEP potential for C, but the system holds B too "
            f"(graphene_borophene_interface: B, C)") in _error(case_dir)

    # an interface generated from its phases (no structure): the union of the phases' elements
    def generated(raw):
        raw["systems"]["interface"].pop("structure")

    _case(tmp_path, {"interface": "c.txt"}, frames=False, edit=generated)
    assert (f"systems.interface.potential: {carbon} is a NEP potential for C, but the system holds B too (the "
            f"structures of its phases graphene and borophene: B, C)") in _error(case_dir)
    _mtp(case_dir / "cb.mtp", ["C", "B"])
    _case(tmp_path, {"interface": "cb.mtp"}, frames=False, edit=generated)
    Case.load(case_dir)  # a superset in any order is fine


# ----------------------------------------------------------------------------- data -> fit -> md plan
def test_fit_copies_and_records_brought_potentials_and_md_plans_with_them(tmp_path, monkeypatch):
    case_dir = tmp_path / "tiny"
    nep = _nep(case_dir / "potentials" / "graphene_nep.txt", ["C"])
    mtp = _mtp(case_dir / "potentials" / "boro.mtp", ["B"])
    _case(tmp_path, {"graphene": "potentials/graphene_nep.txt", "borophene": "potentials/boro.mtp"})
    case = Case.load(case_dir)
    result = case.run(["data", "fit"])
    assert result.ran == ["data", "fit"]
    fit = case_dir / "runs" / "fit"

    # graphene: the NEP copied as graphene.nep.txt, no fit, no errors (the fit stage does not evaluate a NEP)
    assert (fit / "graphene.nep.txt").read_bytes() == nep.read_bytes()
    assert not (fit / "graphene.mtp").exists() and not (fit / "graphene.als").exists()
    report = json.loads((fit / "graphene_fit.json").read_text())
    assert report["brought"] is True and report["model"] == "nep" and report["species"] == ["C"]
    assert report["source"] == str(nep) and report["sha256"] == hashlib.sha256(nep.read_bytes()).hexdigest()
    assert report["files"] == {"potential": "graphene.nep.txt"}
    assert report["errors_all_frames"] is None and "md_gpu" in report["errors_note"]
    # borophene: the MTP copied as borophene.mtp and its errors on the system's dataset
    report = json.loads((fit / "borophene_fit.json").read_text())
    assert report["brought"] is True and report["model"] == "mtp" and report["species"] == ["B"]
    assert (fit / "borophene.mtp").read_bytes() == mtp.read_bytes()
    assert report["files"] == {"potential": "borophene.mtp", "parity": "borophene_parity.png"}
    n_frames = len(datasets.read(case_dir / "runs" / "data" / "borophene.extxyz.gz"))
    assert report["n_frames"] == n_frames and report["errors_all_frames"]["forces"]["rmse"] > 0
    assert (fit / "borophene_parity.png").is_file() and not (fit / "borophene.als").exists()
    # the interface: fitted as without brought potentials
    report = json.loads((fit / "interface_fit.json").read_text())
    assert "brought" not in report and report["files"]["potential"] == "interface.mtp"
    assert (fit / "interface.als").is_file()
    summary = json.loads((fit / "summary.json").read_text())["systems"]
    assert summary["graphene"]["model"] == "nep" and summary["interface"]["level"] == 2
    from multiscale.report_tables import fit_table

    table = fit_table({"systems": summary})
    assert "brought NEP" in table and "brought MTP" in table and "MTP level 2" in table

    # the md stage plans every system with the potential the fit stage's report names
    from md_gpu.forcefields.mtp import MTPForceField
    from md_gpu.forcefields.nep import NEPForceField
    from md_gpu.md_stage import plan_tasks
    from md_gpu.tasks.common import load

    lines = []
    ctx = SimpleNamespace(systems=case.systems, case_dir=case_dir, out_dir=tmp_path / "md",
                          stage_dir=lambda name: case_dir / "runs" / name, log=lines.append)
    settings = {**case.settings["md"], "extrapolation": {**case.settings["md"]["extrapolation"], "every": 10}}
    tasks = plan_tasks(settings, ctx)
    by_system = {}
    for task in tasks:
        by_system.setdefault(task["system"], []).append(task)
    assert set(by_system) == set(SYSTEMS)
    assert {t["potential"] for t in by_system["graphene"]} == {str(fit / "graphene.nep.txt")}
    assert {t["potential"] for t in by_system["borophene"]} == {str(fit / "borophene.mtp")}
    assert {t["potential"] for t in by_system["interface"]} == {str(fit / "interface.mtp")}
    graphene = next(t for t in by_system["graphene"] if t["kind"] == "tensile")
    assert graphene["active_set"] is None and graphene["core_radii"] is None
    assert {t["active_set"] for t in by_system["interface"]} == {str(fit / "interface.als")}
    assert by_system["interface"][0]["core_radii"]  # the fit's shortest distances, as before
    assert any("'graphene' runs the NEP it brings, which has no active set" in line for line in lines), lines
    # md.short_range_core (on by default) and core radii: MTP options that a NEP passes by
    assert settings["short_range_core"] is True
    ff, atoms, _, _ = load(graphene)
    assert isinstance(ff, NEPForceField) and ff.species == ("C",) and set(atoms.get_chemical_symbols()) == {"C"}
    ff, _, _, _ = load(next(t for t in by_system["borophene"] if t["kind"] == "tensile"))
    assert isinstance(ff, MTPForceField) and ff.species == ("B",)

    # a tensile run: the NEP with extrapolation grades asked for runs ungraded, the fitted MTP graded
    import md_gpu.protocols as protocols
    from md_gpu.md_stage import run_task

    seen = {}

    def fake(ff, atoms, *, extrapolation, **kwargs):
        seen[type(ff).__name__] = extrapolation
        return {"properties": {}, "settings": {"n_atoms": len(atoms), "events": []}}

    monkeypatch.setattr(protocols, "tensile", fake)
    monkeypatch.setattr(protocols, "interface_tensile", fake)
    (tmp_path / "md").mkdir()
    assert run_task(graphene)["result"] == {}
    run_task(next(t for t in by_system["interface"] if t["kind"] == "interface"))
    assert seen["NEPForceField"] is None and seen["MTPForceField"] is not None

    # the brought file is an input of the fit stage: editing it makes the fit (and what follows) stale
    assert {r.name: r.state for r in case_status(Case.load(case_dir))}["fit"] == "done"
    _nep(nep, ["C"], seed=1)
    rows = {r.name: r for r in case_status(Case.load(case_dir))}
    assert rows["fit"].state == "stale" and "file:potentials/graphene_nep.txt" in rows["fit"].detail
    assert rows["data"].state == "done"


def test_fit_per_system_cannot_tune_a_brought_potential(tmp_path):
    case_dir = tmp_path / "tiny"
    _nep(case_dir / "g.txt", ["C"])

    def tuned(raw):
        raw["fit"]["per_system"] = {"graphene": {"level": 4}}

    _case(tmp_path, {"graphene": "g.txt"}, frames=False, edit=tuned)
    from training.fit_stage import run_fit

    case = Case.load(case_dir)
    ctx = SimpleNamespace(systems=case.systems, case_dir=case_dir)
    with pytest.raises(ValueError, match=r"fit.per_system: graphene brings its own potential \(systems.<name>.potential\) "
                                         r"and is not fitted; remove its entry from fit.per_system"):
        run_fit(case.settings["fit"], ctx)
