"""The general optimisers (training/optimize.py) on toy problems with known answers.

L-BFGS finds Rosenbrock's minimum (1, 1); Levenberg-Marquardt on a linear least-squares problem gives
numpy.linalg.lstsq's solution (and the ridge solution with a ridge); a run interrupted after k
iterations, saved and resumed from its checkpoint, ends on the same iterate, bit for bit, as the
uninterrupted run; a checkpoint of another problem or a broken file is refused.
"""
from __future__ import annotations

import numpy as np
import pytest

from training.optimize import (CheckpointError, CheckpointMismatch, OptState, advance, lbfgs, levenberg_marquardt,
                               lm_step)


def rosenbrock(x):
    """f = (1 − x0)² + 100 (x1 − x0²)² and its gradient; minimum 0 at (1, 1)."""
    f = (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2
    g = np.array([-2.0 * (1.0 - x[0]) - 400.0 * x[0] * (x[1] - x[0] ** 2), 200.0 * (x[1] - x[0] ** 2)])
    return f, g


def linear_problem(seed=0, m=30, n=5):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(m, n)), rng.normal(size=m)
    return a, b, (lambda x: (a @ x - b, a))


def rosenbrock_residuals(x):
    """r = (1 − x0, 10 (x1 − x0²)), |r|² = Rosenbrock."""
    return np.array([1.0 - x[0], 10.0 * (x[1] - x[0] ** 2)]), np.array([[-1.0, 0.0], [-20.0 * x[0], 10.0]])


def test_lbfgs_finds_the_rosenbrock_minimum():
    state = lbfgs(rosenbrock, [-1.2, 1.0], max_iter=200, memory=5)
    np.testing.assert_allclose(state.x, [1.0, 1.0], atol=1e-6)
    assert state.f < 1e-12
    assert all(b <= a for a, b in zip(state.history, state.history[1:]))  # every accepted step lowers the loss


def test_levenberg_marquardt_equals_lstsq_on_a_linear_problem():
    a, b, rj = linear_problem()
    state = levenberg_marquardt(rj, np.zeros(5), max_iter=100)
    np.testing.assert_allclose(state.x, np.linalg.lstsq(a, b, rcond=None)[0], rtol=1e-9, atol=1e-12)
    # with a ridge: the ridge solution (AᵀA + λI) x = Aᵀb
    state = levenberg_marquardt(rj, np.zeros(5), max_iter=100, ridge=0.5)
    np.testing.assert_allclose(state.x, np.linalg.solve(a.T @ a + 0.5 * np.eye(5), a.T @ b), rtol=1e-9, atol=1e-12)


def test_levenberg_marquardt_solves_rosenbrock_as_least_squares():
    state = levenberg_marquardt(rosenbrock_residuals, [-1.2, 1.0], max_iter=200)
    np.testing.assert_allclose(state.x, [1.0, 1.0], atol=1e-6)


def _problem(name):
    """(objective, linearize, loss, x0) of a toy problem."""
    if name == "rosenbrock":
        return rosenbrock, rosenbrock_residuals, lambda x: rosenbrock(x)[0], np.array([-1.2, 1.0])
    a, b, rj = linear_problem()

    def objective(x):
        r = a @ x - b
        return float(r @ r), 2.0 * (a.T @ r)

    return objective, rj, lambda x: objective(x)[0], np.zeros(5)


@pytest.mark.parametrize("method, problem, k", [("lbfgs", "rosenbrock", 4), ("hybrid", "rosenbrock", 4),
                                                ("hybrid", "linear", 2)])
def test_resume_from_a_checkpoint_reaches_the_same_iterate_bit_for_bit(method, problem, k, tmp_path):
    """Interrupted after k iterations, saved, loaded and continued: the same x, f, g and history as the
    uninterrupted run of 12 iterations (hybrid on the linear problem: LM, then the switch to L-BFGS)."""
    objective, linearize, loss, x0 = _problem(problem)
    opts = dict(method=method, objective=objective, linearize=linearize, loss=loss, memory=4)
    straight = OptState.start(x0, objective)
    advance(straight, 12, **opts)
    first = OptState.start(x0, objective, scale=np.arange(3.0))
    advance(first, k, **opts)
    first.save(tmp_path / "state.npz", problem)
    resumed = OptState.load(tmp_path / "state.npz", problem)
    assert resumed.iteration == k and np.array_equal(resumed.aux["scale"], np.arange(3.0))
    advance(resumed, 12, **opts)
    assert resumed.iteration == straight.iteration and resumed.converged == straight.converged
    assert resumed.x.tobytes() == straight.x.tobytes() and resumed.g.tobytes() == straight.g.tobytes()
    assert resumed.f == straight.f and resumed.history == straight.history
    assert resumed.phase == straight.phase and resumed.lam == straight.lam
    if problem == "linear":
        assert straight.phase == 1


def test_the_lm_step_switches_to_lbfgs_when_it_cannot_lower_the_loss():
    a, b, rj = linear_problem()
    x = np.linalg.lstsq(a, b, rcond=None)[0]  # already at the minimum
    r, _ = rj(x)
    state = OptState(x=x, f=float(r @ r), g=np.zeros(5), s=[], y=[], iteration=0, history=[float(r @ r)])
    lm_step(state, rj, lambda z: float((a @ z - b) @ (a @ z - b)))
    assert state.phase == 1 and state.iteration == 0 and state.precond.shape == (5, 5)


def test_checkpoint_of_another_problem_or_a_broken_file_is_refused(tmp_path):
    state = OptState.start([0.0, 0.0], rosenbrock)
    state.save(tmp_path / "state.npz", "one")
    with pytest.raises(CheckpointMismatch, match="another problem"):
        OptState.load(tmp_path / "state.npz", "two")
    (tmp_path / "broken.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.npz: not a readable checkpoint"):
        OptState.load(tmp_path / "broken.npz", "one")
    with pytest.raises(ValueError, match="method"):
        advance(state, 1, method="newton", objective=rosenbrock)
