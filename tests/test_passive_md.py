"""Acceptance of two-step passive training on the embedded graphene AIMD data (slow).

The refit's maximum grade over all AIMD frames is below the threshold; 1000 K NVT runs of the
unstrained and of the 10 % biaxially strained sheet with the final potential and its active set never
grade above 2 (checked every 10 steps by md_gpu's extrapolation control), 1500 K runs (the hottest AIMD
temperature) never above 3 (MLIP's mild-extrapolation band; with the GFN2-xTB sets the strained sheet
reached 2.11 against the preliminary potential's 10.37), and the preliminary
potential comes closer to extrapolating than the final one at 1500 K, the hottest AIMD temperature.

Why 1500 K carries the comparison (measured, level 10, 1000 steps, seeds 1-4, 2026-11-23): at 1000 K
neither potential comes near 2 and which grades higher changes with the seed (preliminary
1.00-1.24, final 1.07-1.20: the every-10th subsample already holds frames of the 900 K and 1500 K
chains around that state); at 1500 K the preliminary graded higher in 8 runs of 8 (unstrained
1.23-1.48 vs 1.15-1.19; 10 % biaxial 1.41-1.80 vs 1.14-1.23). See docs/fit.md.
"""
from pathlib import Path

import numpy as np
import pytest

from training import datasets
from training.passive import make_fit_fn, passive_train

GRAPHENE = Path(__file__).parents[1] / "cases" / "graphene_borophene" / "data" / "graphene.extxyz.gz"

pytestmark = pytest.mark.slow


def _nvt_max_grade(mtp, active, atoms, *, steps=1000, temperature_K=1000.0, seed=1):
    from md_gpu.extrapolation import ExtrapolationControl
    from md_gpu.forcefields.mtp import MTPForceField
    from md_gpu.integrators import Bussi
    from md_gpu.simulation import Simulation, Stage
    from md_gpu.state import from_atoms, maxwell_boltzmann

    def grade(positions, cell, types, i, j, d):
        return active.neighbourhood_grades(mtp, types, i, j, d)

    control = ExtrapolationControl(grade, every=10, warn=2.0, stop=1e9, cutoff=mtp.cutoff, log=lambda line: None)
    state = maxwell_boltzmann(from_atoms(atoms, species=tuple(mtp.species)), temperature_K, seed=seed)
    sim = Simulation(MTPForceField(mtp), state, dt_fs=1.0, thermo_every=10, extrapolation=control, seed=seed,
                     log=lambda line: None)
    result = sim.run([Stage("nvt", steps, thermostat=Bussi(temperature_K, 100.0))])
    temperature = result.thermo["temperature_K"]
    return float(np.nanmax(result.thermo["max_grade"])), float(np.mean(temperature[len(temperature) // 2:]))


def test_two_step_passive_training_on_graphene_and_md_at_1000K():
    from training.mtp import MTP

    if not GRAPHENE.is_file():
        pytest.skip(f"{GRAPHENE} not there")
    frames = datasets.read(GRAPHENE)
    init = MTP.untrained(10, 1, species=["C"], min_dist=1.0, seed=0)
    res = passive_train(init, frames, fit_fn=make_fit_fn("full", max_iter=60, progress=lambda *a: None),
                        every_k=10, threshold=2.0, validation_fraction=0.1, seed=0, log=lambda line: None)
    rep = res.report
    pre, grade, refit = rep["steps"][:3]
    print(f"frames {pre['n_train']} -> {refit['n_train']}, max grade {rep['max_grade_preliminary']:.3f} -> "
          f"{rep['max_grade_final']:.3f}; RMSE (all frames) E {pre['errors']['all']['energy_per_atom']['rmse']:.4f}"
          f" -> {refit['errors']['all']['energy_per_atom']['rmse']:.4f} eV/atom, F "
          f"{pre['errors']['all']['forces']['rmse']:.3f} -> {refit['errors']['all']['forces']['rmse']:.3f} eV/A")
    assert pre["n_train"] < refit["n_train"] == pre["n_train"] + grade["n_added"]
    assert grade["n_added"] > 0 and rep["max_grade_preliminary"] > 2.0
    assert rep["max_grade_final"] < 2.0
    for step in (pre, refit):
        assert step["errors"]["all"]["forces"]["rmse"] < 1.5  # eV/A: a real fit, not a random potential
    hottest = {"preliminary": [], "final": []}
    for temperature_K, seeds in ((1000.0, (1,)), (1500.0, (1, 2))):
        for strain in (0.0, 0.1):
            start = next(a for a in frames if np.allclose(a.info["strain"], strain))
            for seed in seeds:
                final, temperature = _nvt_max_grade(res.mtp, res.active_set, start, temperature_K=temperature_K,
                                                    seed=seed)
                preliminary, t_pre = _nvt_max_grade(res.preliminary, res.active_set_preliminary, start,
                                                    temperature_K=temperature_K, seed=seed)
                print(f"{temperature_K:.0f} K NVT, biaxial strain {strain}, seed {seed}: max grade preliminary "
                      f"{preliminary:.3f} (T {t_pre:.0f} K), final {final:.3f} (T {temperature:.0f} K)")
                # 1500 K is the hottest AIMD temperature, the edge of the data: there the final potential
                # may extrapolate mildly (GFN2-xTB sets, 10 % biaxial, seed 1: 2.11, preliminary 10.37)
                limit = 2.0 if temperature_K < 1500.0 else 3.0
                assert final < limit and abs(temperature - temperature_K) < 0.15 * temperature_K
                if temperature_K == 1500.0:
                    hottest["preliminary"].append(preliminary)
                    hottest["final"].append(final)
    # the preliminary potential comes closer to extrapolating where its training set is thinnest
    assert np.mean(hottest["preliminary"]) > np.mean(hottest["final"])
