"""Relaxed-ion strain frames (training.strain_frames.relaxed_strain_frames): the relaxed 0 K cell under a
grid of small homogeneous strains, positions relaxed at fixed cell, with the engine's exact stress."""
import json

import numpy as np
import pytest
from ase.calculators.lj import LennardJones

from training import datasets, reference
from training.passive import chain_subsample
from training.strain_frames import (CHAIN, RELAXED_CHAIN, add_relaxed_strain_frames, add_strain_frames,
                                    relaxed_strain_frames, relaxed_strain_grid)
from training.structures import graphene

QUIET = dict(log=lambda line: None)
# a 24-atom graphene sheet in Lennard-Jones: uniaxial and shear strains move the two sublattices
# against each other (the internal relaxation), an equi-biaxial strain keeps every site symmetric
CALC = LennardJones(sigma=1.3, epsilon=0.1, rc=4.0)
STRAINS = (-0.01, -0.005, 0.005, 0.01)


def _start():
    atoms = graphene(repeat=(3, 2))
    atoms.info = {"system": "graphene"}
    return atoms


@pytest.fixture(scope="module")
def frames():
    return relaxed_strain_frames(_start(), CALC, strains=STRAINS, fmax=1e-3, optimizer="FIRE")


def test_the_grid_is_the_strains_asked_for(frames):
    start = _start()
    expected = {"none": [(0.0, 0.0, 0.0)], "x": [(e, 0.0, 0.0) for e in STRAINS],
                "y": [(0.0, e, 0.0) for e in STRAINS], "xy": [(e, e, 0.0) for e in STRAINS],
                "shear": [(0.0, 0.0, e) for e in STRAINS]}
    got = {}
    for atoms in frames:
        exx, eyy, gamma = *atoms.info["strain"], atoms.info["shear_strain"]
        got.setdefault(atoms.info["strain_mode"], []).append((exx, eyy, gamma))
        # the cell is the start cell under F = I + eps, eps symmetric with eps_xy = gamma / 2
        deformation = np.array([[1 + exx, gamma / 2, 0.0], [gamma / 2, 1 + eyy, 0.0], [0.0, 0.0, 1.0]])
        np.testing.assert_allclose(atoms.cell.array, start.cell.array @ deformation.T, rtol=0, atol=1e-12)
        assert atoms.info["chain"] == RELAXED_CHAIN and atoms.info["independent"]
        assert atoms.info["temperature_K"] == 0.0 and atoms.info["system"] == "graphene"
    assert got == expected
    assert [m for m, _, _ in relaxed_strain_grid(strains=(0.01,), modes=("shear", "x"))] == ["none", "shear", "x"]
    with pytest.raises(ValueError, match=r"modes=\['z'\] must be a non-empty subset"):
        relaxed_strain_grid(modes=("z",))
    with pytest.raises(ValueError, match=r"strains=\[0.2\] distinct values with \|e\| < 0.1"):
        relaxed_strain_grid(strains=(0.2,))


def test_the_ions_are_relaxed_and_the_reference_is_the_engines(frames):
    start = _start()
    for atoms in frames:
        assert np.abs(atoms.get_forces()).max() < 1e-3
        check = atoms.copy()
        check.calc = CALC
        assert atoms.get_potential_energy() == pytest.approx(check.get_potential_energy(), rel=1e-12)
        np.testing.assert_allclose(atoms.get_stress(), check.get_stress(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(atoms.get_forces(), check.get_forces(), rtol=1e-12, atol=1e-15)
        # relaxing lowers the energy below the affinely strained cell's; the sublattices move only where
        # the strain breaks the site symmetry (not for the unstrained cell, nor the equi-biaxial one)
        exx, eyy, gamma = *atoms.info["strain"], atoms.info["shear_strain"]
        affine = reference.strained(start, np.array([[exx, gamma / 2], [gamma / 2, eyy]]))
        affine.calc = CALC
        moved = np.abs(atoms.positions - affine.positions).max()
        if atoms.info["strain_mode"] in ("none", "xy"):
            assert moved < 1e-12
        else:
            assert np.abs(affine.get_forces()).max() > 0.03 and moved > 1e-3
            assert atoms.get_potential_energy() < affine.get_potential_energy() - 5e-4


def test_the_frames_stresses_are_the_reference_scans(frames):
    """The x, y and shear frames hold the relaxed cells strain_scan fits its constants to (both relaxed
    with FIRE): the same slopes, to round-off; BFGS, the frames' default, reaches the same minima (within
    what fmax leaves); relaxed-ion C11 lies below the clamped-ion value of the affine cells."""
    stress = {}
    for atoms in frames:
        e = {"x": atoms.info["strain"][0], "y": atoms.info["strain"][1], "shear": atoms.info["shear_strain"],
             "xy": 0.0, "none": 0.0}[atoms.info["strain_mode"]]
        stress.setdefault(atoms.info["strain_mode"], []).append((e, reference.stress_2d(atoms)))

    def slope(mode):
        e, sig = zip(*stress[mode])
        return np.polyfit(e, np.array(sig), 1)[0]

    scan = reference.strain_scan(_start(), CALC, strains=STRAINS, fmax=1e-3)
    assert slope("x")[0] == pytest.approx(scan["C11_N_per_m"], rel=1e-10)
    assert slope("y")[1] == pytest.approx(scan["C22_N_per_m"], rel=1e-10)
    assert 0.5 * (slope("x")[1] + slope("y")[0]) == pytest.approx(scan["C12_N_per_m"], rel=1e-10)
    assert slope("shear")[2] == pytest.approx(scan["C66_N_per_m"], rel=1e-10)
    bfgs = relaxed_strain_frames(_start(), CALC, strains=STRAINS, fmax=1e-3)
    for fire, other in zip(frames, bfgs):
        assert fire.info == other.info and np.abs(other.get_forces()).max() < 1e-3
        np.testing.assert_allclose(other.positions, fire.positions, rtol=0, atol=2e-4)
    c11 = np.polyfit(STRAINS, [reference.stress_2d(a)[0] for a in bfgs if a.info["strain_mode"] == "x"], 1)[0]
    assert c11 == pytest.approx(scan["C11_N_per_m"], rel=0.01)
    clamped = []
    for e in STRAINS:
        cell = reference.strained(_start(), reference.STRAIN_MODES["x"](e))
        cell.calc = CALC
        clamped.append(reference.stress_2d(cell))
    assert np.polyfit(STRAINS, np.array(clamped), 1)[0][0] > 1.05 * scan["C11_N_per_m"]


def test_a_cell_that_does_not_relax_stops_with_its_name():
    with pytest.raises(ValueError, match=r"the x cell at strain -0.01 kept forces above fmax=1e-08 eV/A after 2 FIRE"):
        relaxed_strain_frames(_start(), CALC, fmax=1e-8, steps=2, optimizer="FIRE")
    with pytest.raises(ValueError, match=r"optimizer='LBFGS' is not FIRE or BFGS"):
        relaxed_strain_frames(_start(), CALC, optimizer="LBFGS")


def _dataset(tmp_path, monkeypatch, n_md: int):
    """A dataset of ``n_md`` copies of the unstrained sheet as MD frames (with a .meta.json); the engine
    and the start-cell relaxation of training.zero_kelvin answer with CALC and the unrelaxed sheet."""
    start = _start()
    md = start.copy()
    md.calc = CALC
    md = datasets.with_reference(md, energy=md.get_potential_energy(), forces=md.get_forces(), stress=md.get_stress())
    md.info.update(chain="chain_00_T300_x", temperature_K=300.0, strain=[0.0, 0.0], system="graphene")
    path = datasets.write(tmp_path / "graphene.extxyz.gz", [md] * n_md)
    (tmp_path / "graphene.meta.json").write_text(json.dumps({"n_frames": n_md}))
    monkeypatch.setattr("training.engines.make_calculator", lambda name, settings=None: CALC)
    monkeypatch.setattr("training.aimd.start_structure", lambda *a, **k: start.copy())
    return start, path


def test_round_trip_through_the_dataset_file(tmp_path, monkeypatch):
    start, path = _dataset(tmp_path, monkeypatch, 2)
    assert add_strain_frames(path, count=2, **QUIET) == 2
    assert add_relaxed_strain_frames(path, strains=(0.01,), modes=("x", "shear"), **QUIET) == 3
    back = datasets.read(path)
    assert [a.info["chain"] for a in back] == ["chain_00_T300_x"] * 2 + [CHAIN] * 2 + [RELAXED_CHAIN] * 3
    written = relaxed_strain_frames(start, CALC, strains=(0.01,), modes=("x", "shear"))
    for old, new in zip(written, back[4:]):  # extxyz keeps 8 decimals
        np.testing.assert_allclose(new.positions, old.positions, rtol=0, atol=1e-8)
        np.testing.assert_allclose(new.cell.array, old.cell.array, rtol=0, atol=1e-8)
        assert new.get_potential_energy() == pytest.approx(old.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(new.get_forces(), old.get_forces(), rtol=0, atol=1e-8)
        np.testing.assert_allclose(new.get_stress(), old.get_stress(), rtol=0, atol=1e-8)
        assert np.abs(new.get_forces()).max() < 2e-3
        for key in ("strain", "shear_strain", "strain_mode", "independent", "temperature_K"):
            assert np.all(new.info[key] == old.info[key]), key
    # every single point, rattled or relaxed, enters the preliminary fit; only MD chains are thinned
    assert chain_subsample(back, np.arange(len(back)), every_k=10).tolist() == [0, 2, 3, 4, 5, 6]
    meta = json.loads((tmp_path / "graphene.meta.json").read_text())
    assert meta["n_frames"] == 7 and meta["strain_frames"]["frames"] == 2
    recipe = meta["relaxed_strain_frames"]
    assert recipe["frames"] == 3 and recipe["strains"] == [0.01] and recipe["modes"] == ["x", "shear"]
    assert recipe["fmax"] == 2e-3 and recipe["optimizer"] == "BFGS"
    assert add_relaxed_strain_frames(path, **QUIET) == 0                       # already there: kept
    assert add_relaxed_strain_frames(path, strains=(0.005,), modes=("y",), force=True, **QUIET) == 2
    assert [a.info["chain"] for a in datasets.read(path)][2:] == [CHAIN] * 2 + [RELAXED_CHAIN] * 2


def test_cli_relaxed_strains(tmp_path, monkeypatch, capsys):
    from training import cli

    _, path = _dataset(tmp_path, monkeypatch, 1)
    assert cli.main(["strains", str(path), "--relaxed", "--strains=-0.005,0.005"]) == 0
    assert "9 relaxed-ion frames added" in capsys.readouterr().out
    assert sorted({a.info["strain_mode"] for a in datasets.read(path)[1:]}) == ["none", "shear", "x", "xy", "y"]
    assert cli.main(["strains", str(path), "--relaxed", "--force", "--strains", "0.5"]) == 1
    assert "strains=[0.5] distinct values with |e| < 0.1" in capsys.readouterr().err
