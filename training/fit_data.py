"""Inputs of an MTP fit: loss weights, the template, MLIP types and the training set.

``FitWeights`` holds the loss weights w_E, w_F, w_S; :func:`load_template` reads a ``.mtp`` into a
``BasisSpec`` and an ``MTP``; :func:`frame_types_of` gives the MLIP type indices of frames;
``TrainingSet.build(spec, frames, types)`` turns frames with reference energies (eV), forces (eV/Å) and
stresses (eV/Å³) into pair batches and the weighted reference vector y [rows], and assembles for a
given θ the weighted design matrix A [rows, K + S] (:meth:`TrainingSet.matrix`), the θ-gradient of
rᵀ(A c) (:meth:`TrainingSet.theta_gradient`) and the Jacobian ∂(A c)/∂θ (:meth:`TrainingSet.jacobian`);
:func:`metrics` gives RMSE and MAE of the predictions (:meth:`TrainingSet.split`).  The loss and the
fit itself are in :mod:`training.fit`.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from training.mtp import MTP
from training.mtp.errors import MTPError
from training.mtp.neighbors import neighbor_pairs
from training.mtp.radial_gradient import (BasisSpec, PairBatch, basic_terms, design, geometry, geometry_bytes,
                                          prediction_jacobian, terms_bytes, theta_gradient)

__all__ = ["FitWeights", "FitError", "FitInterrupted", "TrainingSet", "load_template", "frame_types_of", "metrics",
           "chain_frame_weights", "frame_chain"]

#: Target size (float64 elements) of the largest per-batch array of the design computation (~64 MB).
BATCH_ELEMENTS = 8_000_000

#: Bytes a training set keeps per batch between passes by default: the θ-independent geometry
#: (``radial_gradient.geometry``) and the basic terms of the last design pass (``basic_terms``, which the
#: Jacobian at the same θ reuses); the batches beyond it recompute both on every pass.
GEOMETRY_CACHE_BYTES = 2 << 30

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


def frame_chain(atoms) -> str:
    """The trajectory or single-point chain a frame belongs to: ``atoms.info['chain']`` without the
    ``<dataset file>:`` prefix the fit stage adds when it joins datasets ("" without a chain)."""
    return str(atoms.info.get("chain", "")).rsplit(":", 1)[-1]


def chain_frame_weights(frames, weights=None, chain_weights: dict | None = None) -> list[FitWeights]:
    """The loss weights of each frame: ``weights`` (:meth:`FitWeights.coerce`), with
    ``chain_weights[chain]`` (a dict of any of energy, forces, stress) over them for the frames of that
    chain (:func:`frame_chain`), e.g. ``{"strains": {"stress": 0.1}}`` weights the virials of the 0 K
    strain frames (:mod:`training.strain_frames`) 100 times MLIP-2's default.  A chain no frame belongs
    to changes nothing.  Returns one :class:`FitWeights` per frame."""
    base = FitWeights.coerce(weights)
    by_chain = {}
    for chain, over in (chain_weights or {}).items():
        if not isinstance(over, dict):
            raise FitError(f"chain_weights.{chain}: {over!r} must be a mapping of energy/forces/stress weights")
        unknown = sorted(set(over) - {"energy", "forces", "stress"})
        if unknown:
            raise FitError(f"chain_weights.{chain}: unknown key(s) {unknown}; use energy, forces, stress")
        try:
            by_chain[str(chain)] = FitWeights.coerce({**base.as_dict(), **over})
        except (FitError, TypeError, ValueError) as err:
            raise FitError(f"chain_weights.{chain}: {err}") from None
    return [by_chain.get(frame_chain(atoms), base) for atoms in frames]


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
    its own rows, so the result does not depend on the thread count).  ``keep_geometry`` [B]: the
    batches whose θ-independent geometry is computed once and kept, with the basic terms of their last
    design pass (the first batches that fit in the ``geometry_cache_bytes`` of :meth:`build`); kept or
    not, every pass gives the same numbers.
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
    keep_geometry: np.ndarray | None = None
    _geometry: dict = field(default_factory=dict, repr=False)
    _terms: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, spec: BasisSpec, frames, types, *, weights: FitWeights = FitWeights(),
              frame_weights: Sequence[FitWeights] | None = None, source: str = "<frames>",
              threads: int = 1, geometry_cache_bytes: int = GEOMETRY_CACHE_BYTES) -> "TrainingSet":
        """Prepare ``frames`` (ASE Atoms with a reference calculator) with MLIP types ``types``, to be
        computed on ``threads`` threads.  ``frame_weights``: the loss weights of each frame (one
        :class:`FitWeights` per frame, e.g. :func:`chain_frame_weights`) instead of ``weights`` for all.
        ``geometry_cache_bytes``: memory for the batch geometry kept between passes (0: none, for a set
        that is evaluated once)."""
        if not frames:
            raise FitError(f"{source}: no frames to fit")
        if len(types) != len(frames):
            raise FitError(f"{source}: {len(frames)} frames but {len(types)} type arrays")
        if frame_weights is None:
            frame_weights = [weights] * len(frames)
        if len(frame_weights) != len(frames):
            raise FitError(f"{source}: {len(frames)} frames but {len(frame_weights)} frame weights")
        per_frame = np.array([[w.energy, w.forces, w.stress] for w in map(FitWeights.coerce, frame_weights)])
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
            w_e, w_f, w_s = per_frame[start:start + size].T
            s_e = np.sqrt(w_e / nat)
            s_f = np.repeat(np.sqrt(w_f)[batch.atom_frame], 3)
            s_w = np.repeat(np.sqrt(w_s / nat) * has_stress, 6)
            scale = np.concatenate([s_e, s_f, s_w])
            ys.append(scale * np.concatenate([energy, forces.ravel(), virial.ravel()]))
            scales.append(scale)
            kinds.append(np.repeat([0, 1, 2], [len(chunk), forces.size, 6 * len(chunk)]))
            rframes.append(start + np.concatenate([np.arange(len(chunk)), np.repeat(batch.atom_frame, 3),
                                                   np.repeat(np.arange(len(chunk)), 6)]))
        counts = np.array([np.bincount(t, minlength=spec.species_count) for t in types], dtype=float)
        sizes = np.cumsum([geometry_bytes(spec, b) + terms_bytes(spec, b) for b in batches])
        return cls(spec=spec, batches=batches, y=np.concatenate(ys), row_scale=np.concatenate(scales),
                   counts=counts, n_atoms=np.array([len(a) for a in frames]), kinds=np.concatenate(kinds),
                   row_frame=np.concatenate(rframes), volume=np.concatenate([b.volume for b in batches]),
                   threads=int(threads), keep_geometry=sizes <= geometry_cache_bytes)

    @property
    def n_frames(self) -> int:
        return int(self.n_atoms.size)

    def geometry(self, index: int):
        """The θ-independent geometry of batch ``index`` (``radial_gradient.geometry``): kept after the
        first pass for the batches of ``keep_geometry``, computed afresh for the others."""
        if index in self._geometry:
            return self._geometry[index]
        geo = geometry(self.spec, self.batches[index])
        if self.keep_geometry is not None and self.keep_geometry[index]:
            self._geometry[index] = geo  # each batch is one thread's work: no two threads write one key
        return geo

    def _each_batch(self, work) -> list:
        """``[work(batch, first row, first frame, index) for each batch]``, on ``threads`` threads."""
        starts, r0, f0 = [], 0, 0
        for index, batch in enumerate(self.batches):
            starts.append((batch, r0, f0, index))
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

        def rows(batch, r0, f0, index):
            geo = self.geometry(index)
            terms = basic_terms(spec, np.asarray(theta, dtype=float).reshape(spec.theta_shape), batch, geo)
            if self.keep_geometry is not None and self.keep_geometry[index]:
                self._terms[index] = (np.asarray(theta, dtype=float).tobytes(), terms)
            energy, forces, virial = design(spec, theta, batch, geo, terms)
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

        def part(batch, r0, f0, index):
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

        def rows(batch, r0, f0, index):
            key, terms = self._terms.get(index, (None, None))
            terms = terms if key == np.asarray(theta, dtype=float).tobytes() else None  # the last design pass's θ
            energy, forces, virial = prediction_jacobian(spec, theta, coeffs[:spec.n_basis], batch,
                                                         self.geometry(index), terms)
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
