"""MLIP .cfg reader/writer: MLIP's own files round-trip byte for byte; conventions; bad input."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from training.mtp import read_cfg, write_cfg
from training.mtp.errors import MTPFormatError

DATA = Path(__file__).parent / "data" / "mlip"


@pytest.mark.parametrize("name", ["multi/efs_10.cfg.gz", "cubic/efs_06.cfg.gz"])
def test_mlip_file_round_trips_byte_for_byte(name, tmp_path):
    frames = read_cfg(DATA / name)
    assert len(frames) == 1001
    out = tmp_path / "out.cfg.gz"
    write_cfg(out, frames)
    assert gzip.open(out, "rt").read() == gzip.open(DATA / name, "rt").read()


def test_conventions_of_read_frames():
    frames = read_cfg(DATA / "multi" / "efs_10.cfg.gz", species=["Cu", "Ag", "Au"])
    atoms = frames[0]
    assert len(atoms) == 27 and atoms.pbc.all()
    assert atoms.get_chemical_symbols()[:3] == ["Cu", "Ag", "Au"]
    assert list(atoms.arrays["mlip_type"][:3]) == [0, 1, 2]
    assert atoms.arrays["nbh_grades"][0] == pytest.approx(0.65934)
    assert atoms.info["features"] == {"ID": "0", "MV_grade": "1.000000"}
    assert atoms.get_potential_energy() == pytest.approx(7.361913230306)
    np.testing.assert_allclose(atoms.get_forces()[0], [-1.215224, -0.005951, -1.215224])
    plus = np.array([80.64915, 76.44863, 80.64915, -0.37300, -4.87818, -0.37300])
    np.testing.assert_allclose(atoms.get_stress(), -plus / atoms.get_volume())
    # without species: placeholder element X, the type index tells atoms apart
    bare = read_cfg(DATA / "multi" / "efs_10.cfg.gz")[0]
    assert set(bare.get_chemical_symbols()) == {"X"}
    assert list(bare.arrays["mlip_type"][:3]) == [0, 1, 2]


def test_write_from_plain_atoms_with_species(tmp_path):
    atoms = Atoms("CB2", positions=[[0, 0, 0], [1.4, 0, 0], [0, 1.4, 0]], cell=[4, 5, 6], pbc=True)
    stress = np.array([0.1, 0.2, 0.3, 0.01, 0.02, 0.03])
    atoms.calc = SinglePointCalculator(atoms, energy=-3.5, forces=np.ones((3, 3)), stress=stress)
    write_cfg(tmp_path / "a.cfg", [atoms], species=["B", "C"])
    back = read_cfg(tmp_path / "a.cfg", species=["B", "C"])[0]
    assert back.get_chemical_symbols() == ["C", "B", "B"]
    assert list(back.arrays["mlip_type"]) == [1, 0, 0]
    assert back.get_potential_energy() == pytest.approx(-3.5)
    np.testing.assert_allclose(back.get_stress(), stress, atol=1e-5 / atoms.get_volume())
    with pytest.raises(MTPFormatError, match="not in species"):
        write_cfg(tmp_path / "b.cfg", [atoms], species=["B"])
    with pytest.raises(MTPFormatError, match="no species list"):
        write_cfg(tmp_path / "b.cfg", [Atoms("CB", positions=[[0, 0, 0], [1, 1, 1]])])


def test_2d_cell_and_direct_coordinates(tmp_path):
    text = """BEGIN_CFG
 Size
    2
 Supercell
   2.0 0.0 0.0
   0.0 3.0 0.0
 AtomData:  id type cartes_x cartes_y cartes_z
    1 0 0.0 0.0 0.0
    2 0 1.0 1.5 0.0
END_CFG
BEGIN_CFG
 Size
    1
 Supercell
   2.0 0.0 0.0
   0.0 4.0 0.0
   0.0 0.0 5.0
 AtomData:  id type direct_x direct_y direct_z
    1 0 0.5 0.25 0.1
END_CFG
"""
    (tmp_path / "a.cfg").write_text(text)
    sheet, bulk = read_cfg(tmp_path / "a.cfg")
    assert list(sheet.pbc) == [True, True, False]
    np.testing.assert_allclose(bulk.positions[0], [1.0, 1.0, 0.5])


BAD = {
    "unknown keyword": (" Size\n    1\n Colour\n    red\n", "unknown keyword 'Colour'", 4),
    "short atom row": (" Size\n    1\n AtomData: id type cartes_x cartes_y cartes_z\n    1 0 0.0 0.0\n",
                       "expected 5 numbers", 5),
    "not a number": (" Size\n    one\n", "Size is not a list of int", 3),
    "no end": (" Size\n    1\n AtomData: id type cartes_x cartes_y cartes_z\n    1 0 0 0 0\n",
               "no END_CFG", 5),
    "bad stress": (" Size\n    0\n PlusStress: xx yy zz yz xz xy\n    1 2 3\n", "expected 6 numbers", 5),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_cfg_names_file_configuration_and_line(case, tmp_path):
    body, message, line = BAD[case]
    good = "BEGIN_CFG\n Size\n    1\n AtomData: id type cartes_x cartes_y cartes_z\n    1 0 0 0 0\nEND_CFG\n"
    path = tmp_path / "bad.cfg"
    end = "" if case == "no end" else "END_CFG\n"
    path.write_text(good + "BEGIN_CFG\n" + body + end)
    with pytest.raises(MTPFormatError) as info:
        read_cfg(path)
    text = str(info.value)
    assert str(path) in text and "configuration 2" in text and message in text
    assert f"line {line + 6}" in text


def test_type_outside_species_is_an_error(tmp_path):
    path = tmp_path / "a.cfg"
    path.write_text("BEGIN_CFG\n Size\n    1\n AtomData: id type cartes_x cartes_y cartes_z\n"
                    "    1 3 0 0 0\nEND_CFG\n")
    with pytest.raises(MTPFormatError, match="type 3 has no element"):
        read_cfg(path, species=["C"])
