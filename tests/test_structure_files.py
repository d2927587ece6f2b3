"""systems.<name>.structure as a file: every format ASE reads validates, every bad file is one error
naming the key, the file and the problem (training.systems, and multiscale.case at Case.load)."""
from pathlib import Path

import ase.io
import pytest
from ase.build import bulk, graphene

from multiscale.case import Case
from multiscale.errors import CaseError
from training.systems import StructureError, check_sheet, check_species, read_structure, validate_system

ROOT = Path(__file__).resolve().parents[1]
KEY = "systems.hbn.structure"


def hbn(repeat=(3, 3, 1)):
    """A flat h-BN sheet (a = 2.504 Å, 20 Å of cell along z, open along z)."""
    return graphene(formula="BN", a=2.504, vacuum=10.0).repeat(repeat)


def write(tmp_path, name, atoms, fmt=None, **kw):
    if fmt in ("cif", "cfg"):
        atoms = atoms.copy()
        atoms.pbc = True  # these writers want a 3D periodic cell; the 20 Å along z stays vacuum
    ase.io.write(tmp_path / name, atoms, format=fmt, **kw)
    return name


def phase(structure):
    return {"kind": "phase", "structure": structure, "thickness_A": 3.35, "between": [], "dataset": ""}


def error_of(tmp_path, structure, *, engine="tblite-gfn2", name="hbn"):
    with pytest.raises(StructureError) as info:
        validate_system(name, phase(structure), tmp_path, engine=engine)
    message = str(info.value)
    assert message.startswith(f"systems.{name}.structure: ") and "\n" not in message, message
    return message


@pytest.mark.parametrize("name, fmt", [("hbn.vasp", "vasp"), ("POSCAR", "vasp"), ("CONTCAR", "vasp"),
                                       ("hbn.cif", "cif"), ("hbn.extxyz", "extxyz"), ("hbn.cfg", "cfg")])
def test_every_format_reads_and_validates(tmp_path, name, fmt):
    write(tmp_path, name, hbn(), fmt)
    atoms = read_structure(name, tmp_path, key=KEY)
    assert len(atoms) == 18 and atoms.get_chemical_formula() == "B9N9"
    assert atoms.cell.lengths()[2] == pytest.approx(20.0)
    validate_system("hbn", phase(name), tmp_path, engine="tblite-gfn2")


def test_graphene_poscar_in_a_subfolder_and_an_absolute_path(tmp_path):
    (tmp_path / "structures").mkdir()
    sheet = graphene(a=2.46, vacuum=10.0).repeat((4, 4, 1))
    write(tmp_path, "structures/graphene.vasp", sheet, "vasp")
    assert read_structure("structures/graphene.vasp", tmp_path, key=KEY).get_chemical_formula() == "C32"
    absolute = str(tmp_path / "structures" / "graphene.vasp")
    validate_system("g", phase(absolute), ROOT, engine="gpaw")


def test_builder_names_still_build(tmp_path):
    for spec, n_atoms in (("graphene", 60), ("borophene_chi3", 64), ("graphene_borophene_interface", 88)):
        assert len(read_structure(spec, tmp_path, key=KEY)) == n_atoms
        validate_system("x", phase(spec), tmp_path, engine="tblite-gfn2")


def test_missing_file_names_the_path_and_the_builders(tmp_path):
    message = error_of(tmp_path, "nope.vasp")
    assert f"{tmp_path / 'nope.vasp'} does not exist" in message
    assert "graphene, borophene, interface, borophene_chi3, graphene_borophene_interface" in message


def test_a_phase_without_structure_key_is_told_the_default(tmp_path):
    message = error_of(tmp_path, "hbn")
    assert f"{tmp_path / 'hbn'} does not exist" in message
    assert "a phase without a structure key takes its system name, 'hbn'" in message


def test_unparseable_file_names_the_file_and_ase(tmp_path):
    (tmp_path / "x.vasp").write_text("this is not\na POSCAR file\n")
    message = error_of(tmp_path, "x.vasp")
    assert "ASE cannot read" in message and str(tmp_path / "x.vasp") in message
    assert "scaling factors" in message            # ASE's own reason, on the same line
    assert ".vasp (POSCAR), .cif, .extxyz" in message


def test_unknown_suffix_is_unparseable(tmp_path):
    (tmp_path / "hbn.structure").write_text("B 0 0 0\n")
    message = error_of(tmp_path, "hbn.structure")
    assert "ASE cannot read" in message and "suffix" in message


def test_plain_xyz_has_no_cell(tmp_path):
    write(tmp_path, "hbn.xyz", hbn(), "xyz")
    message = error_of(tmp_path, "hbn.xyz")
    assert "hbn.xyz has no periodic unit cell" in message
    assert "needs a periodic cell in x and y with vacuum along z" in message


def test_overlapping_atoms_are_named(tmp_path):
    atoms = hbn()
    atoms.positions[4] = atoms.positions[1] + [0.3, 0.0, 0.0]  # atom 5 (B) onto atom 2 (N)
    write(tmp_path, "hbn.extxyz", atoms, "extxyz")
    message = error_of(tmp_path, "hbn.extxyz")
    assert "hbn.extxyz" in message and "atoms 2 (N) and 5 (B) are 0.300 Å apart" in message
    assert "overlap" in message


def test_overlap_across_the_cell_boundary(tmp_path):
    atoms = hbn(repeat=(1, 1, 1))
    atoms.positions[1] = atoms.positions[0] + atoms.cell[0] - [0.2, 0.0, 0.0]  # near atom 1's periodic image
    write(tmp_path, "hbn.vasp", atoms, "vasp")
    assert "atoms 1 (B) and 2 (N) are 0.200 Å apart" in error_of(tmp_path, "hbn.vasp")


@pytest.mark.parametrize("text", ["", '0\nLattice="3 0 0 0 3 0 0 0 20" Properties=species:S:1:pos:R:3 pbc="T T T"\n'])
def test_empty_file(tmp_path, text):
    (tmp_path / "e.extxyz").write_text(text)
    message = error_of(tmp_path, "e.extxyz")
    assert "e.extxyz" in message and ("is empty" in message or "holds no atoms" in message)


def test_bulk_crystal_is_not_a_sheet(tmp_path):
    write(tmp_path, "cu.vasp", bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3)), "vasp")
    message = error_of(tmp_path, "cu.vasp")
    assert "cu.vasp is a bulk (3D periodic) structure" in message
    assert "leave 1.8 Å of vacuum along z" in message and "support 2D sheets only" in message
    assert "add at least 15 Å of vacuum along z" in message


def test_tilted_third_vector_is_not_a_sheet():
    atoms = hbn()
    atoms.pbc = True
    atoms.cell[2] = [2.0, 0.0, 20.0]
    with pytest.raises(StructureError, match="third cell vector is not along z"):
        check_sheet(atoms, key=KEY, what="the MD stage")


def test_species_the_engine_cannot_treat(tmp_path):
    atoms = hbn()
    atoms.numbers[0] = 92
    write(tmp_path, "ubn.extxyz", atoms, "extxyz")
    message = error_of(tmp_path, "ubn.extxyz", engine="tblite-gfn2")
    assert "ubn.extxyz holds U (Z = 92)" in message and "data.engine: tblite-gfn2" in message
    assert "Z = 1 to 86" in message
    validate_system("hbn", phase("ubn.extxyz"), tmp_path, engine="python:ase.calculators.emt.EMT")  # not checked
    with pytest.raises(StructureError, match="gpaw"):
        check_species(atoms, "gpaw", key=KEY)


def test_interface_generated_from_between_is_not_read(tmp_path):
    for structure in ("", "gb"):  # empty, or the default name that is neither a builder nor a file
        validate_system("gb", {"kind": "interface", "structure": structure, "between": ["a", "b"]}, tmp_path,
                        engine="tblite-gfn2")


def test_interface_with_a_file_is_checked(tmp_path):
    write(tmp_path, "cu.vasp", bulk("Cu", "fcc", a=3.61, cubic=True), "vasp")
    with pytest.raises(StructureError, match=r"^systems\.gb\.structure: \S+/cu\.vasp is a bulk"):
        validate_system("gb", {"kind": "interface", "structure": "cu.vasp", "between": ["a", "b"]}, tmp_path,
                        engine="tblite-gfn2")


# -- at case.yaml validation ---------------------------------------------------------------------

def make_case(tmp_path, systems, data=""):
    (tmp_path / "case.yaml").write_text(f"name: t\nsystems:\n{systems}{data}")
    return tmp_path


def test_case_with_a_structure_file_loads(tmp_path):
    write(tmp_path, "hbn.vasp", hbn(), "vasp")
    case = Case.load(make_case(tmp_path, "  hbn: {kind: phase, structure: hbn.vasp}\n"
                                         "  graphene: {kind: phase}\n"
                                         "  gb: {kind: interface, between: [hbn, graphene]}\n"))
    assert case.systems["hbn"]["structure"] == "hbn.vasp"
    assert case.systems["graphene"]["structure"] == "graphene"   # a phase defaults to its own name
    assert case.systems["gb"]["structure"] == ""                 # an interface: generated from between


@pytest.mark.parametrize("systems, data, fragments", [
    ("  hbn: {kind: phase, structure: missing.vasp}\n", "", ["missing.vasp does not exist"]),
    ("  hbn: {kind: phase, structure: ubn.extxyz}\n", "data: {engine: tblite-gfn1}\n",
     ["ubn.extxyz holds U (Z = 92)", "data.engine: tblite-gfn1"]),
])
def test_case_with_a_bad_structure_is_one_case_error(tmp_path, systems, data, fragments):
    atoms = hbn()
    atoms.numbers[0] = 92
    write(tmp_path, "ubn.extxyz", atoms, "extxyz")
    with pytest.raises(CaseError) as info:
        Case.load(make_case(tmp_path, systems, data))
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'case.yaml'}: {KEY}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_default_case_still_loads():
    case = Case.load(ROOT / "cases" / "graphene_borophene", preset="quick")
    assert case.systems["borophene"]["structure"] == "borophene_chi3"
    assert case.systems["interface"]["structure"] == "graphene_borophene_interface"


def test_unmatched_interface_is_one_case_error_at_load(tmp_path):
    """Two phases whose periods along the interface match only with a large strain: the error names both
    phases, the best mismatch and the tolerance, before any stage runs."""
    write(tmp_path, "hbn.vasp", hbn(), "vasp")
    stretched = hbn((1, 1, 1))
    stretched.set_cell(stretched.cell.array * [1.31, 1.31, 1.0], scale_atoms=True)   # a = 3.28 Å
    write(tmp_path, "wide.vasp", stretched, "vasp")
    systems = ("  hbn: {kind: phase, structure: hbn.vasp}\n  wide: {kind: phase, structure: wide.vasp}\n"
               "  joint: {kind: interface, between: [hbn, wide]}\n")
    with pytest.raises(CaseError) as info:
        Case.load(make_case(tmp_path, systems, "data: {interface_tolerance: 0.005}\n"))
    message = str(info.value)
    for fragment in ("systems.joint.between", "phases hbn and wide", "within 0.5 %", "best: 4 x hbn : 3 x wide, mismatch +1.78 %",
                     "data.interface_tolerance"):
        assert fragment in message, message
    Case.load(make_case(tmp_path, systems, "data: {interface_tolerance: 0.02}\n"))  # 4 : 3 cells, 1.8 % apart
