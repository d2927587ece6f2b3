"""MTP files, construction, neighbour lists and bad input (training.mtp).

* ``.mtp`` round trip: MLIP's trained potentials and templates read, write and read back to identical numbers;
* ``MTP.untrained``: MLIP's template basis of the level, ``level``, species tag, argument errors;
* ``neighbor_pairs``: the brute-force search (small cells, cut-off larger than the cell) gives exactly
  the pairs of ASE's cell-list search, on a sheared cell and on a sheet with vacuum;
* every bad-input path (malformed ``.mtp``, wrong pair-list shapes, types outside the potential, unknown
  elements) raises one error naming the file/line or value;
* the CuPy path (skipped without CuPy and a usable CUDA device) gives the NumPy numbers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, graphene
from ase.neighborlist import neighbor_list

from training.mtp import (MTP, MTPCalculator, MTPFormatError, MTPSpeciesError, forces_and_virial, neighbor_pairs,
                          read_cfg)
from training.mtp.basis import MonomialTable, monomials, radial_basis, radial_basis_inside

DATA = Path(__file__).parent / "data" / "mlip"
POTENTIALS = [DATA / "cubic" / f"pot_{n}.mtp" for n in ("02", "06", "10", "16", "20")] + \
             [DATA / "multi" / f"pot_{n}.mtp" for n in ("06", "10")]


@pytest.mark.parametrize("path", POTENTIALS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_mtp_file_round_trip_keeps_every_number(path, tmp_path):
    mtp = MTP.read(path)
    mtp.write(tmp_path / "out.mtp")
    again = MTP.read(tmp_path / "out.mtp")
    for key, value in mtp.fields().items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(getattr(again, key), value), key
        else:
            assert getattr(again, key) == value, key


def test_untrained_uses_mlip_template_and_records_species():
    mtp = MTP.untrained(16, 2, min_dist=1.0, max_dist=4.5, species=["C", "B"], seed=3)
    trained = MTP.read(DATA / "cubic" / "pot_16.mtp")
    assert mtp.level == 16 and trained.level == 16
    assert np.array_equal(mtp.alpha_index_times, trained.alpha_index_times)
    assert mtp.radial_coeffs.shape == (2, 2, trained.radial_funcs_count, 8)
    assert np.abs(mtp.radial_coeffs).max() <= 0.1 and mtp.species == ["C", "B"]
    assert mtp.potential_tag == "species:C,B" and mtp.cutoff == 4.5
    np.testing.assert_array_equal(MTP.untrained(16, 2, seed=3).radial_coeffs, mtp.radial_coeffs)
    with pytest.raises(ValueError, match="level 7"):
        MTP.untrained(7, 1)
    with pytest.raises(ValueError, match="species_count = 2"):
        MTP.untrained(10, 2, species=["C"])
    with pytest.raises(ValueError, match="min_dist=3.0"):
        MTP.untrained(10, 1, min_dist=3.0, max_dist=2.0)
    with pytest.raises(MTPSpeciesError, match="species_count = 2"):
        mtp.species = ["C", "B", "N"]


def _same_pairs(atoms: Atoms, cutoff: float) -> int:
    i, j, d = neighbor_pairs(atoms, cutoff)
    ai, aj, ad = neighbor_list("ijD", atoms, cutoff, self_interaction=False)
    ours = sorted(zip(i, j, *np.round(d, 8).T))
    ase = sorted(zip(ai, aj, *np.round(ad, 8).T))
    assert ours == ase
    return len(i)


def test_neighbor_pairs_equal_ase_on_small_sheared_cells():
    atoms = bulk("Cu", "fcc", a=3.61)  # one atom, cell much smaller than the cut-off
    atoms.set_cell(atoms.cell.array @ [[1.0, 0.2, -0.1], [0.0, 1.1, 0.3], [0.0, 0.0, 0.9]], scale_atoms=True)
    assert _same_pairs(atoms, 5.0) > 40
    cell = read_cfg(DATA / "multi" / "efs_06.cfg.gz")[3]
    cell.positions += 7.3  # positions outside the cell are wrapped
    assert _same_pairs(cell, 5.0) > 27 * 40
    sheet = graphene("C2", a=2.46, vacuum=8.0, size=(2, 2, 1))
    sheet.pbc = (True, True, False)
    assert _same_pairs(sheet, 5.0) > 8 * 20


@pytest.mark.parametrize("edit,message", [
    (lambda text: text.replace("MTP\n", "XYZ\n", 1), "line 1: the file must start with 'MTP'"),
    (lambda text: text.replace("scaling =", "scaling_factor ="), "line 4: unknown key 'scaling_factor'"),
    (lambda text: text.replace("species_count = 1", "species_count = one"), "line 5: species_count = 'one'"),
    (lambda text: text.replace("alpha_moments_count = 8\n", ""), "required key 'alpha_moments_count'"),
    (lambda text: text.replace("1.057164501954956e-02}", "1.057164501954956e-02, 1.0}"),
     "radial_coeffs 0-0 needs radial_basis_size = 8"),
    (lambda text: text.replace("\t\t0-0", "\t\t0-1"), "species pair 0-1 outside species_count = 1"),
    (lambda text: text.replace("{0, 5, 1, 7}", "{0, 5, 1}"), "alpha_index_times"),
    (lambda text: text.replace("version = 1.1.0", "version 1.1.0"), "line 2: expected 'key = value'"),
])
def test_malformed_mtp_names_file_and_line(edit, message, tmp_path):
    bad = tmp_path / "bad.mtp"
    bad.write_text(edit((DATA / "cubic" / "pot_06.mtp").read_text()))
    with pytest.raises(MTPFormatError) as error:
        MTP.read(bad)
    assert str(bad) in str(error.value) and message in str(error.value)


def test_missing_mtp_file(tmp_path):
    with pytest.raises(MTPFormatError, match="nope.mtp: no such .mtp file"):
        MTP.read(tmp_path / "nope.mtp")


def test_evaluate_rejects_bad_pair_lists_and_types():
    mtp = MTP.read(DATA / "multi" / "pot_06.mtp")
    atoms = read_cfg(DATA / "multi" / "efs_06.cfg.gz")[0]
    types = atoms.arrays["mlip_type"]
    i, j, d = neighbor_pairs(atoms, mtp.cutoff)
    with pytest.raises(ValueError, match=r"pair list shapes must be i \[p\], j \[p\], d \[p, 3\]"):
        mtp.evaluate(types, i, j, d[:, :2])
    with pytest.raises(ValueError, match="pair list shapes"):
        mtp.evaluate(types, i[:-1], j, d)
    with pytest.raises(MTPSpeciesError, match=r"type indices must be in 0..2 .* got 0..3"):
        mtp.evaluate(np.where(types == 2, 3, types), i, j, d)


def test_calculator_species_errors_and_2d_stress():
    mtp = MTP.read(DATA / "cubic" / "pot_06.mtp")
    sheet = graphene("C2", a=2.5, vacuum=5.0, size=(2, 2, 1))
    sheet.pbc = (True, True, False)
    sheet.calc = MTPCalculator(mtp, species=["Cu"])
    with pytest.raises(MTPSpeciesError, match=r"\['C'\] are not in the potential's species \['Cu'\]"):
        sheet.get_potential_energy()
    mixed = Atoms("CuAu", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[10, 10, 10], pbc=True)
    mixed.calc = MTPCalculator(MTP.read(DATA / "multi" / "pot_06.mtp"))
    with pytest.raises(MTPSpeciesError, match="cannot tell MTP types"):
        mixed.get_potential_energy()
    # a one-species potential without a species list takes every atom as type 0; stress of the whole cell
    sheet.calc = MTPCalculator(MTP.read(DATA / "cubic" / "pot_06.mtp"))
    sheet.set_chemical_symbols(["Cu"] * len(sheet))
    stress = sheet.get_stress()
    assert np.isfinite(stress).all() and abs(stress[2]) < 1e-12  # a flat sheet has no zz stress


def test_basis_tables_and_the_two_radial_orders():
    """Monomials in MLIP's order with consistent raise/lower indices; the two operation orders of the radial
    basis agree to rounding, and the model's vanishes from max_dist on."""
    table = MonomialTable(3)
    assert [tuple(e) for e in table.exps[:7]] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (2, 0, 0), (1, 1, 0),
                                                 (1, 0, 1)]
    for c in range(3):
        for k, e in enumerate(table.exps):
            if table.raised[c, k] < len(table):
                assert table.lowered[c, table.raised[c, k]] == k
            assert (table.lowered[c, k] < 0) == (e[c] == 0)
    u = np.random.default_rng(1).normal(size=(3, 5))
    mono = monomials(*u[:, None, :], 3, np.empty((len(table), 5)))
    np.testing.assert_allclose(mono, np.prod(u.T[None, :, :] ** table.exps[:, None, :], axis=2), rtol=1e-14)
    kw = dict(min_dist=1.1, max_dist=5.0, scaling=0.7, size=8)
    r = np.linspace(1.1, 5.0, 50)
    q, dq = radial_basis(r, xp=np, **kw)
    q_in, dq_in = radial_basis_inside(r, derivative=True, **kw)
    np.testing.assert_allclose(q, q_in, rtol=0, atol=1e-13 * np.abs(q).max())
    np.testing.assert_allclose(dq, dq_in, rtol=0, atol=1e-13 * np.abs(dq).max())
    beyond = radial_basis(np.array([5.0, 5.5, 9.0]), xp=np, **kw)
    assert not np.any(beyond[0]) and not np.any(beyond[1])


def test_cupy_matches_numpy():
    cupy = pytest.importorskip("cupy")
    try:
        cupy.zeros(1).sum().item()
    except Exception as error:  # noqa: BLE001 -- no usable CUDA device
        pytest.skip(f"no usable CUDA device: {error}")
    for system, level in [("cubic", "16"), ("multi", "10")]:
        mtp = MTP.read(DATA / system / f"pot_{level}.mtp")
        atoms = read_cfg(DATA / system / f"efs_{level}.cfg.gz")[5].repeat((2, 2, 2))
        types = atoms.arrays["mlip_type"]
        i, j, d = neighbor_pairs(atoms, mtp.cutoff)
        energies, de_dd = mtp.evaluate(types, i, j, d)
        forces, virial, _ = forces_and_virial(i, j, d, de_dd, len(atoms))
        g_energies, g_de_dd = mtp.evaluate(cupy.asarray(types), cupy.asarray(i), cupy.asarray(j), cupy.asarray(d))
        g_forces, g_virial, _ = forces_and_virial(cupy.asarray(i), cupy.asarray(j), cupy.asarray(d), g_de_dd,
                                                  len(atoms))
        np.testing.assert_allclose(cupy.asnumpy(g_energies), energies, rtol=0, atol=1e-9)
        np.testing.assert_allclose(cupy.asnumpy(g_forces), forces, rtol=0, atol=1e-9)
        np.testing.assert_allclose(cupy.asnumpy(g_virial), virial, rtol=0, atol=1e-8)
        b, db = mtp.basis(types[:64], *_first_atoms(i, j, d, 64))
        g_b, g_db = mtp.basis(cupy.asarray(types[:64]), *(cupy.asarray(a) for a in _first_atoms(i, j, d, 64)))
        np.testing.assert_allclose(cupy.asnumpy(g_b), b, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(cupy.asnumpy(g_db), db, rtol=1e-10, atol=1e-10)


def _first_atoms(i, j, d, n):
    """The pairs of centre atoms 0..n-1 whose neighbours are also among them."""
    keep = (i < n) & (j < n)
    return i[keep], j[keep], d[keep]
