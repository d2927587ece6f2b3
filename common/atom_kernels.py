"""Bookkeeping shared by the one-thread-per-atom potential kernels (a CUDA grid, or an OpenMP loop on the host).

Contract, on an array namespace ``xp`` (NumPy or CuPy), for a FULL pair list ``i, j`` [p] (centre,
neighbour) of ``n`` atoms with species ``types`` [n] in ``0 .. S-1``:

* :func:`csr_pairs` -- the pairs sorted by centre (``order`` [p] or None when already sorted) and
  ``offsets`` [n+1]: the pairs of atom ``a`` are ``offsets[a] .. offsets[a+1]-1`` of the sorted list;
* :func:`species_layout` -- which species occur among the atoms and which species pairs among the
  pairs, as ``S + S*S`` flag bytes (what :func:`sample_atoms` covers);
* :func:`species_probe` -- a small configuration with every species and species pair of a potential;
* :func:`sample_atoms` -- the centre atoms whose kernel results a self-check compares with the array
  code: all of a small launch; else the first thread and one more lane of *every* thread block (the
  lane moves from block to block, so ``threads_per_block`` blocks cover all lanes), the last atom, and
  for every species and species pair present the first atom that has it;
* :func:`launch_atoms` -- one launch ``launch(n, (*args, energies, grad))`` into fresh outputs (NaN-filled
  for a launch that is to be checked) and the pair gradients back in the caller's pair order;
* :func:`evaluate_checked` -- a kernel's evaluation from the caller's pair list: sort, pair types
  ``t_i S + t_j``, launch, and the self-check of the first launch of each launcher, on the caller's
  configuration and on the species probe (later launches read nothing to the host);
* :func:`verify` -- that self-check: :class:`KernelMismatch` when an output is left NaN or not finite
  (:func:`unwritten`), or when the sampled atoms' site energies and pair gradients differ from a reference
  evaluation by more than ``VERIFY_TOLERANCE`` (:func:`sampled_errors`);
* :func:`host_launcher` -- ``launch(n_atoms, args)`` of a kernel source built for the CPU by
  :mod:`common.native` (None when compiled kernels are off or cannot be built);
* :func:`kept_tables` -- a kernel's tables kept on their potential while the kernel source stays the same;
* :func:`device_copies` -- a kernel's parameter arrays on the device, copied again only when they change.

``training.mtp.fused`` and ``training.nep.fused`` (and their ``host_kernel`` builds) use these; each keeps
only its kernel source, its tables and its array-code reference.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from .host_reads import to_host

from .native import load_function, pointer

VERIFY_ALL_ATOMS = 1024  # launches of at most this many atoms are checked on every atom
VERIFY_LANE_STRIDE = 37  # lane sampled in block b besides lane 0: (1 + 37 b) mod T (37 odd: all lanes)
VERIFY_CHUNK = 4096  # sampled centre atoms per reference evaluation (bounds the array code's memory)
VERIFY_TOLERANCE = 1e-9  # relative; float64 round-off of a different summation order is ~1e-13


class KernelMismatch(RuntimeError):
    """A compiled kernel disagrees with the array code (a compiler or device problem, not a user error)."""


def csr_pairs(i, n_atoms: int, xp):
    """(order [p] or None, offsets [n_atoms + 1]) of the pair centres ``i`` [p] (module docstring). On a device
    the pairs are always sorted: testing whether they already are would be a read (the device lists are
    not sorted by centre)."""
    order = None
    if xp is not np:
        order = xp.argsort(i)
        i = i[order]
    elif len(i) > 1 and not bool((i[1:] >= i[:-1]).all()):
        order = np.argsort(i, kind="stable")
        i = i[order]
    # offsets by a search of the sorted centres (cupy.bincount reads the host: a sign test and its length)
    offsets = xp.searchsorted(i, xp.arange(n_atoms + 1, dtype=xp.int64)).astype(xp.int64)
    return order, offsets


def species_layout(types, pair_types, species_count: int, xp) -> bytes:
    """``S + S*S`` flags (bytes): species among ``types`` [n], species pairs among ``pair_types`` [p]
    (``t_i S + t_j``).  Cost: two scatters of one byte and a copy of ``S + S*S`` bytes to the host, one
    read through the counted hook (:func:`common.host_reads.to_host`)."""
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


def unwritten(energies, de_dd, xp) -> tuple[int, int]:
    """(site energies [n], pair gradients [p, 3] rows) that are not finite: outputs filled with NaN before
    the launch and left so by no thread, or a non-finite result."""
    return int((~xp.isfinite(energies)).sum()), int((~xp.isfinite(de_dd)).any(axis=1).sum())


def sampled_errors(reference, types, i, j, d, energies, de_dd, species_count: int, sample, xp, *,
                   chunk: int = VERIFY_CHUNK) -> tuple[float, float]:
    """Largest relative differences (site energies, pair gradients) of the ``sample`` centre atoms [m] between
    a kernel's ``energies`` [n], ``de_dd`` [p, 3] and ``reference(types, i, j, d)`` (the array code, same
    contract). The reference runs on chunks of ``chunk`` centres, each with one stand-in atom per species for
    the neighbours (only their species matter to a centre's site energy), so its memory does not grow with
    the system. Energies are compared relative to max(1 eV, the largest |U|), gradients to the largest one."""
    n, s = int(types.shape[0]), int(species_count)
    local = xp.full(n, -1, dtype=xp.int64)
    err_e = err_g = 0.0
    for start in range(0, int(sample.shape[0]), chunk):
        centres = sample[start:start + chunk]
        m = int(centres.shape[0])
        local[centres] = xp.arange(m)
        mask = local[i] >= 0
        local_types = xp.concatenate([types[centres], xp.arange(s, dtype=xp.int64)])
        ref_e, ref_g = reference(local_types, local[i[mask]], m + types[j[mask]], d[mask])
        local[centres] = -1
        scale_e = max(1.0, float(xp.abs(ref_e[:m]).max()))
        err_e = max(err_e, float(xp.abs(energies[centres] - ref_e[:m]).max()) / scale_e)
        if int(mask.sum()):
            err_g = max(err_g, float(xp.abs(de_dd[mask] - ref_g).max()) / max(1e-12, float(xp.abs(ref_g).max())))
    return err_e, err_g


def host_launcher(source: str, name: str):
    """``launch(n_atoms, args)`` calling ``name(long long n_atoms, void* ...)`` of the C++ ``source`` (built
    by :func:`common.native.load_function`) with the arrays ``args``, or None when it does not load.  The
    same object for the same source, so a caller can remember which launchers it has checked."""
    if load_function(source, name) is None:
        return None
    return _launch(source, name)


@functools.lru_cache(maxsize=16)
def _launch(source: str, name: str):
    function = load_function(source, name)

    def launch(n_atoms, args):
        function(ctypes.c_longlong(n_atoms), *(pointer(a) for a in args))

    return launch


def kept_tables(owner, key, build):
    """``build()`` (a kernel's tables), kept on ``owner`` (attribute ``_fused_tables``) and built again only
    when ``key`` (what fixes the kernel source) differs from the one it was built for."""
    cached = getattr(owner, "_fused_tables", None)
    if cached is None or cached[0] != key:
        cached = (key, build())
        owner._fused_tables = cached
    return cached[1]


def device_copies(cache: dict, host: list, xp) -> list:
    """``host`` (NumPy arrays) as ``xp`` arrays, kept in ``cache`` (a dict the caller owns, keyed by the
    namespace) while every array equals the one copied last time."""
    cached = cache.get(xp.__name__)
    if cached is None or not all(np.array_equal(a, b) for a, b in zip(cached[0], host)):
        cached = cache[xp.__name__] = ([a.copy() for a in host], [xp.asarray(a) for a in host])
    return cached[1]


def launch_atoms(launch, n_atoms: int, n_pairs: int, args: tuple, order, xp, *, fill_nan: bool):
    """Site energies [n] and dE/dd [p, 3] of ``launch(n_atoms, (*args, energies, grad))`` (a kernel over the
    pairs sorted by centre), the gradients put back in the order before :func:`csr_pairs` sorted them
    (``order``). ``fill_nan``: the outputs start as NaN, so an entry that no thread writes fails
    :func:`unwritten`."""
    empty = (lambda shape: xp.full(shape, xp.nan)) if fill_nan else xp.empty
    energies, grad = empty(n_atoms), empty((n_pairs, 3))
    if n_atoms:
        launch(n_atoms, (*args, energies, grad))
    if order is None:
        return energies, grad
    de_dd = xp.empty_like(grad)
    de_dd[order] = grad
    return energies, de_dd


def species_probe(species_count: int, radii: tuple[float, float], xp, *, seed: int = 0):
    """``(types [m], i [p], j [p], d [p, 3])``: a small configuration that holds every species and every
    species pair of a potential with ``species_count`` S species: one centre atom per species, each with two
    neighbours of every species at random directions and distances in ``radii = (r_lo, r_hi)`` (Å), pairs
    sorted by centre; the neighbours have no pairs of their own. Built on the host (no read)."""
    s = int(species_count)
    rng = np.random.default_rng(seed)
    per_centre = 2 * s
    types = np.concatenate([np.arange(s), np.tile(np.repeat(np.arange(s), 2), s)]).astype(np.int64)
    i = np.repeat(np.arange(s, dtype=np.int64), per_centre)
    j = s + np.arange(s * per_centre, dtype=np.int64)
    u = rng.normal(size=(len(i), 3))
    d = u / np.linalg.norm(u, axis=1)[:, None] * rng.uniform(*radii, size=len(i))[:, None]
    return xp.asarray(types), xp.asarray(i), xp.asarray(j), xp.asarray(d)


def _launch_pairs(launch, types, i, j, d, species_count: int, params, xp, *, fill_nan: bool):
    """Site energies [n] and dE/dd [p, 3] (caller's pair order) of one launch over the pairs sorted by centre."""
    n, p = int(types.shape[0]), int(i.shape[0])
    order, offsets = csr_pairs(i, n, xp)
    pair_types = types[i] * int(species_count) + types[j]
    sorted_types = xp.ascontiguousarray(pair_types if order is None else pair_types[order])
    d_sorted = xp.ascontiguousarray(d if order is None else d[order])
    return launch_atoms(launch, n, p, (offsets, types, sorted_types, d_sorted, *params), order, xp, fill_nan=fill_nan)


def evaluate_checked(launch, check_key, verified: set, types, i, j, d, species_count: int, params, xp, verify, *,
                     probe_radii: tuple[float, float]):
    """Site energies [n] and dE/dd [p, 3] of a one-thread-per-atom kernel, its first result checked.

    ``launch(n, (offsets, types, pair_types, d, *params, energies, grad))`` runs the kernel over the FULL
    pair list ``i, j`` [p], ``d`` [p, 3] sorted by centre (:func:`csr_pairs`; pair types ``t_i S + t_j``,
    ``types`` [n] int64, ``d`` float64); the gradients come back in the caller's pair order
    (:func:`launch_atoms`).  While ``check_key`` is not in ``verified`` the outputs start as NaN and
    ``verify(types, i, j, d, energies, de_dd)`` (raises on a mismatch) checks the launch, and then a launch
    on :func:`species_probe` (every species and species pair, at distances in ``probe_radii``), before the
    key is added: so a kernel is checked once per launcher, for the species pairs a run meets later too,
    and its later calls read nothing to the host."""
    types = xp.ascontiguousarray(xp.asarray(types), dtype=xp.int64)
    i, j = xp.asarray(i, dtype=xp.int64), xp.asarray(j, dtype=xp.int64)
    d = xp.asarray(d, dtype=xp.float64)
    first = check_key not in verified
    energies, de_dd = _launch_pairs(launch, types, i, j, d, species_count, params, xp, fill_nan=first)
    if first:
        verify(types, i, j, d, energies, de_dd)
        probe = species_probe(species_count, probe_radii, xp)
        verify(*probe, *_launch_pairs(launch, *probe, species_count, params, xp, fill_nan=True))
        verified.add(check_key)
    return energies, de_dd


def verify(kernel: str, reference, types, i, j, d, energies, de_dd, species_count: int, xp, *,
           threads_per_block: int, sample=None, advice: str) -> None:
    """Check a kernel result (``energies`` [n], ``de_dd`` [p, 3], written into NaN-filled outputs) against
    ``reference(types, i, j, d)`` (the array code); :class:`KernelMismatch` naming ``kernel`` (e.g. "the
    fused MTP kernel (training/mtp/fused.py)") and ending with ``advice`` when an entry is not finite
    (:func:`unwritten`) or the site energies and pair gradients of the ``sample`` centre atoms (default:
    :func:`sample_atoms` for blocks of ``threads_per_block``) differ beyond ``VERIFY_TOLERANCE`` (relative,
    :func:`sampled_errors` on chunks of ``VERIFY_CHUNK`` centres)."""
    n = int(types.shape[0])
    if n == 0:
        return
    bad_e, bad_g = unwritten(energies, de_dd, xp)
    if bad_e or bad_g:
        raise KernelMismatch(f"{kernel} left {bad_e} of {n} site energies and {bad_g} of {len(de_dd)} pair "
                             f"gradients unwritten or not finite on this device; {advice}")
    if sample is None:
        sample = sample_atoms(types, i, j, species_count, xp, threads_per_block=threads_per_block)
    sample = xp.asarray(sample, dtype=xp.int64)
    err_e, err_g = sampled_errors(reference, types, i, j, d, energies, de_dd, species_count, sample, xp,
                                  chunk=VERIFY_CHUNK)
    if not (err_e < VERIFY_TOLERANCE and err_g < VERIFY_TOLERANCE):
        raise KernelMismatch(f"{kernel} disagrees with the array code on this device: relative error {err_e:.2e} "
                             f"in site energies, {err_g:.2e} in dE/dd (tolerance {VERIFY_TOLERANCE:g}, "
                             f"{int(sample.shape[0])} of {n} atoms checked); {advice}")
