"""Strain frames (training.strain_frames): small homogeneous strains of the 0 K cell added to the AIMD sets."""
import json

import numpy as np
import pytest
from ase.calculators.lj import LennardJones

from training import datasets
from training.ripples import add_ripples
from training.strain_frames import CHAIN, add_strain_frames, strain_frames, strained_cells
from training.structures import graphene

QUIET = dict(log=lambda line: None)


def _start():
    atoms = graphene(repeat=(3, 2))
    atoms.info = {"system": "graphene"}
    return atoms


def test_strained_cells_carry_the_atoms_with_the_strain_they_record():
    start = _start()
    cells = strained_cells(start, count=12, max_strain=0.015, rattle_A=0.0, seed=3)
    frac0 = start.get_scaled_positions(wrap=False)
    for atoms in cells:
        exx, eyy, exy = *atoms.info["strain"], atoms.info["shear_strain"]
        assert max(abs(exx), abs(eyy), abs(exy)) <= 0.015
        deformation = np.array([[1 + exx, exy, 0.0], [0.0, 1 + eyy, 0.0], [0.0, 0.0, 1.0]])
        assert np.allclose(atoms.cell.array, start.cell.array @ deformation.T)
        assert np.allclose(atoms.positions, start.positions @ deformation.T)  # affine: same fractions
        assert np.allclose(atoms.get_scaled_positions(wrap=False), frac0)
        assert atoms.info["chain"] == CHAIN and atoms.info["independent"] and atoms.info["temperature_K"] == 0.0
    strains = np.array([[*a.info["strain"], a.info["shear_strain"]] for a in cells])
    assert np.all(strains.std(axis=0) > 0.003)  # uniaxial, biaxial and shear parts all vary
    assert np.all(np.diff(strains[:, 2]) != 0)


def test_the_rattle_has_the_width_it_says():
    start = _start()
    cells = strained_cells(start, count=40, max_strain=0.01, rattle_A=0.05, seed=0)
    moved = []
    for atoms in cells:
        exx, eyy, exy = *atoms.info["strain"], atoms.info["shear_strain"]
        deformation = np.array([[1 + exx, exy, 0.0], [0.0, 1 + eyy, 0.0], [0.0, 0.0, 1.0]])
        moved.append(atoms.positions - start.positions @ deformation.T)
    assert np.std(np.concatenate(moved)) == pytest.approx(0.05, rel=0.05)


def test_strain_frames_have_the_engines_energy_forces_and_stress():
    calc = LennardJones(sigma=1.3, epsilon=0.1, rc=4.0)
    out = strain_frames(_start(), calc, count=3, seed=1)
    for atoms in out:
        check = atoms.copy()
        check.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(check.get_potential_energy(), rel=1e-12)
        assert np.allclose(atoms.get_forces(), check.get_forces()) and np.allclose(atoms.get_stress(), check.get_stress())
    with pytest.raises(ValueError, match=r"strain frames: count=0 must be >= 1, max_strain=0.02"):
        strained_cells(_start(), count=0)
    with pytest.raises(ValueError, match=r"max_strain=0.5 in \(0, 0.2\)"):
        strained_cells(_start(), max_strain=0.5)


def test_add_strain_frames_keeps_the_ripples_and_records_itself(tmp_path, monkeypatch):
    calc = LennardJones(sigma=1.3, epsilon=0.1, rc=4.0)
    start = _start()
    aimd = []
    for strain in (0.0, 0.1):
        atoms = start.copy()
        atoms.calc = calc
        atoms = datasets.with_reference(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                        stress=atoms.get_stress())
        atoms.info.update(chain="chain_00_T300_x", temperature_K=300.0, strain=[strain, 0.0], system="graphene")
        aimd.append(atoms)
    path = datasets.write(tmp_path / "graphene.extxyz.gz", aimd)
    (tmp_path / "graphene.meta.json").write_text(json.dumps({"n_frames": 2}))
    monkeypatch.setattr("training.engines.make_calculator", lambda name, settings=None: calc)
    monkeypatch.setattr("training.aimd.start_structure", lambda *a, **k: start.copy())
    assert add_ripples(path, count=2, **QUIET) == 2
    assert add_strain_frames(path, count=3, **QUIET) == 3
    assert [a.info["chain"] for a in datasets.read(path)] == ["chain_00_T300_x"] * 2 + ["ripples"] * 2 + [CHAIN] * 3
    meta = json.loads((tmp_path / "graphene.meta.json").read_text())
    assert meta["n_frames"] == 7 and meta["strain_frames"]["frames"] == 3 and meta["ripples"]["frames"] == 2
    assert meta["strain_frames"]["max_strain"] == 0.02
    assert add_strain_frames(path, count=3, **QUIET) == 0                 # already there: kept
    assert add_strain_frames(path, count=1, force=True, **QUIET) == 1     # replaced, ripples untouched
    assert [a.info["chain"] for a in datasets.read(path)][2:] == ["ripples"] * 2 + [CHAIN]


def test_cli_strains_names_a_missing_dataset(tmp_path, capsys):
    from training import cli

    assert cli.main(["strains", str(tmp_path / "missing.extxyz.gz")]) == 1
    assert "missing.extxyz.gz" in capsys.readouterr().err
