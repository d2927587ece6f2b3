"""Fit a NEP (GPUMD's neuroevolution potential) to reference energies, forces and stresses.

Data flow::

    list[Atoms] (energy eV, forces eV/Å, stress eV/Å³) + sizes (NEPSizes)
        --NEPTrainingSet.build-->  frame batches: one full pair list per batch (training.mtp.neighbors),
                                   references, loss weights
        --initial_model-->         NEPModel with random parameters (training.nep.random_nep),
                                   descriptor scalers and output bias from the data
        --fit_nep (L-BFGS on loss_and_gradient)-->  fitted NEPModel + report
        --write_nep-->             nep.txt (GPUMD's format; NEP_CPU, GPUMD and md_gpu read it)

Model (Fan et al., Phys. Rev. B 104, 104309 (2021); Fan et al., J. Chem. Phys. 157, 114801 (2022) for
NEP3; NEP4 has one network per species, Song et al., Nat. Commun. 15, 10208 (2024)): the site energy
``U_i = sum_h w1_h tanh(sum_d w0_hd q_d s_d - b0_h) - b1`` of the descriptors ``q_i`` (radial ``q_n``
and angular ``q_nl``, 4-body and 5-body invariants), which are linear (radial) or polynomial
(angular) in the descriptor coefficients ``c``. Energies, forces and virials are evaluated by
:class:`training.nep.NEPEvaluator` itself, the code the MD engine runs (``md_gpu.forcefields.nep``
wraps it; ``tests/test_nep_peer.py`` holds it to NEP_CPU), so the fitted model is evaluated exactly as
it is fitted.

Fitted parameters θ (:func:`pack`): w0, b0, w1 (per weight set), b1, c_radial, c_angular. Fixed:
the sizes, the cut-offs and the descriptor scalers ``s_d = 1 / (max q_d - min q_d)`` over the
training atoms at the initial ``c`` (GPUMD computes them the same way from the training set).

Loss (the MTP fit's, :mod:`training.fit`, as a mean over the F training frames, plus a ridge)::

    L(θ) = 1/F Σ_f [ w_E (ΔE_f)² / N_f + w_F Σ_{i∈f} |ΔF_i|² + w_S |ΔS_f|² / N_f ] + reg |θ|²

with ΔE the energy error (eV), ΔF the force errors (eV/Å), ΔS the error of stress x volume (eV,
Voigt, six components; frames without a reference stress have no such term), N_f atoms per frame;
w_E, w_F, w_S = :class:`training.fit_data.FitWeights` (1, 0.01, 0.001 by default).

Gradient (exact, :func:`loss_and_gradient`). With G_p = ∂E/∂d_p the pair gradients (forces and
virials are linear in them), the loss gradient is ``∂/∂θ [Σ_i μ_i U_i + Σ_p λ_p · G_p]`` with
``μ_i = 2 w_E ΔE_f / (F N_f)`` (atom i in frame f) and
``λ_p = 2/F [w_F (ΔF_{i_p} - ΔF_{j_p}) + w_S M_f d_p / N_f]`` (M_f the symmetric 3x3 form of ΔS_f
with half the shear components off the diagonal). ``Σ_p λ_p · G_p`` is the derivative of E along the
pair displacements λ, so one complex step (Squire & Trapp 1998, SIAM Rev. 40, 110) gives both terms
at once: with ``d~ = d + i h λ`` and seeds ``σ_i = 1 + i h μ_i``,
``Im Σ_i σ_i U_i(d~; θ) / h = Σ_i μ_i U_i + Σ_p λ_p · G_p + O(h²)``. The step enters through the pair
geometry only (basis ``f_k(r)`` and harmonics ``Y_lm(u)``, to first order in h from their cached
derivatives, :func:`_complex_step`; the pairs stay those of the real geometry); one reverse pass of
``Σ_i σ_i U_i`` through the descriptor and the network, in complex arithmetic (all holomorphic:
polynomials and tanh), then gives the gradient as the imaginary part over h, exact to rounding (no
difference is taken; h = 1e-20 scaled by the largest seed). The descriptor code is NEPEvaluator's
own (:meth:`~training.nep.NEPEvaluator.descriptors`,
:meth:`~training.nep.NEPEvaluator.network` and
:meth:`~training.nep.NEPEvaluator.angular_pullback`); this module adds only the parameter
derivatives: ``∂/∂w1``, ``∂/∂b0``, ``∂/∂w0`` of the network and ``∂/∂c`` through
``g_n(r) = Σ_k c_nk f_k(r)``. The pair geometry of the training set is computed once per fit
(:meth:`NEPTrainingSet.geometry`); a loss and gradient then costs about one evaluation in real and
one in complex arithmetic.

Optimiser: L-BFGS with a strong-Wolfe line search (:func:`training.optimize.advance`, Nocedal 1980,
Math. Comp. 35, 773), the project's optimiser with a checkpointable state. GPUMD trains NEPs with
SNES (separable natural evolution strategy; Schaul, Glasmachers & Schmidhuber, GECCO 2011, 845), a
derivative-free method that needs
many loss evaluations per generation (a population of ~50) and thousands of generations; with the
exact gradient at the cost of about two evaluations, a quasi-Newton method reaches a minimum in a few
hundred gradient evaluations, which is what makes a NEP fit affordable on a CPU here. The price:
L-BFGS finds a local minimum near its random start, where SNES searches more widely; the seed
picks the start. Levenberg-Marquardt (the MTP fit's default) needs the Jacobian of every force
component, one complex pass per residual row: far too costly for a network's thousands of
parameters.

Passive training: the MTP's two-step recipe grades frames by MaxVol on the rows of its linear
coefficients (:mod:`training.mtp.maxvol`), which needs a model linear in its fitted parameters; a
NEP is not. Its purpose, fitting on few frames when a fit is costly, does not apply here either: the
fit's cost is linear in the frames, so :func:`fit_nep` fits on all training frames (the fit stage
holds out the same random validation fraction as for an MTP), and there is no extrapolation grade
(the md stage's grade checks are off for a NEP). A descriptor-space measure (MaxVol on the
descriptors, as GPUMD's NEP active learning tools do) is left out: with all frames in the fit it
would select nothing the fit lacks, and an on-the-fly grade in MD would need a NEP active set that
the md stage does not read.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from training import datasets
from training.fit_data import FitError, FitInterrupted, FitWeights
from training.mtp.neighbors import forces_and_virial, neighbor_pairs
from training.nep import NEPEvaluator, NEPModel, PairGeometry, PairTerms, random_nep, write_nep
from training.optimize import CheckpointError, OptState, advance

__all__ = ["NEPSizes", "NEPTrainingSet", "pack", "unpack", "initial_model", "loss_and_gradient", "predict",
           "fit_nep", "write_nep"]

_GPA = 160.21766208  # eV/Å³ in GPa
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: pairs per batch of the training set: bounds the largest complex array of the gradient pass (~200 MB)
BATCH_PAIRS = 60_000


@dataclass(frozen=True)
class NEPSizes:
    """The architecture of a NEP to fit (GPUMD's ``nep.in`` keywords).

    version 3 or 4; cutoff_A (rc_radial, rc_angular) Å; n_max (radial, angular); basis_size (radial,
    angular); l_max (l_max_3body, 4-body 0|2, 5-body 0|1); neurons of the hidden layer.
    """

    version: int = 4
    cutoff_A: tuple = (5.0, 4.0)
    n_max: tuple = (4, 4)
    basis_size: tuple = (8, 8)
    l_max: tuple = (4, 2, 0)
    neurons: int = 30

    def __post_init__(self):
        def pair(name, kind, n=2):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != n or not all(
                    isinstance(v, kind) and not isinstance(v, bool) for v in value):
                raise FitError(f"nep.{name}: {value!r} must be {n} {'integers' if kind is int else 'numbers'}")
            object.__setattr__(self, name, tuple(value))

        if self.version not in (3, 4):
            raise FitError(f"nep.version: {self.version!r} is not 3 or 4")
        pair("cutoff_A", (int, float))
        pair("n_max", int)
        pair("basis_size", int)
        pair("l_max", int, 3)
        rc_r, rc_a = self.cutoff_A
        if not 0 < rc_a <= rc_r <= 100:
            raise FitError(f"nep.cutoff_A: {list(self.cutoff_A)} must satisfy 0 < rc_angular <= rc_radial <= 100 Å")
        if not all(0 <= n <= 19 for n in self.n_max):
            raise FitError(f"nep.n_max: {list(self.n_max)} must lie in 0..19")
        if not all(0 <= k <= 16 for k in self.basis_size):
            raise FitError(f"nep.basis_size: {list(self.basis_size)} must lie in 0..16")
        l3, l4, l5 = self.l_max
        if not 0 <= l3 <= 8 or l4 not in (0, 2) or l5 not in (0, 1) or ((l4 or l5) and l3 < 2):
            raise FitError(f"nep.l_max: {list(self.l_max)} must be [0..8, 0|2, 0|1] (4- and 5-body need l_max >= 2)")
        if not isinstance(self.neurons, int) or isinstance(self.neurons, bool) or self.neurons < 1:
            raise FitError(f"nep.neurons: {self.neurons!r} must be an integer >= 1")

    @classmethod
    def coerce(cls, sizes) -> "NEPSizes":
        """A NEPSizes from None (defaults), a NEPSizes or a dict of its fields."""
        if sizes is None or isinstance(sizes, cls):
            return sizes or cls()
        if not isinstance(sizes, dict):
            raise FitError(f"nep: {sizes!r} is not a mapping of NEP sizes")
        values = dict(sizes)
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise FitError(f"nep: unknown key(s) {unknown}; use version, cutoff_A, n_max, basis_size, l_max, neurons")
        return cls(**values)

    def random_model(self, species, *, seed: int) -> NEPModel:
        """A NEP of these sizes for ``species`` with random parameters (:func:`training.nep.random_nep`)."""
        return random_nep(tuple(species), version=self.version, seed=seed, rc=self.cutoff_A, n_max=self.n_max,
                          basis_size=self.basis_size, l_max=self.l_max, neurons=self.neurons)


def model_sizes(model: NEPModel) -> dict:
    """The :class:`NEPSizes` fields of ``model`` (JSON-able)."""
    return {"version": model.version, "cutoff_A": [float(model.rc_radial.max()), float(model.rc_angular.max())],
            "n_max": list(model.n_max), "basis_size": list(model.basis_size), "l_max": list(model.l_max),
            "neurons": model.num_neurons}


# --------------------------------------------------------------------------------------------
# parameters <-> flat vector
# --------------------------------------------------------------------------------------------

_PARTS = ("w0", "b0", "w1", "b1", "c_radial", "c_angular")


def pack(model: NEPModel) -> np.ndarray:
    """The fitted parameters θ [n] of ``model``: w0, b0, w1, b1, c_radial, c_angular, flattened in turn."""
    return np.concatenate([np.ravel(getattr(model, k)) for k in _PARTS])


def unpack(model: NEPModel, x) -> NEPModel:
    """A copy of ``model`` with the fitted parameters of ``x`` [n] (:func:`pack`'s order)."""
    out, start = {}, 0
    for k in _PARTS:
        shape = np.shape(getattr(model, k))
        size = int(np.prod(shape))
        out[k] = np.array(x[start:start + size], dtype=float).reshape(shape)
        start += size
    if start != np.size(x):
        raise FitError(f"parameter vector of {np.size(x)} values for a NEP with {start} parameters")
    out["b1"] = float(out["b1"])
    return replace(model, **out)


# --------------------------------------------------------------------------------------------
# training set
# --------------------------------------------------------------------------------------------

@dataclass
class _Batch:
    """Frames joined into one system: types [n], i, j [p], d [p, 3] Å, atom_frame [n], pair_frame [p]
    (frame index within the batch), n_atoms [F_b], energy [F_b] eV, forces [n, 3] eV/Å, svir [F_b, 6]
    stress x volume (eV, Voigt), has_stress [F_b] 0/1, volume [F_b] Å³ (0 without a 3D cell)."""

    types: np.ndarray
    i: np.ndarray
    j: np.ndarray
    d: np.ndarray
    atom_frame: np.ndarray
    pair_frame: np.ndarray
    n_atoms: np.ndarray
    energy: np.ndarray
    forces: np.ndarray
    svir: np.ndarray
    has_stress: np.ndarray
    volume: np.ndarray


@dataclass
class NEPTrainingSet:
    """Frames prepared for a NEP fit: batches (:class:`_Batch`) of whole frames, each with its full pair
    list within ``cutoff`` (Å), in frame order; ``species`` element of each type; ``weights``."""

    species: tuple
    cutoff: float
    weights: FitWeights
    batches: list = field(default_factory=list)
    _geometry: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, frames, species, cutoff: float, *, weights=None, source: str = "<frames>",
              batch_pairs: int = BATCH_PAIRS) -> "NEPTrainingSet":
        """Prepare ``frames`` (ASE Atoms with reference energy and forces, optionally stress); FitError names
        the frame for a missing reference or an element outside ``species``."""
        if not frames:
            raise FitError(f"{source}: no frames to fit")
        index = {s: k for k, s in enumerate(species)}
        out = cls(species=tuple(species), cutoff=float(cutoff), weights=FitWeights.coerce(weights))
        pending, pairs = [], 0
        for n, atoms in enumerate(frames):
            missing = sorted(set(atoms.get_chemical_symbols()) - set(index))
            if missing:
                raise FitError(f"{source}: frame {n} holds element(s) {missing} outside the NEP's species "
                               f"{list(species)}")
            if datasets.reference(atoms, "energy") is None or datasets.reference(atoms, "forces") is None:
                raise FitError(f"{source}: frame {n} has no reference energy and forces")
            i, j, d = neighbor_pairs(atoms, cutoff)
            pending.append((atoms, np.array([index[s] for s in atoms.get_chemical_symbols()]), i, j, d))
            pairs += i.size
            if pairs >= batch_pairs:
                out.batches.append(_join(pending))
                pending, pairs = [], 0
        if pending:
            out.batches.append(_join(pending))
        return out

    @property
    def n_frames(self) -> int:
        return sum(b.n_atoms.size for b in self.batches)

    def geometry(self, nep: NEPEvaluator, batch: _Batch) -> PairGeometry:
        """The pair geometry of ``batch`` for the cut-offs and sizes of ``nep`` (computed once: it does not
        depend on the fitted parameters)."""
        m = nep.model
        key = (id(batch), tuple(m.rc_radial), tuple(m.rc_angular), m.basis_size, max(m.l_max_3body, 1))
        if key not in self._geometry:
            self._geometry[key] = nep.pair_geometry(batch.types, batch.i, batch.j, batch.d, xp=np)
        return self._geometry[key]


def _join(items) -> _Batch:
    """One :class:`_Batch` of ``[(atoms, types, i, j, d), ...]``."""
    offsets = np.cumsum([0] + [len(a) for a, *_ in items])
    svir, has, vol = np.zeros((len(items), 6)), np.zeros(len(items)), np.zeros(len(items))
    for k, (atoms, *_rest) in enumerate(items):
        stress = datasets.reference(atoms, "stress")
        if atoms.cell.rank == 3:
            vol[k] = atoms.get_volume()
            if stress is not None:
                stress = np.asarray(stress, float)
                if stress.shape == (3, 3):
                    stress = np.array([stress[a, c] for a, c in _VOIGT])
                svir[k], has[k] = stress * vol[k], 1.0
    return _Batch(
        types=np.concatenate([t for _, t, *_ in items]),
        i=np.concatenate([i + o for (_, _, i, _, _), o in zip(items, offsets)]),
        j=np.concatenate([j + o for (_, _, _, j, _), o in zip(items, offsets)]),
        d=np.concatenate([d for *_, d in items]),
        atom_frame=np.repeat(np.arange(len(items)), np.diff(offsets)),
        pair_frame=np.concatenate([np.full(i.size, k) for k, (_, _, i, _, _) in enumerate(items)]),
        n_atoms=np.diff(offsets).astype(float),
        energy=np.array([datasets.reference(a, "energy") for a, *_ in items], float),
        forces=np.concatenate([np.asarray(datasets.reference(a, "forces"), float).reshape(-1, 3) for a, *_ in items]),
        svir=svir, has_stress=has, volume=vol)


# --------------------------------------------------------------------------------------------
# model start
# --------------------------------------------------------------------------------------------

#: the value of the constant neuron that carries a species' energy offset (NEP4, several species)
_OFFSET_NEURON = 0.5


def initial_model(tset: NEPTrainingSet, sizes=None, *, seed: int = 0, species_offsets: bool = True) -> NEPModel:
    """A NEP of ``sizes`` for the species of ``tset`` with random parameters (``random_nep`` with ``seed``),
    descriptor scalers ``1 / (max - min)`` of each descriptor component over the training atoms, and the
    output bias b1 set so that the mean predicted energy per atom equals the reference mean.

    With ``species_offsets`` and a NEP4 of several species, the first neuron of each species' network
    starts as a constant (zero input weights, ``tanh(-b0) = 0.5``) whose output weight carries that
    species' energy per atom relative to the mean (least squares of the frame energies on the species
    counts): the species' energies differ by eV per atom (C and B by 25 eV/atom with GFN2-xTB), which
    the networks would otherwise have to learn through weights of that size from a random start. The
    neuron's weights are fitted like all others. NEP3 (one network) cannot hold per-species constants."""
    sizes = NEPSizes.coerce(sizes)
    model = sizes.random_model(tset.species, seed=seed)
    if tset.cutoff < model.rc_max:
        raise FitError(f"training set pairs reach {tset.cutoff} Å, less than the NEP's cut-off {model.rc_max} Å")
    model.q_scaler = np.ones(model.dim)
    nep = NEPEvaluator(model)
    lo, hi = np.full(model.dim, np.inf), np.full(model.dim, -np.inf)
    for b in tset.batches:
        q = nep.descriptors(tset.geometry(nep, b), xp=np).q
        lo, hi = np.minimum(lo, q.min(axis=0)), np.maximum(hi, q.max(axis=0))
    span = hi - lo
    model.q_scaler = np.where(span > 1e-12, 1.0 / np.where(span > 1e-12, span, 1.0), 1.0)
    if species_offsets and model.version == 4 and model.n_types > 1:
        counts = np.concatenate([np.stack([np.bincount(b.atom_frame[b.types == t], minlength=b.n_atoms.size)
                                           for t in range(model.n_types)], axis=1) for b in tset.batches])
        energy = np.concatenate([b.energy for b in tset.batches])
        per_species = np.linalg.lstsq(counts.astype(float), energy, rcond=None)[0]  # eV/atom
        model.w0[:, 0, :] = 0.0
        model.b0[:, 0] = -np.arctanh(_OFFSET_NEURON)
        model.w1[:, 0] = (per_species - per_species.mean()) / _OFFSET_NEURON
    nep = NEPEvaluator(model)
    predicted, reference, atoms = 0.0, 0.0, 0.0
    for b in tset.batches:
        energies, _ = nep.evaluate_geometry(tset.geometry(nep, b), b.types, xp=np)
        predicted, reference, atoms = predicted + energies.sum(), reference + b.energy.sum(), atoms + b.n_atoms.sum()
    model.b1 += float(predicted - reference) / atoms
    return model


# --------------------------------------------------------------------------------------------
# loss and gradient
# --------------------------------------------------------------------------------------------

def _batch_predictions(nep: NEPEvaluator, b: _Batch, geom: PairGeometry):
    """Energy [F_b] eV, forces [n, 3] eV/Å, stress x volume [F_b, 6] eV (Voigt) and the pair gradients
    G [p, 3] of one batch (``geom``: its pair geometry)."""
    energies, grad = nep.evaluate_geometry(geom, b.types, xp=np)
    nf = b.n_atoms.size
    energy = np.bincount(b.atom_frame, weights=energies, minlength=nf)
    forces, _, _ = forces_and_virial(b.i, b.j, b.d, grad, b.types.size, np, per_atom=False)
    svir = np.stack([0.5 * (np.bincount(b.pair_frame, weights=b.d[:, a] * grad[:, c], minlength=nf)
                            + np.bincount(b.pair_frame, weights=b.d[:, c] * grad[:, a], minlength=nf))
                     for a, c in _VOIGT], axis=1)
    return energy, forces, svir, grad


def _complex_step(geom: PairGeometry, h: float, lam) -> PairGeometry:
    """The geometry of the pair vectors ``d + i h lam`` (lam [p, 3]) to first order in h: basis
    ``f + i h f' r_dot`` and harmonics ``Y + i h dY/du . u_dot`` with ``r_dot = u . lam`` and
    ``u_dot = (lam - r_dot u) / r`` (the complex step's imaginary part is its first-order term; the
    second-order term is O(h²) relative and drops out at h ~ 1e-20)."""

    def step(terms: PairTerms) -> PairTerms:
        lam_s = lam[terms.sel]
        r_dot = (terms.u * lam_s).sum(axis=1)
        f = terms.f + 1j * h * terms.fp * r_dot[:, None]
        y = None
        if terms.y is not None:
            u_dot = (lam_s - r_dot[:, None] * terms.u) / terms.r[:, None]
            y = terms.y + 1j * h * np.einsum("plc,pc->pl", terms.dy, u_dot)
        return replace(terms, f=f, fp=None, y=y, dy=None)

    return replace(geom, radial=step(geom.radial), angular=step(geom.angular))


def _parameter_gradient(nep: NEPEvaluator, geom: PairGeometry, types, mu, lam) -> np.ndarray:
    """∂/∂θ [Σ_i mu_i U_i + Σ_p lam_p · G_p] [n_params] for seeds mu [n] (1/eV·loss) and lam [p, 3]:
    one complex-step reverse pass (module docstring)."""
    m = nep.model
    scale = max(np.abs(mu).max(initial=0.0), np.abs(lam).max(initial=0.0), 1.0)
    h = 1e-20 / scale
    sigma = 1.0 + 1j * h * mu
    geom = _complex_step(geom, h, lam)
    desc = nep.descriptors(geom, xp=np)
    _, dq, hidden = nep.network(desc.q, types, np)
    qs = desc.q * m.q_scaler[None, :]
    g_w0, g_b0, g_w1 = (np.zeros(np.shape(getattr(m, k)), complex) for k in ("w0", "b0", "w1"))
    for k, (atoms, t) in enumerate(hidden):
        if t is None:
            continue
        s = sigma[atoms]
        g_w1[k] = t.T @ s
        delta = s[:, None] * (1.0 - t * t) * m.w1[k][None, :]
        g_b0[k] = -delta.sum(axis=0)
        g_w0[k] = delta.T @ qs[atoms]
    g_b1 = -sigma.sum()
    dq = sigma[:, None] * dq  # ∂Φ/∂q
    nr, na, n_atoms = m.n_max[0] + 1, m.n_max[1] + 1, geom.n_atoms
    g_cr = np.zeros(m.c_radial.shape, complex)
    g_ca = np.zeros(m.c_angular.shape, complex)
    rad, ang = geom.radial, geom.angular
    _type_pair_sums(g_cr, dq[rad.centre, :nr], rad)
    if m.num_l and ang.sel.size:
        ds = nep.angular_pullback(desc.s, dq[:, nr:].reshape(n_atoms, m.num_l, na), np)  # ∂Φ/∂s
        _type_pair_sums(g_ca, np.einsum("pnl,pl->pn", ds[ang.centre], ang.y), ang)
    return np.concatenate([g.ravel() for g in (g_w0, g_b0, g_w1, np.array([g_b1]), g_cr, g_ca)]).imag / h


def _type_pair_sums(out, g_bar, terms) -> None:
    """``out[n, k, a, b] += Σ_{p of type pair (a, b)} g_bar[p, n] f[p, k]`` (∂/∂c through g_n = Σ_k c_nk f_k)."""
    n_types = out.shape[2]
    for tp in np.unique(terms.type_pair):
        sel = terms.type_pair == tp
        out[:, :, tp // n_types, tp % n_types] += g_bar[sel].T @ terms.f[sel]


def _residuals(b: _Batch, energy, forces, svir, weights: FitWeights, n_frames: int):
    """(loss of the batch, mu [n], lam [p, 3]) for predictions of one batch (module docstring)."""
    de, df, ds = energy - b.energy, forces - b.forces, (svir - b.svir) * b.has_stress[:, None]
    loss = (weights.energy * (de * de / b.n_atoms).sum() + weights.forces * (df * df).sum()
            + weights.stress * ((ds * ds).sum(axis=1) / b.n_atoms).sum()) / n_frames
    mu = (2.0 * weights.energy / n_frames * de / b.n_atoms)[b.atom_frame]
    lam = 2.0 * weights.forces / n_frames * (df[b.i] - df[b.j])
    sym = np.zeros((b.n_atoms.size, 3, 3))
    for v, (a, c) in enumerate(_VOIGT):
        sym[:, a, c] += ds[:, v] * (1.0 if a == c else 0.5)
        if a != c:
            sym[:, c, a] += 0.5 * ds[:, v]
    sym *= (2.0 * weights.stress / n_frames / b.n_atoms)[:, None, None]
    lam += np.einsum("pac,pa->pc", sym[b.pair_frame], b.d)
    return loss, mu, lam


def loss_and_gradient(model: NEPModel, tset: NEPTrainingSet, *, reg: float = 0.0,
                      parts=("energy", "forces", "stress"), threads: int = 1) -> tuple[float, np.ndarray]:
    """The loss L(θ) (module docstring) of ``model`` on ``tset`` and its exact gradient [n_params]
    (:func:`pack`'s order). ``parts``: the loss terms to include (for tests of each term alone);
    ``threads``: batches computed on this many threads (NumPy releases the GIL in the array work; the
    batches' terms are added in batch order, so the result does not depend on the thread count)."""
    unknown = set(parts) - {"energy", "forces", "stress"}
    if unknown:
        raise FitError(f"parts: {sorted(unknown)} are not loss terms (energy, forces, stress)")
    w = tset.weights
    weights = FitWeights(energy=w.energy * ("energy" in parts), forces=w.forces * ("forces" in parts),
                         stress=w.stress * ("stress" in parts)) if set(parts) != {"energy", "forces", "stress"} else w
    nep = NEPEvaluator(model)
    nep._tables(np)  # filled once here, not by racing threads
    x = pack(model)
    total, grad = reg * float(x @ x), 2.0 * reg * x

    def batch_terms(b):
        geom = tset.geometry(nep, b)
        energy, forces, svir, _ = _batch_predictions(nep, b, geom)
        loss, mu, lam = _residuals(b, energy, forces, svir, weights, tset.n_frames)
        return loss, _parameter_gradient(nep, geom, b.types, mu, lam)

    if threads > 1 and len(tset.batches) > 1:
        with ThreadPoolExecutor(min(threads, len(tset.batches))) as pool:
            terms = list(pool.map(batch_terms, tset.batches))
    else:
        terms = [batch_terms(b) for b in tset.batches]
    for loss, g in terms:
        total += loss
        grad += g
    return total, grad


def predict(model: NEPModel, tset: NEPTrainingSet) -> dict:
    """Predicted and reference values, as :func:`training.fit_report.predict` gives them:
    ``{"energy_per_atom": (pred [F], ref [F]) eV/atom, "forces": (pred [3N], ref [3N]) eV/Å,
    "stress": (pred [F', 6], ref [F', 6]) GPa}`` (stress only for the F' frames with a reference stress)."""
    nep = NEPEvaluator(model)
    e_p, e_r, f_p, f_r, s_p, s_r = [], [], [], [], [], []
    for b in tset.batches:
        energy, forces, svir, _ = _batch_predictions(nep, b, tset.geometry(nep, b))
        e_p.append(energy / b.n_atoms)
        e_r.append(b.energy / b.n_atoms)
        f_p.append(forces.ravel())
        f_r.append(b.forces.ravel())
        has = b.has_stress > 0
        s_p.append(svir[has] / b.volume[has, None] * _GPA)
        s_r.append(b.svir[has] / b.volume[has, None] * _GPA)
    out = {"energy_per_atom": (np.concatenate(e_p), np.concatenate(e_r)),
           "forces": (np.concatenate(f_p), np.concatenate(f_r))}
    if sum(len(s) for s in s_p):
        out["stress"] = (np.concatenate(s_p), np.concatenate(s_r))
    return out


# --------------------------------------------------------------------------------------------
# the fit
# --------------------------------------------------------------------------------------------

def _signature(model: NEPModel, tset: NEPTrainingSet, reg: float) -> str:
    """Fingerprint of a fit problem (start, data, weights), stored with its checkpoint."""
    h = hashlib.sha256()
    for part in [pack(model), model.q_scaler, np.array([reg, *tset.weights.as_dict().values()])] + [
            a for b in tset.batches for a in (b.d, b.energy, b.forces, b.svir)]:
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def fit_nep(frames, *, species=None, sizes=None, max_iter: int = 200, weights=None, reg: float = 1e-6,
            seed: int = 0, memory: int = 30, checkpoint=None, resume: bool = False,
            progress: Callable[[int, int, str], None] | None = None, init: NEPModel | None = None,
            source: str = "<frames>", threads: int = 1) -> tuple[NEPModel, dict]:
    """Fit a NEP to ``frames`` (ASE Atoms with reference energy, forces, optionally stress).

    ``species``: element of each type (default: the sorted elements of ``frames``); ``sizes``:
    :class:`NEPSizes` or a dict of it; ``init``: a NEPModel to start from instead of
    :func:`initial_model` (its sizes, cut-offs and scalers are kept); ``max_iter`` L-BFGS iterations;
    ``weights`` :class:`training.fit_data.FitWeights` (or dict); ``reg`` ridge on θ; ``seed`` of the
    random start; ``checkpoint`` an ``.npz`` written after every iteration, ``resume`` continues from
    it; ``progress(done, total, text)`` after every iteration; ``threads`` as in
    :func:`loss_and_gradient` (the same model on any number). Returns (model, report) with the report's
    ``train`` metrics (RMSE/MAE: energy per atom eV/atom, forces eV/Å, stress GPa; ``n_frames``),
    ``loss_history``, ``iterations``, ``seconds``, ``sizes``, ``weights``, ``reg``, ``seed``,
    ``species`` and ``predictions`` (arrays, :func:`predict`).
    """
    from training.fit_report import metrics

    if not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise FitError(f"max_iter: {max_iter!r} must be an integer >= 0")
    if not reg >= 0:
        raise FitError(f"reg: {reg!r} must be >= 0")
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
        raise FitError(f"threads: {threads!r} must be an integer >= 1")
    if init is not None and init.zbl is not None:
        raise FitError("init: a NEP with a ZBL core; fitting one is not supported (start from a NEP without 'zbl')")
    t0 = time.perf_counter()
    checkpoint = Path(checkpoint) if checkpoint else None
    frames = list(frames)
    if species is None:
        species = init.species if init is not None else sorted({s for a in frames for s in a.get_chemical_symbols()})
    sizes = NEPSizes.coerce(sizes)
    cutoff = init.rc_max if init is not None else max(sizes.cutoff_A)
    tset = NEPTrainingSet.build(frames, species, cutoff, weights=weights, source=source)
    model = init if init is not None else initial_model(tset, sizes, seed=seed)
    if init is not None and tuple(init.species) != tuple(species):
        raise FitError(f"init: a NEP for {list(init.species)}, not for the species {list(species)}")
    progress = progress or (lambda done, total, text: print(text, flush=True))

    def objective(x):
        return loss_and_gradient(unpack(model, x), tset, reg=reg, threads=threads)

    signature = _signature(model, tset, reg)
    if resume and checkpoint is not None and checkpoint.is_file():
        try:
            state = OptState.load(checkpoint, signature)
        except CheckpointError as err:
            raise FitError(f"{checkpoint}: not a checkpoint of this NEP fit ({err}); delete it to start afresh") \
                from err
    else:
        state = OptState.start(pack(model), objective)

    def after_step(s: OptState) -> None:
        if checkpoint is not None:
            s.save(checkpoint, signature)
        progress(s.iteration, max_iter, f"nep fit: iter {s.iteration:4d}  loss {s.f:.6e}  "
                                        f"|grad| {np.linalg.norm(s.g):.3e}  {time.perf_counter() - t0:.1f} s")

    try:
        advance(state, max_iter, method="lbfgs", objective=objective, memory=memory, after_step=after_step)
    except KeyboardInterrupt as err:
        where = f"resume with resume=True from {checkpoint}" if checkpoint else "no checkpoint was set"
        raise FitInterrupted(f"NEP fit interrupted; {where}") from err
    fitted = unpack(model, state.x)
    pred = predict(fitted, tset)
    report = {"train": dict(metrics(pred), n_frames=tset.n_frames), "loss_history": list(state.history),
              "iterations": state.iteration, "converged": bool(state.converged),
              "seconds": time.perf_counter() - t0, "sizes": model_sizes(fitted),
              "weights": tset.weights.as_dict(), "reg": reg, "seed": seed, "species": list(species),
              "n_parameters": int(state.x.size), "predictions": pred}
    return fitted, report
