"""Our MTP against MLIP-2's own numbers (tests/data/mlip, see its README).

Every configuration of ``efs_NN.cfg.gz``: |ΔE| <= 1e-6 eV, |ΔF| <= 2e-6 eV/Å, |ΔPlusStress| <= 2e-5 eV
(the printed precision of MLIP's output).  cubic/06 and multi/06 run in the fast suite, the other levels
are marked slow.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from training.mtp import MTP, batched_pairs, forces_and_virial, read_cfg

DATA = Path(__file__).parent / "data" / "mlip"


@lru_cache(maxsize=None)
def _dataset(name: str):
    """Frames and batched pair list of one efs file (positions are the same in all efs files of a set)."""
    frames = read_cfg(DATA / name)
    i, j, d, frame = batched_pairs(frames, 5.0)
    return frames, i, j, d, frame


def _check(system: str, level: str) -> None:
    mtp = MTP.read(DATA / system / f"pot_{level}.mtp")
    assert mtp.cutoff == 5.0
    frames, i, j, d, frame = _dataset(f"{system}/efs_{level}.cfg.gz")
    ref_frames = read_cfg(DATA / system / f"efs_{level}.cfg.gz")
    types = np.concatenate([a.arrays["mlip_type"] for a in frames])
    energies, de_dd = mtp.evaluate(types, i, j, d)
    forces, _, per_atom = forces_and_virial(i, j, d, de_dd, len(types))
    n_frames = len(frames)
    energy = np.bincount(frame, weights=energies, minlength=n_frames)
    virial = np.stack([np.bincount(frame, weights=per_atom[:, a, b], minlength=n_frames)
                       for a, b in [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]], axis=1)
    ref_energy = np.array([a.get_potential_energy() for a in ref_frames])
    ref_forces = np.concatenate([a.get_forces() for a in ref_frames])
    ref_plus = np.array([-a.get_stress() * a.get_volume() for a in ref_frames])
    assert np.abs(energy - ref_energy).max() <= 1e-6
    assert np.abs(forces - ref_forces).max() <= 2e-6
    assert np.abs(virial - ref_plus).max() <= 2e-5


@pytest.mark.parametrize("system,level", [("cubic", "06"), ("multi", "06")])
def test_matches_mlip_fast(system, level):
    _check(system, level)


@pytest.mark.slow
@pytest.mark.parametrize("system,level", [("cubic", "02"), ("cubic", "10"), ("cubic", "16"), ("cubic", "20"),
                                          ("multi", "10")])
def test_matches_mlip_slow(system, level):
    _check(system, level)
