"""Fit an MTP to reference energies, forces and stresses: weighted least squares plus variable projection.

Data flow::

    template or trained .mtp (training.mtp.MTP) + list[Atoms] (energy, forces, stress)
        --TrainingSet.build-->  pair batches + weighted reference vector y
        --fit(...)-->           FitResult (θ radial coefficients, species and moment coefficients, metrics,
                                           predictions)
        --FitResult.to_mtp / write-->  training.mtp.MTP / trained .mtp (MLIP-2 layout)

``train_mtp(init, frames, ...) -> (MTP, report)`` does all of it in one call.

The loss is MLIP-2's (``mlp train``, weighting "vibrations"):

    L(θ, c) = Σ_f [ w_E N_f (ΔE_f / N_f)² + w_F Σ_i |ΔF_i|² + w_S N_f |ΔW_f / N_f|² ]
              + Σ_k λ_k c_k² + λ_θ |θ|²

with N_f atoms in frame f, energies E (eV), forces F (eV/Å), virials W = stress·V (eV, Voigt), default
weights w_E = 1, w_F = 0.01, w_S = 0.001 (MLIP-2's defaults), λ_k = ``reg_linear`` times the squared
column norms of the design matrix at the starting θ (a relative ridge, fixed during the fit) and
λ_θ = ``reg_radial``.  The predictions are linear in the species and moment coefficients c and nonlinear
in the radial coefficients θ, so we use variable projection (Golub & Pereyra 1973, SIAM J. Numer. Anal.
10, 413): for each θ the coefficients c*(θ) are the exact ridge least-squares solution, and
L(θ) = L(θ, c*(θ)) is minimised over θ with L-BFGS (Nocedal 1980, Math. Comp. 35, 773; line search with
the strong Wolfe conditions) using the exact gradient ∂L/∂θ = 2 rᵀ ∂(A c*)/∂θ + 2 λ_θ θ (envelope
theorem), which :func:`training.mtp.radial_gradient.theta_gradient` computes with one complex-step
reverse pass.  Our L-BFGS keeps its whole state (θ, loss, gradient, curvature pairs) in the checkpoint,
so an interrupted and resumed fit gives the same potential as an uninterrupted one.

θ can be optimised on an evenly spaced subsample of the frames (``theta_frames``), which is much cheaper;
the final c is always solved on all training frames.  Each iteration reports the loss through
``progress(done, total, text)``; the optimiser state is checkpointed to an ``.npz`` after each
iteration; a KeyboardInterrupt raises :class:`FitInterrupted` naming the checkpoint, and ``resume=True``
continues from it.  A fixed ``seed`` gives the same potential.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.linalg
import scipy.optimize

from training.mtp import MTP
from training.mtp.errors import MTPError
from training.mtp.mtp_file import format_mtp
from training.mtp.neighbors import neighbor_pairs
from training.mtp.radial_gradient import BasisSpec, PairBatch, design, prediction_jacobian, theta_gradient

__all__ = ["FitWeights", "FitError", "FitInterrupted", "TrainingSet", "FitResult", "fit", "train_mtp",
           "load_template", "frame_types_of", "metrics", "initial_theta", "solve_linear", "report_json"]

#: Target size (float64 elements) of the largest per-batch array of the design computation (~64 MB).
BATCH_ELEMENTS = 8_000_000

#: 1 GPa in eV/Å³
_GPA = 1.0 / 160.21766208


class FitError(ValueError):
    """Bad fitting input: a template that is not an MTP, frames without forces, unknown species, a
    weight or setting out of range, a checkpoint of another fit.  The message names the file, frame or key."""


class FitInterrupted(RuntimeError):
    """The fit was interrupted (Ctrl-C); the message names the checkpoint to resume from."""


@dataclass(frozen=True)
class FitWeights:
    """Loss weights (MLIP-2 defaults): energy per atom, force component, virial per atom component."""

    energy: float = 1.0
    forces: float = 0.01
    stress: float = 0.001

    def __post_init__(self):
        for name in ("energy", "forces", "stress"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise FitError(f"weights.{name}: {value!r} must be a finite number >= 0")
        if self.energy == self.forces == self.stress == 0:
            raise FitError("weights: energy, forces and stress are all 0; give at least one a positive weight")

    @classmethod
    def parse(cls, text: str | None) -> "FitWeights":
        """From ``"energy=1,forces=0.01,stress=0.001"`` (any subset); None or "" gives the defaults."""
        if not text:
            return cls()
        values = {}
        for item in text.split(","):
            key, _, value = item.partition("=")
            key = key.strip()
            if key not in ("energy", "forces", "stress") or not value.strip():
                raise FitError(f"--weights: {item!r} is not energy=W, forces=W or stress=W")
            try:
                values[key] = float(value)
            except ValueError as err:
                raise FitError(f"--weights: {key}={value!r} is not a number") from err
        return cls(**values)

    @classmethod
    def coerce(cls, weights) -> "FitWeights":
        """A FitWeights from None, a FitWeights, a dict ``{'energy':…, 'forces':…, 'stress':…}`` or a string."""
        if weights is None:
            return cls()
        if isinstance(weights, cls):
            return weights
        if isinstance(weights, str):
            return cls.parse(weights)
        if isinstance(weights, dict):
            unknown = sorted(set(weights) - {"energy", "forces", "stress"})
            if unknown:
                raise FitError(f"weights: unknown key(s) {unknown}; use energy, forces, stress")
            return cls(**{k: float(v) for k, v in weights.items()})
        raise FitError(f"weights: {weights!r} is not a FitWeights, dict or 'energy=..,forces=..' string")

    def as_dict(self) -> dict:
        return {"energy": self.energy, "forces": self.forces, "stress": self.stress}


# --------------------------------------------------------------------------------------------
# Template and types
# --------------------------------------------------------------------------------------------

def load_template(init, *, species_count: int | None = None) -> tuple[BasisSpec, MTP]:
    """(BasisSpec, MTP) of a ``.mtp`` path or an ``MTP`` (template or trained).

    ``species_count`` overrides the potential's (MLIP's templates are written for one species); the
    radial coefficients are then dropped (zero).  A potential without radial coefficients (all zero: an
    untrained template) gets ``scaling = 1/(R_max − R_min)²``, so that the radial basis values are O(1)
    for the random start of :func:`initial_theta`.
    """
    if isinstance(init, MTP):
        mtp = MTP(init.fields())
    else:
        path = Path(init)
        if not path.is_file():
            raise FitError(f"{path}: potential file not found (give an MLIP .mtp template or potential)")
        try:
            mtp = MTP.read(path)
        except (MTPError, ValueError) as err:
            raise FitError(f"{path}: not a usable .mtp file: {err}") from err
    if species_count is not None and int(species_count) != mtp.species_count:
        if int(species_count) < 1:
            raise FitError(f"species_count: {species_count} must be >= 1")
        fields = mtp.fields()
        s = int(species_count)
        fields.update(species_count=s, potential_tag="", radial_coeffs=None, species_coeffs=None, moment_coeffs=None)
        mtp = MTP(fields)
        mtp.radial_coeffs = np.zeros((s, s, mtp.radial_funcs_count, mtp.radial_basis_size))
    if not np.any(mtp.radial_coeffs):
        mtp.scaling = 1.0 / (mtp.max_dist - mtp.min_dist) ** 2
    return BasisSpec.from_mtp(mtp), mtp


def frame_types_of(frames, species: Sequence[str] | None = None) -> tuple[list[np.ndarray], list[str] | None]:
    """MLIP type indices [n] of each frame and the species list used.

    With ``species`` (element symbols of types 0, 1, …) types follow the elements.  Without it,
    ``atoms.arrays['mlip_type']`` is used for ``.cfg`` data read without species (placeholder element X;
    species None), else the sorted set of elements in ``frames`` defines the types.  Raises FitError for
    an unknown element.
    """
    if species is None and _mlip_typed(frames):
        return [np.asarray(a.arrays["mlip_type"], dtype=np.int64) for a in frames], None
    if species is None:
        species = sorted({s for a in frames for s in a.get_chemical_symbols()})
    index = {s: k for k, s in enumerate(species)}
    out = []
    for n, atoms in enumerate(frames):
        symbols = atoms.get_chemical_symbols()
        missing = sorted(set(symbols) - set(index))
        if missing:
            raise FitError(f"frame {n}: element(s) {missing} are not in species={list(species)}; "
                           "give the species of every MTP type")
        out.append(np.fromiter((index[s] for s in symbols), dtype=np.int64, count=len(symbols)))
    return out, list(species)


def _mlip_typed(frames) -> bool:
    """True for frames of a ``.cfg`` read without species: placeholder element X and ``mlip_type``."""
    return bool(frames) and all("mlip_type" in a.arrays and not a.numbers.any() for a in frames)


def initial_theta(spec: BasisSpec, seed: int) -> np.ndarray:
    """Random radial coefficients [S*S, M, X] for ``seed``: uniform in [−1, 1] (with the template scaling
    1/(R_max − R_min)², the radial functions start O(1); a start decaying with the Chebyshev order fitted
    worse in our tests)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, spec.theta_shape)


# --------------------------------------------------------------------------------------------
# Training set: pair batches and weighted reference
# --------------------------------------------------------------------------------------------

def _reference(atoms, name: str):
    calc = atoms.calc
    return None if calc is None else calc.results.get(name)


@dataclass
class TrainingSet:
    """Frames prepared for fitting: pair batches and the weighted reference vector.

    Row layout of the design matrix (per batch, concatenated): energies [F_b], forces [3 N_b],
    virials [6 F_b].  ``row_scale`` [rows] holds √weight factors (0 for a frame without stress);
    ``y`` [rows] the weighted reference; ``counts`` [F, S] atoms per species; ``kinds`` [rows]
    0 energy, 1 force, 2 virial; ``row_frame`` [rows]; ``volume`` [F] (Å³).  ``threads``: the batches
    are computed on this many threads (NumPy releases the GIL in the array work; each batch writes
    its own rows, so the result does not depend on the thread count).
    """

    spec: BasisSpec
    batches: list
    y: np.ndarray
    row_scale: np.ndarray
    counts: np.ndarray
    n_atoms: np.ndarray
    kinds: np.ndarray
    row_frame: np.ndarray
    volume: np.ndarray
    threads: int = 1

    @classmethod
    def build(cls, spec: BasisSpec, frames, types, *, weights: FitWeights = FitWeights(),
              source: str = "<frames>", threads: int = 1) -> "TrainingSet":
        """Prepare ``frames`` (ASE Atoms with a reference calculator) with MLIP types ``types``, to be
        computed on ``threads`` threads."""
        if not frames:
            raise FitError(f"{source}: no frames to fit")
        if len(types) != len(frames):
            raise FitError(f"{source}: {len(frames)} frames but {len(types)} type arrays")
        for n, (atoms, t) in enumerate(zip(frames, types)):
            if _reference(atoms, "energy") is None or _reference(atoms, "forces") is None:
                raise FitError(f"{source}: frame {n} has no reference energy and forces (attach them with a "
                               "SinglePointCalculator, or read the file with training.datasets.read)")
            if len(t) != len(atoms):
                raise FitError(f"{source}: frame {n} has {len(atoms)} atoms but {len(t)} type indices")
            if len(t) and (np.min(t) < 0 or np.max(t) >= spec.species_count):
                raise FitError(f"{source}: frame {n} has type {int(np.max(t))} but the potential has "
                               f"species_count={spec.species_count}; use a template with more species")
        size = _frames_per_batch(spec, frames[0])
        batches, ys, scales, kinds, rframes = [], [], [], [], []
        for start in range(0, len(frames), size):
            chunk = frames[start:start + size]
            batch = PairBatch.build(chunk, types[start:start + size], cutoff=spec.max_dist,
                                    species_count=spec.species_count)
            batches.append(batch)
            nat = batch.n_atoms.astype(float)
            energy = np.array([_reference(a, "energy") for a in chunk], dtype=float)
            forces = np.concatenate([np.asarray(_reference(a, "forces"), float).reshape(-1, 3) for a in chunk])
            virial = np.zeros((len(chunk), 6))
            has_stress = np.zeros(len(chunk))
            for k, a in enumerate(chunk):
                stress = _reference(a, "stress")
                if stress is not None and batch.volume[k] > 0:
                    stress = np.asarray(stress, float)
                    if stress.shape == (3, 3):
                        stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
                    virial[k] = stress * batch.volume[k]
                    has_stress[k] = 1.0
            s_e = np.sqrt(weights.energy / nat)
            s_f = np.full(forces.size, np.sqrt(weights.forces))
            s_w = np.repeat(np.sqrt(weights.stress / nat) * has_stress, 6)
            scale = np.concatenate([s_e, s_f, s_w])
            ys.append(scale * np.concatenate([energy, forces.ravel(), virial.ravel()]))
            scales.append(scale)
            kinds.append(np.repeat([0, 1, 2], [len(chunk), forces.size, 6 * len(chunk)]))
            rframes.append(start + np.concatenate([np.arange(len(chunk)), np.repeat(batch.atom_frame, 3),
                                                   np.repeat(np.arange(len(chunk)), 6)]))
        counts = np.array([np.bincount(t, minlength=spec.species_count) for t in types], dtype=float)
        return cls(spec=spec, batches=batches, y=np.concatenate(ys), row_scale=np.concatenate(scales),
                   counts=counts, n_atoms=np.array([len(a) for a in frames]), kinds=np.concatenate(kinds),
                   row_frame=np.concatenate(rframes), volume=np.concatenate([b.volume for b in batches]),
                   threads=int(threads))

    @property
    def n_frames(self) -> int:
        return int(self.n_atoms.size)

    def _each_batch(self, work) -> list:
        """``[work(batch, first row, first frame) for each batch]``, on ``threads`` threads."""
        starts, r0, f0 = [], 0, 0
        for batch in self.batches:
            starts.append((batch, r0, f0))
            r0, f0 = r0 + 7 * batch.n_frames + 3 * batch.types.size, f0 + batch.n_frames
        if self.threads > 1 and len(starts) > 1:
            with ThreadPoolExecutor(min(self.threads, len(starts))) as pool:
                return list(pool.map(lambda start: work(*start), starts))
        return [work(*start) for start in starts]

    def matrix(self, theta) -> np.ndarray:
        """Weighted design matrix A [rows, K + S] (moment columns, then species columns)."""
        spec = self.spec
        k, s = spec.n_basis, spec.species_count
        out = np.zeros((self.y.size, k + s))

        def rows(batch, r0, f0):
            energy, forces, virial = design(spec, theta, batch)
            nf, na = batch.n_frames, batch.types.size
            out[r0:r0 + nf, :k] = energy
            out[r0:r0 + nf, k:] = self.counts[f0:f0 + nf]
            out[r0 + nf:r0 + nf + 3 * na, :k] = forces.reshape(-1, k)
            out[r0 + nf + 3 * na:r0 + 7 * nf + 3 * na, :k] = virial.reshape(-1, k)

        self._each_batch(rows)
        out *= self.row_scale[:, None]
        return out

    def theta_gradient(self, theta, coeffs, residual) -> np.ndarray:
        """∂(Σ residual·(A c))/∂θ [S*S, M, X] for weighted ``residual`` [rows] and c = ``coeffs`` [K + S]."""
        spec = self.spec
        seed = residual * self.row_scale

        def part(batch, r0, f0):
            nf, na = batch.n_frames, batch.types.size
            e, f, w = seed[r0:r0 + nf], seed[r0 + nf:r0 + nf + 3 * na], seed[r0 + nf + 3 * na:r0 + 7 * nf + 3 * na]
            return theta_gradient(spec, theta, coeffs[:spec.n_basis], batch, energy_seed=e,
                                  force_seed=f.reshape(na, 3), virial_seed=w.reshape(nf, 6))

        grad = np.zeros(spec.theta_shape)
        for g in self._each_batch(part):  # summed in batch order: the same sum on any number of threads
            grad += g
        return grad

    def jacobian(self, theta, coeffs) -> np.ndarray:
        """∂(A c)/∂θ [rows, T] (weighted rows, θ flattened) at fixed c = ``coeffs`` [K + S]."""
        spec = self.spec
        out = np.zeros((self.y.size, int(np.prod(spec.theta_shape))))

        def rows(batch, r0, f0):
            energy, forces, virial = prediction_jacobian(spec, theta, coeffs[:spec.n_basis], batch)
            nf, na = batch.n_frames, batch.types.size
            out[r0:r0 + nf] = energy
            out[r0 + nf:r0 + nf + 3 * na] = forces.reshape(3 * na, -1)
            out[r0 + nf + 3 * na:r0 + 7 * nf + 3 * na] = virial.reshape(6 * nf, -1)

        self._each_batch(rows)
        out *= self.row_scale[:, None]
        return out

    def predictions(self, theta, coeffs) -> dict:
        """Predictions and references (see :meth:`split`) for θ and c = ``coeffs`` [K + S]."""
        return self.split(self.matrix(theta) @ coeffs)

    def split(self, weighted_pred) -> dict:
        """Unweighted predictions paired with the references, in reporting units.

        ``{'energy_per_atom': (pred [F], ref [F]) eV/atom, 'forces': (pred [3N], ref [3N]) eV/Å,
        'stress': (pred [F', 6], ref [F', 6]) GPa, Voigt xx yy zz yz xz xy, ASE sign}``; ``stress`` only
        for frames with a reference stress (F' of them), absent when there are none.  Zero-weight
        quantities are predicted from the coefficients nevertheless only where their weight is > 0.
        """
        ok = self.row_scale > 0
        safe = np.where(ok, self.row_scale, 1.0)
        pred = np.where(ok, weighted_pred / safe, 0.0)
        ref = np.where(ok, self.y / safe, 0.0)
        e = self.kinds == 0
        out = {"energy_per_atom": (pred[e] / self.n_atoms, ref[e] / self.n_atoms),
               "forces": (pred[self.kinds == 1], ref[self.kinds == 1])}
        wrows = (self.kinds == 2) & ok
        if wrows.any():
            vol = self.volume[self.row_frame[wrows]]
            out["stress"] = ((pred[wrows] / vol / _GPA).reshape(-1, 6), (ref[wrows] / vol / _GPA).reshape(-1, 6))
        return out


def _frames_per_batch(spec: BasisSpec, atoms) -> int:
    """Frames per pair batch so that the largest design array stays near ``BATCH_ELEMENTS`` elements."""
    i, _, _ = neighbor_pairs(atoms, spec.max_dist)
    k_max = int(np.bincount(i, minlength=len(atoms)).max(initial=1)) + 4
    nb, k, t = len(spec.basic), spec.n_basis, int(np.prod(spec.theta_shape))
    per_atom = k_max * 3 * (nb + k + 2 * t) + nb * (k + t) + 2 * spec.moments_count * nb
    return max(1, BATCH_ELEMENTS // (per_atom * max(1, len(atoms))))


def metrics(pred: dict) -> dict:
    """RMSE and MAE of energy per atom (eV/atom), forces (eV/Å, per component) and stress (GPa, per
    component) from a predictions dict (:meth:`TrainingSet.split`)."""
    out = {}
    for key, unit in (("energy_per_atom", "eV/atom"), ("forces", "eV/A"), ("stress", "GPa")):
        if key in pred:
            diff = np.ravel(pred[key][0] - pred[key][1])
            out[key] = {"rmse": float(np.sqrt(np.mean(diff ** 2))) if diff.size else 0.0,
                        "mae": float(np.mean(np.abs(diff))) if diff.size else 0.0, "unit": unit}
    return out


# --------------------------------------------------------------------------------------------
# Linear solve, checkpoints, L-BFGS
# --------------------------------------------------------------------------------------------

def solve_linear(a: np.ndarray, y: np.ndarray, reg_diag: np.ndarray) -> np.ndarray:
    """argmin_c |A c − y|² + Σ_k reg_diag_k c_k²  (A [rows, n], y [rows], reg_diag [n] ≥ 0).

    Solved as the augmented least-squares problem [A; diag(√reg)] c ≈ [y; 0] with column equilibration
    and a pivoted QR (LAPACK gelsy): as accurate as the data allow, unlike the normal equations, whose
    condition number is squared.
    """
    norms = np.sqrt(np.einsum("rk,rk->k", a, a))
    norms = np.where(norms > 0, norms, 1.0)
    aug = np.vstack([a / norms, np.diag(np.sqrt(reg_diag) / norms)])
    cn = scipy.linalg.lstsq(aug, np.concatenate([y, np.zeros(a.shape[1])]), lapack_driver="gelsy",
                            check_finite=False)[0]
    return cn / norms


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


@dataclass
class _OptState:
    """Everything the optimiser needs to continue: x = θ [n], loss f, gradient g [n], L-BFGS curvature
    pairs s, y [m, n], the Levenberg-Marquardt damping ``lam``, the iteration count and loss history, the
    ridge weights ``reg_diag`` [K + S]; ``phase`` 0 = Levenberg-Marquardt, 1 = L-BFGS (after LM stalls),
    with ``precond`` [n, n] the Gauss-Newton inverse Hessian that L-BFGS starts from."""

    x: np.ndarray
    f: float
    g: np.ndarray
    s: list
    y: list
    iteration: int
    history: list
    reg_diag: np.ndarray
    converged: bool = False
    lam: float = 1e-3
    phase: int = 0
    precond: np.ndarray | None = None

    def save(self, path: Path, signature: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp.npz")
        os.close(fd)
        n = self.x.size
        np.savez(tmp, x=self.x, f=self.f, g=self.g, s=np.reshape(self.s, (-1, n)), y=np.reshape(self.y, (-1, n)),
                 iteration=self.iteration, history=np.asarray(self.history, dtype=float), reg_diag=self.reg_diag,
                 converged=self.converged, lam=self.lam, phase=self.phase,
                 precond=np.zeros((0, n)) if self.precond is None else self.precond, signature=signature)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, signature: str) -> "_OptState":
        try:
            with np.load(path) as data:
                if str(data["signature"]) != signature:
                    raise FitError(f"{path}: the checkpoint belongs to another fit (other data, basis, weights "
                                   "or settings); delete it or give another --checkpoint to start afresh")
                return cls(x=data["x"], f=float(data["f"]), g=data["g"], s=list(data["s"]), y=list(data["y"]),
                           iteration=int(data["iteration"]), history=list(data["history"]),
                           reg_diag=data["reg_diag"], converged=bool(data["converged"]), lam=float(data["lam"]),
                           phase=int(data["phase"]), precond=data["precond"] if data["precond"].size else None)
        except (OSError, KeyError, ValueError) as err:
            if isinstance(err, FitError):
                raise
            raise FitError(f"{path}: not a readable fit checkpoint ({err}); delete it to start afresh") from err


def _lbfgs_direction(g, s_list, y_list, precond=None):
    """−H g by the two-loop recursion (Nocedal & Wright, Algorithm 7.4); H0 = ``precond`` [n, n] or γI."""
    q = g.copy()
    alphas = []
    for s, y in zip(reversed(s_list), reversed(y_list)):
        rho = 1.0 / (y @ s)
        alpha = rho * (s @ q)
        q -= alpha * y
        alphas.append((rho, alpha))
    if precond is not None:
        q = precond @ q
    elif s_list:
        q *= (s_list[-1] @ y_list[-1]) / (y_list[-1] @ y_list[-1])
    for (s, y), (rho, alpha) in zip(zip(s_list, y_list), reversed(alphas)):
        q += s * (alpha - rho * (y @ q))
    return -q


def _backtrack(value, x, direction, f0: float, slope: float, *, shrink: float = 0.1, tries: int = 16):
    """Largest step ``shrink**k`` (k < ``tries``) along ``direction`` with Armijo decrease, else None."""
    alpha = 1.0
    for _ in range(tries):
        if value(x + alpha * direction) <= f0 + 1e-4 * alpha * slope:
            return alpha
        alpha *= shrink
    return None


def _lbfgs_step(state: _OptState, objective, memory: int) -> None:
    """One L-BFGS iteration in place (strong-Wolfe line search); sets ``converged`` when no progress."""
    direction = _lbfgs_direction(state.g, state.s, state.y, state.precond)
    if direction @ state.g >= 0:  # not a descent direction: forget the curvature
        state.s, state.y = [], []
        direction = -state.g
    cache = {}

    def value(x):
        key = x.tobytes()
        if key not in cache:
            cache[key] = objective(x)
        return cache[key][0]

    def grad(x):
        value(x)
        return cache[x.tobytes()][1]

    previous = state.history[-2] if len(state.history) > 1 else state.f + 0.5 * np.linalg.norm(state.g)
    with warnings.catch_warnings():  # a failed search is handled below (alpha None)
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy LineSearchWarning
        alpha, _, _, f_new, _, _ = scipy.optimize.line_search(value, grad, state.x, direction, state.g, state.f,
                                                              previous, c1=1e-4, c2=0.9, maxiter=20)
    if alpha is None:
        if state.s or state.precond is not None:  # retry along the steepest descent without curvature memory
            state.s, state.y, state.precond = [], [], None
            return _lbfgs_step(state, objective, memory)
        # a narrow valley can defeat the Wolfe search along -g (cubic level-10 set: descent only within
        # 1e-5 of a step 3.8e-3 long): backtrack for sufficient decrease before calling it converged
        alpha = _backtrack(value, state.x, direction, state.f, direction @ state.g)
        if alpha is None:
            state.converged = True
            return
        f_new = value(state.x + alpha * direction)
    x_new = state.x + alpha * direction
    g_new = grad(x_new)
    s, y = x_new - state.x, g_new - state.g
    if s @ y > 1e-12 * np.linalg.norm(s) * np.linalg.norm(y):
        state.s, state.y = (state.s + [s])[-memory:], (state.y + [y])[-memory:]
    if state.f - f_new <= 1e-15 * max(abs(state.f), 1e-300):
        state.converged = True
    state.x, state.f, state.g = x_new, float(f_new), g_new
    state.iteration += 1
    state.history.append(state.f)


def _lm_step(state: _OptState, opt_set: TrainingSet, reg_radial: float, cache: dict) -> None:
    """One Levenberg-Marquardt iteration of variable projection, in place.

    Kaufman's Jacobian (1975, BIT 15, 49): J = (I − Q Qᵀ) ∂(A c*)/∂θ with Q an orthonormal basis of the
    columns of A, so the step accounts for c following θ.  A step that does not lower the loss is retried
    with 4× the damping; an accepted one divides it by 3.  ``cache`` keeps (A, c) of the current θ.
    """
    spec = opt_set.spec
    theta = state.x.reshape(spec.theta_shape)
    if cache.get("key") != state.x.tobytes():
        a = opt_set.matrix(theta)
        cache.update(key=state.x.tobytes(), a=a, c=solve_linear(a, opt_set.y, state.reg_diag))
    a, c = cache["a"], cache["c"]
    r = a @ c - opt_set.y
    jac = opt_set.jacobian(theta, c)
    norms = np.sqrt(np.einsum("rk,rk->k", a, a))
    basis, _ = np.linalg.qr(a / np.where(norms > 0, norms, 1.0))
    jac -= basis @ (basis.T @ jac)
    jtj = jac.T @ jac + reg_radial * np.eye(state.x.size)
    grad = jac.T @ r + reg_radial * state.x
    state.g = 2.0 * grad
    # Marquardt scaling, floored so that a weakly determined coefficient cannot take a huge damped step
    scale = np.maximum(np.diag(jtj), 1e-6 * max(np.diag(jtj).max(), 1e-300))
    while state.lam < 1e12:
        try:
            step = -np.linalg.solve(jtj + state.lam * np.diag(scale), grad)
        except np.linalg.LinAlgError:
            state.lam *= 4.0
            continue
        x_new = state.x + step
        a_new = opt_set.matrix(x_new.reshape(spec.theta_shape))
        c_new = solve_linear(a_new, opt_set.y, state.reg_diag)
        r_new = a_new @ c_new - opt_set.y
        f_new = float(r_new @ r_new + state.reg_diag @ (c_new * c_new) + reg_radial * (x_new @ x_new))
        if f_new < state.f:
            if state.f - f_new <= 1e-12 * state.f:
                state.phase = 1
            state.x, state.f, state.lam = x_new, f_new, max(state.lam / 3.0, 1e-9)
            cache.update(key=x_new.tobytes(), a=a_new, c=c_new)
            state.iteration += 1
            state.history.append(f_new)
            return
        state.lam *= 4.0
    # the Gauss-Newton model no longer predicts descent: continue with L-BFGS from its curvature
    state.phase = 1
    state.precond = np.linalg.pinv(2.0 * (jtj + 1e-8 * np.diag(scale)), hermitian=True)


# --------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------

@dataclass
class FitResult:
    """A fitted potential.

    ``spec``; ``theta`` [S*S, M, X] radial coefficients; ``species_coeffs`` [S] (eV); ``moment_coeffs``
    [K] (eV); ``metrics`` {'train': …, 'valid': …} (see :func:`metrics`, plus ``n_frames``);
    ``predictions`` {'train': …, 'valid': …} (see :meth:`TrainingSet.split`); ``history`` loss per
    iteration; ``iterations``; ``seconds`` wall time of the fit; ``species`` element symbols or None.
    """

    spec: BasisSpec
    theta: np.ndarray
    species_coeffs: np.ndarray
    moment_coeffs: np.ndarray
    metrics: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    iterations: int = 0
    seconds: float = 0.0
    species: list | None = None

    @property
    def coeffs(self) -> np.ndarray:
        """[K + S]: moment coefficients, then species coefficients (design-matrix column order)."""
        return np.concatenate([self.moment_coeffs, self.species_coeffs])

    def to_mtp(self) -> MTP:
        """The fitted potential as a ``training.mtp.MTP`` (species in ``potential_tag`` when known)."""
        fields = self.spec.mtp_fields()
        s = self.spec.species_count
        fields.update(radial_coeffs=np.asarray(self.theta).reshape(s, s, *self.spec.theta_shape[1:]),
                      species_coeffs=np.asarray(self.species_coeffs, float),
                      moment_coeffs=np.asarray(self.moment_coeffs, float))
        mtp = MTP(fields)
        if self.species:
            mtp.species = self.species
        return mtp

    def write(self, path) -> Path:
        """Write the trained ``.mtp`` (MLIP-2 layout) atomically; returns the path."""
        path = Path(path)
        atomic_write_text(path, format_mtp(self.to_mtp().fields()))
        return path


def _signature(spec: BasisSpec, train: TrainingSet, weights: FitWeights, reg_linear, reg_radial, seed,
               theta0) -> str:
    """Fingerprint of a fit problem, stored in its checkpoint so that a resume cannot mix problems."""
    h = hashlib.sha256()
    for part in (spec.basic, spec.times, spec.mapping, train.y, train.row_scale, theta0,
                 np.array([spec.min_dist, spec.max_dist, spec.scaling, reg_linear, reg_radial, seed,
                           weights.energy, weights.forces, weights.stress])):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def _print_progress(done: int, total: int, text: str) -> None:
    print(text, flush=True)


def fit(spec, frames, types=None, *, theta0=None, max_iter: int = 200, weights=None, seed: int = 0,
        theta_frames: int | None = None, valid_frames=None, valid_types=None, reg_linear: float = 1e-10,
        reg_radial: float = 1e-8, method: str = "lm", starts: int = 4, start_iter: int = 6, memory: int = 30,
        checkpoint=None, resume: bool = False,
        progress: Callable[[int, int, str], None] | None = None, species: list | None = None,
        source: str = "<frames>", threads: int = 1) -> FitResult:
    """Fit the radial (θ) and linear coefficients of ``spec`` to ``frames``.

    ``spec``: a :class:`BasisSpec` or a ``training.mtp.MTP`` (see :func:`load_template`; its radial
    coefficients start θ when they are not all zero).  ``frames``: list of ASE Atoms with reference energy
    (eV), forces (eV/Å), optionally stress (eV/Å³); ``types``: MLIP type index arrays [n] per frame
    (default: :func:`frame_types_of` with ``species``).  ``theta0`` [S*S, M, X] starts the radial part
    (default: the MTP's or :func:`initial_theta` with ``seed``).  ``max_iter`` L-BFGS iterations on θ (0:
    linear fit only).  ``theta_frames``: optimise θ on at most this many evenly spaced frames (None: all).
    ``starts``: without ``theta0``, run ``start_iter`` iterations from each of ``starts`` random starts
    (seeds ``seed``, ``seed`` + 1, …) and continue from the best.  ``method``: "lm" (Levenberg-Marquardt,
    then L-BFGS once it stalls) or "lbfgs".
    ``valid_frames``/``valid_types``: a validation set for the metrics.  ``checkpoint``: ``.npz`` path
    written after every iteration; ``resume``: continue from it when it exists.  ``progress(done, total,
    text)``: called after each iteration (default: print ``text``).  ``threads``: threads over the
    frame batches of the design matrix, θ-gradient and Jacobian (the same potential on any number).
    """
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
        raise FitError(f"threads: {threads!r} must be an integer >= 1")
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise FitError(f"max_iter: {max_iter!r} must be an integer >= 0")
    if theta_frames is not None and theta_frames < 1:
        raise FitError(f"theta_frames: {theta_frames!r} must be >= 1 (or None for all frames)")
    if reg_linear < 0 or reg_radial < 0:
        raise FitError(f"reg_linear={reg_linear}, reg_radial={reg_radial}: must be >= 0")
    if starts < 1 or start_iter < 1:
        raise FitError(f"starts={starts}, start_iter={start_iter}: both must be >= 1")
    if method not in ("lm", "lbfgs"):
        raise FitError(f"method: {method!r} is not one of 'lm' (Levenberg-Marquardt) or 'lbfgs'")
    weights = FitWeights.coerce(weights)
    progress = progress or _print_progress
    t_start = time.perf_counter()
    if isinstance(spec, MTP):
        if theta0 is None and np.any(spec.radial_coeffs):
            theta0 = spec.radial_coeffs
        if species is None:
            species = spec.species
        spec = BasisSpec.from_mtp(spec)
    if types is None:
        types, found = frame_types_of(frames, species)
        species = species or found
    train = TrainingSet.build(spec, frames, types, weights=weights, source=source, threads=threads)
    if theta_frames is not None and theta_frames < len(frames):
        pick = np.unique(np.linspace(0, len(frames) - 1, theta_frames).round().astype(int))
        opt_set = TrainingSet.build(spec, [frames[k] for k in pick], [types[k] for k in pick],
                                    weights=weights, source=source, threads=threads)
    else:
        opt_set = train
    theta = np.array(initial_theta(spec, seed) if theta0 is None else theta0, dtype=float)
    if theta.size != int(np.prod(spec.theta_shape)):
        raise FitError(f"theta0: {theta.shape} does not fit the radial coefficients {spec.theta_shape}")
    theta = theta.reshape(spec.theta_shape)
    checkpoint = Path(checkpoint) if checkpoint else None
    signature = (_signature(spec, train, weights, reg_linear, reg_radial, seed, theta)
                 + f"{method}:{starts if theta0 is None else 1}:{start_iter}")

    def objective(x, reg_diag):
        th = x.reshape(spec.theta_shape)
        a = opt_set.matrix(th)
        c = solve_linear(a, opt_set.y, reg_diag)
        r = a @ c - opt_set.y
        loss = r @ r + reg_diag @ (c * c) + reg_radial * (x @ x)
        return loss, 2.0 * opt_set.theta_gradient(th, c, r).ravel() + 2.0 * reg_radial * x

    def new_state(th) -> _OptState:
        a0 = opt_set.matrix(th)
        reg_diag = reg_linear * np.einsum("rk,rk->k", a0, a0)
        del a0
        x0 = th.ravel().copy()
        f0, g0 = objective(x0, reg_diag)
        return _OptState(x=x0, f=float(f0), g=g0, s=[], y=[], iteration=0, history=[float(f0)], reg_diag=reg_diag)

    def advance(state: _OptState, until: int, label: str, save: bool) -> None:
        cache: dict = {}
        while state.iteration < until and not state.converged:
            if method == "lm" and state.phase == 0:
                _lm_step(state, opt_set, reg_radial, cache)
                if state.phase == 1:  # switched to L-BFGS: its line search needs the exact loss and gradient
                    f, state.g = objective(state.x, state.reg_diag)
                    state.f = float(f)
                    continue
            else:
                _lbfgs_step(state, lambda x: objective(x, state.reg_diag), memory)
            if save and checkpoint:
                state.save(checkpoint, signature)
            progress(state.iteration, until, f"fit: {label}iter {state.iteration:4d}  loss {state.f:.6e}  "
                     f"|grad| {np.linalg.norm(state.g):.3e}  {time.perf_counter() - t_start:.1f} s")

    try:
        if resume and checkpoint and checkpoint.is_file():
            state = _OptState.load(checkpoint, signature)
            progress(state.iteration, max_iter, f"fit: resuming from {checkpoint} at iteration {state.iteration}")
        elif starts > 1 and theta0 is None and max_iter > 0:
            # multi-start: the loss has many local minima; a few iterations from each random start
            # tell the promising basin apart, the best start goes on
            candidates = []
            for k in range(starts):
                candidate = new_state(initial_theta(spec, seed + k))
                advance(candidate, min(start_iter, max_iter), f"start {k + 1}/{starts} ", save=False)
                candidates.append(candidate)
            best = int(np.argmin([c.f for c in candidates]))
            state = candidates[best]
            progress(state.iteration, max_iter, f"fit: start {best + 1}/{starts} kept (loss {state.f:.6e})")
        else:
            state = new_state(theta)
        advance(state, max_iter, "", save=True)
    except KeyboardInterrupt as err:
        where = f"resume with resume=True (--resume) from {checkpoint}" if checkpoint else "no checkpoint was set"
        raise FitInterrupted(f"fit interrupted; {where}") from err
    theta = state.x.reshape(spec.theta_shape)
    a_full = train.matrix(theta)
    scale = train.y.size / max(opt_set.y.size, 1)  # the relative ridge, for the full set's row count
    coeffs = solve_linear(a_full, train.y, state.reg_diag * scale)
    k = spec.n_basis
    result = FitResult(spec=spec, theta=theta.copy(), species_coeffs=coeffs[k:], moment_coeffs=coeffs[:k],
                       history=list(state.history), iterations=state.iteration, species=species)
    result.predictions["train"] = train.split(a_full @ coeffs)
    del a_full
    result.metrics["train"] = dict(metrics(result.predictions["train"]), n_frames=train.n_frames)
    if valid_frames:
        if valid_types is None:
            valid_types, _ = frame_types_of(valid_frames, species)
        valid = TrainingSet.build(spec, valid_frames, valid_types, weights=weights, source="validation set",
                                  threads=threads)
        result.predictions["valid"] = valid.predictions(theta, coeffs)
        result.metrics["valid"] = dict(metrics(result.predictions["valid"]), n_frames=valid.n_frames)
    result.seconds = time.perf_counter() - t_start
    tm = result.metrics["train"]
    progress(state.iteration, max_iter,
             f"fit: done in {result.seconds:.1f} s, {state.iteration} iterations: train RMSE energy "
             f"{tm['energy_per_atom']['rmse']:.3e} eV/atom, forces {tm['forces']['rmse']:.3e} eV/A")
    return result


def train_mtp(init, frames, *, max_iter: int = 200, weights=None, seed: int = 0, validation=None,
              species: Sequence[str] | None = None, theta_frames: int | None = None, checkpoint=None,
              resume: bool = False, progress: Callable[[int, int, str], None] | None = None,
              reg_linear: float = 1e-10, reg_radial: float = 1e-8, method: str = "lm", starts: int = 4,
              start_iter: int = 6, threads: int = 1) -> tuple[MTP, dict]:
    """Fit an MTP to ``frames`` starting from ``init``; return (trained MTP, report dict).

    ``init``: path of an ``.mtp`` (an untrained template or a trained potential) or an ``MTP``.  The
    number of species is the length of ``species`` (element symbols of types 0, 1, …), else the
    potential's ``potential_tag`` species, else (frames read from ``.cfg``) the largest ``mlip_type`` + 1,
    else the distinct elements of ``frames``.  ``validation``: frames for validation metrics.  Other
    arguments as in :func:`fit`.  The report (JSON-able except ``predictions``, see :func:`report_json`)
    holds ``train``/``valid`` metrics (energy per atom eV/atom, forces eV/Å, stress GPa; RMSE and MAE;
    ``n_frames``), ``seconds``, ``iterations``, ``loss_history``, ``weights``, ``seed``, ``level``,
    ``species``, ``theta_frames``, ``max_iter`` and ``predictions`` (arrays; :meth:`TrainingSet.split`).
    """
    _, mtp0 = load_template(init)
    species = list(species) if species is not None else mtp0.species
    if species is None and _mlip_typed(frames):
        types, _ = frame_types_of(frames)
        count = max(int(np.max(t)) + 1 for t in types)
    else:
        types, species = frame_types_of(frames, species)
        count = len(species)
    spec, mtp0 = load_template(mtp0, species_count=count)
    theta0 = mtp0.radial_coeffs if np.any(mtp0.radial_coeffs) else None
    valid_types = None
    if validation:
        valid_types, _ = frame_types_of(validation, species)
    result = fit(spec, frames, types, theta0=theta0, max_iter=max_iter, weights=weights, seed=seed,
                 theta_frames=theta_frames, valid_frames=validation, valid_types=valid_types,
                 reg_linear=reg_linear, reg_radial=reg_radial, method=method, starts=starts,
                 start_iter=start_iter, checkpoint=checkpoint,
                 resume=resume, progress=progress, species=species, threads=threads)
    report = dict(result.metrics)
    report.update(seconds=result.seconds, iterations=result.iterations, loss_history=list(result.history),
                  weights=FitWeights.coerce(weights).as_dict(), seed=seed, level=mtp0.level, species=species,
                  theta_frames=theta_frames, max_iter=max_iter, method=method, starts=starts,
                  predictions=result.predictions)
    return result.to_mtp(), report


def report_json(report: dict) -> dict:
    """The report of :func:`train_mtp` without ``predictions`` (so that ``json.dump`` takes it)."""
    return {k: v for k, v in report.items() if k != "predictions"}
