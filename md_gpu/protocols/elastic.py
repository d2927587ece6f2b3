"""In-plane elastic constants C11, C22, C12, C66 at temperature, and the static (0 K) reference.

At temperature (:func:`elastic_constants`): equilibrate at zero stress
(thermostat + barostat on the periodic axes), scale the final state to the mean cell of the
equilibration's second half (:func:`at_mean_cell`), then for each strain component
``e_j`` in (xx, yy, xy) and sign, apply ``+-delta`` affinely to the cell and
positions, run NVT (``equilibrate_steps // 4`` to settle, ``sample_steps`` to
average the virial + kinetic stress) and take central differences

    C_ij = (sigma_i(+delta_j) - sigma_i(-delta_j)) / (2 delta)     (Voigt i, j in 1, 2, 6)

with the engineering shear strain ``gamma_xy = 2 e_xy = delta``. C12 is the mean
of C12 and C21.

``scheme="tension"`` replaces the compressed cells by the unstrained one (forward differences,
``C_ij = (sigma_i(+delta_j) - sigma_i(0)) / delta``): a free-standing sheet a few nm long buckles
under a compression of delta = 0.5 % (its Euler load, bending rigidity x (2 pi / L)^2, is about
0.2 N/m for graphene 7 nm long, against the C delta ~ 2 N/m the compressed cell would carry), so the
central difference reads half the stiffness or less (60-atom graphene cell at 300 K: C22 = 381-417
N/m; the same sheet 64 Å long: 107-172 N/m). The forward difference has a bias of C_iii delta / 2
(third-order constant; graphene: about -2 % at delta = 0.005) and no compressed cell. ``scheme="tension2"`` adds a cell at ``+2 delta`` and takes the second-order
one-sided difference ``C_ij = (4 sigma_i(+delta_j) - sigma_i(+2 delta_j) - 3 sigma_i(0)) / (2 delta)``:
no compressed cell and no bias of first order in delta, at the price of three more cells and 1.8x the
noise of the forward difference (for low temperature, where the noise is small: a 6.8 nm
graphene/borophene stripe cell at 1 K reads E_y = 196.2 N/m forward at delta = 0.005, 199.6 at 0.01,
192.6 second order, 192.3 static). :func:`choose_scheme` picks the scheme for a cell: central for a
bulk cell and for a sheet that a compression of delta cannot buckle, else a one-sided one; the test
(:func:`ripple_curvatures`) is the 0 K energy curvature of the sheet's longest out-of-plane ripple along
each axis in the cell compressed by delta (Euler: bending rigidity x q^2 against the compressive stress;
negative = it buckles). A level-10 graphene MTP fitted to the embedded set: +73 and +62 meV/Å^2 per
atom in the 60-atom cell, -3.7 and -4.0 in the 240-atom cell, whose central difference at 1 K reads
C22 = 404.8 N/m against 423.3 one-sided and 420.7 static. Static (:func:`static_elastic_constants`): the same strains on the
structure relaxed at 0 K (cell in-plane to zero stress, then positions at every
strained cell), stress from the same force field.

Units: GPa for a bulk cell; N/m for a 2D sheet (vacuum along z), with the 3D
stress multiplied by the cell height.
"""
from __future__ import annotations

import numpy as np

from ..analysis import CELL_COLUMN
from ..cell_control import axis_index
from ..errors import MDSetupError
from ..simulation import Stage
from ..state import State, to_atoms
from ..units import EV_PER_A3_TO_GPA, GPA_A_TO_N_PER_M
from .common import RunSettings, barostat_for, checkpoint_file, in_plane_axes, prepare_state, simulation

VOIGT = (("xx", (0, 0)), ("yy", (1, 1)), ("xy", (0, 1)))
SCHEMES = ("central", "tension", "tension2")
# (cell strain in units of delta, weight) of each difference; C_ij = sum w sigma_i / delta
STENCILS = {"central": ((1, 0.5), (-1, -0.5)), "tension": ((1, 1.0), (0, -1.0)),
            "tension2": ((1, 2.0), (2, -0.5), (0, -1.5))}


def _strain_matrix(component: str, delta: float) -> np.ndarray:
    """Symmetric deformation gradient ``I + e`` for a Voigt strain ``delta`` (shear: engineering)."""
    a, b = dict(VOIGT)[component]
    e = np.zeros((3, 3))
    if a == b:
        e[a, a] = delta
    else:
        e[a, b] = e[b, a] = delta / 2.0
    return np.eye(3) + e


def _deform(state: State, F: np.ndarray) -> State:
    from common.arrays import array_module

    xp = array_module(state.positions)
    F = np.asarray(F)
    return state.replace(positions=state.positions @ xp.asarray(F), cell=state.cell @ F)  # the cell is on the host


def constants_from_stresses(stresses: dict, delta: float, scale: float, *, scheme: str = "central") -> dict:
    """C from {(component, multiple): stress [3, 3] in GPa} (the cell at strain ``multiple * delta``)
    by the finite-difference stencil of ``scheme`` (STENCILS); scale converts GPa to the output unit."""
    C = np.zeros((3, 3))
    for j, (cj, _) in enumerate(VOIGT):
        for i, (_, (a, b)) in enumerate(VOIGT):
            C[i, j] = sum(w * stresses[cj, m][a, b] for m, w in STENCILS[scheme]) / delta * scale
    return {"C11": C[0, 0], "C22": C[1, 1], "C12": 0.5 * (C[0, 1] + C[1, 0]), "C66": C[2, 2],
            "matrix": C.tolist()}


def _check(state: State, delta: float):
    if not (0 < delta < 0.05):
        raise MDSetupError(f"elastic strain delta={delta} must be between 0 and 0.05")
    if not (state.pbc[0] and state.pbc[1]):
        raise MDSetupError("elastic constants need a cell periodic in x and y")


def at_mean_cell(run, axes) -> State:
    """The final state of ``run`` (a :class:`~md_gpu.simulation.RunResult` of a barostatted
    equilibration) scaled affinely so that its cell lengths along ``axes`` are their means over the
    second half of the run's thermo rows.

    Why: under a barostat the cell fluctuates (a 256-atom Cu cell at 300 K: volume by ~0.4 %,
    ``sqrt(kT / (B V))``), and the cell of one instant is a pre-strain of that size; through the
    third-order constants (Cu: C111 ~ -1000 GPa) it moves C11 by a few GPa in each seed. The mean cell
    is the zero-stress cell at the temperature to the precision of the run."""
    state = run.md.state
    cell = state.cell
    scale = np.ones(3)
    for axis in axes:
        k = axis_index(axis)
        lengths = np.asarray(run.thermo[CELL_COLUMN[k]], dtype=float)
        scale[k] = float(lengths[lengths.size // 2:].mean()) / float(cell[k, k])
    return _deform(state, np.diag(scale))


def elastic_constants(ff, atoms_or_state, *, delta: float = 0.005, sample_steps: int = 2000,
                      settings: RunSettings | None = None, scheme: str = "central", checkpoints=None,
                      resume: bool = False, log=print) -> dict:
    """C11, C22, C12, C66 at ``settings.temperature_K`` (see module docstring); unit in ``"unit"``.

    ``scheme``: "central" (cells at +-delta), "tension" (cells at +delta and the unstrained one) or
    "tension2" (cells at 0, +delta, +2 delta; second order, see the module docstring).
    ``checkpoints``: path prefix of the runs' checkpoints (with ``settings.checkpoint_every``):
    ``<checkpoints>.equilibrate.ckpt.npz``, then one per strained cell, ``.<component><multiple>``
    (``.xx+1``, ``.xy-1``, ...; the unstrained cell ``.zero``); ``resume``: replay the finished runs and
    continue the interrupted one from them (:func:`~md_gpu.protocols.common.simulation`)."""
    if scheme not in SCHEMES:
        raise MDSetupError(f"elastic constants: scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    settings = settings or RunSettings()
    state = prepare_state(ff, atoms_or_state, settings)
    _check(state, delta)
    sheet = not state.pbc[2]
    stage = Stage("equilibrate", settings.equilibrate_steps, thermostat=settings.make_thermostat(),
                  barostat=barostat_for(ff, state, in_plane_axes(state), settings))
    equilibration = simulation(ff, state, settings, checkpoint=checkpoint_file(checkpoints, "equilibrate"),
                               resume=resume, log=log).run([stage])
    ref = at_mean_cell(equilibration, in_plane_axes(state))
    settle = max(settings.equilibrate_steps // 4, 1)

    def mean_stress(cell_state, part: str) -> np.ndarray:
        """Stress tensor (GPa) averaged over the sample stage after settling."""
        stages = [Stage("settle", settle, thermostat=settings.make_thermostat()),
                  Stage("sample", sample_steps, thermostat=settings.make_thermostat())]
        run = simulation(ff, cell_state, settings, checkpoint=checkpoint_file(checkpoints, part), resume=resume,
                         log=log).run(stages)
        rows = slice(run.stage_rows[1] + 1, None)
        cols = ("stress_xx_GPa", "stress_yy_GPa", "stress_zz_GPa", "stress_yz_GPa", "stress_xz_GPa",
                "stress_xy_GPa")
        v = [run.thermo[c][rows].mean() for c in cols]
        return np.array([[v[0], v[5], v[4]], [v[5], v[1], v[3]], [v[4], v[3], v[2]]])

    multiples = [m for m, _ in STENCILS[scheme]]
    unstrained = mean_stress(ref, "zero") if 0 in multiples else None  # run once: every component's zero cell
    stresses = {(c, m): unstrained if m == 0 else mean_stress(_deform(ref, _strain_matrix(c, m * delta)), f"{c}{m:+d}")
                for c, _ in VOIGT for m in multiples}
    height = float(ref.cell[2, 2])
    scale = height * GPA_A_TO_N_PER_M if sheet else 1.0
    out = constants_from_stresses(stresses, delta, scale, scheme=scheme)
    out.update(unit="N/m" if sheet else "GPa", temperature_K=settings.temperature_K, delta=delta,
               n_atoms=state.n_atoms, scheme=scheme)
    return out


def _relaxed(ff, atoms, *, fmax: float, relax_cell: bool = True):
    """A copy of ``atoms`` (ase.Atoms or State) with ``ff``'s calculator, relaxed at 0 K (ASE BFGS): positions
    and, with ``relax_cell``, the periodic cell (a sheet's in-plane components) to zero stress."""
    from common.cell_filter import frechet_cell_filter
    from ase.optimize import BFGS

    from ..calculator import MDCalculator

    atoms = to_atoms(atoms) if isinstance(atoms, State) else atoms.copy()
    sheet = not atoms.pbc[2]
    atoms.calc = MDCalculator(ff)
    if relax_cell:
        mask = [True, True, not sheet, False, False, True] if sheet else [True] * 6
        BFGS(frechet_cell_filter(atoms, mask=mask), logfile=None).run(fmax=fmax, steps=500)
    return atoms


RIPPLE_A = 0.05  # amplitude (Å) of the ripple whose energy curvature decides buckling


def ripple_curvatures(ff, atoms, strain: float, *, fmax: float = 1e-3) -> dict:
    """``{"x": c, "y": c}``: 0 K energy curvature ``d^2E/da^2`` (meV/Å^2 per atom) of the sheet's longest
    out-of-plane ripple along each in-plane axis, ``z_i += a sin(2 pi s_i)`` (``s_i`` the fractional
    coordinate along the axis), in the cell compressed by ``strain`` along that axis (positions scaled
    affinely, then held); central difference at ``a = RIPPLE_A``. Negative: the compressed sheet buckles.
    ``atoms`` is first relaxed at 0 K to zero in-plane stress (``fmax`` eV/Å)."""
    from ..calculator import MDCalculator

    relaxed = _relaxed(ff, atoms, fmax=fmax)
    out = {}
    for k, axis in enumerate("xy"):
        cell = relaxed.copy()
        cell.set_cell(relaxed.cell.array @ np.diag([1.0 - strain if j == k else 1.0 for j in range(3)]),
                      scale_atoms=True)
        cell.calc = MDCalculator(ff)
        mode = np.sin(2.0 * np.pi * cell.get_scaled_positions(wrap=False)[:, k])
        z = cell.positions[:, 2].copy()
        energies = []
        for a in (-RIPPLE_A, 0.0, RIPPLE_A):
            cell.positions[:, 2] = z + a * mode
            energies.append(cell.get_potential_energy())
        out[axis] = float((energies[0] + energies[2] - 2.0 * energies[1]) / RIPPLE_A ** 2 / len(cell) * 1000.0)
    return out


def choose_scheme(ff, atoms, delta: float, *, low_temperature: bool) -> tuple[str, dict]:
    """``(scheme, why)`` for :func:`elastic_constants` on ``atoms`` (module docstring): "central" for a bulk
    cell and for a sheet whose :func:`ripple_curvatures` at a compression of ``delta`` are positive along x
    and y; otherwise a one-sided scheme without a compressed cell, "tension2" at low temperature (small
    noise: no first-order strain bias) and "tension" at temperature, as the stripe cells are measured
    (:mod:`md_gpu.heterostructure`). ``why``: ``{"ripple_curvature_meV_per_A2_per_atom": {...}}`` for a
    sheet, ``{}`` for a bulk cell."""
    if atoms.pbc[2]:
        return "central", {}
    curvatures = ripple_curvatures(ff, atoms, delta)
    why = {"ripple_curvature_meV_per_A2_per_atom": curvatures}
    if min(curvatures.values()) > 0.0:
        return "central", why
    return ("tension2" if low_temperature else "tension"), why


def static_elastic_constants(ff, atoms, *, delta: float = 0.005, fmax: float = 1e-5, relax_cell: bool = True) -> dict:
    """C11, C22, C12, C66 at 0 K by finite differences with relaxed positions (ASE FIRE/BFGS)."""
    from ase.optimize import BFGS

    from ..calculator import MDCalculator
    from ..state import from_atoms

    atoms = to_atoms(atoms) if isinstance(atoms, State) else atoms.copy()
    _check(from_atoms(atoms, species=ff.species), delta)
    sheet = not atoms.pbc[2]
    atoms = _relaxed(ff, atoms, fmax=fmax, relax_cell=relax_cell)
    stresses = {}
    for component, _ in VOIGT:
        for sign in (1, -1):
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ _strain_matrix(component, sign * delta), scale_atoms=True)
            strained.calc = MDCalculator(ff)
            BFGS(strained, logfile=None).run(fmax=fmax, steps=500)
            v = strained.get_stress(voigt=False) * EV_PER_A3_TO_GPA
            stresses[component, sign] = v
    scale = atoms.cell[2, 2] * GPA_A_TO_N_PER_M if sheet else 1.0
    out = constants_from_stresses(stresses, delta, scale)
    out.update(unit="N/m" if sheet else "GPa", temperature_K=0.0, delta=delta, n_atoms=len(atoms))
    return out
