"""Fast tests of the MTP fit (training.fit, training.mtp.radial_gradient) on a few MLIP reference frames.

Checks: design matrices against the MLIP-verified model evaluation, the exact θ-gradient of the
variable-projection loss against central finite differences, exact recovery of known linear
coefficients, determinism for a fixed seed, bit-identical resume after an interrupt, and every bad-input
path.  The RMSE comparisons with MLIP-2's own potentials are in test_fit_mlip.py (slow).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from training.fit import (FitError, FitInterrupted, FitWeights, TrainingSet, fit, frame_types_of, initial_theta,
                          load_template, solve_linear, train_mtp)
from training.mtp import MTP, MTPCalculator, forces_and_virial, neighbor_pairs, read_cfg
from training.mtp.radial_gradient import BasisSpec, PairBatch, design, prediction_jacobian

DATA = Path(__file__).resolve().parent / "data"
FIT = DATA / "fit"
MLIP = DATA / "mlip"
TEMPLATES = Path(__file__).resolve().parents[1] / "training" / "mtp" / "templates"
QUIET = dict(progress=lambda done, total, text: None)


@pytest.fixture(scope="module")
def cubic():
    return read_cfg(FIT / "cubic_training.cfg.gz")[:6]


@pytest.fixture(scope="module")
def multi():
    return read_cfg(FIT / "multi_training.cfg.gz")[:4]


@pytest.mark.parametrize("kind,level", [("cubic", 10), ("multi", 10)])
def test_design_matrices_reproduce_the_model(kind, level, cubic, multi):
    """design(θ) @ c equals MTP.evaluate's energy, forces and virial for MLIP-2's trained potentials."""
    frames = (cubic if kind == "cubic" else multi)[:3]
    mtp = MTP.read(MLIP / kind / f"pot_{level}.mtp")
    spec = BasisSpec.from_mtp(mtp)
    types = [a.arrays["mlip_type"] for a in frames]
    batch = PairBatch.build(frames, types, cutoff=mtp.cutoff, species_count=mtp.species_count)
    energy, forces, virial = design(spec, mtp.radial_coeffs, batch)
    c = mtp.moment_coeffs
    counts = np.array([np.bincount(t, minlength=mtp.species_count) for t in types])
    for f, (atoms, t) in enumerate(zip(frames, types)):
        i, j, d = neighbor_pairs(atoms, mtp.cutoff)
        site, de_dd = mtp.evaluate(t, i, j, d)
        ref_forces, ref_virial, _ = forces_and_virial(i, j, d, de_dd, len(atoms))
        assert energy[f] @ c + counts[f] @ mtp.species_coeffs == pytest.approx(site.sum(), abs=1e-9)
        rows = batch.atom_frame == f
        np.testing.assert_allclose(forces[rows] @ c, ref_forces, atol=1e-10)
        voigt = [ref_virial[a, b] for a, b in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))]
        np.testing.assert_allclose(virial[f] @ c, -np.array(voigt), atol=1e-9)  # design virial = stress·V


@pytest.mark.parametrize("kind", ["cubic", "multi"])
def test_theta_gradient_matches_finite_differences(kind, cubic, multi):
    """∂L/∂θ of the variable-projection loss (exact c*(θ) each time) against central differences."""
    frames = (cubic if kind == "cubic" else multi)[:3]
    types = [a.arrays["mlip_type"] for a in frames]
    spec, _ = load_template(TEMPLATES / "06.mtp", species_count=1 if kind == "cubic" else 3)
    train = TrainingSet.build(spec, frames, types)
    theta = initial_theta(spec, seed=3)
    a0 = train.matrix(theta)
    reg = 1e-8 * np.einsum("rk,rk->k", a0, a0)

    def loss(th):
        a = train.matrix(th)
        c = solve_linear(a, train.y, reg)
        r = a @ c - train.y
        return r @ r + reg @ (c * c), c, r

    _, c, r = loss(theta)
    grad = 2.0 * train.theta_gradient(theta, c, r)
    rng = np.random.default_rng(1)
    for _ in range(4):
        idx = tuple(rng.integers(n) for n in spec.theta_shape)
        h = 1e-5 * max(1.0, abs(theta[idx]))
        up, down = theta.copy(), theta.copy()
        up[idx] += h
        down[idx] -= h
        numeric = (loss(up)[0] - loss(down)[0]) / (2 * h)
        assert grad[idx] == pytest.approx(numeric, rel=1e-5, abs=1e-8 * np.abs(grad).max())


@pytest.mark.parametrize("kind", ["cubic", "multi"])
def test_prediction_jacobian_matches_finite_differences(kind, cubic, multi):
    """∂(A(θ) c)/∂θ (used by Levenberg-Marquardt) against central differences of design(θ) @ c."""
    frames = (cubic if kind == "cubic" else multi)[:2]
    spec, _ = load_template(TEMPLATES / "06.mtp", species_count=1 if kind == "cubic" else 3)
    batch = PairBatch.build(frames, [a.arrays["mlip_type"] for a in frames], cutoff=spec.max_dist,
                            species_count=spec.species_count)
    theta = initial_theta(spec, seed=2).ravel()
    c = np.random.default_rng(0).normal(size=spec.n_basis)
    analytic = prediction_jacobian(spec, theta, c, batch)
    for j in (0, 5, theta.size - 1):
        h = 1e-6
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        for block, a_up, a_down in zip(analytic, design(spec, up, batch), design(spec, down, batch)):
            numeric = (a_up @ c - a_down @ c) / (2 * h)
            np.testing.assert_allclose(block[..., j], numeric, rtol=1e-6, atol=1e-7 * np.abs(numeric).max())


@pytest.mark.parametrize("level", [10, 16])
def test_moment_hessian_matches_finite_differences(level):
    """g = ∂E_i/∂M_basic and H = ∂g/∂M_basic of the moment Hessian (kept on the basic moments each tangent
    can depend on) against central differences of E_i and g, at random basic moments of 3 atoms."""
    from training.mtp.radial_gradient import _all_moments, _moment_hessian

    spec, _ = load_template(TEMPLATES / f"{level:02d}.mtp")
    rng = np.random.default_rng(level)
    basic = rng.normal(size=(len(spec.basic), 3))
    c = rng.normal(size=spec.n_basis)
    energy = lambda m: c @ _all_moments(spec, m)[spec.mapping]  # noqa: E731  [3]
    g, hess = _moment_hessian(spec, _all_moments(spec, basic), c)
    h = 1e-5
    for b in rng.choice(len(spec.basic), size=6, replace=False):
        up, down = basic.copy(), basic.copy()
        up[b] += h
        down[b] -= h
        np.testing.assert_allclose(g[:, b], (energy(up) - energy(down)) / (2 * h), rtol=1e-6,
                                   atol=1e-8 * np.abs(g).max())
        g_up, _ = _moment_hessian(spec, _all_moments(spec, up), c)
        g_down, _ = _moment_hessian(spec, _all_moments(spec, down), c)
        np.testing.assert_allclose(hess[:, :, b], (g_up - g_down) / (2 * h), rtol=1e-6,
                                   atol=1e-7 * np.abs(hess).max())


def test_kept_geometry_gives_the_same_numbers(cubic, multi, monkeypatch):
    """The batch geometry a training set keeps between passes (and the basic terms of its last design
    pass, which the Jacobian at the same θ reuses) gives the design matrix, Jacobian and θ-gradient of a
    set that recomputes them every pass, bit for bit, on the second pass as on the first; a budget of one
    batch keeps exactly the first batch."""
    import training.fit_data as fit_data
    from training.mtp.radial_gradient import geometry_bytes, terms_bytes

    monkeypatch.setattr(fit_data, "BATCH_ELEMENTS", 1)  # one frame per batch
    for frames, count in ((cubic[:3], 1), (multi[:3], 3)):
        types = [a.arrays["mlip_type"] for a in frames]
        spec, _ = load_template(TEMPLATES / "10.mtp", species_count=count)
        kept = TrainingSet.build(spec, frames, types)
        fresh = TrainingSet.build(spec, frames, types, geometry_cache_bytes=0)
        first = kept.batches[0]
        one = TrainingSet.build(spec, frames, types,
                                geometry_cache_bytes=geometry_bytes(spec, first) + terms_bytes(spec, first))
        assert kept.keep_geometry.all() and not fresh.keep_geometry.any()
        assert one.keep_geometry.tolist() == [True] + [False] * (len(frames) - 1)
        theta = initial_theta(spec, seed=5)
        c = np.random.default_rng(1).normal(size=spec.n_basis + count)
        r = np.random.default_rng(2).normal(size=kept.y.size)
        passes = [(ts.matrix(theta), ts.jacobian(theta, c), ts.theta_gradient(theta, c, r))
                  for ts in (fresh, kept, kept, one, one)]
        assert len(kept._geometry) == len(kept._terms) == len(frames) and list(one._terms) == [0]
        assert list(one._geometry) == [0] and not fresh._geometry and not fresh._terms
        for other in passes[1:]:
            for a, b in zip(passes[0], other):
                np.testing.assert_array_equal(a, b)


def _relabel(frames, mtp):
    """Copies of ``frames`` with energy, forces and stress computed by ``mtp`` (a known answer)."""
    out = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = MTPCalculator(mtp)
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        out.append(atoms)
    return out


def test_linear_solve_recovers_known_coefficients(cubic):
    """With the true radial coefficients, max_iter=0 recovers species and moment coefficients exactly."""
    truth = MTP.read(MLIP / "cubic" / "pot_06.mtp")
    frames = _relabel(cubic, truth)
    result = fit(truth, frames, max_iter=0, reg_linear=0.0, **QUIET)
    np.testing.assert_allclose(result.moment_coeffs, truth.moment_coeffs, rtol=1e-6)
    np.testing.assert_allclose(result.species_coeffs, truth.species_coeffs, rtol=1e-6, atol=1e-6)
    assert result.metrics["train"]["forces"]["rmse"] < 1e-9


def _in_chain(frames, chain):
    """Copies of ``frames`` (with their reference) whose ``info['chain']`` is ``chain``."""
    out = []
    for atoms in frames:
        copy = atoms.copy()
        copy.calc = atoms.calc
        copy.info["chain"] = chain
        out.append(copy)
    return out


@pytest.mark.parametrize("method", ["full", "linear"])
def test_a_chain_weighted_k_times_fits_like_its_frames_taken_k_times(method, cubic):
    """Weighting the frames of one chain 3x (energy, forces and stress) is the loss with those frames in
    the training set three times: the same coefficients (training.fit at fixed θ, and the passive
    training's linear fit), and not those of the unweighted set."""
    from training.passive import linear_fit

    mtp = MTP.read(MLIP / "cubic" / "pot_06.mtp")
    strained, md = _in_chain(cubic[:2], "strains"), _in_chain(cubic[2:], "chain_00")
    base = FitWeights(energy=1.0, forces=0.01, stress=0.001)
    triple = {"strains": {"energy": 3.0, "forces": 0.03, "stress": 0.003}}

    def coeffs(frames, chain_weights):
        if method == "linear":
            return linear_fit(mtp, frames, weights=base, chain_weights=chain_weights)[0].moment_coeffs
        return fit(mtp, frames, max_iter=0, weights=base, chain_weights=chain_weights, **QUIET).moment_coeffs

    weighted = coeffs(md + strained, triple)
    repeated = coeffs(md + strained * 3, None)
    plain = coeffs(md + strained, None)
    rtol = 1e-7 if method == "full" else 1e-5  # the linear fit solves the normal equations: condition squared
    np.testing.assert_allclose(weighted, repeated, rtol=rtol, atol=rtol * np.abs(repeated).max())
    assert np.abs(weighted - plain).max() > 1e-3 * np.abs(plain).max()


def test_chain_weights_scale_only_the_rows_of_their_chain(cubic):
    """TrainingSet rows: the frames of the weighted chain have their stress rows scaled by sqrt(1000)
    (stress 0.001 -> 1.0), their energy and force rows and every row of other frames unchanged; a chain
    no frame belongs to changes nothing; the fit stage's ``<file>:`` prefix is not part of the name."""
    from training.fit_data import chain_frame_weights

    frames = _in_chain(cubic[:2], "graphene.extxyz.gz:strains") + _in_chain(cubic[2:4], "chain_00")
    spec = BasisSpec.from_mtp(MTP.read(MLIP / "cubic" / "pot_06.mtp"))
    types = frame_types_of(frames)[0]
    plain = TrainingSet.build(spec, frames, types)
    weighted = TrainingSet.build(spec, frames, types,
                                 frame_weights=chain_frame_weights(frames, None, {"strains": {"stress": 1.0},
                                                                                  "ripples": {"energy": 9.0}}))
    ratio = weighted.row_scale / plain.row_scale
    scaled = (plain.kinds == 2) & (plain.row_frame < 2)
    np.testing.assert_allclose(ratio[scaled], np.sqrt(1000.0))
    np.testing.assert_allclose(ratio[~scaled], 1.0)
    with pytest.raises(FitError, match="chain_weights.strains: unknown key"):
        chain_frame_weights(frames, None, {"strains": {"stres": 1.0}})
    with pytest.raises(FitError, match="chain_weights.strains: weights.stress: -1.0"):
        chain_frame_weights(frames, None, {"strains": {"stress": -1.0}})
    with pytest.raises(FitError, match="chain_weights.strains: 2.0 must be a mapping"):
        chain_frame_weights(frames, None, {"strains": 2.0})


def test_fixed_seed_gives_identical_potential(cubic, tmp_path):
    runs = [fit(load_template(TEMPLATES / "06.mtp")[1], cubic, max_iter=3, seed=seed, **QUIET).write(
        tmp_path / f"{k}.mtp").read_text() for k, seed in enumerate((7, 7, 20))]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("method", ["lm", "lbfgs"])
def test_threads_give_the_same_potential(method, cubic, multi, monkeypatch, tmp_path):
    """The batches computed on 3 threads (one frame per batch here) give the potential of 1 thread,
    to the last digit: design matrix, Jacobian (lm) and θ-gradient (lbfgs) rows do not depend on it."""
    import training.fit_data as fit_data

    monkeypatch.setattr(fit_data, "BATCH_ELEMENTS", 1)  # one frame per batch: several batches
    for frames in (cubic, multi):
        runs = [train_mtp(TEMPLATES / "06.mtp", frames, max_iter=4, seed=3, method=method, validation=frames[:2],
                          threads=threads, **QUIET) for threads in (1, 3)]
        for k, (mtp, _) in enumerate(runs):
            mtp.write(tmp_path / f"t{k}.mtp")
        texts = [(tmp_path / f"t{k}.mtp").read_text() for k in range(2)]
        assert texts[0] == texts[1]
        assert runs[0][1]["loss_history"] == runs[1][1]["loss_history"]
        assert runs[0][1]["valid"] == runs[1][1]["valid"]
    spec = BasisSpec.from_mtp(load_template(TEMPLATES / "06.mtp", species_count=3)[1])
    assert len(TrainingSet.build(spec, multi, frame_types_of(multi)[0]).batches) == len(multi) > 1


@pytest.mark.parametrize("method", ["lm", "lbfgs"])
def test_resume_after_interrupt_gives_the_same_potential(method, cubic, tmp_path):
    _, init = load_template(TEMPLATES / "06.mtp")
    opts = dict(max_iter=5, seed=1, method=method, starts=2, start_iter=2)
    straight = fit(init, cubic, **opts, **QUIET)
    ckpt = tmp_path / "fit.npz"

    def stop_at_3(done, total, text):  # in the main phase, after the two starts
        if done == 3 and "start" not in text:
            raise KeyboardInterrupt

    with pytest.raises(FitInterrupted, match="fit.npz"):
        fit(init, cubic, **opts, checkpoint=ckpt, progress=stop_at_3)
    lines = []
    resumed = fit(init, cubic, **opts, checkpoint=ckpt, resume=True, progress=lambda d, t, text: lines.append(text))
    assert "resuming" in lines[0] and "iteration 3" in lines[0]
    np.testing.assert_array_equal(resumed.theta, straight.theta)
    np.testing.assert_array_equal(resumed.moment_coeffs, straight.moment_coeffs)
    assert resumed.history == straight.history
    # another problem must not pick up this checkpoint
    with pytest.raises(FitError, match="another fit"):
        fit(init, cubic, **dict(opts, seed=2), checkpoint=ckpt, resume=True, **QUIET)


def test_fit_lowers_the_loss_and_reports(cubic, multi):
    """A few iterations lower the loss; train_mtp returns an MTP whose calculator reproduces the report."""
    mtp, report = train_mtp(TEMPLATES / "06.mtp", multi[:3], max_iter=4, validation=multi[3:], **QUIET)
    assert report["loss_history"][-1] < report["loss_history"][0]
    assert mtp.species_count == 3 and report["level"] == 6
    assert report["valid"]["n_frames"] == 1 and report["train"]["n_frames"] == 3
    pred, ref = report["predictions"]["valid"]["forces"]
    atoms = multi[3].copy()
    atoms.calc = MTPCalculator(mtp)
    np.testing.assert_allclose(atoms.get_forces().ravel(), pred, atol=1e-8)
    np.testing.assert_allclose(ref, multi[3].get_forces().ravel())
    e_pred, _ = report["predictions"]["valid"]["energy_per_atom"]
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(e_pred[0], abs=1e-10)
    rmse = report["valid"]["forces"]["rmse"]
    assert rmse == pytest.approx(np.sqrt(np.mean((pred - ref) ** 2)))


def test_the_report_times_every_iteration(cubic):
    """``timing``: one wall and one CPU time per optimiser iteration (the starts' included), phases and
    iterations adding up to the whole fit, which ``seconds`` reports."""
    lines = []
    _, report = train_mtp(TEMPLATES / "06.mtp", cubic[:3], max_iter=4, starts=2, start_iter=2,
                          progress=lambda done, total, text: lines.append(text))
    timing = report["timing"]
    iterations = [text for text in lines if " iter " in text]
    assert timing["iterations"] == len(iterations) == len(timing["per_iteration"]) > 4
    walls, cpus = np.array(timing["per_iteration"]).T
    assert (walls > 0).all() and (cpus >= 0).all()
    assert timing["iteration_wall_s"] == pytest.approx(walls.sum())
    assert timing["wall_per_iteration_s"] == pytest.approx(walls.mean())
    assert timing["cpu_per_iteration_s"] == pytest.approx(cpus.mean())
    booked = sum(timing[f"{phase}_wall_s"] for phase in ("setup", "starts", "optimiser", "final")) + walls.sum()
    assert booked == pytest.approx(timing["wall_s"], rel=1e-3, abs=1e-3)
    assert report["seconds"] == timing["wall_s"] and timing["cpu_s"] > 0
    assert "s CPU" in lines[-1] and "each" in lines[-1]


def test_species_from_elements_and_tag(cubic, tmp_path):
    """Element-labelled frames: types follow the species list, which the written potential records."""
    frames = []
    for atoms in cubic[:2]:
        atoms = atoms.copy()
        atoms.set_chemical_symbols(["Cu"] * len(atoms))
        atoms.calc = SinglePointCalculator(atoms, energy=cubic[0].get_potential_energy(), forces=cubic[0].get_forces())
        del atoms.arrays["mlip_type"]
        frames.append(atoms)
    mtp, report = train_mtp(TEMPLATES / "02.mtp", frames, max_iter=1, **QUIET)
    assert mtp.species == ["Cu"] and report["species"] == ["Cu"]
    path = tmp_path / "cu.mtp"
    mtp.write(path)
    assert MTP.read(path).species == ["Cu"]
    assert "stress" not in report["train"]  # the frames carry no reference stress


# ------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_name_the_problem(cubic, tmp_path):
    _, init = load_template(TEMPLATES / "06.mtp")
    with pytest.raises(FitError, match="nothere.mtp: potential file not found"):
        load_template(tmp_path / "nothere.mtp")
    junk = tmp_path / "junk.mtp"
    junk.write_text("not an mtp\n")
    with pytest.raises(FitError, match="junk.mtp: not a usable .mtp file"):
        load_template(junk)
    bare = cubic[0].copy()
    with pytest.raises(FitError, match="frame 0 has no reference energy and forces"):
        fit(init, [bare], **QUIET)
    with pytest.raises(FitError, match=r"element\(s\) \['X'\] are not in species=\['Cu'\]"):
        frame_types_of(cubic, ["Cu"])
    with pytest.raises(FitError, match="species_count=1"):
        fit(init, cubic[:1], [np.ones(32, dtype=int)], **QUIET)
    with pytest.raises(FitError, match="max_iter"):
        fit(init, cubic[:1], max_iter=-1, **QUIET)
    with pytest.raises(FitError, match="theta_frames"):
        fit(init, cubic[:1], theta_frames=0, **QUIET)
    for threads in (0, 1.5, True):
        with pytest.raises(FitError, match=f"threads: {threads!r} must be an integer >= 1"):
            fit(init, cubic[:1], threads=threads, **QUIET)
    with pytest.raises(FitError, match="no frames"):
        fit(init, [], [], **QUIET)
    with pytest.raises(FitError, match="--weights: 'force=1' is not"):
        FitWeights.parse("force=1")
    with pytest.raises(FitError, match="--weights: forces='x' is not a number"):
        FitWeights.parse("forces=x")
    with pytest.raises(FitError, match="weights.stress: -1.0"):
        FitWeights(stress=-1.0)
    with pytest.raises(FitError, match="unknown key"):
        FitWeights.coerce({"energies": 1.0})
    with pytest.raises(FitError, match="method: 'newton'"):
        fit(init, cubic[:1], method="newton", **QUIET)
    with pytest.raises(FitError, match="theta0"):
        fit(init, cubic[:1], theta0=np.zeros(3), **QUIET)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(FitError, match="broken.npz: not a readable fit checkpoint"):
        fit(init, cubic[:1], max_iter=1, checkpoint=broken, resume=True, **QUIET)


def test_preconditioned_lbfgs_direction_is_newton_on_a_quadratic():
    """With H0 = the exact inverse Hessian and no curvature pairs, L-BFGS steps to the minimum."""
    from training.optimize import lbfgs_direction as _lbfgs_direction

    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 5))
    hess = m @ m.T + 5 * np.eye(5)
    x, x_min = rng.normal(size=5), rng.normal(size=5)
    grad = hess @ (x - x_min)
    np.testing.assert_allclose(x + _lbfgs_direction(grad, [], [], np.linalg.inv(hess)), x_min, atol=1e-12)
    # one exact curvature pair keeps the secant condition H y = s
    s = rng.normal(size=5)
    y = hess @ s
    np.testing.assert_allclose(-_lbfgs_direction(y, [s], [y], np.eye(5)), s, atol=1e-12)


def test_a_failed_wolfe_search_backtracks_before_the_fit_counts_as_converged(monkeypatch):
    """L-BFGS: when the strong-Wolfe search finds no step even along -g (a narrow valley, as in the
    cubic level-10 fit), an Armijo backtracking along -g goes on; only a direction with no decrease at
    all ends the fit."""
    import scipy.optimize

    from training.optimize import OptState
    from training.optimize import backtrack as _backtrack
    from training.optimize import lbfgs_step as _lbfgs_step

    hess = np.diag([1.0, 1e6])  # a valley 1000x narrower than long

    def objective(x):
        return 0.5 * x @ hess @ x, hess @ x

    monkeypatch.setattr(scipy.optimize, "line_search", lambda *a, **k: (None,) * 6)
    x = np.array([1.0, 1e-3])
    f, g = objective(x)
    state = OptState(x=x, f=float(f), g=g, s=[], y=[], iteration=0, history=[float(f)])
    _lbfgs_step(state, objective, memory=5)
    assert not state.converged and state.iteration == 1 and state.f < f
    assert state.f == pytest.approx(objective(state.x)[0]) and np.allclose(state.g, objective(state.x)[1])
    # the step backtracked is the largest power of 0.1 with Armijo decrease
    value = lambda x: objective(x)[0]  # noqa: E731
    assert _backtrack(value, x, -g, f, -g @ g) == pytest.approx(1e-6)
    assert _backtrack(value, x, g, f, g @ g) is None  # uphill: no step
    state = OptState(x=np.zeros(2), f=0.0, g=np.array([1e-9, 0.0]), s=[], y=[], iteration=0, history=[0.0])
    _lbfgs_step(state, objective, memory=5)  # at the minimum nothing lowers the loss: converged
    assert state.converged and state.iteration == 0
