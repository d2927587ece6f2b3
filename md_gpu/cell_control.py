"""Cell modifiers: deformation at a constant engineering strain rate, and the barostat.

A modifier has ``apply(md, dt_fs) -> State``; the integrator calls it after the
drift and before the force call (see :mod:`md_gpu.integrators`). Both act on
diagonal components of the cell only (axes 0, 1, 2 = x, y, z) and map the
positions affinely with the cell, ``r' = r M`` with ``M = diag(mu)``.

* :class:`Deform`: ``L_k(t) = L0_k (1 + rate (t - t0))`` along one axis
  (engineering strain rate, 1/s); ``t0`` and ``L0`` are fixed when the stage
  starts, so a resumed run continues on the same line.
* :class:`Barostat`: Berendsen [1] or, with ``stochastic=True``, stochastic
  cell rescaling [2] (Berendsen plus the noise term that makes it sample the
  isothermal-isobaric ensemble), independently for each axis asked for, e.g.
  ``axes=(1,)`` for the transverse in-plane direction of a sheet under uniaxial
  stress. Per step ``ln mu_k = -(dt / tau)(sigma_kk - sigma0_k) / B
  + sqrt(2 kT dt / (B V tau)) xi``, velocities are scaled by ``1/mu_k``
  (stochastic variant). ``B`` (GPa) is an estimate of the stiffness of the cell
  *as simulated* (a 2D sheet's 3D stress is diluted by the vacuum: ``B ~ C2D / Lz``);
  it only sets how fast the stress relaxes (``~tau``). Stress is the
  virial + kinetic stress of :func:`md_gpu.integrators.stress_array` (positive = tensile).
* :class:`LoadingBarostat`: the same stochastic cell rescaling for the transverse axes of a
  cell under deformation, with one ``B_k`` per axis and a feed-forward term: per step
  ``ln mu_k`` also gets ``-nu_k d ln L_a`` (the axial stretch of the step, ``L_a`` the
  deformed axis), so the barostat's own drift only corrects the difference from the expected
  Poisson contraction. Without it, a first-order barostat trails a ramp by a steady stress
  ``nu r B tau`` (r: strain rate): 0.4 GPa for Cu at 2e10 1/s and tau = 500 fs. The noise
  term is unchanged (the fluctuations about the moving reference are those of [2]). The
  tensile protocol derives ``B_k`` and ``nu_k`` from the material
  (:func:`md_gpu.protocols.tensile.transverse_control`).

Host reads: the cell is a host array (:class:`md_gpu.state.State`), so the control laws run on the
host and :class:`Deform` reads nothing from the device; a barostat step reads the stress tensor
and its noise draws in one transfer (:func:`md_gpu.backend.to_host`; the draws are the ones a
host computation makes, in the same order, so the NumPy stream is unchanged).

[1] H. J. C. Berendsen et al., J. Chem. Phys. 81, 3684 (1984).
[2] M. Bernetti, G. Bussi, J. Chem. Phys. 153, 114107 (2020).
"""
from __future__ import annotations

import numpy as np

from common.arrays import array_module
from .errors import MDRunError, MDSetupError
from .backend import to_host
from .integrators import MDState, stress_array
from .state import State, volume
from .units import EV_PER_A3_TO_GPA, KB, PER_S_TO_PER_FS

AXES = {"x": 0, "y": 1, "z": 2}
MAX_LOG_RESCALE = 0.05  # a barostat step that changes a cell length by 5 % means the system blew up


def axis_index(axis) -> int:
    """0, 1, 2 from 'x', 'y', 'z' or an int; anything else is an MDSetupError."""
    if isinstance(axis, str) and axis in AXES:
        return AXES[axis]
    if isinstance(axis, (int, np.integer)) and 0 <= int(axis) <= 2:
        return int(axis)
    raise MDSetupError(f"direction {axis!r} is not one of x, y, z")


def scale_axes(state: State, mu) -> State:
    """Stretch cell and positions by ``mu [3]`` along x, y, z (velocities unchanged)."""
    xp = array_module(state.positions)
    m = xp.asarray(np.asarray(mu, dtype=float))
    return state.replace(positions=state.positions * m, cell=state.cell * m)


class Deform:
    """Stretch along ``axis`` at ``strain_rate_per_s`` (1/s) from ``L0_A`` (Å) at ``t0_fs`` (fs)."""

    def __init__(self, axis, strain_rate_per_s: float, *, L0_A: float, t0_fs: float):
        self.axis = axis_index(axis)
        self.rate_per_fs = float(strain_rate_per_s) * PER_S_TO_PER_FS
        self.L0_A = float(L0_A)
        self.t0_fs = float(t0_fs)

    def strain(self, time_fs: float) -> float:
        """Engineering strain at ``time_fs``."""
        return self.rate_per_fs * (time_fs - self.t0_fs)

    def apply(self, md: MDState, dt_fs: float) -> State:
        s = md.state
        current = float(s.cell[self.axis, self.axis])  # host cell: no device read
        target = self.L0_A * (1.0 + self.strain(md.time_fs + dt_fs))
        mu = np.ones(3)
        mu[self.axis] = target / current
        return scale_axes(s, mu)


class Barostat:
    """Per-axis Berendsen / stochastic cell rescaling; see the module docstring.

    axes: iterable of 'x'/'y'/'z' (must be periodic); target_GPa: stress to hold (GPa,
    positive = tensile; 0 = free); tau_fs: relaxation time (fs); modulus_GPa: stiffness
    estimate B of the simulated cell (GPa); temperature_K: for the noise (stochastic only).
    """

    def __init__(self, axes, *, tau_fs: float = 500.0, modulus_GPa: float = 100.0, target_GPa: float = 0.0,
                 stochastic: bool = True, temperature_K: float = 0.0, pbc=(True, True, True)):
        self.axes = tuple(axis_index(a) for a in axes)
        for k in self.axes:
            if not pbc[k]:
                raise MDSetupError(f"barostat: axis {'xyz'[k]} is not periodic (vacuum); a 2D sheet is "
                                   "controlled in-plane only (x, y)")
        if tau_fs <= 0 or modulus_GPa <= 0:
            raise MDSetupError(f"barostat: tau_fs={tau_fs} and modulus_GPa={modulus_GPa} must be > 0")
        self.tau_fs = float(tau_fs)
        self.modulus_GPa = float(modulus_GPa)
        self.target_GPa = float(target_GPa)
        self.stochastic = bool(stochastic)
        self.temperature_K = float(temperature_K)

    def axis_moduli(self) -> tuple:
        """Stiffness B_k (GPa) of each axis of ``axes``: one estimate for all of them."""
        return (self.modulus_GPa,) * len(self.axes)

    def feed_forward(self, state: State, dt_fs: float) -> tuple | None:
        """Log-rescaling of each axis of ``axes`` imposed in this step besides the stress feedback (None: none)."""
        return None

    def apply(self, md: MDState, dt_fs: float) -> State:
        s = md.state
        noisy = self.stochastic and self.temperature_K > 0
        if noisy:  # one draw per axis, as a loop of single draws would make them
            sigma, noises = to_host(stress_array(md), md.rng.standard_normal(len(self.axes)))
        else:
            sigma = to_host(stress_array(md))
        log_mu = np.zeros(3)
        imposed = self.feed_forward(s, dt_fs)
        for n, (k, b_gpa) in enumerate(zip(self.axes, self.axis_moduli())):
            log_mu[k] = -(dt_fs / self.tau_fs) * (sigma[k, k] - self.target_GPa) / b_gpa
            if imposed is not None:
                log_mu[k] -= imposed[n]
            if noisy:
                noise = float(noises[n])
                b_ev = b_gpa / EV_PER_A3_TO_GPA   # eV/Å^3
                log_mu[k] += np.sqrt(2 * KB * self.temperature_K * dt_fs / (b_ev * volume(s.cell) * self.tau_fs)) * noise
        if not np.all(np.abs(log_mu) < MAX_LOG_RESCALE):
            k = int(np.argmax(np.abs(np.nan_to_num(log_mu, nan=np.inf))))
            raise MDRunError(f"barostat: at step {md.step} the stress along {'xyz'[k]} is {sigma[k, k]:.3g} GPa, "
                             f"which would rescale the cell by exp({log_mu[k]:.3g}) in one step: the system blew "
                             "up. The potential is probably extrapolating (check it with md.extrapolation.every "
                             "and the fit stage's grades); a longer md.barostat_tau_fs also damps the cell")
        mu = np.exp(log_mu)
        new = scale_axes(s, mu)
        if self.stochastic:
            xp = array_module(s.velocities)
            new = new.replace(velocities=s.velocities / xp.asarray(mu))
        return new


class LoadingBarostat(Barostat):
    """Stochastic cell rescaling of ``axes`` while ``axial`` is deformed; see the module docstring.

    moduli_GPa: ``B_k`` per axis of ``axes`` (GPa, of the cell as simulated); poisson: ``nu_k``
    per axis of ``axes`` (feed-forward contraction per unit axial log-strain; 0 = none);
    axial: the deformed axis; strain_rate_per_s (1/s) and L0_A (Å): its engineering strain
    rate and length at zero strain, so the axial stretch of a step is ``r L0 dt / L_a``
    (no state is kept: a resumed run continues identically). Other arguments as :class:`Barostat`.
    """

    def __init__(self, axes, *, moduli_GPa, poisson, axial, strain_rate_per_s: float, L0_A: float,
                 tau_fs: float = 500.0, target_GPa: float = 0.0, stochastic: bool = True,
                 temperature_K: float = 0.0, pbc=(True, True, True)):
        moduli = [float(b) for b in moduli_GPa]
        super().__init__(axes, tau_fs=tau_fs, modulus_GPa=min(moduli) if moduli else 1.0, target_GPa=target_GPa,
                         stochastic=stochastic, temperature_K=temperature_K, pbc=pbc)
        if len(moduli) != len(self.axes) or len(poisson) != len(self.axes) or min(moduli, default=1) <= 0:
            raise MDSetupError(f"loading barostat: need one modulus_GPa > 0 and one poisson per axis of "
                               f"{axes} (got {moduli_GPa}, {poisson})")
        self.moduli_GPa = tuple(moduli)
        self.poisson = tuple(float(v) for v in poisson)
        self.axial = axis_index(axial)
        self.rate_per_fs = float(strain_rate_per_s) * PER_S_TO_PER_FS
        self.L0_A = float(L0_A)

    def axis_moduli(self) -> tuple:
        return self.moduli_GPa

    def feed_forward(self, state: State, dt_fs: float) -> tuple:
        """``nu_k`` times the axial log-stretch of this step, per axis of ``axes``."""
        d_ln_axial = self.rate_per_fs * self.L0_A * dt_fs / float(state.cell[self.axial, self.axial])
        return tuple(nu * d_ln_axial for nu in self.poisson)
