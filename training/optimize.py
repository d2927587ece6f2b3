"""General optimisers with checkpointed state: L-BFGS and Levenberg-Marquardt.

Nothing here knows the model being fitted.  The problem enters through callables on a flat parameter
vector x [n]:

* ``objective(x) -> (f, g)``: the loss f (float) and its gradient g [n] (L-BFGS);
* ``linearize(x) -> (r, J)``: residual vector r [m] and Jacobian J = ∂r/∂x [m, n] at x, and
  ``loss(x) -> f``: the loss at a trial point (Levenberg-Marquardt).  The loss is
  f = |r|² (+ ``ridge`` |x|² when the problem has a ridge on x, which LM then adds to JᵀJ).

All optimiser state (x, f, g, curvature pairs, damping, iteration count, loss history) lives in an
:class:`OptState`; one step changes it in place, so a state saved with :meth:`OptState.save` after
iteration k and loaded again continues bit for bit as the uninterrupted run.  :func:`advance` runs
steps until an iteration count, :func:`lbfgs` and :func:`levenberg_marquardt` run one method from x0
and return the final state.

Methods: L-BFGS, two-loop recursion (Nocedal 1980, Math. Comp. 35, 773; Nocedal & Wright, Numerical
Optimization, Algorithm 7.4) with a strong-Wolfe line search (scipy's ``line_search``, c1 = 1e-4,
c2 = 0.9) and an Armijo backtracking fallback along −g; Levenberg-Marquardt (Levenberg 1944, Q. Appl.
Math. 2, 164; Marquardt 1963, SIAM J. Appl. Math. 11, 431) with Marquardt's diagonal scaling; the
``hybrid`` method switches from LM to L-BFGS, started from the Gauss-Newton inverse Hessian, once LM
stops lowering the loss.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.optimize

from common.atomic import atomic_write

__all__ = ["OptState", "CheckpointError", "CheckpointMismatch", "lbfgs_direction", "backtrack", "lbfgs_step",
           "lm_step", "advance", "lbfgs", "levenberg_marquardt"]

_FIELDS = ("x", "f", "g", "s", "y", "iteration", "history", "converged", "lam", "phase", "precond", "signature")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (missing keys, not an ``.npz``, truncated)."""


class CheckpointMismatch(CheckpointError):
    """A readable checkpoint written for another problem (its signature differs)."""


@dataclass
class OptState:
    """Everything an optimiser needs to continue.

    ``x`` [n] parameters; ``f`` loss; ``g`` [n] gradient of the loss; ``s``, ``y`` L-BFGS curvature
    pairs (lists of [n], oldest first); ``iteration``; ``history`` loss after each iteration (first
    entry: the start); ``converged``; ``lam`` Levenberg-Marquardt damping; ``phase`` 0 =
    Levenberg-Marquardt, 1 = L-BFGS (after LM stalls); ``precond`` [n, n] the Gauss-Newton inverse
    Hessian L-BFGS starts from, or None; ``aux`` arrays of the problem saved with the state (e.g. a
    ridge fixed at the start).
    """

    x: np.ndarray
    f: float
    g: np.ndarray
    s: list
    y: list
    iteration: int
    history: list
    converged: bool = False
    lam: float = 1e-3
    phase: int = 0
    precond: np.ndarray | None = None
    aux: dict = field(default_factory=dict)

    @classmethod
    def start(cls, x0, objective: Callable, **aux) -> "OptState":
        """The state at ``x0`` [n] (copied), with f and g from ``objective(x0) -> (f, g)``."""
        x0 = np.array(x0, dtype=float).ravel()
        f0, g0 = objective(x0)
        return cls(x=x0, f=float(f0), g=g0, s=[], y=[], iteration=0, history=[float(f0)], aux=aux)

    def save(self, path, signature: str) -> None:
        """Write the state to the ``.npz`` ``path`` atomically, with the problem's ``signature``."""
        n = self.x.size
        arrays = dict(x=self.x, f=self.f, g=self.g, s=np.reshape(self.s, (-1, n)), y=np.reshape(self.y, (-1, n)),
                      iteration=self.iteration, history=np.asarray(self.history, dtype=float), **self.aux,
                      converged=self.converged, lam=self.lam, phase=self.phase,
                      precond=np.zeros((0, n)) if self.precond is None else self.precond, signature=signature)
        atomic_write(path, lambda handle: np.savez(handle, **arrays), mode="wb")

    @classmethod
    def load(cls, path, signature: str) -> "OptState":
        """The state saved at ``path``; raises :class:`CheckpointMismatch` when it was saved with another
        ``signature``, :class:`CheckpointError` when it cannot be read."""
        path = Path(path)
        try:
            with np.load(path) as data:
                if str(data["signature"]) != signature:
                    raise CheckpointMismatch(f"{path}: the checkpoint belongs to another problem")
                aux = {k: data[k] for k in data.files if k not in _FIELDS}
                return cls(x=data["x"], f=float(data["f"]), g=data["g"], s=list(data["s"]), y=list(data["y"]),
                           iteration=int(data["iteration"]), history=list(data["history"]),
                           converged=bool(data["converged"]), lam=float(data["lam"]), phase=int(data["phase"]),
                           precond=data["precond"] if data["precond"].size else None, aux=aux)
        except (OSError, KeyError, ValueError) as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from err


def lbfgs_direction(g, s_list, y_list, precond=None):
    """−H g [n] by the two-loop recursion (Nocedal & Wright, Algorithm 7.4); H0 = ``precond`` [n, n] or γI
    with γ = sᵀy / yᵀy of the newest pair (I without pairs)."""
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


def backtrack(value, x, direction, f0: float, slope: float, *, shrink: float = 0.1, tries: int = 16):
    """Largest step ``shrink**k`` (k < ``tries``) along ``direction`` with Armijo decrease
    ``value(x + α d) <= f0 + 1e-4 α slope``, else None."""
    alpha = 1.0
    for _ in range(tries):
        if value(x + alpha * direction) <= f0 + 1e-4 * alpha * slope:
            return alpha
        alpha *= shrink
    return None


def lbfgs_step(state: OptState, objective, memory: int) -> None:
    """One L-BFGS iteration in place (strong-Wolfe line search, keeping at most ``memory`` pairs); sets
    ``converged`` when no step lowers the loss."""
    direction = lbfgs_direction(state.g, state.s, state.y, state.precond)
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
            return lbfgs_step(state, objective, memory)
        # a narrow valley can defeat the Wolfe search along -g (descent only within a tiny interval):
        # backtrack for sufficient decrease before calling it converged
        alpha = backtrack(value, state.x, direction, state.f, direction @ state.g)
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


def lm_step(state: OptState, linearize, loss, *, ridge: float = 0.0) -> None:
    """One Levenberg-Marquardt iteration in place on f = |r|² + ``ridge`` |x|².

    ``linearize(x) -> (r [m], J [m, n])``, ``loss(x) -> f``.  Solves (JᵀJ + ridge I + λ D) δ = −(Jᵀr +
    ridge x) with D the diagonal of JᵀJ + ridge I (floored at 1e-6 of its largest entry); a step that does
    not lower the loss is retried with 4× the damping λ, an accepted one divides it by 3.  Sets
    ``state.g`` = 2 (Jᵀr + ridge x) at the start point.  When the relative decrease falls below 1e-12, or
    no damping below 1e12 lowers the loss, ``phase`` becomes 1; in the second case ``precond`` becomes
    the Gauss-Newton inverse Hessian (2 (JᵀJ + ridge I + 1e-8 D))⁺ for L-BFGS to start from.
    """
    r, jac = linearize(state.x)
    jtj = jac.T @ jac + ridge * np.eye(state.x.size)
    grad = jac.T @ r + ridge * state.x
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
        f_new = loss(x_new)
        if f_new < state.f:
            if state.f - f_new <= 1e-12 * state.f:
                state.phase = 1
            state.x, state.f, state.lam = x_new, f_new, max(state.lam / 3.0, 1e-9)
            state.iteration += 1
            state.history.append(f_new)
            return
        state.lam *= 4.0
    # the Gauss-Newton model no longer predicts descent: continue with L-BFGS from its curvature
    state.phase = 1
    state.precond = np.linalg.pinv(2.0 * (jtj + 1e-8 * np.diag(scale)), hermitian=True)


def advance(state: OptState, until: int, *, method: str, objective, linearize=None, loss=None,
            ridge: float = 0.0, memory: int = 30, after_step: Callable[[OptState], None] | None = None) -> None:
    """Iterate ``state`` in place until ``state.iteration`` reaches ``until`` or it converges.

    ``method``: "lbfgs", or "hybrid" (:func:`lm_step` with ``linearize``, ``loss`` and ``ridge`` while
    ``phase`` is 0, then :func:`lbfgs_step` with ``objective``; at the switch f and g are re-evaluated
    with ``objective``).  ``after_step(state)`` is called after every counted step (checkpoint, progress);
    it is not called for the LM step that switches to L-BFGS.
    """
    if method not in ("lbfgs", "hybrid"):
        raise ValueError(f"method: {method!r} is not 'lbfgs' or 'hybrid'")
    while state.iteration < until and not state.converged:
        if method == "hybrid" and state.phase == 0:
            lm_step(state, linearize, loss, ridge=ridge)
            if state.phase == 1:  # switched to L-BFGS: its line search needs the exact loss and gradient
                f, state.g = objective(state.x)
                state.f = float(f)
                continue
        else:
            lbfgs_step(state, objective, memory)
        if after_step is not None:
            after_step(state)


def lbfgs(objective, x0, *, max_iter: int = 100, memory: int = 30, state: OptState | None = None) -> OptState:
    """Minimise ``objective(x) -> (f, g)`` from ``x0`` [n] (or continue ``state``) with L-BFGS for at most
    ``max_iter`` iterations in all; returns the final state (``x``, ``f``, ``history``, ``converged``)."""
    state = state or OptState.start(x0, objective)
    advance(state, max_iter, method="lbfgs", objective=objective, memory=memory)
    return state


def levenberg_marquardt(residual_jacobian, x0, *, max_iter: int = 100, ridge: float = 0.0,
                        state: OptState | None = None) -> OptState:
    """Minimise |r(x)|² + ``ridge`` |x|² with ``residual_jacobian(x) -> (r [m], J [m, n])`` from ``x0`` [n]
    (or continue ``state``) by Levenberg-Marquardt for at most ``max_iter`` iterations; LM only (no
    switch to L-BFGS: it stops once ``phase`` becomes 1).  Returns the final state."""

    def loss(x):
        r, _ = residual_jacobian(x)
        return float(r @ r + ridge * (x @ x))

    def objective(x):
        r, jac = residual_jacobian(x)
        return float(r @ r + ridge * (x @ x)), 2.0 * (jac.T @ r + ridge * x)

    state = state or OptState.start(x0, objective)
    while state.iteration < max_iter and state.phase == 0:
        lm_step(state, residual_jacobian, loss, ridge=ridge)
    return state
