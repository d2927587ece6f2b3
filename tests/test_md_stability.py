"""The structure check of the md stage: coordination numbers before and after NVT at temperature."""
import numpy as np
import pytest
from ase import Atoms

from md_gpu.errors import MDSetupError
from md_gpu.forcefields import Morse
from md_gpu.protocols import RunSettings
from md_gpu.protocols.stability import coordination, first_shell_cutoff, structure_stability
from training.structures import LATTICE, graphene

FF = Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)
QUIET = dict(log=lambda line: None)


def sheet(a=2.9, nx=6, ny=4, vacuum=15.0, honeycomb=False):
    """A flat triangular (or honeycomb: bond ``a``) Morse-Cu sheet, periodic in x, y; vacuum along z."""
    if honeycomb:  # rectangular cell of graphene with bond length a: 4 atoms, 3a x sqrt(3) a
        h, w = a * np.sqrt(3), 3 * a
        basis = ((0, 0), (a, 0), (1.5 * a, h / 2), (2.5 * a, h / 2))
    else:
        h, w = a * np.sqrt(3), a
        basis = ((0, 0), (a / 2, h / 2))
    pos = [(x + i * w, y + j * h, vacuum / 2) for j in range(ny) for i in range(nx) for x, y in basis]
    return Atoms("Cu" * len(pos), positions=pos, cell=[nx * w, ny * h, vacuum], pbc=[1, 1, 0])


def test_first_shell_cutoff_and_coordination_of_graphene():
    atoms = graphene()
    a = LATTICE["graphene"]["a"]
    cutoff = first_shell_cutoff(atoms)
    assert cutoff == pytest.approx(0.5 * (a / np.sqrt(3) + a), abs=2e-3)  # between bond and second shell
    assert set(coordination(atoms, cutoff)) == {3}
    assert set(coordination(sheet(), first_shell_cutoff(sheet()))) == {6}
    assert set(coordination(sheet(honeycomb=True), first_shell_cutoff(sheet(honeycomb=True)))) == {3}


def test_a_kept_structure_scores_zero():
    r = structure_stability(FF, sheet(), steps=600, n_samples=6, settings=RunSettings(temperature_K=100.0, seed=1),
                            **QUIET)
    assert r["changed_fraction"] == 0.0 and r["retained"]
    assert r["coordination_start"] == r["coordination_end"] == [0] * 6 + [48]
    assert abs(r["energy_drift_meV_per_atom"]) < 5.0


def test_a_honeycomb_of_pair_forces_collapses_and_is_flagged(tmp_path):
    """Central forces cannot hold a honeycomb (no bond-angle stiffness): it folds into denser packing,
    releasing energy, as chi3 borophene does with the default case's MTP."""
    final = tmp_path / "final.extxyz"
    r = structure_stability(FF, sheet(nx=4, ny=3, honeycomb=True), steps=2000, n_samples=5,
                            settings=RunSettings(temperature_K=300.0, seed=1), final_path=final, **QUIET)
    assert r["changed_fraction"] > 0.5 and not r["retained"]
    assert r["energy_drift_meV_per_atom"] < 0
    assert r["coordination_start"] == [0, 0, 0, 48]  # 4 x 3 cells of 4 atoms
    assert final.is_file()


def test_bad_settings_name_the_value():
    with pytest.raises(MDSetupError, match="steps"):
        structure_stability(FF, sheet(), steps=3, n_samples=6, **QUIET)
    with pytest.raises(MDSetupError, match="max_changed"):
        structure_stability(FF, sheet(), steps=60, n_samples=6, max_changed=2.0, **QUIET)
    with pytest.raises(MDSetupError, match="shells"):
        first_shell_cutoff(Atoms("Cu", positions=[(0, 0, 0)], cell=[20, 20, 20], pbc=True))
