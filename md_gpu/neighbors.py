"""Neighbour lists: cell lists with a Verlet skin, for periodic, mixed and deforming cells.

Contract: :func:`build_pairs` returns a FULL pair list ``(i, j, shifts)`` such that
``d = r[j] + shifts @ cell - r[i]`` runs over every ordered pair (and periodic
image, including an atom's own images in small cells) with ``|d| < r_list``.
:class:`NeighborList` keeps such a list built with ``r_list = cutoff + skin`` and
says when it must be rebuilt.

Binning is done in fractional coordinates, so triclinic cells need nothing
special: along cell vector ``k`` the perpendicular width is ``d_k = V / |a_l x a_m|``;
with ``n_k = floor(d_k / r_list)`` bins (at least 1), two points closer than
``r_list`` differ by at most ``m_k = ceil(r_list n_k / d_k)`` bins. Cells shorter
than ``r_list`` (even shorter than 2x the cut-off) get ``n_k = 1`` and
``m_k > 1``: the loop over bin offsets then visits several periodic images of
the same bin, each with its own integer shift, so no pair is lost or doubled.
Non-periodic directions (the vacuum of a 2D sheet) are binned over the extent
of the atoms without wrapping.

Rebuild rule for a cell that changes shape (tension, barostat): with the
deformation ``F = H0^-1 H`` since the last build (cell rows ``H``) and the
non-affine displacements ``u_i = r_i - r0_i F``, a pair that was farther apart
than ``r_list`` is still farther than the cut-off while
``2 max|u| + ||F - I||_2 r_list < skin``. This reduces to the usual "an atom
moved more than half the skin" when the cell is fixed.

Host reads in the MD step. Exact every step (:meth:`NeighborList.pairs_within`, the default): the force
contract hands over the pairs inside the cut-off as compact arrays, and compacting a mask on the device
needs its count on the host, so every step reads one number anyway; ``max|u|`` travels in the same
transfer (:func:`md_gpu.backend.to_host`), which makes the exact check free. So a step reads the host
once; a step that rebuilds reads once more (the count of the new list), besides the reads of the builder
itself (none in the compiled NumPy cell list; two in the array code, the bin occupancy and the pair counts
of all bin offsets in one transfer, and a third for the extent along open axes).

Deferred checks (``deferred``, set by :class:`md_gpu.simulation.Simulation` for the stages that allow a
replay, with ``check_every`` steps between its checks): :meth:`pairs_within` hands the whole list to the
force field (whose contract gives the pairs at or beyond its cut-off nothing) and keeps the largest stale
measure ``2 max|u| + ||F - I||_2 r_list - skin`` of the calls on the device, without a read;
:meth:`verify` reads it once: negative means the list held at every step since the last check. If it did
not (a pair may have entered the cut-off unseen, or the positions are no longer finite) the caller
replays those steps with the exact check (a roll-back: the velocities alone give no bound on how far
atoms move before the next check, since the forces change them). To keep replays rare, :meth:`verify`
rebuilds the list at a check when the measure, growing as it did since the previous check, would reach
zero within twice the steps to the next one (the growth since the last check, not the mean since the
build: thermal vibration fills most of the skin's share within a few steps and then levels off).
The deferred list costs more pair work (the shell between cut-off and list radius: (r_list / cutoff)^3
- 1, 73 % for a 5 Å cut-off and a 1 Å skin in bulk); it pays where a host read costs more than that
work, i.e. small systems on a GPU.

The arrays are on the backend of the positions (NumPy or CuPy). On NumPy,
:func:`build_pairs` runs the compiled cell list of :mod:`training.mtp.cell_list`
(the same binning in C++, bins of half the list radius; the array code below
when no compiler is available or ``MULTISCALE_CPU_KERNELS=numpy``). In
:func:`array_build_pairs` the bin table is a dense ``[n_bins, max_occupancy]``
array, so every operation is a gather or a mask that CuPy runs on the device.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from common.arrays import array_module
from training.mtp.cell_list import cell_list_pairs

from .backend import to_host, to_numpy
from .errors import MDRunError, MDSetupError


NOT_FINITE = ("the positions are not finite: the system blew up (atoms came too close, or the forces were not "
              "finite); use a smaller time step or check the starting structure and the potential")


def perpendicular_widths(cell) -> np.ndarray:
    """Distances between opposite faces of the cell, [3] (Å)."""
    cell = np.asarray(to_numpy(cell), dtype=float)
    vol = abs(np.linalg.det(cell))
    if vol < 1e-12:
        raise MDSetupError(f"cell {cell.tolist()} has zero volume; give a vacuum length along "
                           "non-periodic directions (e.g. atoms.center(vacuum=10, axis=2))")
    return np.array([vol / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
                     for k in range(3)])


def build_pairs(positions, cell, pbc, r_list: float):
    """Full pair list within ``r_list`` (Å).

    positions [n, 3] Å, cell [3, 3] Å (rows), pbc 3 bools. Returns ``i [p]``,
    ``j [p]`` (int64) and ``shifts [p, 3]`` (float64 integer image counts)
    on the backend of ``positions``: on NumPy the compiled cell list of
    :mod:`training.mtp.cell_list` (same binning, pairs sorted by ``i``) when
    it loads, else :func:`array_build_pairs`.
    """
    if array_module(positions) is np:
        perpendicular_widths(cell)  # the same error for a flat cell on both paths
        compiled = cell_list_pairs(positions, np.asarray(cell, dtype=float), tuple(bool(p) for p in pbc),
                                   float(r_list), vectors=False)
        if compiled is not None:
            i, j, images, _ = compiled
            return i, j, images.astype(np.float64)
    return array_build_pairs(positions, cell, pbc, r_list)


def array_build_pairs(positions, cell, pbc, r_list: float):
    """:func:`build_pairs` as array code on the backend of ``positions`` (NumPy or CuPy).

    Host reads (:func:`md_gpu.backend.to_host`, each one transfer): the atoms' extent along the
    non-periodic axes (only when there are any), the largest bin occupancy (the width of the bin table)
    and the number of pairs of every bin offset at once; the pairs of each offset are then compacted
    with those counts (:func:`compact_indices`), without a read of their own.
    """
    xp = array_module(positions)
    n = positions.shape[0]
    cell_h = np.asarray(to_numpy(cell), dtype=float)
    widths = perpendicular_widths(cell_h)
    cell = xp.asarray(cell_h)
    frac = positions @ xp.asarray(np.linalg.inv(cell_h))
    open_axes = [k for k in range(3) if not pbc[k]]
    extent = np.zeros((3, 2))
    if open_axes:  # one read for every open axis
        ends = to_host(xp.stack([frac[:, open_axes].min(axis=0), frac[:, open_axes].max(axis=0)], axis=1))
        extent[open_axes] = np.asarray(ends).reshape(len(open_axes), 2)
    n_bins = np.ones(3, dtype=np.int64)
    reach = np.ones(3, dtype=np.int64)
    wrapped = xp.zeros((n, 3))
    bins = xp.zeros((n, 3), dtype=xp.int64)
    for k in range(3):
        f = frac[:, k]
        if pbc[k]:
            n_bins[k] = max(1, int(widths[k] // r_list))
            reach[k] = int(np.ceil(r_list * n_bins[k] / widths[k] - 1e-12))
            wrapped[:, k] = xp.floor(f)
            f = f - wrapped[:, k]
            bins[:, k] = xp.minimum((f * n_bins[k]).astype(xp.int64), n_bins[k] - 1)
        else:
            lo, hi = extent[k]
            n_bins[k] = max(1, int((hi - lo) * widths[k] // r_list))
            reach[k] = min(1, n_bins[k] - 1)
            scaled = (f - lo) / max(hi - lo, 1e-300) * n_bins[k]
            bins[:, k] = xp.clip(scaled.astype(xp.int64), 0, n_bins[k] - 1)
    r_w = positions - wrapped @ cell            # positions folded into the cell
    flat = (bins[:, 0] * n_bins[1] + bins[:, 1]) * n_bins[2] + bins[:, 2]
    total_bins = int(np.prod(n_bins))
    order = xp.argsort(flat)
    sorted_bins = flat[order]
    # bin boundaries in the sorted order (bincount reads the host on CuPy: its size and a sign check)
    edges = xp.searchsorted(sorted_bins, xp.arange(total_bins + 1))
    starts, counts = edges[:-1], edges[1:] - edges[:-1]
    occupancy = int(to_host(counts.max()))
    rank = xp.arange(n) - starts[sorted_bins]
    table = xp.full((total_bins, occupancy), -1, dtype=xp.int64)
    table[sorted_bins, rank] = order
    atom = xp.arange(n)
    r2 = r_list * r_list
    nb = xp.asarray(n_bins)

    def candidates(offset):
        """(cand [n, occupancy]: the atoms of the bin at ``offset`` from each atom's, -1 for empty slots or
        no bin; image [n, 3]: the periodic image of that bin)."""
        target = bins + xp.asarray(np.array(offset))
        ok = xp.ones(n, dtype=bool)
        image = xp.zeros((n, 3))
        for k in range(3):
            if pbc[k]:
                image[:, k] = xp.floor_divide(target[:, k], n_bins[k])
                target[:, k] = target[:, k] - image[:, k].astype(xp.int64) * n_bins[k]
            else:
                ok &= (target[:, k] >= 0) & (target[:, k] < n_bins[k])
                target[:, k] = xp.clip(target[:, k], 0, n_bins[k] - 1)
        tflat = (target[:, 0] * nb[1] + target[:, 1]) * nb[2] + target[:, 2]
        return xp.where(ok[:, None], table[tflat], -1), image

    offsets = list(itertools.product(*(range(-int(m), int(m) + 1) for m in reach)))
    masks = []
    for offset in offsets:
        cand, image = candidates(offset)
        d = r_w[cand] + (image @ cell)[:, None, :] - r_w[:, None, :]
        keep = (cand >= 0) & ((d * d).sum(-1) < r2)
        if not any(offset):  # only the zero offset can pair an atom with itself unshifted
            keep &= cand != atom[:, None]
        masks.append(keep.ravel())
    n_pairs = np.atleast_1d(to_host(xp.stack([m.sum() for m in masks]))).astype(np.int64)  # one read
    out_i, out_j, out_s = [], [], []
    for offset, keep, count in zip(offsets, masks, n_pairs):
        if not count:
            continue
        cand, image = candidates(offset)  # gathered again: keeping every offset's [n, occupancy] table costs more
        flat_slot = compact_indices(keep, int(count))
        ii = flat_slot // occupancy
        out_i.append(ii)
        out_j.append(cand.ravel()[flat_slot])
        out_s.append(image[ii])
    if not out_i:
        empty = xp.zeros(0, dtype=xp.int64)
        return empty, empty.copy(), xp.zeros((0, 3))
    i = xp.concatenate(out_i)
    j = xp.concatenate(out_j)
    # shifts relative to the unwrapped positions: d = r[j] + s @ cell - r[i]
    shifts = xp.concatenate(out_s) - wrapped[j] + wrapped[i]
    return i, j, shifts


def brute_force_pairs(positions, cell, pbc, r_list: float):
    """Slow, obvious O(N^2 x images) reference of :func:`build_pairs` (NumPy; for tests)."""
    positions = np.asarray(to_numpy(positions))
    cell = np.asarray(to_numpy(cell))
    widths = perpendicular_widths(cell)
    ranges = [range(-int(np.ceil(r_list / widths[k])) - 1, int(np.ceil(r_list / widths[k])) + 2)
              if pbc[k] else range(0, 1) for k in range(3)]
    found = set()
    for shift in itertools.product(*ranges):
        d = positions[None, :, :] + np.array(shift) @ cell - positions[:, None, :]
        close = (d * d).sum(-1) < r_list * r_list
        if not any(shift):
            np.fill_diagonal(close, False)
        for a, b in zip(*np.nonzero(close)):
            found.add((int(a), int(b), shift))
    return found


def compact_indices(mask, count: int):
    """Indices [count] (ascending) of the True entries of ``mask [p]``, given their number ``count`` (host int).

    ``numpy.flatnonzero`` on NumPy. On CuPy a scatter to ``cumsum(mask) - 1`` (the False entries go to a
    spare slot), because ``cupy.nonzero`` would read the count from the device, a synchronisation.
    """
    xp = array_module(mask)
    if xp is np:
        return np.flatnonzero(mask)
    return scatter_compact(mask, count, xp)


def scatter_compact(mask, count: int, xp):
    """The device branch of :func:`compact_indices`, on any array module ``xp`` (tested on NumPy)."""
    slot = xp.where(mask, xp.cumsum(mask) - 1, count)
    out = xp.empty(count + 1, dtype=xp.int64)
    out[slot] = xp.arange(mask.shape[0])
    return out[:count]


@dataclass
class NeighborList:
    """A Verlet list of pairs within ``cutoff + skin`` (Å), rebuilt only when needed.

    ``i, j [p]`` and ``shifts [p, 3]`` as in :func:`build_pairs`; ``ref_positions
    [n, 3]`` and ``ref_cell [3, 3]`` are the configuration it was built for.
    ``n_builds`` counts builds (for tests and logs). ``deferred``: :meth:`pairs_within` hands over the whole
    list and defers the rebuild test to :meth:`verify` (module doc).
    """

    cutoff: float
    skin: float
    pbc: tuple
    i: object = None
    j: object = None
    shifts: object = None
    ref_positions: object = None
    ref_cell: np.ndarray | None = None
    n_builds: int = 0
    deferred: bool = False
    _worst: object = None      # largest stale measure of the deferred calls since the last verify (device)
    _calls_since_build: int = 0
    _last_check: tuple = (None, 0)  # (measure, calls since the build) at the last verify that kept the list

    def __post_init__(self):
        if self.cutoff <= 0 or self.skin < 0:
            raise MDSetupError(f"neighbour list: cutoff {self.cutoff} Å must be > 0 and skin "
                               f"{self.skin} Å >= 0")

    @property
    def r_list(self) -> float:
        return self.cutoff + self.skin

    def build(self, positions, cell) -> None:
        self.i, self.j, self.shifts = build_pairs(positions, cell, self.pbc, self.r_list)
        self.ref_positions = positions.copy()
        self.ref_cell = np.array(to_numpy(cell), dtype=float)
        self.n_builds += 1
        self._calls_since_build = 0
        self._last_check = (-self.skin, 0)

    def _drift(self, positions, cell):
        """``(max|u|, ||F - I||_2)``: the largest non-affine displacement since the build (0-d array on the
        backend of ``positions``, Å; not read) and the cell's strain norm (host float); see the module doc."""
        xp = array_module(positions)
        F = np.linalg.solve(self.ref_cell, np.asarray(to_numpy(cell), dtype=float))
        strain = float(np.linalg.norm(F - np.eye(3), 2))
        if not positions.shape[0]:
            return xp.zeros(()), strain
        u = positions - self.ref_positions @ xp.asarray(F)
        return xp.sqrt((u * u).sum(-1).max()), strain

    def _stale_measure(self, max_u, strain: float):
        """``2 max|u| + ||F - I||_2 r_list - skin`` (Å; module doc): the list may have missed a pair once it is
        >= 0. ``max_u`` a host float or a device 0-d array (the result is of the same kind)."""
        return 2.0 * max_u + strain * self.r_list - self.skin

    def _stale(self, max_u: float, strain: float) -> bool:
        return self._stale_measure(max_u, strain) >= 0.0

    def needs_rebuild(self, positions, cell) -> bool:
        """True when a pair could have entered the cut-off since the last build (see module doc; one host read)."""
        if self.i is None or positions.shape != self.ref_positions.shape:
            return True
        max_u, strain = self._drift(positions, cell)
        return self._stale(float(to_host(max_u)), strain)

    def pairs_within(self, positions, cell, cutoff: float):
        """``(i [q], j [q], d [q, 3])``: the listed pairs closer than ``cutoff`` (Å), rebuilding the list first
        when the rule of the module doc asks for it; the pairs keep the list's order.

        One host read (:func:`md_gpu.backend.to_host`: ``max|u|`` and the number of pairs inside, in one
        transfer) when the list holds; one more after a rebuild. A non-finite ``max|u|`` (positions that
        are NaN or infinite after a blow-up) is an :class:`MDRunError`.

        ``deferred``: the whole list ``(i [p], j [p], d [p, 3])``, pairs beyond ``cutoff`` included, no read
        and no rebuild (one if there is no list yet); the stale measure is kept for :meth:`verify`.
        """
        fresh = self.i is None or positions.shape != self.ref_positions.shape
        if fresh:
            self.build(positions, cell)
        self._calls_since_build += 1
        d = self.pair_vectors(positions, cell)
        if self.deferred:
            xp = array_module(positions)
            max_u, strain = self._drift(positions, cell)
            measure = self._stale_measure(max_u, strain)  # NaN positions: NaN, which maximum keeps
            self._worst = measure if self._worst is None else xp.maximum(self._worst, measure)
            return self.i, self.j, d
        inside = (d * d).sum(1) < cutoff * cutoff
        if not fresh:
            max_u, strain = self._drift(positions, cell)
            max_u, n_inside = to_host(max_u, inside.sum())
            if not np.isfinite(max_u):
                raise MDRunError(NOT_FINITE)
            fresh = self._stale(float(max_u), strain)
            if fresh:
                self.build(positions, cell)
                d = self.pair_vectors(positions, cell)
                inside = (d * d).sum(1) < cutoff * cutoff
        if fresh:
            n_inside = to_host(inside.sum())
        keep = compact_indices(inside, int(n_inside))
        return self.i[keep], self.j[keep], d[keep]

    def verify(self, positions, cell, steps_ahead: int) -> bool:
        """Whether the list held at every deferred :meth:`pairs_within` call since the last verify (one host
        read; True when there was none). False: a pair may have entered the cut-off unseen, or the positions
        are not finite, and the steps since the last check must be replayed with the exact check (which
        raises on non-finite positions). When it held and the measure, growing at its rate since the
        previous check, would reach zero within ``2 steps_ahead`` more calls, the list is rebuilt for
        ``positions``, ``cell`` (module doc)."""
        if self._worst is None:
            return True
        worst = float(to_host(self._worst))
        self._worst = None
        if not worst < 0.0:  # stale, or NaN
            return False
        last, calls = self._last_check
        rate = max(worst - last, 0.0) / max(self._calls_since_build - calls, 1)
        self._last_check = (worst, self._calls_since_build)
        if worst + 2.0 * rate * steps_ahead >= 0.0:
            self.build(positions, cell)
        return True

    def check_record(self) -> dict:
        """What a checkpoint keeps of the deferred checks' bookkeeping (calls since the build, the last kept
        check), so that a resumed run rebuilds at the same checks as the uninterrupted one."""
        return {"calls_since_build": self._calls_since_build, "last_check": list(self._last_check)}

    def restore_check_record(self, record: dict | None) -> None:
        """Back to :meth:`check_record` (after the list was built again from the checkpoint)."""
        if record:
            self._calls_since_build = int(record["calls_since_build"])
            self._last_check = (float(record["last_check"][0]), int(record["last_check"][1]))

    def update(self, positions, cell) -> bool:
        """Rebuild if needed; return whether it did."""
        if self.needs_rebuild(positions, cell):
            self.build(positions, cell)
            return True
        return False

    def pair_vectors(self, positions, cell):
        """``d [p, 3]`` (Å) of the listed pairs for the current positions and cell."""
        xp = array_module(positions)
        return positions[self.j] - positions[self.i] + self.shifts @ xp.asarray(cell)
