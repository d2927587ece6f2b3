"""Fit an MTP to reference energies, forces and stresses: weighted least squares plus variable projection.

Data flow::

    template or trained .mtp (training.mtp.MTP) + list[Atoms] (energy, forces, stress)
        --TrainingSet.build-->  pair batches + weighted reference vector y   (training.fit_data)
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
L(θ) = L(θ, c*(θ)) is minimised over θ by the optimisers of :mod:`training.optimize`: ``method="lm"``
Levenberg-Marquardt on Kaufman's Jacobian (1975, BIT 15, 49) J = (I − Q Qᵀ) ∂(A c*)/∂θ (Q an orthonormal
basis of the columns of A), then L-BFGS once LM stalls; ``method="lbfgs"`` L-BFGS alone (Nocedal 1980,
Math. Comp. 35, 773; strong-Wolfe line search) with the exact gradient ∂L/∂θ = 2 rᵀ ∂(A c*)/∂θ + 2 λ_θ θ
(envelope theorem), which :func:`training.mtp.radial_gradient.theta_gradient` computes with one
complex-step reverse pass.  The checkpoint holds the optimiser's whole state (θ, loss, gradient,
curvature pairs, damping, the ridge λ_k), so an interrupted and resumed fit gives the same potential as an
uninterrupted one.

θ can be optimised on an evenly spaced subsample of the frames (``theta_frames``), which is much cheaper;
the final c is always solved on all training frames.  Each iteration reports the loss through
``progress(done, total, text)``; the optimiser state is checkpointed to an ``.npz`` after each
iteration; a KeyboardInterrupt raises :class:`FitInterrupted` naming the checkpoint, and ``resume=True``
continues from it.  A fixed ``seed`` gives the same potential.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.linalg

from common.atomic import write_text
from training.fit_data import (FitError, FitInterrupted, FitWeights, TrainingSet, _mlip_typed, chain_frame_weights,
                               frame_types_of, load_template, metrics)
from training.fit_timing import FitClock
from training.mtp import MTP
from training.mtp.mtp_file import format_mtp
from training.mtp.radial_gradient import BasisSpec
from training.optimize import CheckpointError, CheckpointMismatch, OptState, advance

__all__ = ["FitWeights", "FitError", "FitInterrupted", "TrainingSet", "FitResult", "fit", "train_mtp",
           "load_template", "frame_types_of", "metrics", "initial_theta", "solve_linear", "report_json"]

def initial_theta(spec: BasisSpec, seed: int) -> np.ndarray:
    """Random radial coefficients [S*S, M, X] for ``seed``: uniform in [−1, 1] (with the template scaling
    1/(R_max − R_min)², the radial functions start O(1))."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, spec.theta_shape)


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



# --------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------

@dataclass
class FitResult:
    """A fitted potential.

    ``spec``; ``theta`` [S*S, M, X] radial coefficients; ``species_coeffs`` [S] (eV); ``moment_coeffs``
    [K] (eV); ``metrics`` {'train': …, 'valid': …} (see :func:`metrics`, plus ``n_frames``);
    ``predictions`` {'train': …, 'valid': …} (see :meth:`TrainingSet.split`); ``history`` loss per
    iteration; ``iterations``; ``seconds`` wall time of the fit; ``timing`` wall and CPU seconds in all,
    by phase and per iteration (:meth:`training.fit_timing.FitClock.summary`); ``species`` element
    symbols or None.
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
    timing: dict = field(default_factory=dict)
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
        write_text(path, format_mtp(self.to_mtp().fields()))
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


def _load_checkpoint(path: Path, signature: str) -> OptState:
    """The optimiser state saved at ``path`` by a fit with ``signature``; FitError when it is unreadable or
    belongs to another fit."""
    try:
        return OptState.load(path, signature)
    except CheckpointMismatch as err:
        raise FitError(f"{path}: the checkpoint belongs to another fit (other data, basis, weights or settings); "
                       "delete it or give another --checkpoint to start afresh") from err
    except CheckpointError as err:
        raise FitError(f"{path}: not a readable fit checkpoint ({err.__cause__}); delete it to start afresh") from err


def _print_progress(done: int, total: int, text: str) -> None:
    print(text, flush=True)


def fit(spec, frames, types=None, *, theta0=None, max_iter: int = 200, weights=None, seed: int = 0,
        chain_weights: dict | None = None, theta_frames: int | None = None, valid_frames=None, valid_types=None,
        reg_linear: float = 1e-10,
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
    linear fit only).  ``weights``: the loss weights (:class:`FitWeights`, a dict or a string);
    ``chain_weights``: weights of the frames of single chains over them (:func:`chain_frame_weights`,
    e.g. ``{"strains": {"stress": 0.1}}``).  ``theta_frames``: optimise θ on at most this many evenly
    spaced frames (None: all).
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
    clock = FitClock()
    if isinstance(spec, MTP):
        if theta0 is None and np.any(spec.radial_coeffs):
            theta0 = spec.radial_coeffs
        if species is None:
            species = spec.species
        spec = BasisSpec.from_mtp(spec)
    if types is None:
        types, found = frame_types_of(frames, species)
        species = species or found
    frame_weights = chain_frame_weights(frames, weights, chain_weights)
    subsample = theta_frames is not None and theta_frames < len(frames)
    # the geometry of the frames the optimiser sees is kept between its passes; the full set of a
    # subsampled fit is evaluated once, at the end
    train = TrainingSet.build(spec, frames, types, frame_weights=frame_weights, source=source, threads=threads,
                              **({"geometry_cache_bytes": 0} if subsample else {}))
    if subsample:
        pick = np.unique(np.linspace(0, len(frames) - 1, theta_frames).round().astype(int))
        opt_set = TrainingSet.build(spec, [frames[k] for k in pick], [types[k] for k in pick],
                                    frame_weights=[frame_weights[k] for k in pick], source=source,
                                    threads=threads)
    else:
        opt_set = train
    clock.mark("setup")
    theta = np.array(initial_theta(spec, seed) if theta0 is None else theta0, dtype=float)
    if theta.size != int(np.prod(spec.theta_shape)):
        raise FitError(f"theta0: {theta.shape} does not fit the radial coefficients {spec.theta_shape}")
    theta = theta.reshape(spec.theta_shape)
    checkpoint = Path(checkpoint) if checkpoint else None
    signature = (_signature(spec, train, weights, reg_linear, reg_radial, seed, theta)
                 + f"{method}:{starts if theta0 is None else 1}:{start_iter}")

    def objective_of(x, a, reg_diag):
        """Loss and gradient at θ = ``x`` from its design matrix ``a``."""
        c = solve_linear(a, opt_set.y, reg_diag)
        r = a @ c - opt_set.y
        loss = r @ r + reg_diag @ (c * c) + reg_radial * (x @ x)
        return loss, 2.0 * opt_set.theta_gradient(x.reshape(spec.theta_shape), c, r).ravel() + 2.0 * reg_radial * x

    def new_state(th) -> OptState:
        a0 = opt_set.matrix(th)
        reg_diag = reg_linear * np.einsum("rk,rk->k", a0, a0)
        state = OptState.start(th.ravel().copy(), lambda x: objective_of(x, a0, reg_diag), reg_diag=reg_diag)
        clock.mark("starts")
        return state

    def run(state: OptState, until: int, label: str, save: bool) -> None:
        reg_diag = state.aux["reg_diag"]
        last: dict = {}  # A and c*(θ) of the last θ evaluated: the next LM linearisation point once accepted

        def solved(x):
            if last.get("key") != x.tobytes():
                a = opt_set.matrix(x.reshape(spec.theta_shape))
                last.update(key=x.tobytes(), a=a, c=solve_linear(a, opt_set.y, reg_diag))
            return last["a"], last["c"]

        def objective(x):
            # the design matrix of a θ already evaluated (LM's last point, where it hands over to L-BFGS) is reused
            a = last["a"] if last.get("key") == x.tobytes() else opt_set.matrix(x.reshape(spec.theta_shape))
            return objective_of(x, a, reg_diag)

        def loss(x):
            a, c = solved(x)
            r = a @ c - opt_set.y
            return float(r @ r + reg_diag @ (c * c) + reg_radial * (x @ x))

        def linearize(x):
            # Kaufman's Jacobian (1975, BIT 15, 49): J = (I − Q Qᵀ) ∂(A c*)/∂θ with Q an orthonormal basis
            # of the columns of A, so the step accounts for c* following θ
            a, c = solved(x)
            r = a @ c - opt_set.y
            jac = opt_set.jacobian(x.reshape(spec.theta_shape), c)
            norms = np.sqrt(np.einsum("rk,rk->k", a, a))
            basis, _ = np.linalg.qr(a / np.where(norms > 0, norms, 1.0))
            jac -= basis @ (basis.T @ jac)
            return r, jac

        def after_step(state: OptState) -> None:
            if save and checkpoint:
                state.save(checkpoint, signature)
            clock.iteration()
            progress(state.iteration, until, f"fit: {label}iter {state.iteration:4d}  loss {state.f:.6e}  "
                     f"|grad| {np.linalg.norm(state.g):.3e}  {clock.elapsed():.1f} s")

        advance(state, until, method="hybrid" if method == "lm" else "lbfgs", objective=objective,
                linearize=linearize, loss=loss, ridge=reg_radial, memory=memory, after_step=after_step)

    try:
        if resume and checkpoint and checkpoint.is_file():
            state = _load_checkpoint(checkpoint, signature)
            progress(state.iteration, max_iter, f"fit: resuming from {checkpoint} at iteration {state.iteration}")
        elif starts > 1 and theta0 is None and max_iter > 0:
            # multi-start: the loss has many local minima; a few iterations from each random start
            # tell the promising basin apart, the best start goes on
            candidates = []
            for k in range(starts):
                candidate = new_state(initial_theta(spec, seed + k))
                run(candidate, min(start_iter, max_iter), f"start {k + 1}/{starts} ", save=False)
                candidates.append(candidate)
            best = int(np.argmin([c.f for c in candidates]))
            state = candidates[best]
            progress(state.iteration, max_iter, f"fit: start {best + 1}/{starts} kept (loss {state.f:.6e})")
        else:
            state = new_state(theta)
        run(state, max_iter, "", save=True)
    except KeyboardInterrupt as err:
        where = f"resume with resume=True (--resume) from {checkpoint}" if checkpoint else "no checkpoint was set"
        raise FitInterrupted(f"fit interrupted; {where}") from err
    clock.mark("optimiser")
    theta = state.x.reshape(spec.theta_shape)
    a_full = train.matrix(theta)
    scale = train.y.size / max(opt_set.y.size, 1)  # the relative ridge, for the full set's row count
    coeffs = solve_linear(a_full, train.y, state.aux["reg_diag"] * scale)
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
                                  threads=threads, geometry_cache_bytes=0)
        result.predictions["valid"] = valid.predictions(theta, coeffs)
        result.metrics["valid"] = dict(metrics(result.predictions["valid"]), n_frames=valid.n_frames)
    clock.mark("final")
    result.timing = clock.summary()
    result.seconds = result.timing["wall_s"]
    tm = result.metrics["train"]
    per_iteration = result.timing["wall_per_iteration_s"]
    progress(state.iteration, max_iter,
             f"fit: done in {result.seconds:.1f} s ({result.timing['cpu_s']:.1f} s CPU), {state.iteration} iterations"
             + (f" ({per_iteration:.3g} s each)" if per_iteration else "")
             + f": train RMSE energy {tm['energy_per_atom']['rmse']:.3e} eV/atom, "
               f"forces {tm['forces']['rmse']:.3e} eV/A")
    return result


def train_mtp(init, frames, *, max_iter: int = 200, weights=None, chain_weights: dict | None = None,
              seed: int = 0, validation=None,
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
    ``n_frames``), ``seconds``, ``timing`` (wall and CPU seconds in all, by phase and per iteration,
    :meth:`training.fit_timing.FitClock.summary`), ``iterations``, ``loss_history``, ``weights``,
    ``chain_weights``, ``seed``, ``level``,
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
    result = fit(spec, frames, types, theta0=theta0, max_iter=max_iter, weights=weights,
                 chain_weights=chain_weights, seed=seed, theta_frames=theta_frames, valid_frames=validation,
                 valid_types=valid_types, reg_linear=reg_linear, reg_radial=reg_radial, method=method, starts=starts,
                 start_iter=start_iter, checkpoint=checkpoint,
                 resume=resume, progress=progress, species=species, threads=threads)
    report = dict(result.metrics)
    report.update(seconds=result.seconds, timing=result.timing, iterations=result.iterations,
                  loss_history=list(result.history),
                  weights=FitWeights.coerce(weights).as_dict(), chain_weights=dict(chain_weights or {}), seed=seed,
                  level=mtp0.level, species=species,
                  theta_frames=theta_frames, max_iter=max_iter, method=method, starts=starts,
                  predictions=result.predictions)
    return result.to_mtp(), report


def report_json(report: dict) -> dict:
    """The report of :func:`train_mtp` without ``predictions`` (so that ``json.dump`` takes it)."""
    return {k: v for k, v in report.items() if k != "predictions"}