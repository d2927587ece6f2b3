"""Two-step passive training of an MTP on AIMD data (no new reference calculations).

Method (as in the multiscale MTP literature, e.g. Mortazavi, Shapeev et al., Mater. Horiz. 7, 2359
(2020)): (1) subsample the AIMD trajectories (every k-th frame of each chain) and fit a preliminary
MTP; (2) grade every AIMD frame with it (MaxVol extrapolation grade, :mod:`training.mtp.maxvol`) and add
the frames graded above ``threshold`` (most extrapolative first, at most ``max_add``) to the training
set; (3) refit on the enlarged set, starting from the preliminary potential.  Steps 2-3 repeat up to
``rounds`` times while some frame still grades above ``threshold``.  A random ``validation_fraction``
of the frames is held out of training (never added) and only reported.

Data flow: frames (ase.Atoms with reference energy, forces, stress) + initial MTP -> subsample ->
``fit_fn`` -> preliminary MTP -> ``ActiveSet.select`` (training frames) -> ``frame_grades`` (all frames)
-> enlarged training set -> ``fit_fn`` -> final MTP + its active set + report (:class:`PassiveResult`).

``fit_fn(init, frames, *, validation, seed) -> (MTP, report)`` is pluggable: :func:`full_fit`
(``training.fit.train_mtp``: radial and linear coefficients) or :func:`linear_fit` (species and moment
coefficients only, at the radial coefficients of ``init``: an exact weighted least-squares solve).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from .fit_timing import brief
from .mtp.neighbors import PAIRS
from .mtp.maxvol import ActiveSet

#: MLIP-2's ``mlp train`` default weights (energy per atom, force components, virial per atom)
DEFAULT_WEIGHTS = {"energy": 1.0, "forces": 0.01, "stress": 0.001}


class PassiveTrainingError(ValueError):
    """Bad passive-training input: too few frames, a bad every_k / threshold / fraction, frames without
    reference energy or forces."""


# ---------------------------------------------------------------------------------------- linear fit
def _weights(weights) -> dict:
    w = dict(DEFAULT_WEIGHTS)
    if weights is not None:
        w.update({k: getattr(weights, k) for k in DEFAULT_WEIGHTS} if not isinstance(weights, dict) else weights)
    unknown = sorted(set(w) - set(DEFAULT_WEIGHTS))
    if unknown or any(float(v) < 0 for v in w.values()):
        raise PassiveTrainingError(f"weights {w}: keys must be {sorted(DEFAULT_WEIGHTS)}, values >= 0")
    return {k: float(v) for k, v in w.items()}


def linear_design(mtp, atoms):
    """Linear model of one frame: predictions = design @ [species_coeffs, moment_coeffs].

    Returns (energy_row [S + K] eV, force_rows [n, 3, S + K] eV/Å, stress_rows [6, S + K] eV/Å³ in
    ASE's sign and Voigt order xx yy zz yz xz xy, or None without a 3D cell volume).
    """
    from training.mtp import atom_types

    types = atom_types(mtp, atoms)
    i, j, d = PAIRS(atoms, mtp.cutoff)
    b, db = mtp.basis(types, i, j, d, xp=np)
    s, k, n = mtp.species_count, b.shape[1], len(atoms)
    energy = np.concatenate([np.bincount(types, minlength=s).astype(float), b.sum(0)])
    forces = np.zeros((n, 3, s + k))
    np.add.at(forces[:, :, s:], i, db)  # F_i += dE/dd_p, F_j -= dE/dd_p  (d_p = r_j - r_i)
    np.add.at(forces[:, :, s:], j, -db)
    stress = None
    if atoms.cell.rank == 3:
        vol = atoms.get_volume()
        full = np.einsum("pa,pbk->abk", d, db) / vol  # ASE stress = sum_p d_p (x) dE/dd_p / V
        stress = np.zeros((6, s + k))
        for row, (a, c) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
            stress[row, s:] = 0.5 * (full[a, c] + full[c, a])
    return energy, forces, stress


def linear_fit(init, frames, *, weights=None, chain_weights=None, reg: float = 1e-10, validation=None,
               seed: int = 0, **_ignored):
    """Fit species and moment coefficients at the radial coefficients of ``init`` (MTP or path).

    Weighted least squares with MLIP's loss (``training.fit`` module docstring): rows sqrt(w_E N) E/N,
    sqrt(w_F) F, sqrt(w_S N) (stress V)/N, plus a ridge ``reg`` relative to the diagonal of the normal
    matrix; ``chain_weights`` gives the frames of single chains other weights
    (:func:`training.fit_data.chain_frame_weights`).  Returns (MTP, report) with the report's
    ``method`` = "linear" and ``seconds``.
    """
    from training import datasets
    from training.fit_data import chain_frame_weights
    from training.mtp import MTP

    t0 = time.time()
    mtp = MTP.read(init) if not isinstance(init, MTP) else MTP(init.fields())
    base = _weights(weights)
    datasets.validate(frames, source="linear_fit training set")
    size = mtp.species_count + mtp.basis_size
    normal, rhs = np.zeros((size, size)), np.zeros(size)
    for atoms, frame_weights in zip(frames, chain_frame_weights(frames, base, chain_weights)):
        w = frame_weights.as_dict()
        e_row, f_rows, s_rows = linear_design(mtp, atoms)
        n = len(atoms)
        blocks = [(np.sqrt(w["energy"] * n) * e_row[None] / n,
                   np.sqrt(w["energy"] * n) * np.array([datasets.reference(atoms, "energy")]) / n),
                  (np.sqrt(w["forces"]) * f_rows.reshape(-1, size),
                   np.sqrt(w["forces"]) * np.asarray(datasets.reference(atoms, "forces")).reshape(-1))]
        ref_stress = datasets.reference(atoms, "stress") if s_rows is not None else None
        if ref_stress is not None and w["stress"] > 0:
            scale = np.sqrt(w["stress"] * n) * atoms.get_volume() / n
            blocks.append((scale * s_rows, scale * np.asarray(ref_stress).reshape(-1)[:6]))
        for a, y in blocks:
            normal += a.T @ a
            rhs += a.T @ y
    diag = np.diag(normal).copy()
    diag[diag == 0] = 1.0
    coeffs = np.linalg.solve(normal + reg * np.diag(diag), rhs)
    mtp.species_coeffs = coeffs[: mtp.species_count]
    mtp.moment_coeffs = coeffs[mtp.species_count:]
    return mtp, {"method": "linear", "seconds": time.time() - t0, "weights": base,
                 "chain_weights": dict(chain_weights or {}), "seed": seed}


def full_fit(init, frames, *, validation=None, seed: int = 0, max_iter: int = 100, weights=None,
             progress=None, **kwargs):
    """``training.fit.train_mtp`` (radial and linear coefficients) in the ``fit_fn`` form."""
    from training.fit import train_mtp

    return train_mtp(init, frames, max_iter=max_iter, weights=weights, seed=seed, validation=validation,
                     progress=progress, **kwargs)


def make_fit_fn(method: str, *, max_iter: int = 100, weights=None, chain_weights=None, progress=None,
                threads: int = 1):
    """``fit_fn`` for ``method`` = "full" (train_mtp, on ``threads`` threads) or "linear" (:func:`linear_fit`),
    with the loss ``weights`` and the ``chain_weights`` of single chains over them
    (:func:`training.fit_data.chain_frame_weights`)."""
    if method == "linear":
        return partial(linear_fit, weights=weights, chain_weights=chain_weights)
    if method == "full":
        return partial(full_fit, max_iter=max_iter, weights=weights, chain_weights=chain_weights,
                       progress=progress, threads=threads)
    raise PassiveTrainingError(f"fit method {method!r} is not one of full, linear")


# ---------------------------------------------------------------------------------------- passive training
@dataclass
class PassiveResult:
    """Outcome of :func:`passive_train`.

    mtp: final potential; active_set: its MaxVol active set on ``train_index``; preliminary: the step-1
    potential; train_index, valid_index: frame indices (into the input frames) of the final training and
    validation sets; grades_preliminary [F], grades_final [F]: per-frame grades of all frames with the
    preliminary and final potentials (each with its own active set); report: JSON-able summary.
    """

    mtp: object
    active_set: ActiveSet
    preliminary: object
    train_index: np.ndarray
    valid_index: np.ndarray
    grades_preliminary: np.ndarray
    grades_final: np.ndarray
    active_set_preliminary: ActiveSet | None = None
    report: dict = field(default_factory=dict)


def validation_split(n_frames: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(held-out [V], the others [n_frames - V]) frame indices, both sorted: a random ``fraction`` of the
    frames (V = round(fraction n_frames)) drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    valid = np.sort(rng.permutation(n_frames)[:int(round(fraction * n_frames))]).astype(np.int64)
    return valid, np.setdiff1d(np.arange(n_frames), valid)


def chain_subsample(frames, pool, every_k: int) -> np.ndarray:
    """Every ``every_k``-th frame of each trajectory (``atoms.info['chain']``; all frames form one chain
    without it), among the frame indices ``pool`` [m] (kept in order).  Returns sorted indices.

    Frames marked ``atoms.info['independent']`` (single points such as :mod:`training.ripples` frames)
    are all taken: the subsampling only thins out time-correlated MD frames."""
    chains: dict = {}
    independent = []
    for idx in pool:
        if frames[idx].info.get("independent"):
            independent.append(int(idx))
        else:
            chains.setdefault(str(frames[idx].info.get("chain", "")), []).append(int(idx))
    picked = independent + [idx for members in chains.values() for idx in members[::every_k]]
    return np.array(sorted(picked), dtype=np.int64)


def _check(frames, every_k, threshold, validation_fraction, max_add, rounds):
    if every_k < 1:
        raise PassiveTrainingError(f"every_k: must be >= 1, got {every_k}")
    if not threshold > 1.0:
        raise PassiveTrainingError(f"threshold: the extrapolation threshold must be > 1 (gamma <= 1 is "
                                   f"interpolation), got {threshold}")
    if not 0.0 <= validation_fraction < 0.5:
        raise PassiveTrainingError(f"validation fraction: must be in [0, 0.5), got {validation_fraction}")
    if max_add < 0 or rounds < 1:
        raise PassiveTrainingError(f"max_add must be >= 0 (0: no limit) and rounds >= 1; got {max_add}, {rounds}")
    if len(frames) < 2:
        raise PassiveTrainingError(f"passive training needs at least 2 frames, got {len(frames)}")


def passive_train(init, frames, *, fit_fn, every_k: int = 10, threshold: float = 2.0, max_add: int = 0,
                  mode: str = "neighbourhood", parameters: str = "all", validation_fraction: float = 0.1,
                  seed: int = 0, rounds: int = 1, log=print) -> PassiveResult:
    """Two-step passive training (module docstring) of ``frames`` from ``init`` (MTP or .mtp path).

    every_k: subsampling of each chain for step 1; threshold: grade above which a frame is added
    (> 1); max_add: at most this many frames added per round, most extrapolative first (0: all above
    threshold); mode: active-set mode; parameters: active-set rows over ``all`` coefficients (MLIP-2)
    or the ``linear`` ones (:mod:`training.mtp.maxvol`); rounds: grade-and-refit rounds (1 = the two-step scheme).
    """
    from .fit_report import errors

    frames = list(frames)
    _check(frames, every_k, threshold, validation_fraction, max_add, rounds)
    t0 = time.time()
    valid, pool = validation_split(len(frames), validation_fraction, seed)
    train = chain_subsample(frames, pool, every_k)
    pick = lambda idx: [frames[k] for k in idx]  # noqa: E731
    validation = pick(valid) or None

    log(f"passive training: step 1: fit on {len(train)} of {len(pool)} frames (every {every_k}-th of each "
        f"chain; {len(valid)} held out for validation)")
    mtp, fit_report = fit_fn(init, pick(train), validation=validation, seed=seed)
    preliminary = mtp
    steps = [{"step": "preliminary fit", "n_train": int(len(train)), "seconds": fit_report.get("seconds"),
              "timing": brief(fit_report.get("timing")),
              "errors": {"train": errors(mtp, pick(train)), "all": errors(mtp, pick(pool)),
                         **({"valid": errors(mtp, validation)} if validation else {})}}]
    grades_pre = active_pre = None
    for round_no in range(1, rounds + 1):
        active = ActiveSet.select(mtp, pick(train), mode=mode, parameters=parameters)
        grades, _ = active.frame_grades(mtp, frames)
        if grades_pre is None:
            grades_pre, active_pre = grades, active
        candidates = np.setdiff1d(pool[grades[pool] > threshold], train)
        candidates = candidates[np.argsort(-grades[candidates], kind="stable")]
        added = candidates[:max_add] if max_add else candidates
        above = int(np.sum(grades[pool] > threshold))
        steps.append({"step": f"grade {round_no}", "n_graded": int(len(frames)),
                      "max_grade": float(grades[pool].max()), "n_above_threshold": above,
                      "n_added": int(len(added)), "added_frames": [int(x) for x in added]})
        log(f"passive training: grade {round_no}: max grade {grades[pool].max():.3g}, "
            f"{above} frames above {threshold:g}, {len(added)} added")
        if len(added) == 0:
            break
        train = np.sort(np.concatenate([train, added]))
        mtp, fit_report = fit_fn(mtp, pick(train), validation=validation, seed=seed)
        steps.append({"step": f"refit {round_no}", "n_train": int(len(train)), "seconds": fit_report.get("seconds"),
                      "timing": brief(fit_report.get("timing")),
                      "errors": {"train": errors(mtp, pick(train)), "all": errors(mtp, pick(pool)),
                                 **({"valid": errors(mtp, validation)} if validation else {})}})
        log(f"passive training: refit {round_no} on {len(train)} frames")
    active = ActiveSet.select(mtp, pick(train), mode=mode, parameters=parameters)
    grades_final, _ = active.frame_grades(mtp, frames)
    report = {"method": fit_report.get("method", "full"), "mode": mode, "parameters": parameters, "every_k": every_k,
              "threshold": threshold, "max_add": max_add, "rounds": rounds, "seed": seed,
              "n_frames": len(frames), "n_valid": int(len(valid)), "n_train_final": int(len(train)),
              "steps": steps,
              "max_grade_preliminary": float(grades_pre[pool].max()),
              "max_grade_final": float(grades_final[pool].max()),
              "max_grade_final_valid": float(grades_final[valid].max()) if len(valid) else None,
              "below_threshold": bool(grades_final[pool].max() <= threshold),
              "active_set_rank": int(active.rank), "seconds": time.time() - t0}
    return PassiveResult(mtp=mtp, active_set=active, preliminary=preliminary, train_index=train,
                         valid_index=valid, grades_preliminary=grades_pre, grades_final=grades_final,
                         active_set_preliminary=active_pre, report=report)
