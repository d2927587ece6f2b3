"""Slow: our fit against MLIP-2's own potentials on MLIP's reference sets (issue 5 acceptance).

From MLIP's untrained template of the same level, our trained potential must reach a force RMSE no
worse than 1.10 x and an energy RMSE no worse than 1.5 x the RMSE that MLIP-2's ``pot_NN.mtp`` reaches on
the same 1001 training frames (computed from MLIP-2's ``efs_NN.cfg.gz`` against the training set).  Each
test prints both numbers and the fitting time.  Settings: the radial coefficients are optimised on
``THETA_FRAMES`` evenly spaced frames, the linear ones on all 1001.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.fit import train_mtp
from training.mtp import read_cfg

DATA = Path(__file__).resolve().parent / "data"
TEMPLATES = Path(__file__).resolve().parents[1] / "training" / "mtp" / "templates"

#: (set, level, theta_frames, max_iter, starts), each case about 1-2.5 minutes on 2 cores (timings in
#: docs/fit.md).  Cubic level 10 gets 300 iterations: where round-off makes Levenberg-Marquardt stall in a
#: narrow valley, L-BFGS with its backtracking fallback needs about that many to come within the
#: tolerance of MLIP-2's RMSE; where LM does not stall, more iterations only lower the loss further.
CASES = [("cubic", 10, 50, 300, 4), ("cubic", 16, 20, 8, 1), ("multi", 10, 50, 60, 4)]


def _mlip_rmse(kind, level, frames):
    efs = read_cfg(DATA / "mlip" / kind / f"efs_{level:02d}.cfg.gz")
    de = [(a.get_potential_energy() - b.get_potential_energy()) / len(a) for a, b in zip(efs, frames)]
    df = np.concatenate([(a.get_forces() - b.get_forces()).ravel() for a, b in zip(efs, frames)])
    return float(np.sqrt(np.mean(np.square(de)))), float(np.sqrt(np.mean(df ** 2)))


@pytest.mark.slow
@pytest.mark.parametrize("kind,level,theta_frames,max_iter,starts", CASES)
def test_fit_matches_mlip(kind, level, theta_frames, max_iter, starts, capsys):
    frames = read_cfg(DATA / "fit" / f"{kind}_training.cfg.gz")
    mlip_e, mlip_f = _mlip_rmse(kind, level, frames)
    _, report = train_mtp(TEMPLATES / f"{level:02d}.mtp", frames, max_iter=max_iter, theta_frames=theta_frames,
                          seed=0, starts=starts, progress=lambda done, total, text: None)
    ours_e, ours_f = report["train"]["energy_per_atom"]["rmse"], report["train"]["forces"]["rmse"]
    with capsys.disabled():
        print(f"\n{kind} level {level}: force RMSE ours {ours_f:.3e} vs MLIP-2 {mlip_f:.3e} eV/A "
              f"(x{ours_f / mlip_f:.2f}); energy RMSE ours {ours_e:.3e} vs MLIP-2 {mlip_e:.3e} eV/atom "
              f"(x{ours_e / mlip_e:.2f}); fit {report['seconds']:.0f} s, {report['iterations']} iterations")
    assert ours_f <= 1.10 * mlip_f
    assert ours_e <= 1.5 * mlip_e
