"""Heat current of a many-body potential, per atom, and the HNEMD driving force built from it.

Contract: ``state`` is a :class:`md_gpu.state.State` (velocities in ASE units), ``result`` a
:class:`md_gpu.forcefields.base.ForceResult` with per-atom energies [n] (eV) and virials [n, 3, 3]
(eV), i.e. computed with ``per_atom=True``. Heat currents come out in eV Å/fs; conductivities and
fluxes go to SI with ``units.EV_PER_FS_A_K_TO_W_PER_MK`` and ``units.EV_PER_FS_A2_TO_W_PER_M2``.

Method (Fan et al., PRB 92, 094301 (2015)): the full many-body form, not the pairwise shortcut.
With per-atom energies ``e_i = m_i v_i^2 / 2 + U_i`` and the pair-resolved derivatives
``G_p = dE/dd_p = dU_{i_p}/dd_p`` (``d_p = r_{j_p} - r_{i_p}``; only the site energy of the centre
``i_p`` depends on ``d_p``), the time derivative of ``sum_i r_i e_i`` is

    J = sum_i e_i v_i + J_pot,   J_pot = -sum_p d_p (G_p . v_{j_p}) = sum_i W_i . v_i

(``d/dt sum_a r_a U_a = sum_p r_{i_p} G_p.(v_{j_p} - v_{i_p})`` plus ``sum_a r_a F_a . v_a`` from
the kinetic part; the ``r_{i_p} G_p . v_{i_p}`` terms cancel, leaving relative vectors).
``W_i = -sum_{p: j_p = i} d_p (x) G_p`` is exactly the per-atom virial ``ForceResult.virials``, so
``J_pot[mu] = sum_i W_i[mu, nu] v_i[nu]`` costs nothing beyond the per-atom virials. The pairwise
shortcut (half of each pair's virial to each atom, as LAMMPS's ``stress/atom``) is wrong for
many-body potentials; ``tests/test_md_thermal.py`` checks the formula against finite differences
and shows that the shortcut differs.

HNEMD driving force (Fan et al., PRB 99, 064308 (2019)): for ``F_e`` [3] (1/Å),
``F_i^ext = W_i^T F_e - <W^T F_e>`` (eV/Å), so that the power it injects is
``sum_i v_i . F_i^ext = F_e . J_pot`` in a zero-momentum run; the mean is removed so that the
total force is zero.
"""
from __future__ import annotations

from ..errors import MDSetupError
from ..state import State
from ..units import FS


def heat_currents_per_atom(state: State, result) -> object:
    """Per-atom heat currents ``e_i v_i + W_i . v_i`` [n, 3] (eV Å/fs); see the module docstring.

    ``result`` must hold per-atom virials (``compute_forces(..., per_atom=True)``).
    """
    if result.virials is None:
        raise MDSetupError("the heat current needs per-atom virials: compute forces with per_atom=True")
    v = state.velocities
    e = 0.5 * state.masses * (v * v).sum(1) + result.energies
    j = e[:, None] * v + (result.virials * v[:, None, :]).sum(2)
    return j * FS  # Å per ASE time unit -> Å/fs


def heat_current(state: State, result) -> object:
    """Total heat current ``J = sum_i (e_i v_i + W_i . v_i)`` [3] (eV Å/fs)."""
    return heat_currents_per_atom(state, result).sum(0)


def driving_forces(virials, fe) -> object:
    """HNEMD external forces ``W_i^T F_e - mean`` [n, 3] (eV/Å) for virials [n, 3, 3] (eV), ``F_e`` [3] (1/Å)."""
    f = (virials * fe[None, :, None]).sum(1)
    return f - f.mean(0)
