"""NEP (training.nep: nep_file, model; md_gpu.forcefields.nep): nep.txt round trip and errors, derivatives by finite
differences, invariances, per-atom virials, an NVE run. Exactness against GPUMD's NEP_CPU is in
tests/test_nep_peer.py. All with random-parameter models (seeded): the checks are of the maths, not
of a fitted potential."""

import numpy as np
import pytest
from ase.build import bulk, graphene

from md_gpu.errors import MDSetupError
from md_gpu.forcefields import compute_forces
from md_gpu.forcefields.loading import load_forcefield
from md_gpu.forcefields.nep import NEPCalculator, NEPForceField
from md_gpu.integrators import make_force_fn, velocity_verlet
from md_gpu.neighbors import NeighborList
from md_gpu.state import from_atoms, kinetic_energy, maxwell_boltzmann
from training.nep import NEPFileError, harmonic_tables, random_nep, read_nep, write_nep

MODELS = {
    "nep4": dict(species=("C", "B"), version=4),
    "nep3": dict(species=("C", "B"), version=3, l_max=(2, 0, 0)),
    "nep4_zbl_3types": dict(species=("C", "B", "N"), version=4, zbl=(0.9, 1.6)),
    "nep3_typewise": dict(species=("C", "B"), version=3, typewise_rc=[[4.0, 3.5], [4.6, 3.2]]),
    "nep4_radial_only": dict(species=("C", "B"), version=4, l_max=(0, 0, 0)),
    "nep4_zbl_typewise": dict(species=("C", "B"), version=4, zbl=(0.9, 1.6), zbl_factor=0.65),
}


def _model(name, seed=1):
    kw = dict(MODELS[name])
    return random_nep(kw.pop("species"), seed=seed, rc=(4.2, 3.7), **kw)


def _flexible_zbl(seed=2):
    m = random_nep(("C", "B"), version=4, seed=seed, rc=(4.2, 3.7), zbl=(0.0, 0.0))
    rng = np.random.default_rng(seed)
    para = np.zeros((3, 10))
    para[:, 0], para[:, 1] = 0.7, 1.5  # r_inner, r_outer of each type pair
    para[:, 2::2] = rng.uniform(0.05, 0.5, (3, 4))  # screening amplitudes
    para[:, 3::2] = rng.uniform(0.2, 3.0, (3, 4))  # screening exponents
    m.zbl_flexible = para
    return m


def _structure(species, kind="triclinic", seed=3):
    rng = np.random.default_rng(seed)
    if kind == "sheet":
        atoms = graphene(a=2.46, vacuum=6.0).repeat((2, 2, 1))
        atoms.pbc = (True, True, False)
    else:
        atoms = bulk("C", "diamond", a=3.57)
        atoms.set_cell(atoms.cell @ np.array([[1.0, 0.06, 0.02], [0.0, 1.0, 0.08], [0.0, 0.0, 1.04]]), scale_atoms=True)
    atoms.symbols = [species[k] for k in rng.integers(0, len(species), len(atoms))]
    atoms.rattle(0.1, seed=seed)
    return atoms


# ----------------------------------------------------------------------------- file
@pytest.mark.parametrize("name", [*MODELS, "flexible_zbl"])
def test_file_round_trip(tmp_path, name):
    model = _flexible_zbl() if name == "flexible_zbl" else _model(name)
    first = write_nep(model, tmp_path / "a.txt").read_text()
    again = read_nep(tmp_path / "a.txt")
    second = write_nep(again, tmp_path / "b.txt").read_text()
    assert first == second
    assert again.species == model.species and again.version == model.version
    for key in ("w0", "b0", "w1", "c_radial", "c_angular", "q_scaler", "rc_radial", "rc_angular"):
        np.testing.assert_array_equal(getattr(again, key), getattr(model, key))
    assert again.b1 == model.b1 and again.zbl == model.zbl


def test_older_cutoff_line_without_neighbour_counts(tmp_path):
    path = _edit(tmp_path, _model("nep4"), lambda ls: [ls[0], "cutoff 4.2 3.7"] + ls[2:])
    model = read_nep(path)
    assert model.max_neighbors is None and model.rc_max == 4.2
    assert write_nep(model, tmp_path / "again.txt").read_text() == path.read_text()


def test_header_and_parameter_count(tmp_path):
    """The first lines are GPUMD's header; the count of values follows its formula."""
    model = random_nep(("C", "H"), version=4, n_max=(4, 3), basis_size=(8, 6), l_max=(4, 2, 1), neurons=7)
    lines = write_nep(model, tmp_path / "nep.txt").read_text().splitlines()
    assert lines[:6] == ["nep4 2 C H", "cutoff 5 4 1000 1000", "n_max 4 3", "basis_size 8 6", "l_max 4 2 1",
                         "ANN 7 0"]
    dim = 5 + 4 * (4 + 1 + 1)
    assert len(lines) - 6 == (dim + 2) * 7 * 2 + 1 + 4 * (5 * 9 + 4 * 7) + dim


def _edit(tmp_path, model, edit):
    path = write_nep(model, tmp_path / "nep.txt")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


BAD = {
    "dipole model": (lambda ls: ["nep4_dipole 2 C B"] + ls[1:], r"line 1: 'nep4_dipole' is a dipole model"),
    "charge model": (lambda ls: ["nep4_charge1 2 C B"] + ls[1:], r"line 1: 'nep4_charge1' is a charge model"),
    "NEP5": (lambda ls: ["nep5 2 C B"] + ls[1:], r"line 1: unsupported NEP model 'nep5'"),
    "species count": (lambda ls: ["nep4 2 C"] + ls[1:], r"line 1: .*needs 2 element symbols, got 1"),
    "element": (lambda ls: ["nep4 2 C Qq"] + ls[1:], r"line 1: 'Qq' is not an element symbol"),
    "keyword": (lambda ls: ls[:2] + ["nmax 4 4"] + ls[3:], r"line 3: expected the 'n_max' line .* got 'nmax'"),
    "cutoff values": (lambda ls: ["nep4 2 C B", "cutoff 4.2 3.7 1000"] + ls[2:],
                      r"line 2: 'cutoff' takes 2 or 4 or 6 values .* got 3"),
    "cutoff order": (lambda ls: ["nep4 2 C B", "cutoff 3 4 1000 1000"] + ls[2:],
                     r"line 2: the cutoffs must satisfy 0 < rc_angular <= rc_radial"),
    "second layer": (lambda ls: ls[:5] + ["ANN 10 5"] + ls[6:], r"line 6: a second hidden layer is not supported"),
    "higher-order l_max": (lambda ls: ls[:4] + ["l_max 4 2 1 1"] + ls[5:],
                           r"line 5: the higher-order terms .* not supported"),
    "missing parameter": (lambda ls: ls[:-1], r"end of file: the header describes \d+ values .* wrong parameter count"),
    "extra parameter": (lambda ls: ls + ["0.5"], r"line \d+: the header describes .*wrong parameter count \(first surplus value here"),
    "not a number": (lambda ls: ls[:6] + ["abc"] + ls[7:], r"line 7: cannot read ANN parameter 'abc' as a number"),
    "ZBL factor": (lambda ls: ["nep4_zbl 2 C B", "zbl 1 2 -0.7"] + ls[1:],
                   r"line 2: the typewise ZBL factor must be > 0"),
    "ZBL order": (lambda ls: ["nep4_zbl 2 C B", "zbl 2 1"] + ls[1:], r"line 2: the ZBL cutoffs must satisfy"),
}


@pytest.mark.parametrize("case", BAD)
def test_malformed_files_name_the_line(tmp_path, case):
    edit, message = BAD[case]
    path = _edit(tmp_path, random_nep(("C", "B"), version=4, seed=0, neurons=10), edit)
    with pytest.raises(NEPFileError, match=message) as err:
        read_nep(path)
    assert str(path) in str(err.value)


def test_missing_file_and_wrong_species(tmp_path):
    with pytest.raises(NEPFileError, match="does not exist"):
        read_nep(tmp_path / "missing.txt")
    path = write_nep(_model("nep4"), tmp_path / "nep.txt")
    # md_gpu reports a file error as its setup error, with the reader's message unchanged
    (tmp_path / "broken").mkdir()
    broken = _edit(tmp_path / "broken", _model("nep4"), BAD["second layer"][0])
    with pytest.raises(NEPFileError) as file_error:
        read_nep(broken)
    with pytest.raises(MDSetupError) as setup_error:
        NEPForceField.read(broken)
    assert not isinstance(file_error.value, MDSetupError) and str(setup_error.value) == str(file_error.value)
    with pytest.raises(MDSetupError, match="is a NEP for C, B"):
        NEPForceField.read(path, species=("B", "C"))


def test_load_forcefield_by_suffix(tmp_path):
    path = write_nep(_model("nep4"), tmp_path / "nep.txt")
    ff = load_forcefield(path)
    assert isinstance(ff, NEPForceField) and ff.species == ("C", "B") and ff.cutoff == 4.2


def test_harmonic_tables_are_gpumds():
    """Z_lm = d^m P_l/dz^m with coprime integer coefficients; C_lm the q_l weights of NEP_CPU (C3B)."""
    z, m, part, ell, weight = harmonic_tables(4)
    assert z.shape == (24, 5)
    np.testing.assert_array_equal(z[3], [-1, 0, 3, 0, 0])  # l=2, m=0: 3z^2 - 1
    np.testing.assert_array_equal(z[15], [3, 0, -30, 0, 35])  # l=4, m=0: 35z^4 - 30z^2 + 3
    np.testing.assert_allclose(weight[[0, 1, 3, 4, 6, 15]],
                               [0.238732414637843, 2 * 0.119366207318922, 0.099471839432435,
                                2 * 0.596831036594608, 2 * 0.149207759148652, 0.011190581936149], rtol=1e-13)


# ----------------------------------------------------------------------------- derivatives
def _energy(calc, atoms):
    atoms.calc = calc
    return atoms.get_potential_energy()


@pytest.mark.parametrize("name", [*MODELS, "flexible_zbl"])
def test_forces_are_minus_the_energy_gradient(name):
    model = _flexible_zbl() if name == "flexible_zbl" else _model(name)
    calc = NEPCalculator(model)
    atoms = _structure(model.species)
    atoms.calc = calc
    forces = atoms.get_forces()
    h = 1e-5
    fd = np.zeros_like(forces)
    for a in range(len(atoms)):
        for c in range(3):
            x = atoms.positions.copy()
            energies = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[a, c] = x[a, c] + sign * h
                energies.append(_energy(calc, moved))
            fd[a, c] = -(energies[0] - energies[1]) / (2 * h)
    assert np.abs(forces).max() > 0.05  # the check is not empty
    np.testing.assert_allclose(forces, fd, atol=2e-8)


@pytest.mark.parametrize("name", ["nep4_zbl_3types", "nep3_typewise"])
@pytest.mark.parametrize("kind", ["triclinic", "sheet"])
def test_stress_is_the_strain_derivative(name, kind):
    model = _model(name)
    calc = NEPCalculator(model)
    atoms = _structure(model.species, kind)
    atoms.calc = calc
    stress = atoms.get_stress(voigt=False)
    volume, cell = atoms.get_volume(), atoms.cell.array.copy()
    h = 1e-6
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1, -1):
                strained = atoms.copy()
                eps = np.eye(3)
                eps[a, b] += sign * h
                strained.set_cell(cell @ eps, scale_atoms=True)
                energies.append(_energy(calc, strained))
            fd[a, b] = (energies[0] - energies[1]) / (2 * h) / volume
    np.testing.assert_allclose(stress, fd, atol=1e-8)
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)  # rotation invariance


@pytest.mark.parametrize("name", [*MODELS])
def test_per_atom_virials_sum_to_the_virial(name):
    model = _model(name)
    ff = NEPForceField(model)
    atoms = _structure(model.species).repeat((2, 1, 1))
    state = from_atoms(atoms, species=ff.species)
    nl = NeighborList(ff.cutoff, 0.0, state.pbc)
    nl.build(state.positions, state.cell)
    res = compute_forces(ff, state.positions, state.cell, state.types, nl, per_atom=True)
    np.testing.assert_allclose(res.virials.sum(0), res.virial, atol=1e-12)
    np.testing.assert_allclose(res.energies.sum(), res.energy, atol=1e-12)
    assert np.abs(res.virials - res.virials.sum(0) / len(atoms)).max() > 1e-3  # not a trivial split


def test_translation_and_rotation_invariance():
    model = _model("nep4_zbl_3types")
    atoms = _structure(model.species)
    atoms.calc = NEPCalculator(model)
    e0, f0, s0 = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)
    moved = atoms.copy()
    moved.positions += [0.3, -1.7, 2.9]
    moved.calc = NEPCalculator(model)
    assert moved.get_potential_energy() == pytest.approx(e0, abs=1e-10)
    np.testing.assert_allclose(moved.get_forces(), f0, atol=1e-10)
    rot = np.linalg.qr(np.random.default_rng(7).normal(size=(3, 3)))[0]
    rot *= np.sign(np.linalg.det(rot))
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    turned.positions = atoms.positions @ rot.T
    turned.calc = NEPCalculator(model)
    assert turned.get_potential_energy() == pytest.approx(e0, abs=1e-10)
    np.testing.assert_allclose(turned.get_forces(), f0 @ rot.T, atol=1e-10)
    np.testing.assert_allclose(turned.get_stress(voigt=False), rot @ s0 @ rot.T, atol=1e-12)


# ----------------------------------------------------------------------------- NVE
def test_nve_energy_error_is_second_order_in_the_time_step():
    """Velocity Verlet with a smooth (C1 at every cut-off) force field conserves a shadow energy
    within O(dt^2) without secular drift. A random NEP heats 16 atoms from 300 K to ~1800 K in
    100 fs (it is not at a minimum): a demanding case. Halving dt must divide the fluctuation of
    the total energy by ~4 (checked 3..5.5) and leave it below 2e-4 eV/atom at 0.5 fs, 0.1 % of
    the ~0.23 eV/atom kinetic energy; the fitted drift must stay below the fluctuation per ps."""
    ff = NEPForceField(random_nep(("C", "B"), version=4, seed=3, rc=(4.2, 3.7), zbl=(0.8, 1.4)))
    atoms = bulk("C", "diamond", a=3.57, cubic=True).repeat((2, 1, 1))
    atoms.symbols[::3] = "B"
    start = maxwell_boltzmann(from_atoms(atoms, species=ff.species), 300.0, seed=1)
    spread = {}
    for dt in (1.0, 0.5):
        init, step = velocity_verlet(make_force_fn(ff, NeighborList(ff.cutoff, 0.8, start.pbc)), dt)
        md = init(start, seed=1)
        energies = []
        for _ in range(int(round(100 / dt))):
            md = step(md)
            energies.append(md.result.energy + kinetic_energy(md.state))
        energies = np.array(energies) / len(atoms)
        spread[dt] = energies.std()
        slope = np.polyfit(np.arange(len(energies)) * dt * 1e-3, energies, 1)[0]  # eV/atom/ps
    assert spread[0.5] < 2e-4
    assert 3.0 < spread[1.0] / spread[0.5] < 5.5
    assert abs(slope) * 0.1 < spread[0.5] * 10  # drift over the 0.1 ps run within the noise band


# ----------------------------------------------------------------------------- heat current
def test_per_atom_virials_give_the_many_body_heat_current():
    """J_pot = sum_i W_i . v_i (md_gpu.protocols.thermal_current) equals
    d/dt sum_a r_a U_a - sum_a v_a U_a + sum_a r_a (F_a . v_a) along r + v t, for a NEP flake off the origin."""
    from ase import Atoms

    from md_gpu.protocols import heat_current
    from md_gpu.units import FS

    ff = NEPForceField(_model("nep4_zbl_3types"))
    sheet = _structure(ff.species, "sheet", seed=5)
    atoms = Atoms(sheet.get_chemical_symbols(), positions=sheet.positions + [7.0, -3.0, 11.0], cell=[30, 30, 30],
                  pbc=False)
    state = maxwell_boltzmann(from_atoms(atoms, species=ff.species), 600.0, seed=1)
    v = state.velocities

    def evaluate(s):
        nl = NeighborList(ff.cutoff, 0.0, s.pbc)
        nl.build(s.positions, s.cell)
        return compute_forces(ff, s.positions, s.cell, s.types, nl, per_atom=True)

    res = evaluate(state)
    h = 1e-3 * FS

    def r_u(t):
        moved = state.replace(positions=state.positions + t * v)
        return (moved.positions * evaluate(moved).energies[:, None]).sum(0)

    expected = ((r_u(h) - r_u(-h)) / (2 * h) - (v * res.energies[:, None]).sum(0)
                + (state.positions * (res.forces * v).sum(1)[:, None]).sum(0)) * FS
    kinetic = 0.5 * state.masses * (v * v).sum(1)
    j_pot = heat_current(state, res) - ((kinetic + res.energies)[:, None] * v).sum(0) * FS
    np.testing.assert_allclose(j_pot, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


def test_a_batch_of_two_systems_equals_each_alone_and_inputs_are_untouched():
    """The conformance check of every model: disjoint pair lists evaluate independently."""
    ff = NEPForceField(_model("nep4_zbl_3types"))
    parts = []
    for kind, seed in (("triclinic", 3), ("sheet", 4)):
        state = from_atoms(_structure(ff.species, kind, seed), species=ff.species)
        nl = NeighborList(ff.cutoff, 0.0, state.pbc)
        nl.build(state.positions, state.cell)
        d = nl.pair_vectors(state.positions, state.cell)
        inside = (d * d).sum(1) < ff.cutoff ** 2
        parts.append((state.types, nl.i[inside], nl.j[inside], d[inside]))
    alone = [ff.evaluate(*p, xp=np) for p in parts]
    n0 = parts[0][0].shape[0]
    batch = (np.concatenate([parts[0][0], parts[1][0]]), np.concatenate([parts[0][1], parts[1][1] + n0]),
             np.concatenate([parts[0][2], parts[1][2] + n0]), np.concatenate([parts[0][3], parts[1][3]]))
    copies = [a.copy() for a in batch]
    energies, de_dd = ff.evaluate(*batch, xp=np)
    for a, b in zip(batch, copies):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(energies, np.concatenate([alone[0][0], alone[1][0]]), atol=1e-12)
    np.testing.assert_allclose(de_dd, np.concatenate([alone[0][1], alone[1][1]]), atol=1e-12)
    assert energies.shape == (batch[0].shape[0],) and de_dd.shape == batch[3].shape
