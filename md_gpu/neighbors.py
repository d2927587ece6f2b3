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

Padded builds (a capacity and an overflow flag): a deferred list's rebuilds at its checks use
:func:`padded_build_pairs` on a device backend (``padded``; on NumPy when asked), which bins and lists the
pairs into arrays of a fixed size, :attr:`NeighborList.capacity` = (bin occupancy, pairs), without a host
read: the list's length is known on the host, its tail is padding that the force contract gives nothing.
The capacity is sized at the first padded build (two reads) with headroom. Whether a build fit its
capacity is a device array read with the next check's measure, in the same transfer; a build that did
not fit (an overflow, ``n_overflows``) left pairs out, so that check fails like a stale one: the steps
since the previous check are replayed with the exact test, and the capacity is sized again at the next
padded build. A consumer of the list besides the force call (the extrapolation grade) first calls
:meth:`NeighborList.settle`. So a deferred run reads the host once per check, rebuilds included.

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
from .verlet_filter import available as verlet_filter_available, compiled_pairs_within


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
    frac = positions @ xp.asarray(np.linalg.inv(np.asarray(to_numpy(cell), dtype=float)))
    extent = np.zeros((3, 2))
    open_axes = [k for k in range(3) if not pbc[k]]
    if open_axes:  # one read for every open axis
        ends = to_host(xp.stack([frac[:, open_axes].min(axis=0), frac[:, open_axes].max(axis=0)], axis=1))
        extent[open_axes] = np.asarray(ends).reshape(len(open_axes), 2)
    grid = _BinGrid(positions, frac, cell, pbc, r_list, extent)
    occupancy = int(to_host(grid.counts.max()))
    table = grid.table(occupancy)
    masks = [grid.pair_mask(*grid.candidates(table, offset), offset) for offset in grid.offsets]
    n_pairs = np.atleast_1d(to_host(xp.stack([m.sum() for m in masks]))).astype(np.int64)  # one read
    out_i, out_j, out_s = [], [], []
    for offset, keep, count in zip(grid.offsets, masks, n_pairs):
        if not count:
            continue
        cand, image = grid.candidates(table, offset)  # gathered again: keeping every offset's [n, occupancy] table costs more
        flat_slot = compact_indices(keep, int(count))
        ii = flat_slot // occupancy
        out_i.append(ii)
        out_j.append(cand.ravel()[flat_slot])
        out_s.append(image[ii])
    if not out_i:
        empty = xp.zeros(0, dtype=xp.int64)
        return empty, empty.copy(), xp.zeros((0, 3))
    i, j = xp.concatenate(out_i), xp.concatenate(out_j)
    return i, j, grid.shifts(i, j, xp.concatenate(out_s))


def padded_build_pairs(positions, cell, pbc, r_list: float, capacity: tuple[int, int]):
    """:func:`build_pairs` into arrays of a fixed size, with no host read: ``(i, j [P], shifts [P, 3], needed)``.

    ``capacity = (occupancy, P)`` (host ints): the width of the bin table and the length of the list. The
    list holds the pairs within ``r_list`` in the order of :func:`array_build_pairs` (for periodic axes),
    then padding pairs ``i = j = k mod n`` whose shift is a multiple of the first cell vector longer than
    ``r_list``, which the force contract gives nothing. ``needed`` is a device int64 array [2]: the largest
    bin occupancy and the number of pairs. Where either exceeds its capacity (an overflow), atoms were left
    out of full bins or pairs out of the list, and the list is incomplete: the caller reads ``needed``
    at its next check and builds again (:class:`NeighborList`, ``deferred``).

    Non-periodic axes are binned over the cell's own length, without wrapping; atoms outside the cell go
    to the end bins, which are at least ``r_list`` wide, so no pair is lost (the array builder bins over
    the atoms' extent instead, which costs a read).
    """
    xp = array_module(positions)
    n = positions.shape[0]
    occupancy, size = (int(c) for c in capacity)
    cell_h = np.asarray(to_numpy(cell), dtype=float)
    widths = perpendicular_widths(cell_h)
    pad = np.zeros(3)
    pad[0] = np.ceil(r_list / widths[0]) + 1.0  # |pad @ cell| >= pad[0] * widths[0] > r_list
    out_i = xp.arange(size + 1, dtype=xp.int64) % max(n, 1)  # the last slot takes what does not fit
    out_j = out_i.copy()
    out_s = xp.zeros((size + 1, 3)) + xp.asarray(pad)
    if not n:
        return out_i[:size], out_j[:size], out_s[:size], xp.zeros(2, dtype=xp.int64)
    frac = positions @ xp.asarray(np.linalg.inv(cell_h))
    grid = _BinGrid(positions, frac, cell_h, pbc, r_list, np.array([[0.0, 1.0]] * 3))
    table = grid.table(occupancy)
    filled = xp.zeros((), dtype=xp.int64)
    slot_of = xp.arange(n * occupancy)
    for offset in grid.offsets:
        cand, image = grid.candidates(table, offset)
        keep = grid.pair_mask(cand, image, offset)
        place = filled + xp.cumsum(keep) - 1
        slot = xp.where(keep & (place < size), place, size)
        ii = slot_of // occupancy
        out_i[slot] = ii
        out_j[slot] = cand.ravel()
        out_s[slot] = image[ii]
        filled = filled + keep.sum()
    i, j = out_i[:size], out_j[:size]
    return i, j, grid.shifts(i, j, out_s[:size]), xp.stack([grid.counts.max(), filled])  # padding: i = j


class _BinGrid:
    """The bins of a cell list (module doc): the atoms' bins, the bin table and the candidates of a bin offset.

    ``frac [n, 3]``: fractional coordinates of ``positions``; ``extent [3, 2]``: the fractional range binned
    along each non-periodic axis (atoms outside it go to the end bins).
    """

    def __init__(self, positions, frac, cell, pbc, r_list, extent):
        xp = self.xp = array_module(positions)
        n = self.n = positions.shape[0]
        cell_h = np.asarray(to_numpy(cell), dtype=float)
        widths = perpendicular_widths(cell_h)
        self.cell, self.pbc, self.r2 = xp.asarray(cell_h), tuple(pbc), r_list * r_list
        n_bins = self.n_bins = np.ones(3, dtype=np.int64)
        reach = np.ones(3, dtype=np.int64)
        wrapped = self.wrapped = xp.zeros((n, 3))
        bins = self.bins = xp.zeros((n, 3), dtype=xp.int64)
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
                scaled = xp.clip((f - lo) / max(hi - lo, 1e-300) * n_bins[k], -1.0, float(n_bins[k]))
                bins[:, k] = xp.clip(scaled.astype(xp.int64), 0, n_bins[k] - 1)
        self.r_w = positions - wrapped @ self.cell            # positions folded into the cell
        flat = (bins[:, 0] * n_bins[1] + bins[:, 1]) * n_bins[2] + bins[:, 2]
        total_bins = self.total_bins = int(np.prod(n_bins))
        self.order = xp.argsort(flat)
        self.sorted_bins = flat[self.order]
        # bin boundaries in the sorted order (bincount reads the host on CuPy: its size and a sign check)
        edges = xp.searchsorted(self.sorted_bins, xp.arange(total_bins + 1))
        self.starts, self.counts = edges[:-1], edges[1:] - edges[:-1]
        self.offsets = list(itertools.product(*(range(-int(m), int(m) + 1) for m in reach)))

    def table(self, occupancy: int):
        """``[n_bins, occupancy]`` atoms of each bin (-1: empty slot); atoms beyond ``occupancy`` in a bin are
        left out (through a spare column, without a read)."""
        xp = self.xp
        rank = xp.minimum(xp.arange(self.n) - self.starts[self.sorted_bins], occupancy)
        table = xp.full((self.total_bins, occupancy + 1), -1, dtype=xp.int64)
        table[self.sorted_bins, rank] = self.order
        return table[:, :occupancy]

    def candidates(self, table, offset):
        """(cand [n, occupancy]: the atoms of the bin at ``offset`` from each atom's, -1 for empty slots or
        no bin; image [n, 3]: the periodic image of that bin)."""
        xp, n_bins = self.xp, self.n_bins
        target = self.bins + xp.asarray(np.array(offset))
        ok = xp.ones(self.n, dtype=bool)
        image = xp.zeros((self.n, 3))
        for k in range(3):
            if self.pbc[k]:
                image[:, k] = xp.floor_divide(target[:, k], n_bins[k])
                target[:, k] = target[:, k] - image[:, k].astype(xp.int64) * n_bins[k]
            else:
                ok &= (target[:, k] >= 0) & (target[:, k] < n_bins[k])
                target[:, k] = xp.clip(target[:, k], 0, n_bins[k] - 1)
        nb = xp.asarray(n_bins)
        tflat = (target[:, 0] * nb[1] + target[:, 1]) * nb[2] + target[:, 2]
        return xp.where(ok[:, None], table[tflat], -1), image

    def pair_mask(self, cand, image, offset):
        """[n * occupancy] bools: the candidates of ``offset`` closer than the list radius."""
        d = self.r_w[cand] + (image @ self.cell)[:, None, :] - self.r_w[:, None, :]
        keep = (cand >= 0) & ((d * d).sum(-1) < self.r2)
        if not any(offset):  # only the zero offset can pair an atom with itself unshifted
            keep &= cand != self.xp.arange(self.n)[:, None]
        return keep.ravel()

    def shifts(self, i, j, images):
        """The pairs' bin images [p, 3] as shifts of the unwrapped positions: ``d = r[j] + shifts @ cell - r[i]``."""
        return images - self.wrapped[j] + self.wrapped[i]


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
    padded: bool | None = None  # deferred builds by padded_build_pairs; None: where the positions are on a device
    capacity: tuple | None = None  # (bin occupancy, pairs) of the padded builds; sized at the first
    n_overflows: int = 0
    _padded_list: bool = False  # the list in use is a padded build
    _needed: object = None     # ``needed`` of the padded build in use while it is unread (device [2])
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

    def build(self, positions, cell, *, padded: bool | None = None) -> None:
        """Build the list for ``positions``, ``cell``: by :func:`build_pairs`, or, when ``padded`` (None: when
        ``deferred`` and :attr:`padded` says so, by default for device arrays), by :func:`padded_build_pairs`
        into :attr:`capacity` (sized at the first such build: two reads and three builds, with headroom)."""
        if padded is None:
            padded = self.deferred and (self.padded if self.padded is not None else array_module(positions) is not np)
        self._needed = None
        if padded:
            if self.capacity is None:
                self.capacity = self._size_capacity(positions, cell)
            self.i, self.j, self.shifts, self._needed = padded_build_pairs(positions, cell, self.pbc, self.r_list,
                                                                           self.capacity)
        else:
            self.i, self.j, self.shifts = build_pairs(positions, cell, self.pbc, self.r_list)
        self._padded_list = padded
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

    def _size_capacity(self, positions, cell) -> tuple:
        """(bin occupancy, pairs) for padded builds at ``positions``: the largest occupancy (read from a build
        into a one-slot table) and the number of pairs (read from a build into a zero-length list), each with
        the headroom for a run's fluctuations: a quarter more slots per bin (at least 2), a fifth more pairs."""
        occupancy = int(to_host(padded_build_pairs(positions, cell, self.pbc, self.r_list, (1, 0))[3])[0])
        pairs = int(to_host(padded_build_pairs(positions, cell, self.pbc, self.r_list, (occupancy, 0))[3])[1])
        return occupancy + max(2, -(-occupancy // 4)), pairs + max(64, -(-pairs // 5))

    def _pending(self):
        """What a read of the padded build's ``needed`` takes: the device array while it is unread, else the
        placeholder -1 (read in the same transfer as whatever the caller reads; :meth:`_overflowed`)."""
        needed, self._needed = (-1 if self._needed is None else self._needed), None
        return needed

    def _overflowed(self, needed) -> bool:
        """Whether a padded build with ``needed`` (host [2], or the 0-d placeholder of :meth:`_pending`: no
        build unread) did not fit its capacity; if so the list is dropped (the next force call builds it
        exactly) and the capacity sized again at the next padded build."""
        if not np.ndim(needed) or np.all(np.asarray(needed) <= np.asarray(self.capacity)):
            return False
        self.n_overflows += 1
        self.i = self.capacity = self._needed = None
        return True

    def settle(self, positions, cell) -> None:
        """Make the list in use complete for a consumer besides the force call (the extrapolation grade): an
        unread padded build is read (one read) and built again exactly if it overflowed."""
        if self._needed is not None and self._overflowed(to_host(self._pending())):
            self.build(positions, cell, padded=False)

    def needs_rebuild(self, positions, cell) -> bool:
        """True when a pair could have entered the cut-off since the last build (see module doc; one host read,
        and one more for an unread padded build)."""
        if self.i is None or positions.shape != self.ref_positions.shape:
            return True
        if self._needed is not None and self._overflowed(to_host(self._pending())):
            return True
        max_u, strain = self._drift(positions, cell)
        return self._stale(float(to_host(max_u)), strain)

    def pairs_within(self, positions, cell, cutoff: float):
        """``(i [q], j [q], d [q, 3])``: the listed pairs closer than ``cutoff`` (Å), rebuilding the list first
        when the rule of the module doc asks for it; the pairs keep the list's order.

        One host read (:func:`md_gpu.backend.to_host`: ``max|u|`` and the number of pairs inside, in one
        transfer) when the list holds; one more after a rebuild. On NumPy the pairs inside come from the
        compiled filter (:mod:`md_gpu.verlet_filter`, where it loads), which counts them itself: one read
        when the list holds, none after a rebuild. A non-finite ``max|u|`` (positions that are NaN or
        infinite after a blow-up) is an :class:`MDRunError`.

        ``deferred``: the whole list ``(i [p], j [p], d [p, 3])``, pairs beyond ``cutoff`` included, no read
        and no rebuild (one if there is no list yet); the stale measure is kept for :meth:`verify`.
        """
        fresh = self.i is None or positions.shape != self.ref_positions.shape
        if fresh:
            self.build(positions, cell)
        self._calls_since_build += 1
        xp = array_module(positions)
        if self.deferred:
            max_u, strain = self._drift(positions, cell)
            measure = self._stale_measure(max_u, strain)  # NaN positions: NaN, which maximum keeps
            self._worst = measure if self._worst is None else xp.maximum(self._worst, measure)
            return self.i, self.j, self.pair_vectors(positions, cell)
        filtered = xp is np and verlet_filter_available()

        def inside_mask():
            d = self.pair_vectors(positions, cell)
            return d, (d * d).sum(1) < cutoff * cutoff

        if not filtered:
            d, inside = inside_mask()
        if not fresh:
            max_u, strain = self._drift(positions, cell)
            max_u, n_inside, needed = to_host(max_u, 0 if filtered else inside.sum(), self._pending())
            if not np.isfinite(max_u):
                raise MDRunError(NOT_FINITE)
            fresh = self._overflowed(needed) or self._stale(float(max_u), strain)
            if fresh:
                self.build(positions, cell)
                if not filtered:
                    d, inside = inside_mask()
        if filtered:
            return compiled_pairs_within(self.i, self.j, self.shifts, positions, cell, cutoff)
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
        if self._worst is None and self._needed is None:
            return True
        measured = self._worst is not None
        worst, needed = to_host(-np.inf if self._worst is None else self._worst, self._pending())
        self._worst = None
        if self._overflowed(needed):
            return False  # the padded list left pairs out: replay
        if not measured:
            return True  # no force call since the last check: nothing measured, the bookkeeping stays
        worst = float(worst)
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
        check, the padded builds' capacity and whether the list in use is one), so that a resumed run builds
        the same list and rebuilds at the same checks as the uninterrupted one."""
        return {"calls_since_build": self._calls_since_build, "last_check": list(self._last_check),
                "capacity": None if self.capacity is None else list(self.capacity), "padded": self._padded_list}

    def restore(self, positions, cell, record: dict | None) -> None:
        """The list of a checkpoint: built again for its reference ``positions``, ``cell`` as it was built (the
        same pairs in the same order), with the bookkeeping of :meth:`check_record`."""
        record = record or {}
        if record.get("capacity") is not None:
            self.capacity = tuple(int(c) for c in record["capacity"])
        self.build(positions, cell, padded=bool(record.get("padded", False)))
        if "calls_since_build" in record:
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
