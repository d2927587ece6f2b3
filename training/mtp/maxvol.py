"""Extrapolation grades of a moment tensor potential: MaxVol active sets (D-optimality).

Method (Podryabinkin & Shapeev, Comput. Mater. Sci. 140, 171 (2017); Gubaev et al., Comput. Mater.
Sci. 156, 148 (2019); MLIP-2, Novikov et al., Mach. Learn.: Sci. Technol. 2, 025002 (2021)): each
training "equation" contributes a row x = dE/dθ, the derivative of an energy with respect to the
potential's coefficients.  Of all training rows, the K' rows of largest |det A| (the active set
A [K', K'], found by MaxVol: Goreinov et al., in "Matrix Methods: Theory, Algorithms and
Applications", 247 (2010)) span the training set best.  Any new row x has the grade

    gamma(x) = max_k |(x A^-1)_k|,

the largest factor by which |det A| would grow if x replaced an active row: gamma <= 1 is
interpolation (every training row has gamma <= 1 after MaxVol), gamma > 1 extrapolation.

Two modes, as in MLIP-2's selection (``select:site-en-weight`` vs ``select:energy-weight``):

* ``neighbourhood``: one row per atom, x_i = dE_i/dθ (the site energy's derivative); the grade of a
  configuration is max_i gamma(x_i).  This is what MD grades on the fly (per-atom gamma [n]).
* ``configuration``: one row per configuration, the total energy's derivative x = sum_i x_i.

Two row definitions (``parameters``): ``all`` (default; as MLIP-2): θ = species coefficients [S],
radial coefficients [S*S*M*X] (exact derivatives, :func:`radial_rows`) and moment coefficients [K];
``linear``: only species and moment coefficients, x_i = [onehot(type_i), B[i]] (B from
``MTP.basis_values``; cheaper, runs on CuPy).  Our active set file is HDF5, not MLIP-2's binary
``.als`` (see :meth:`ActiveSet.save`).  Grades do not depend on column scaling (x A^-1 is unchanged
when x and A are multiplied by the same diagonal matrix), so the rows are scaled to unit RMS per
column for conditioning.  When the training rows do not span all K' directions (dependent radial
columns, or too few configurations), the missing directions are filled with rows
``regularization * q`` along the null space q of the training rows, as MLIP-2 starts from a
regularised matrix (``select:init-threshold``): training rows still grade <= 1, a row with a
(more than round-off) component along q grades ~|x.q| / regularization (extrapolation).

Data flow: MTP + frames (ase.Atoms) -> :func:`training.mtp.energy_rows.frame_rows` -> :func:`maxvol` ->
:class:`ActiveSet`
(``save``/``load``: ``<potential>.als``) -> ``neighbourhood_grades`` / ``configuration_grade`` /
``frame_grades`` of new configurations.  Selection takes the rows of the array code, grading those of the
compiled kernel on the CPU (``compiled=True``, :mod:`training.mtp.energy_rows`; the same rows to round-off).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg

from common.arrays import array_module
from common.atomic import atomic_path

from .energy_rows import (MODES, PARAMETERS, ActiveSetError, _check_mode, _check_parameters, fingerprint, frame_rows,
                          neighbourhood_rows)

__all__ = ["MODES", "PARAMETERS", "ActiveSetError", "MaxVolResult", "maxvol", "ActiveSet", "select_add"]

#: components of a row along a regularised (null) direction below this fraction of its norm are round-off
NULL_NOISE = 1e-8
ALS_FORMAT = "multiscale-mtp-active-set"
ALS_VERSION = 1


# ---------------------------------------------------------------------------------------- MaxVol
@dataclass
class MaxVolResult:
    """Result of :func:`maxvol` on rows [N, K].

    index [K] int: the candidate row in each active slot (-1: a regularisation row);
    matrix [K, K]: the active rows (A); inverse [K, K]: A^-1;
    log_det [swaps + 1]: log|det A| after the initial pick and after each swap (non-decreasing);
    swaps: list of (candidate row, slot) replacements in order; rank: numerical rank of the rows.
    """

    index: np.ndarray
    matrix: np.ndarray
    inverse: np.ndarray
    log_det: list = field(default_factory=list)
    swaps: list = field(default_factory=list)
    rank: int = 0


def maxvol(rows, *, tol: float = 1e-9, max_swaps: int | None = None, regularization: float = 1e-5,
           rank_rtol: float = 1e-7, refresh: int = 25, start=None) -> MaxVolResult:
    """The K rows of ``rows`` [N, K] spanning the largest volume, by MaxVol swaps.

    Start: the first K pivots of a column-pivoted QR of rows^T (a greedy volume maximiser); if the
    numerical rank r (pivots above ``rank_rtol`` times the largest) is below K, the K - r missing
    slots get ``regularization * q`` rows along an orthonormal basis q of the null space.
    Swaps: while some row has |(x A^-1)_k| > 1 + ``tol``, the largest such entry's row replaces slot k;
    |det A| grows by that factor each time (Sherman-Morrison updates of A^-1 and of C = rows A^-1,
    recomputed from scratch every ``refresh`` swaps and before stopping).  ``max_swaps`` (default 20 K
    + 100) bounds the loop; reaching it raises ActiveSetError.  A swap back to an index set seen before
    (round-off cycling between equal rows of an ill-conditioned matrix) ends the loop.  ``start`` [K] (row indices) replaces the
    QR start, e.g. a previous active set when rows are added (it must have full rank).
    """
    rows = np.asarray(rows, dtype=float)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] == 0:
        raise ActiveSetError(f"maxvol needs a non-empty 2D array of rows, got shape {rows.shape}")
    n, k = rows.shape
    if start is not None:
        piv = np.asarray(start, dtype=np.int64)
        rank = k
        if piv.shape != (k,) or abs(np.linalg.slogdet(rows[piv])[0]) == 0:
            raise ActiveSetError(f"maxvol start must be {k} row indices of a non-singular matrix")
    else:
        _, r, piv = scipy.linalg.qr(rows.T, mode="economic", pivoting=True)
        diag = np.abs(np.diag(r))
        rank = int(np.sum(diag > rank_rtol * diag[0])) if diag.size and diag[0] > 0 else 0
    index = np.full(k, -1, dtype=np.int64)
    index[:rank] = piv[:rank]
    matrix = np.zeros((k, k))
    matrix[:rank] = rows[piv[:rank]]
    if rank < k:
        if regularization <= 0:
            raise ActiveSetError(f"the {n} rows have rank {rank} < {k} and regularization = {regularization}")
        null = scipy.linalg.null_space(matrix[:rank]) if rank else np.eye(k)
        null = null[:, : k - rank]
        matrix[rank:] = regularization * null.T
        # all rows lie in the span of the r pivots (that is the rank): their components along the null
        # space are round-off, which the tiny regularisation rows would amplify into spurious swaps
        rows = rows - (rows @ null) @ null.T
    inverse = np.linalg.inv(matrix)
    c = rows @ inverse
    log_det = [float(np.linalg.slogdet(matrix)[1])]
    swaps: list = []
    limit = 20 * k + 100 if max_swaps is None else int(max_swaps)
    since_refresh = 0
    seen = {hash(tuple(index))}
    while True:
        flat = int(np.argmax(np.abs(c)))
        i, j = divmod(flat, k)
        g = float(abs(c[i, j]))
        if g <= 1.0 + tol:
            if since_refresh == 0:
                break
            inverse = np.linalg.inv(matrix)
            c, since_refresh = rows @ inverse, 0
            continue
        if len(swaps) >= limit:
            raise ActiveSetError(f"maxvol did not converge in {limit} swaps (largest |x A^-1| = {g:.6g})")
        key = hash(tuple(np.where(np.arange(k) == j, i, index)))
        if key in seen:  # round-off cycling between (nearly) equal rows: the volume is maximal to precision
            break
        seen.add(key)
        pivot = c[i, j]
        ci = c[i].copy()
        ci[j] -= 1.0
        inverse -= np.outer(inverse[:, j], ci) / pivot
        c -= np.outer(c[:, j], ci) / pivot
        matrix[j] = rows[i]
        index[j] = i
        swaps.append((i, j))
        log_det.append(log_det[-1] + float(np.log(g)))
        since_refresh += 1
        if since_refresh >= refresh:
            inverse = np.linalg.inv(matrix)
            c, since_refresh = rows @ inverse, 0
    return MaxVolResult(index=index, matrix=matrix, inverse=np.linalg.inv(matrix), log_det=log_det,
                        swaps=swaps, rank=rank)


# ---------------------------------------------------------------------------------------- active set
@dataclass
class ActiveSet:
    """The MaxVol active set of a potential's training set, and grading with it.

    mode: ``neighbourhood`` | ``configuration``; matrix [K', K']: the active rows (K' columns, unscaled,
    see the module docstring); scale [K']: the column scale (rows are divided by it); inverse [K', K']:
    (matrix / scale)^-1; source_frame, source_atom [K'] int: where each active row came from (frame
    index in the training set, atom index; -1 for regularisation rows / configuration mode);
    fingerprint: :func:`fingerprint` of the potential; species: its element symbols (or None);
    tol: MaxVol tolerance; rank: rank of the training rows; log_det: log|det| history of the swaps;
    parameters: ``linear`` (rows over species and moment coefficients) | ``all`` (also the radial ones).
    """

    mode: str
    matrix: np.ndarray
    scale: np.ndarray
    inverse: np.ndarray
    source_frame: np.ndarray
    source_atom: np.ndarray
    fingerprint: str
    species: list | None = None
    tol: float = 1e-9
    rank: int = 0
    log_det: list = field(default_factory=list)
    parameters: str = "linear"

    # ------------------------------------------------------------------ building
    @classmethod
    def select(cls, mtp, frames, *, mode: str = "neighbourhood", parameters: str = "all", tol: float = 1e-9,
               regularization: float = 1e-5) -> "ActiveSet":
        """MaxVol active set of ``frames`` (the training set) for potential ``mtp``."""
        rows, frame, atom = frame_rows(mtp, frames, mode=mode, parameters=parameters)
        return cls.from_rows(rows, frame, atom, mode=mode, fingerprint=fingerprint(mtp, parameters),
                             species=mtp.species, tol=tol, regularization=regularization, parameters=parameters)

    @classmethod
    def from_rows(cls, rows, frame, atom, *, mode: str, fingerprint: str = "", species=None,
                  tol: float = 1e-9, regularization: float = 1e-5, parameters: str = "linear") -> "ActiveSet":
        """Active set of explicit rows [N, K'] with their frame [N] and atom [N] indices."""
        _check_mode(mode)
        _check_parameters(parameters)
        rows = np.asarray(rows, dtype=float)
        scale = np.sqrt(np.mean(rows * rows, axis=0))
        scale[scale == 0] = 1.0
        res = maxvol(rows / scale, tol=tol, regularization=regularization)
        picked = res.index >= 0
        src_frame = np.where(picked, np.asarray(frame)[np.maximum(res.index, 0)], -1)
        src_atom = np.where(picked, np.asarray(atom)[np.maximum(res.index, 0)], -1)
        return cls(mode=mode, matrix=res.matrix * scale, scale=scale, inverse=res.inverse,
                   source_frame=src_frame.astype(np.int64), source_atom=src_atom.astype(np.int64),
                   fingerprint=fingerprint, species=list(species) if species else None, tol=tol,
                   rank=res.rank, log_det=list(res.log_det), parameters=parameters)

    # ------------------------------------------------------------------ grading
    def grade_rows(self, rows):
        """gamma [m] = max_k |(x / scale) A^-1| of rows x [m, K'] (NumPy or CuPy; same module back)."""
        xp = array_module(rows)
        if rows.shape[-1] != len(self.scale):
            raise ActiveSetError(f"rows have {rows.shape[-1]} columns but the active set has {len(self.scale)}: "
                                 "it belongs to a potential with another basis or species count")
        x = rows / xp.asarray(self.scale)
        reg = self.source_frame < 0
        if reg.any():  # drop round-off-sized components along the regularised (null) directions
            q = self.matrix[reg] / self.scale
            q = xp.asarray(q / np.linalg.norm(q, axis=1, keepdims=True))
            comp = x @ q.T
            noise = NULL_NOISE * xp.linalg.norm(x, axis=-1)[..., None]
            x = x - xp.where(xp.abs(comp) < noise, comp, 0.0) @ q
        c = x @ xp.asarray(self.inverse)
        return xp.abs(c).max(axis=-1)

    def check_potential(self, mtp) -> None:
        """Raise ActiveSetError unless ``mtp`` is the potential this active set was built for."""
        if self.fingerprint and fingerprint(mtp, self.parameters) != self.fingerprint:
            raise ActiveSetError("the active set was built for another potential (basis, radial coefficients or "
                                 "species differ): rebuild it from the training set with this potential "
                                 "(multiscale mtp grade POT TRAIN IN OUT --als POT.als)")

    def neighbourhood_grades(self, mtp, types, i, j, d):
        """Per-atom grades gamma [n] of one configuration (pair list as ``MTP.evaluate``: types [n],
        i, j [p], d [p, 3] Å; NumPy or CuPy).  In configuration mode each atom's row is graded
        against the configuration active set (useful only for diagnostics)."""
        self.check_potential(mtp)
        return self.grade_rows(neighbourhood_rows(mtp, types, i, j, d, parameters=self.parameters, compiled=True))

    def configuration_grade(self, mtp, types, i, j, d) -> float:
        """Grade of one configuration: max neighbourhood grade (neighbourhood mode) or the grade of its
        energy row (configuration mode)."""
        self.check_potential(mtp)
        rows = neighbourhood_rows(mtp, types, i, j, d, parameters=self.parameters, compiled=True)
        if self.mode == "configuration":
            return float(self.grade_rows(rows.sum(axis=0)[None, :])[0])
        return float(self.grade_rows(rows).max())

    def grades(self, mtp, types, i, j, d, n_atoms: int | None = None):
        """The MD hook's call (``md_gpu.extrapolation.mtp_grader``): per-atom grades gamma [n]."""
        return self.neighbourhood_grades(mtp, types, i, j, d)

    def frame_grades(self, mtp, frames):
        """Grades of frames (ase.Atoms): (gamma [F] per frame, list of per-atom gamma [n_f]).

        Per frame: max neighbourhood grade (neighbourhood mode) or the energy-row grade (configuration
        mode); per atom: always the neighbourhood rows graded against this active set."""
        self.check_potential(mtp)
        frames = list(frames)
        rows, frame, _ = frame_rows(mtp, frames, mode="neighbourhood", parameters=self.parameters, compiled=True)
        atom_gamma = self.grade_rows(rows)
        per_atom = np.split(atom_gamma, np.cumsum([len(a) for a in frames])[:-1])
        if self.mode == "neighbourhood":
            gamma = np.array([g.max() for g in per_atom])
        else:
            sums = np.zeros((len(frames), rows.shape[1]))
            np.add.at(sums, frame, rows)
            gamma = self.grade_rows(sums)
        return gamma, per_atom

    # ------------------------------------------------------------------ files
    def save(self, path) -> Path:
        """Write the active set as HDF5 (atomic: temporary file, then rename); returns the path.

        Layout: attributes ``format`` = "multiscale-mtp-active-set", ``version``, ``mode``,
        ``parameters``, ``fingerprint``, ``species`` (JSON), ``tol``, ``rank``; datasets ``matrix``, ``scale``,
        ``inverse``, ``source_frame``, ``source_atom``, ``log_det``.
        """
        import h5py

        path = Path(path)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs.update(format=ALS_FORMAT, version=ALS_VERSION, mode=self.mode, fingerprint=self.fingerprint,
                           species=json.dumps(self.species), tol=self.tol, rank=self.rank,
                           parameters=self.parameters)
            for name in ("matrix", "scale", "inverse", "source_frame", "source_atom"):
                f.create_dataset(name, data=np.asarray(getattr(self, name)))
            f.create_dataset("log_det", data=np.asarray(self.log_det, dtype=float))
        return path

    @classmethod
    def load(cls, path) -> "ActiveSet":
        """Read a file written by :meth:`save`; ActiveSetError names the file if it is not one."""
        import h5py

        path = Path(path)
        if not path.is_file():
            raise ActiveSetError(f"active set file {path} does not exist (the fit stage writes <system>.als "
                                 "beside <system>.mtp; `multiscale mtp grade POT TRAIN IN OUT --als FILE` makes one)")
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != ALS_FORMAT:
                    raise ActiveSetError(f"{path} is not a {ALS_FORMAT} file (format attribute "
                                         f"{f.attrs.get('format')!r}); MLIP's binary .als is not read")
                data = {name: np.asarray(f[name]) for name in
                        ("matrix", "scale", "inverse", "source_frame", "source_atom", "log_det")}
                attrs = dict(f.attrs)
        except OSError as exc:
            raise ActiveSetError(f"{path}: cannot read it as HDF5 ({exc}); it is not an active set file") from None
        except KeyError as exc:  # h5py: a dataset of the layout is not there
            raise ActiveSetError(f"{path}: an incomplete active set file ({exc.args[0]}); rerun the fit stage "
                                 "that writes it with --force, or make one with `multiscale mtp grade ... --als`") \
                from None
        log_det = [float(x) for x in data.pop("log_det")]
        return cls(mode=str(attrs["mode"]), fingerprint=str(attrs["fingerprint"]),
                   species=json.loads(attrs["species"]), tol=float(attrs["tol"]), rank=int(attrs["rank"]),
                   parameters=str(attrs.get("parameters", "linear")), log_det=log_det, **data)

    read = load  # the name md_gpu.extrapolation.mtp_grader calls


def select_add(mtp, train, new, *, mode: str = "neighbourhood", parameters: str = "all", tol: float = 1e-9,
               max_add: int = 0):
    """MLIP's ``mlp select-add``: the frames of ``new`` to add to the training set ``train``.

    MaxVol over the rows of train + new, started from the training set's own active set: the new frames
    whose rows end in the active set are selected (each raised |det A|).  With ``max_add`` > 0 only the
    ``max_add`` of them graded highest against the training active set are kept.  Returns (indices into
    ``new`` [m] sorted, their grades against the training active set [m]).
    """
    _check_mode(mode)
    new = list(new)
    if not new:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    rows_t, _, _ = frame_rows(mtp, train, mode=mode, parameters=parameters)
    rows_n, frame_n, _ = frame_rows(mtp, new, mode=mode, parameters=parameters)
    row_no = np.arange(len(rows_t))  # stored as the 'frame' of each row, so source_frame = row numbers
    base = ActiveSet.from_rows(rows_t, row_no, row_no, mode=mode, tol=tol)
    rows = np.concatenate([rows_t, rows_n]) / base.scale
    res = maxvol(rows, tol=tol, start=None if base.rank < len(base.scale) else base.source_frame)
    chosen = res.index[res.index >= len(rows_t)] - len(rows_t)
    picked = np.unique(frame_n[chosen])
    gamma_rows = base.grade_rows(rows_n)
    gamma = np.array([gamma_rows[frame_n == f].max() for f in picked])
    if max_add and len(picked) > max_add:
        keep = np.sort(np.argsort(-gamma, kind="stable")[:max_add])
        picked, gamma = picked[keep], gamma[keep]
    return picked.astype(np.int64), gamma
