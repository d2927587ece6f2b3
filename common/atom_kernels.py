"""Bookkeeping shared by the one-thread-per-atom potential kernels (a CUDA grid, or an OpenMP loop on the host).

Contract, on an array namespace ``xp`` (NumPy or CuPy), for a FULL pair list ``i, j`` [p] (centre,
neighbour) of ``n`` atoms with species ``types`` [n] in ``0 .. S-1``:

* :func:`csr_pairs` -- the pairs sorted by centre (``order`` [p] or None when already sorted) and
  ``offsets`` [n+1]: the pairs of atom ``a`` are ``offsets[a] .. offsets[a+1]-1`` of the sorted list;
* :func:`species_layout` -- which species occur among the atoms and which species pairs among the
  pairs, as ``S + S*S`` flag bytes (a kernel's self-check runs again when this changes);
* :func:`sample_atoms` -- the centre atoms whose kernel results a self-check compares with the array
  code: all of a small launch; else the first thread and one more lane of *every* thread block (the
  lane moves from block to block, so ``threads_per_block`` blocks cover all lanes), the last atom, and
  for every species and species pair present the first atom that has it.

``training.nep.fused`` uses these; ``training.mtp.fused`` keeps its own copies of the same rules.
"""
from __future__ import annotations

import numpy as np

VERIFY_ALL_ATOMS = 1024  # launches of at most this many atoms are checked on every atom
VERIFY_LANE_STRIDE = 37  # lane sampled in block b besides lane 0: (1 + 37 b) mod T (37 odd: all lanes)


def to_host(array) -> np.ndarray:
    """A NumPy copy (or view) of a NumPy or CuPy array."""
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else np.asarray(array)


def csr_pairs(i, n_atoms: int, xp):
    """(order [p] or None, offsets [n_atoms + 1]) of the pair centres ``i`` [p] (module docstring)."""
    order = None
    if len(i) > 1 and not bool((i[1:] >= i[:-1]).all()):
        order = xp.argsort(i) if xp is not np else np.argsort(i, kind="stable")
        i = i[order]
    offsets = xp.zeros(n_atoms + 1, dtype=xp.int64)
    offsets[1:] = xp.cumsum(xp.bincount(i, minlength=n_atoms))
    return order, offsets


def species_layout(types, pair_types, species_count: int, xp) -> bytes:
    """``S + S*S`` flags (bytes): species among ``types`` [n], species pairs among ``pair_types`` [p]
    (``t_i S + t_j``).  Cost: two scatters of one byte and a copy of ``S + S*S`` bytes to the host."""
    s = int(species_count)
    present = xp.zeros(s + s * s, dtype=xp.int8)
    present[types] = 1
    present[s + pair_types] = 1
    return to_host(present).tobytes()


def sample_atoms(types, i, j, species_count: int, xp, *, threads_per_block: int):
    """Centre atoms [m] (sorted, unique, int64 on ``xp``) that a self-check compares (module docstring)."""
    n = int(types.shape[0])
    if n <= VERIFY_ALL_ATOMS:
        return xp.arange(n)
    t = int(threads_per_block)
    block = xp.arange((n + t - 1) // t)
    parts = [block * t, xp.minimum(block * t + (1 + VERIFY_LANE_STRIDE * block) % t, n - 1), xp.asarray([n - 1])]
    s = int(species_count)
    pair_types = types[i] * s + types[j]
    layout = np.frombuffer(species_layout(types, pair_types, s, xp), dtype=np.int8)
    firsts = [int(xp.argmax(types == k)) for k in np.flatnonzero(layout[:s])]
    firsts += [int(i[int(xp.argmax(pair_types == k))]) for k in np.flatnonzero(layout[s:])]
    parts.append(xp.asarray(firsts, dtype=xp.int64))
    return xp.unique(xp.concatenate([xp.asarray(a, dtype=xp.int64) for a in parts]))
