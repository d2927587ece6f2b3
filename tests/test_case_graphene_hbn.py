"""The second embedded case, built only from structure files: it loads, and the generic builder makes
from its shipped relaxed phase cells the interface that its shipped dataset was generated on."""
from pathlib import Path

import ase.io
import numpy as np
import pytest

from multiscale.case import Case
from training.cells import interface_cell

CASE = Path(__file__).resolve().parents[1] / "cases" / "graphene_hbn"


def test_case_loads_with_files_only():
    case = Case.load(CASE, preset="quick")
    assert case.systems["hbn"]["structure"] == "hbn.vasp" and case.systems["interface"]["structure"] == ""
    assert set(case.runners) >= {"data", "fit", "md", "constitutive", "report"}


def test_generated_interface_is_the_shipped_one():
    graphene = ase.io.read(CASE / "data" / "graphene.structure.extxyz")
    hbn = ase.io.read(CASE / "data" / "hbn.structure.extxyz")
    atoms, info = interface_cell(graphene, hbn, names=("graphene", "hbn"))
    assert info["cells_x"] == [1, 1] and info["cells_y"] == [2, 2] and info["repeat_x"] == 5
    assert info["strained"] == "hbn" and info["strain"] == pytest.approx(-0.0162, abs=5e-4)
    shipped = ase.io.read(CASE / "data" / "interface.structure.extxyz")   # relaxed across the interfaces
    assert atoms.get_chemical_formula() == shipped.get_chemical_formula() == "C40B20N20"
    assert np.isclose(atoms.cell[0, 0], shipped.cell[0, 0])              # x is graphene's period, kept
    assert abs(shipped.cell[1, 1] / atoms.cell[1, 1] - 1) < 0.03          # y relaxed by the engine
