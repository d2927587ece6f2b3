"""The stripe heterostructure of the FE-vs-MD consistency check (md_gpu.heterostructure, md stage wiring)."""
from types import SimpleNamespace

import numpy as np
import pytest
from ase.build import graphene as ase_graphene
from ase.io import write

from md_gpu import heterostructure
from md_gpu.errors import MDSetupError
from md_gpu.md_stage import MD_SETTINGS, plan_tasks, summarize_tasks
from md_gpu.structures import load_structure
from training import structures
from training.structures import LATTICE

H = {"enabled": True, "stripe_widths_nm": [3.4, 3.4], "repeat_x": 2, "min_length_A": 10.0, "gap_A": 1.55,
     "match_tolerance": 0.04,
     "seeds": 2, "low_temperature": True, "compliance_periods": 2}


def phase_files(folder, **cells):
    """Each cell of ``cells`` (name -> ase.Atoms) written as ``<folder>/<name>.structure.extxyz``, the data
    stage's file; returns ``[(name, atoms as md_gpu loads it)]``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, atoms in cells.items():
        path = folder / f"{name}.structure.extxyz"
        write(path, atoms)
        out.append((name, load_structure(path)))
    return out


@pytest.fixture
def graphene_borophene(tmp_path):
    return phase_files(tmp_path / "data", graphene=structures.graphene(), borophene=structures.borophene())


def sorted_positions(atoms):
    p = atoms.positions
    order = np.lexsort((np.round(p[:, 0], 5), np.round(p[:, 1], 5), atoms.numbers))
    return atoms.numbers[order], p[order]


def test_stripe_cell_geometry(graphene_borophene):
    atoms, g = heterostructure.stripe_cell(H, graphene_borophene)
    symbols = np.array(atoms.get_chemical_symbols())
    # graphene: 6 x 8 rectangular 4-atom cells; chi3 borophene: 5 x 4 cells of 8 atoms; twice along x
    assert (symbols == "C").sum() == 2 * 6 * 8 * 4 and (symbols == "B").sum() == 2 * 5 * 4 * 8
    assert g["n_atoms"] == len(atoms) == 704
    a, b = LATTICE["graphene"]["a"], LATTICE["borophene"]["b"]
    assert g["period_nm"] == pytest.approx(atoms.cell[1, 1] / 10) and g["length_nm"] == pytest.approx(2 * 0.6 * a)
    # stripe widths: 8 x sqrt(3) a_C = 34.05 A of graphene and 4 b_B = 33.93 A of borophene
    assert g["fraction_B"] == pytest.approx(4 * b / (4 * b + 8 * 3 ** 0.5 * a), abs=0.01)
    assert g["strained"] == "borophene" and 0.019 < g["strain"] < 0.021  # 5 chi3 cells stretched to 6 of graphene
    assert not atoms.pbc[2] and atoms.cell[2, 2] >= 15  # a sheet with vacuum


def test_stripe_cell_from_the_phase_files_is_the_embedded_interface_builder_cell(graphene_borophene):
    """The default case's stripe cell (3.4 + 3.4 nm, gap 1.55 A) from the phases' repeated 0 K cells is
    training.structures.interface with 8 graphene and 4 chi3 cells across, atom for atom."""
    atoms, g = heterostructure.stripe_cell({**H, "repeat_x": 1}, graphene_borophene)
    ref = structures.interface(graphene_cells=(6, 8), borophene_cells_y=4)
    assert np.allclose(atoms.cell.lengths(), ref.cell.lengths())
    numbers, positions = sorted_positions(atoms)
    ref_numbers, ref_positions = sorted_positions(ref)
    assert (numbers == ref_numbers).all() and np.allclose(positions, ref_positions, atol=1e-9)
    compliance, wide = heterostructure.stripe_cell(heterostructure.compliance_cell_settings(H), graphene_borophene)
    assert len(compliance) == 704 and wide["period_nm"] == pytest.approx(2 * g["period_nm"], rel=1e-3)


def test_stripe_cell_of_another_pair_of_phases(tmp_path):
    """h-BN (a = 2.504 A, ASE's builder) beside graphene: periods matched 1 : 1 (h-BN compressed by 2.2 %),
    3.4 nm stripes = 8 rectangular cells of each, bond-length gap from the covalent radii (gap_A: 0); the
    2.45 Å period is repeated 5 times to pass min_length_A (12.25 Å)."""
    hbn = ase_graphene(formula="BN", a=2.504, vacuum=10.0)
    phases = phase_files(tmp_path, graphene=structures.graphene(), hbn=hbn)
    atoms, g = heterostructure.stripe_cell({**H, "gap_A": 0.0, "repeat_x": 1}, phases)
    assert g["n_atoms"] == len(atoms) == 5 * (8 * 4 + 8 * 4)
    assert g["strained"] == "hbn" and g["strain"] == pytest.approx(LATTICE["graphene"]["a"] / 2.504 - 1)
    # 8 rectangular cells of a zigzag-along-x sheet span 23 d along y (d = a / sqrt 3), h-BN is strained
    # along x only; gaps of the C and B covalent radii (the zigzag B edge faces the C edge), the interfaces
    # in the middle of the gaps: period 6.8986 nm, fraction 0.50518 (rel 1e-9: the phases pass through
    # extxyz files, measured 5e-11)
    from ase.data import covalent_radii

    d_g, d_bn = LATTICE["graphene"]["a"] / np.sqrt(3), 2.504 / np.sqrt(3)
    gap = covalent_radii[6] + covalent_radii[5]
    assert g["period_nm"] == pytest.approx((23 * (d_g + d_bn) + 2 * gap) / 10.0, rel=1e-9)
    assert g["fraction_B"] == pytest.approx((23 * d_bn + gap) / (23 * (d_g + d_bn) + 2 * gap), rel=1e-9)
    assert g["length_nm"] == pytest.approx(0.5 * LATTICE["graphene"]["a"])
    twice, g2 = heterostructure.stripe_cell({**H, "gap_A": 0.0, "repeat_x": 2}, phases)
    assert len(twice) == 2 * len(atoms) and g2["length_nm"] == pytest.approx(2 * g["length_nm"])
    assert sorted(set(atoms.get_chemical_symbols())) == ["B", "C", "N"]
    distances = atoms.get_all_distances(mic=True) + 10 * np.eye(len(atoms))
    assert distances.min() > 1.35  # no atoms on top of each other at the interfaces


def test_stripe_cell_errors_name_the_phase_or_key(tmp_path):
    from ase.build import bulk

    phases = phase_files(tmp_path, graphene=structures.graphene(), copper=bulk("Cu", cubic=True))
    with pytest.raises(MDSetupError, match="md.heterostructure: phase copper: its 0 K cell is not a 2D sheet"):
        heterostructure.stripe_cell(H, phases)
    wide = phase_files(tmp_path, graphene=structures.graphene(), wide=ase_graphene(formula="BN", a=3.1, vacuum=10.0))
    with pytest.raises(MDSetupError, match=r"md.heterostructure: phases graphene and wide: no common period .*"
                                           r"\(md.heterostructure.match_tolerance: 0.001\)"):
        heterostructure.stripe_cell({**H, "match_tolerance": 0.001}, wide)


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
    with pytest.raises(ValueError, match=r"md.heterostructure.stripe_widths_nm: \[3.4\] must be two widths > 0"):
        heterostructure.check_settings({**H, "stripe_widths_nm": [3.4]})
    with pytest.raises(ValueError, match=r"md.heterostructure.gap_A: -1.0 must be >= 0"):
        heterostructure.check_settings({**H, "gap_A": -1.0})
    with pytest.raises(ValueError, match=r"md.heterostructure.compliance_periods: 1 must be 0 \(none\) or >= 2: "
                                         r"1 would take the interfaces' compliance from the checked cell itself"):
        heterostructure.check_settings({**H, "compliance_periods": 1})
    assert heterostructure.compliance_cell_settings(H) == {**H, "stripe_widths_nm": [6.8, 6.8], "repeat_x": 1}
    assert heterostructure.cells_across(3.4, 4.2438) == 8 and heterostructure.cells_across(3.4, 8.4153) == 4
    assert heterostructure.cells_across(0.1, 8.4153) == 1


GB = {"graphene": {"kind": "phase", "thickness_A": 3.35}, "borophene": {"kind": "phase"},
      "gb": {"kind": "interface", "between": ["graphene", "borophene"]}}


def stage_ctx(tmp_path, systems=GB):
    """A stand-in md stage context: stand-in potentials in ``fit/`` and structure files in ``data/``."""
    for stage, suffix in (("fit", ".mtp"), ("data", ".structure.extxyz")):
        (tmp_path / stage).mkdir(exist_ok=True)
        for name in systems:
            (tmp_path / stage / f"{name}{suffix}").write_text("stand-in")
    return SimpleNamespace(case_dir=tmp_path, out_dir=tmp_path, stage_dir=lambda name: tmp_path / name,
                           systems=systems)


def test_md_stage_plans_and_summarizes_the_heterostructure(tmp_path):
    from multiscale.schema import validate

    ctx = stage_ctx(tmp_path)
    settings = validate({"seeds": 1, "heterostructure": H}, MD_SETTINGS, where="md", source="test")
    tasks = [t for t in plan_tasks(settings, ctx) if t["kind"] == "heterostructure"]
    assert [t["name"] for t in tasks] == ["gb_heterostructure_seed0", "gb_heterostructure_seed1"]
    # the stripe cell comes from the phases' files, in the order of between
    assert tasks[0]["phase_structures"] == [str(tmp_path / "data" / f"{p}.structure.extxyz")
                                            for p in ("graphene", "borophene")]
    result = {"elastic_N_per_m": {"C11": 300.0, "C22": 200.0, "C12": 60.0, "C66": 80.0},
              "youngs_modulus_normal_N_per_m": 188.0, "geometry": {"period_nm": 6.8}}
    results = [{**tasks[0], "result": result}, {**tasks[1], "blew_up": "exploded", "result": None}]
    summary = summarize_tasks(results, settings)["systems"]["gb"]
    assert summary["heterostructure"]["youngs_modulus_normal_N_per_m"] == {
        "mean": 188.0, "sem": None, "n": 1, "attempted": 2, "failed": 0, "blown_up": 1}
    assert summary["heterostructure_runs"]["at_temperature"] == {"attempted": 2, "blown_up": 1}
    assert summary["heterostructure"]["geometry"]["between"] == ["graphene", "borophene"]
    assert summary["provenance"]["blown_up"] == [{"run": "gb_heterostructure_seed1", "reason": "exploded"}]
    # every stripe run blew up: no heterostructure, but the record says so (not "not enabled")
    gone = summarize_tasks([{**t, "blew_up": "exploded", "result": None} for t in tasks], settings)["systems"]["gb"]
    assert "heterostructure" not in gone and gone["heterostructure_runs"] == {
        "at_temperature": {"attempted": 2, "blown_up": 2},
        "blown_up": [{"run": "gb_heterostructure_seed0", "reason": "exploded"},
                     {"run": "gb_heterostructure_seed1", "reason": "exploded"}]}
    off = validate({"seeds": 1}, MD_SETTINGS, where="md", source="test")
    assert not [t for t in plan_tasks(off, ctx) if t["kind"] == "heterostructure"]
    lone = stage_ctx(tmp_path, {"graphene": GB["graphene"], "gb": GB["gb"]})
    with pytest.raises(MDSetupError, match=r"systems.gb.between \['graphene', 'borophene'\] must name the two"):
        plan_tasks(settings, lone)


def test_md_stage_plans_the_low_temperature_twin_with_the_interface_mtp_on_each_phase(tmp_path):
    """md.heterostructure.low_temperature (default): the stripe cell once at md.elastic.low_temperature_K,
    and each phase's own cell with the interface's potential; summarized as heterostructure.low_T."""
    from multiscale.schema import validate

    ctx = stage_ctx(tmp_path)
    settings = validate({"seeds": 1, "heterostructure": {**H, "seeds": 1}}, MD_SETTINGS, where="md", source="test")
    tasks = plan_tasks(settings, ctx)
    low = {t["name"]: t for t in tasks if t["kind"] in ("heterostructure_low_T", "heterostructure_phase_low_T",
                                                        "heterostructure_compliance_low_T")}
    assert sorted(low) == ["gb_borophene_elastic_low_T", "gb_graphene_elastic_low_T",
                           "gb_heterostructure_compliance_low_T", "gb_heterostructure_low_T"]
    assert {t["potential"] for t in low.values()} == {str(tmp_path / "fit" / "gb.mtp")}  # one MTP on both sides
    assert low["gb_borophene_elastic_low_T"]["structure"] == str(tmp_path / "data" / "borophene.structure.extxyz")
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
    assert entry["low_T"]["youngs_modulus_normal_N_per_m"] == {"mean": 188.0, "sem": None, "n": 1}  # one run
    assert entry["low_T"]["phases_elastic_N_per_m"]["borophene"]["C22"]["mean"] == 195.0
    assert entry["low_T"]["compliance_cell"]["youngs_modulus_normal_N_per_m"] == {"mean": 195.0, "sem": None, "n": 1}
    assert entry["low_T"]["compliance_cell"]["geometry"]["period_nm"] == 13.5
    # a phase run that blew up leaves no low_T entry (the twin would mix potentials) and is recorded
    results[-1] = {**low["gb_borophene_elastic_low_T"], "result": None, "blew_up": "exploded"}
    gb = summarize_tasks(results, settings)["systems"]["gb"]
    assert "low_T" not in gb["heterostructure"]
    assert {"run": "gb_borophene_elastic_low_T", "reason": "exploded"} in gb["provenance"]["blown_up"]
    assert gb["heterostructure_runs"]["low_T"] == {"attempted": 4, "blown_up": 1}
    off = validate({"seeds": 1, "heterostructure": {**H, "low_temperature": False}}, MD_SETTINGS, where="md",
                   source="test")
    assert not [t for t in plan_tasks(off, ctx) if "low_T" in t["kind"] and t["system"] == "gb"]


def test_the_low_temperature_stripe_run_takes_second_order_differences(tmp_path, monkeypatch):
    """At temperature the stripe cell is measured by forward differences, its low-temperature twin by
    the second-order one-sided ones (the cell stiffens with strain: the forward difference at delta =
    0.005 read it 2 % stiff, docs/md.md); any other scheme is refused before anything runs."""
    from md_gpu import md_stage
    from md_gpu import structures as md_structures
    from md_gpu.forcefields import loading
    from multiscale.schema import validate

    with pytest.raises(MDSetupError, match="scheme 'central' is not 'tension' or 'tension2'"):
        heterostructure.run(None, H, [], {"delta": 0.005, "sample_steps": 10}, None, scheme="central")
    monkeypatch.setattr(loading, "load_forcefield", lambda *a, **k: "ff")
    monkeypatch.setattr(md_structures, "load_structure", lambda path, **k: f"cell of {path}")
    runs = {}
    monkeypatch.setattr(heterostructure, "run", lambda ff, h, phases, elastic, rs, **k: runs.setdefault(
        len(runs), (rs.temperature_K, k["scheme"], h["stripe_widths_nm"], phases)))
    settings = validate({"heterostructure": H}, MD_SETTINGS, where="md", source="test")
    for kind in ("heterostructure", "heterostructure_low_T", "heterostructure_compliance_low_T"):
        md_stage.run_task({"kind": kind, "potential": "gb.mtp", "structure": "gb.extxyz", "out_dir": str(tmp_path),
                           "system": "gb", "seed": 0, "name": kind, "settings": settings,
                           "between": ["A", "B"], "phase_structures": ["a.extxyz", "b.extxyz"]})
    # the interface-compliance cell: the low-temperature run of stripes twice as wide
    phases = [("A", "cell of a.extxyz"), ("B", "cell of b.extxyz")]
    assert list(runs.values()) == [(300.0, "tension", [3.4, 3.4], phases), (1.0, "tension2", [3.4, 3.4], phases),
                                   (1.0, "tension2", [6.8, 6.8], phases)]
