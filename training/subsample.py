"""Subsampling of correlated AIMD frames: every k-th frame, or farthest-point sampling.

Data flow: ``list[Atoms]`` (a dataset, see :mod:`training.datasets`) ->
:func:`descriptors` (one cheap fixed-length vector per frame) ->
:func:`farthest_point` or :func:`every_kth` -> sorted frame indices ->
:func:`select` -> the subsampled ``list[Atoms]``.

The descriptor uses only the structure (never the reference labels): for each
ordered species pair, a histogram of neighbour distances within ``cutoff_A``
per atom of the first species, plus the in-plane cell lengths per atom count
so strained cells are told apart. Farthest-point sampling (Gonzalez, Theor.
Comput. Sci. 38, 293 (1985)) starts from a frame drawn with a fixed seed and
repeatedly adds the frame farthest (Euclidean, standardised descriptors) from
those already chosen, so the subset spans the configurations seen.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list


def every_kth(n_frames: int, k: int, *, offset: int = 0) -> np.ndarray:
    """Indices ``offset, offset + k, ...`` below ``n_frames`` (k >= 1)."""
    if k < 1:
        raise ValueError(f"subsample every: k must be >= 1, got {k}")
    if not 0 <= offset < max(n_frames, 1):
        raise ValueError(f"subsample every: offset must be in [0, {n_frames}), got {offset}")
    return np.arange(offset, n_frames, k)


def descriptors(frames, *, cutoff_A: float = 5.0, bins: int = 24, r_min_A: float = 1.0) -> np.ndarray:
    """Descriptor matrix [n_frames, n_features] (see the module docstring); distances in A."""
    species = sorted({int(z) for atoms in frames for z in atoms.numbers})
    edges = np.linspace(r_min_A, cutoff_A, bins + 1)
    rows = []
    for atoms in frames:
        i, j, d = neighbor_list("ijd", atoms, cutoff_A)
        zi, zj = atoms.numbers[i], atoms.numbers[j]
        parts = []
        for a in species:
            n_a = max(int(np.sum(atoms.numbers == a)), 1)
            for b in species:
                mask = (zi == a) & (zj == b)
                parts.append(np.histogram(d[mask], bins=edges)[0] / n_a)
        lengths = atoms.cell.lengths()[:2]
        parts.append(lengths / np.sqrt(len(atoms)))
        rows.append(np.concatenate(parts))
    return np.array(rows, dtype=float)


def farthest_point(features: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of ``n`` rows of ``features`` [n_frames, n_features] chosen by FPS.

    Features are standardised per column first; the first pick is drawn with
    ``numpy.random.default_rng(seed)``; ties go to the lowest index.
    """
    features = np.asarray(features, dtype=float)
    n_frames = len(features)
    if not 1 <= n <= n_frames:
        raise ValueError(f"subsample fps: n_frames must be in [1, {n_frames}], got {n}")
    scale = features.std(axis=0)
    x = (features - features.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    chosen = [int(np.random.default_rng(seed).integers(n_frames))]
    dist = np.linalg.norm(x - x[chosen[0]], axis=1)
    while len(chosen) < n:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    return np.sort(np.array(chosen))


def select(frames, indices) -> list[Atoms]:
    """The frames at ``indices``, in that order."""
    return [frames[int(i)] for i in indices]


def subsample(frames, *, method: str = "fps", every: int = 1, n_frames: int = 0, seed: int = 0) -> list[Atoms]:
    """Subsample ``frames`` with ``method`` ``none`` | ``every`` | ``fps``.

    ``every``: keep every ``every``-th frame. ``fps``: keep ``n_frames`` frames
    by farthest-point sampling (``n_frames = 0`` or more than available keeps all).
    """
    frames = list(frames)
    if method == "none":
        return frames
    if method == "every":
        return select(frames, every_kth(len(frames), every))
    if method == "fps":
        if n_frames <= 0 or n_frames >= len(frames):
            return frames
        return select(frames, farthest_point(descriptors(frames), n_frames, seed=seed))
    raise ValueError(f"data.subsample.method: {method!r} is not one of none, every, fps")
