"""Ripple frames (training.ripples): the out-of-plane data added to the AIMD sets."""
import json

import numpy as np
import pytest
from ase.calculators.lj import LennardJones

from training import datasets
from training.ripples import CHAIN, add_ripples, base_cells, ripple, ripple_frames
from training.structures import graphene


def _aimd_frames():
    """Four flat 'AIMD' frames of two chains (300 K and 900 K), reference from a LJ calculator."""
    calc = LennardJones(sigma=1.3, epsilon=0.1, rc=4.0)
    frames = []
    for chain, temperature in (("chain_00_T300_x", 300.0), ("chain_01_T900_x", 900.0)):
        for strain in (0.0, 0.1):
            atoms = graphene(repeat=(3, 2))
            atoms.calc = calc
            atoms = datasets.with_reference(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                            stress=atoms.get_stress())
            atoms.info.update(chain=chain, temperature_K=temperature, strain=[strain, 0.0], system="graphene")
            frames.append(atoms)
    return frames, calc


def test_ripple_is_the_sine_it_says():
    atoms = graphene(repeat=(3, 2))
    bent = ripple(atoms, axis=1, waves=2, amplitude_A=0.4, phase=0.3, noise_A=0.0, rng=np.random.default_rng(0))
    s = atoms.get_scaled_positions(wrap=False)[:, 1]
    assert np.allclose(bent.positions[:, 2] - atoms.positions[:, 2], 0.4 * np.sin(4 * np.pi * s + 0.3))
    assert np.allclose(bent.positions[:, :2], atoms.positions[:, :2])
    assert bent.info["chain"] == CHAIN and bent.info["ripple"][:2] == [1, 2]


def test_ripple_frames_bend_flat_cells_within_the_slope_range():
    frames, calc = _aimd_frames()
    bases = base_cells(frames[0], strains=(0.0, 0.02))
    assert [b.info["strain"] for b in bases] == [[0.0, 0.0], [0.02, 0.02]]
    assert np.allclose(bases[1].cell.lengths()[:2], 1.02 * frames[0].cell.lengths()[:2])
    out = ripple_frames(bases, calc, count=8, slope=(0.1, 0.2), noise_A=0.0, seed=1)
    assert len(out) == 8 and all(a.info["chain"] == CHAIN and a.info["temperature_K"] == 0.0 for a in out)
    assert all(a.info["independent"] for a in out)
    assert {tuple(a.info["ripple"][:2]) for a in out} == {(0, 1), (1, 1), (0, 2), (1, 2)}
    for atoms in out:
        axis, waves, amplitude, _ = atoms.info["ripple"]
        slope = 2 * np.pi * amplitude * waves / np.linalg.norm(atoms.cell[axis])
        assert 0.1 <= slope <= 0.2
        assert np.isfinite(atoms.get_potential_energy()) and atoms.get_stress().shape == (6,)
    with pytest.raises(ValueError, match=r"ripples: count=0 must be >= 1"):
        ripple_frames(bases, calc, count=0)


def test_add_ripples_appends_once_and_records_them(tmp_path, monkeypatch):
    frames, calc = _aimd_frames()
    path = tmp_path / "graphene.extxyz.gz"
    datasets.write(path, frames)
    (tmp_path / "graphene.meta.json").write_text(json.dumps({"n_frames": len(frames)}))
    monkeypatch.setattr("training.engines.make_calculator", lambda name, settings=None: calc)
    monkeypatch.setattr("training.aimd.start_structure", lambda *a, **k: frames[0].copy())
    assert add_ripples(path, count=4, log=lambda line: None) == 4
    again = datasets.read(path)
    assert len(again) == 8 and [a.info["chain"] for a in again[4:]] == [CHAIN] * 4
    meta = json.loads((tmp_path / "graphene.meta.json").read_text())
    assert meta["n_frames"] == 8 and meta["ripples"]["frames"] == 4
    assert add_ripples(path, count=4, log=lambda line: None) == 0           # already there: kept
    assert add_ripples(path, count=2, force=True, log=lambda line: None) == 2  # replaced
    assert len(datasets.read(path)) == 6


def test_cli_ripples_names_a_missing_dataset(tmp_path, capsys):
    from training import cli

    assert cli.main(["ripples", str(tmp_path / "missing.extxyz.gz")]) == 1
    assert "missing.extxyz.gz" in capsys.readouterr().err


def test_add_ripples_refuses_a_start_cell_that_is_not_the_datasets(tmp_path, monkeypatch):
    frames, calc = _aimd_frames()
    path = datasets.write(tmp_path / "graphene.extxyz", frames)
    monkeypatch.setattr("training.engines.make_calculator", lambda name, settings=None: calc)
    monkeypatch.setattr("training.aimd.start_structure", lambda *a, **k: graphene(repeat=(6, 4)))
    with pytest.raises(datasets.DatasetError, match=r"graphene.extxyz: the relaxed start cell .* graphene.structure.extxyz"):
        add_ripples(path, count=2, log=lambda line: None)
    assert len(datasets.read(path)) == 4  # nothing lost
