"""Sheet geometry (common.sheets): primitive and rectangular cells, period matching, lateral interfaces.

Independent references: the hand-written cells of training.structures (graphene's 4-atom rectangle,
chi3 borophene's 8-atom rectangle, their 88-atom interface cell) and ASE's own h-BN builder."""
import numpy as np
import pytest
from ase.build import bulk
from ase.build import graphene as ase_graphene

from common.sheets import (GeometryError, as_sheet, is_sheet, lateral_interface, match_periods, primitive_sheet,
                           rectangular_sheet, repeats_for)
from training import structures


def hbn(a=2.504):
    atoms = ase_graphene(formula="BN", a=a, vacuum=10.0)
    atoms.pbc = True
    return atoms


def shortest_distance(atoms) -> float:
    d = atoms.get_all_distances(mic=True)
    return float(d[~np.eye(len(atoms), dtype=bool)].min())


def sorted_positions(atoms):
    p = atoms.positions
    order = np.lexsort((np.round(p[:, 0], 5), np.round(p[:, 1], 5), atoms.numbers))
    return atoms.numbers[order], p[order]


def test_primitive_cell_of_supercells():
    assert len(primitive_sheet(structures.graphene())) == 2          # 60-atom supercell -> 2 atoms
    prim = primitive_sheet(structures.borophene())                    # 64 atoms -> 4 (centred rectangle)
    assert len(prim) == 4
    assert np.isclose(abs(np.linalg.det(prim.cell.array[:2, :2])), 2.88229 * 8.41529 / 2)
    assert len(primitive_sheet(hbn().repeat((3, 2, 1)))) == 2


def test_rectangular_cells_match_the_hand_written_ones():
    rect = rectangular_sheet(structures.graphene())
    xy, lx, ly = structures.graphene_cell(structures.LATTICE["graphene"]["a"])
    assert np.allclose(rect.cell.lengths()[:2], [lx, ly])
    assert np.allclose(sorted(map(tuple, np.round(rect.positions[:, :2], 6))), sorted(map(tuple, np.round(xy, 6))))
    boro = rectangular_sheet(structures.borophene())
    assert len(boro) == 8 and np.allclose(boro.cell.lengths()[:2], [2.88229, 8.41529])
    # a hexagonal primitive cell at 120 degrees (ASE's h-BN) -> the 4-atom a x a sqrt(3) rectangle, B and N alike
    rect = rectangular_sheet(hbn())
    assert np.allclose(rect.cell.lengths()[:2], [2.504, 2.504 * np.sqrt(3)])
    assert sorted(rect.get_chemical_symbols()) == ["B", "B", "N", "N"]
    assert np.isclose(shortest_distance(rect), 2.504 / np.sqrt(3))


def test_oblique_lattice_has_no_rectangular_cell():
    atoms = hbn()
    atoms.set_cell([[2.5, 0, 0], [0.9, 2.7, 0], [0, 0, 20]], scale_atoms=True)
    atoms = atoms[:1]
    with pytest.raises(GeometryError, match="oblique"):
        rectangular_sheet(atoms, max_index=4)


def test_match_periods():
    assert match_periods(2.45014, 2.88229)[:2] == (6, 5)             # graphene : chi3 borophene
    n_a, n_b, strain = match_periods(2.45, 2.504)                     # graphene : h-BN, 1 : 1
    assert (n_a, n_b) == (1, 1) and np.isclose(strain, 2.45 / 2.504 - 1)
    with pytest.raises(GeometryError, match=r"phases G and X: .* within 1 % .* mismatch"):
        match_periods(2.45, 3.9, tolerance=0.01, max_cells=3, names=("G", "X"))


def test_lateral_interface_reproduces_the_embedded_graphene_borophene_cell():
    g = as_sheet(rectangular_sheet(structures.graphene()))
    b = as_sheet(rectangular_sheet(structures.borophene()))
    atoms, info = lateral_interface(g, b, cells_y=(2, 1), gap_A=structures.LATTICE["interface"]["gap_A"],
                                    names=("graphene", "borophene"))
    ref = structures.interface()
    assert info["cells_x"] == [6, 5] and info["strained"] == "borophene" and 0.019 < info["strain"] < 0.021
    assert np.allclose(atoms.cell.lengths(), ref.cell.lengths())
    numbers, positions = sorted_positions(atoms)
    ref_numbers, ref_positions = sorted_positions(ref)
    assert (numbers == ref_numbers).all() and np.allclose(positions, ref_positions, atol=1e-9)
    assert (atoms.arrays["phase"] == (atoms.numbers == 5)).all()


def test_lateral_interface_graphene_hbn():
    g = as_sheet(rectangular_sheet(structures.graphene()))
    atoms, info = lateral_interface(g, as_sheet(rectangular_sheet(hbn())), cells_y=(2, 2), repeat_x=5,
                                    names=("graphene", "hbn"))
    assert info["cells_x"] == [1, 1] and np.isclose(info["strain"], 2.45014 / 2.504 - 1)
    assert np.isclose(info["gap_A"], 0.76 + 0.84)                     # C and B covalent radii (zigzag B edge)
    assert len(atoms) == 80 and is_sheet(atoms)
    # rows of a zigzag-along-x sheet step d/2, d, d/2, ... along y (d = a / sqrt 3, the bond): two cells span
    # 5 d; B (h-BN) is strained along x only; the interfaces sit in the middle of the gaps: 0.50444
    d_g, d_bn = structures.LATTICE["graphene"]["a"] / np.sqrt(3), 2.504 / np.sqrt(3)
    gap = info["gap_A"]
    assert info["fraction_B"] == pytest.approx((5 * d_bn + gap) / (5 * d_g + 5 * d_bn + 2 * gap), rel=1e-12)
    assert shortest_distance(atoms) > 1.35                         # no atoms on top of each other


def test_bulk_is_not_a_sheet():
    assert not is_sheet(bulk("Cu", cubic=True))
    assert is_sheet(hbn())
    with pytest.raises(GeometryError, match="rectangular sheet"):
        lateral_interface(bulk("Cu", cubic=True), as_sheet(rectangular_sheet(hbn())))


def test_repeats_for():
    assert repeats_for(rectangular_sheet(hbn()), 10.0) == (4, 3)


def test_a_relaxed_supercell_reduces_to_its_averaged_unit_cell():
    """An engine-relaxed cell repeats itself only to ~0.01 Å: rattled copies still reduce to the 2-atom
    primitive cell (their mean), and an interface built from them uses unit cells, not whole supercells."""
    rattled = hbn().repeat((4, 3, 1))
    rattled.rattle(0.01, seed=1)
    prim = primitive_sheet(rattled)
    assert len(prim) == 2 and np.isclose(abs(np.linalg.det(prim.cell.array[:2, :2])), 2.504 ** 2 * np.sqrt(3) / 2,
                                         rtol=1e-3)
    g = structures.graphene()
    g.rattle(0.01, seed=2)
    atoms, info = lateral_interface(as_sheet(rectangular_sheet(g)), as_sheet(rectangular_sheet(rattled)),
                                    cells_y=(2, 2), names=("graphene", "hbn"))
    assert info["cells_x"] == [1, 1] and len(atoms) == 16
    assert rectangular_sheet(g).positions[:, 1].min() > -0.02      # no site folded to the far edge of the cell
