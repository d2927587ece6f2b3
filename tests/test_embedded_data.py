"""The embedded default datasets of the graphene/borophene case: present, readable, covering what the
later stages need (300-1500 K, strains to beyond failure, ripple and small-strain single points,
energies, forces and stresses), honest about the engine."""
from pathlib import Path

import numpy as np
import pytest

from training import aimd, datasets

DATA = Path(__file__).resolve().parents[1] / "cases" / "graphene_borophene" / "data"
SYSTEMS = {"graphene": {"C"}, "borophene": {"B"}, "interface": {"B", "C"}}


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_embedded_dataset_covers_the_training_recipe(system):
    path = DATA / f"{system}.extxyz.gz"
    if not path.is_file():
        pytest.fail(f"{path} is missing: regenerate it with the command in {DATA / 'README.md'}")
    frames = datasets.read(path)
    assert len(frames) >= 200
    assert set(np.concatenate([a.get_chemical_symbols() for a in frames])) == SYSTEMS[system]
    md = [a for a in frames if not a.info.get("independent")]
    temperatures = {a.info["temperature_K"] for a in md}
    assert min(temperatures) <= 300 and max(temperatures) >= 1500
    strains = np.array([a.info["strain"] for a in md])
    assert strains.max() >= 0.3 and strains.min() == 0.0
    # single points at 0 K (training.ripples, training.strain_frames): bending and small strains
    single = [a for a in frames if a.info.get("independent")]
    assert sorted({a.info["chain"] for a in single}) == ["ripples", "strains"]
    assert sum(a.info["chain"] == "ripples" for a in single) >= 24 and sum(a.info["chain"] == "strains" for a in single) >= 24
    assert {a.info["temperature_K"] for a in single} == {0.0}
    assert 0.005 < np.abs([a.info["strain"] for a in single if a.info["chain"] == "strains"]).max() < 0.05
    for atoms in frames[:: 25]:
        assert np.isfinite(atoms.get_potential_energy())
        assert atoms.get_forces().shape == (len(atoms), 3)
        assert atoms.get_stress().shape == (6,)
        cell = atoms.cell.lengths()
        assert cell[0] >= 10.0 and cell[1] >= 10.0  # twice the 5 A MTP cut-off
    meta = aimd.read_metadata(path)
    assert "not DFT" in meta["engine"]["theory"]
    assert meta["n_frames"] == len(frames)


def test_phase_reference_stiffness_is_recorded():
    """The engine's own 0 K numbers, which the report's cross-scale check compares the MTP-MD with."""
    graphene = aimd.read_metadata(DATA / "graphene.extxyz.gz")["reference"]
    assert 2.40 < graphene["lattice_A"]["a"] < 2.50
    assert 300 < graphene["E_x_N_per_m"] < 400 and abs(graphene["E_x_N_per_m"] - graphene["E_y_N_per_m"]) < 5
    borophene = aimd.read_metadata(DATA / "borophene.extxyz.gz")["reference"]
    assert 2.8 < borophene["lattice_A"]["a"] < 3.1 and 8.2 < borophene["lattice_A"]["b"] < 8.8
    for key in ("C11_N_per_m", "C22_N_per_m", "C12_N_per_m", "E_x_N_per_m", "E_y_N_per_m"):
        assert 0 < borophene[key] < graphene["C11_N_per_m"]  # chi3 borophene is softer than graphene
