"""Device-to-host reads of the MD step, counted on the CPU through the hook ``md_gpu.backend.to_host``.

On NumPy every call of the hook is counted as it would be on CuPy, so these tests state the number of
synchronising reads that a GPU run of the same code makes per step: one (the neighbour-list check fused
with the count of pairs inside the cut-off) for NVE, Bussi, Langevin and deformation; two with a
barostat (its stress and noise in one transfer); one per thermo row; one more per list rebuild (none on
NumPy where the compiled cell list and Verlet filter load: that path counts the pairs without a read);
nothing more with the compiled MTP kernel once its first call was checked.
"""
import numpy as np
import pytest

from md_gpu.backend import SYNCS, host_scalar, to_host
from md_gpu.cell_control import Deform, LoadingBarostat
from md_gpu.errors import MDRunError
from md_gpu.integrators import Bussi, Langevin, make_force_fn, velocity_verlet
from md_gpu.neighbors import NeighborList, brute_force_pairs, compact_indices, scatter_compact
from md_gpu.simulation import Simulation, Stage
from md_gpu.state import State, from_atoms, maxwell_boltzmann
from tests.morse_cells import FF, QUIET, cu

STEPS = 30


def builder_reads() -> int:
    """Host reads of the builder in one rebuild of a periodic cell: none in the compiled cell list, the array
    cell list's two (bin occupancy, pair counts) where the compiled one is not available (no compiler, or
    ``MULTISCALE_CPU_KERNELS=numpy``): that is the builder of a CuPy run."""
    from training.mtp.cell_list import cell_list_pairs

    atoms = cu(1)
    compiled = cell_list_pairs(atoms.positions, atoms.cell.array, (True, True, True), 3.0, vectors=False)
    return 0 if compiled is not None else 2


def reads_per_build() -> int:
    """Host reads of one exact rebuild in the MD step: the builder's and the count of the pairs inside the
    cut-off of the new list (none where the compiled filter, which loads with the compiled cell list,
    counts them: ``md_gpu.verlet_filter``)."""
    return builder_reads() + (0 if builder_reads() == 0 else 1)


def start(T=600.0, n=2):
    return maxwell_boltzmann(from_atoms(cu(n)), T, seed=4)


def pull_modifiers(state):
    L0 = float(state.cell[0, 0])
    return [Deform("x", 5e10, L0_A=L0, t0_fs=0.0),
            LoadingBarostat(("y", "z"), moduli_GPa=(100.0, 100.0), poisson=(0.4, 0.4), axial="x",
                            strain_rate_per_s=5e10, L0_A=L0, temperature_K=300.0)]


def count_steps(thermostat=None, modifiers=(), state=None, dt_fs=2.0, ff=FF):
    """(syncs, builds) of STEPS steps after the first force call."""
    state = state or start()
    nl = NeighborList(ff.cutoff, 0.2, state.pbc)
    force_fn = make_force_fn(ff, nl)
    init, step = velocity_verlet(force_fn, dt_fs, thermostat=thermostat, modifiers=modifiers)
    md = init(state, seed=1)
    builds = nl.n_builds
    SYNCS.reset()
    for _ in range(STEPS):
        md = step(md)
    return SYNCS.reset(), nl.n_builds - builds


@pytest.mark.parametrize("name, thermostat, per_step", [
    ("nve", None, 1), ("bussi", Bussi(300.0, 50.0), 1), ("langevin", Langevin(300.0, 100.0), 1)])
def test_one_read_per_step_plus_one_per_rebuild(name, thermostat, per_step):
    syncs, builds = count_steps(thermostat)
    assert builds >= 1  # a 0.2 Å skin rebuilds: the rebuild branch is counted too
    assert syncs == per_step * STEPS + builds * reads_per_build()


def test_a_checked_kernel_reads_nothing_per_force_call():
    """The compiled MTP (and NEP) kernels' launcher reads the host only at its first call (its self-check on
    the run's configuration and on the species probe): a step with the MTP reads the host as often as a
    step with a pair potential."""
    from pathlib import Path

    from md_gpu.forcefields.mtp import MTPForceField

    mtp = MTPForceField.read(Path(__file__).parent / "data" / "md" / "cu_pot_10.mtp", species=("Cu",))
    syncs, builds = count_steps(ff=mtp)
    assert syncs == STEPS + builds * reads_per_build()


def test_deformation_reads_nothing_and_the_loading_barostat_one_transfer():
    state = start()
    syncs, builds = count_steps(Bussi(300.0, 50.0), pull_modifiers(state)[:1], state)
    assert syncs == STEPS + builds * reads_per_build()
    syncs, builds = count_steps(Bussi(300.0, 50.0), pull_modifiers(state), state)
    assert syncs == 2 * STEPS + builds * reads_per_build()


def test_simulation_run_adds_one_read_per_thermo_row():
    state = start()
    L0 = float(state.cell[0, 0])
    barostat = pull_modifiers(state)[1]
    stages = [Stage("nvt", 20, thermostat=Bussi(300.0, 50.0)),
              Stage("pull", 20, thermostat=Bussi(300.0, 50.0), deform_axis="x", strain_rate_per_s=5e10,
                    barostat=barostat)]
    assert barostat.L0_A == L0
    sim = Simulation(FF, state, dt_fs=2.0, skin_A=0.5, thermo_every=5, seed=2, **QUIET)
    SYNCS.reset()
    result = sim.run(stages)
    rows = len(result.thermo["step"])
    assert rows == 2 * (1 + 4)
    # the reads of each build (the first force call's included), 20 + 2 x 20 step reads, one per row
    assert SYNCS.reset() == sim.nlist.n_builds * reads_per_build() + 20 + 2 * 20 + rows


def test_the_fused_check_never_misses_a_pair_under_deformation_and_barostat():
    """Every step, the pairs handed to the force field are exactly those within the cut-off (brute force)."""
    state = start(900.0)
    nl = NeighborList(FF.cutoff, 0.3, state.pbc)
    seen = []

    def spy(types, i, j, d, *, xp=np):
        seen.append((i.copy(), d.copy()))
        return FF.evaluate(types, i, j, d, xp=xp)

    spy_ff = type("Spy", (), {"species": FF.species, "cutoff": FF.cutoff, "evaluate": staticmethod(spy)})()
    init, step = velocity_verlet(make_force_fn(spy_ff, nl), 2.0, thermostat=Bussi(900.0, 20.0),
                                 modifiers=pull_modifiers(state))
    md = init(state, seed=5)
    for _ in range(25):
        md = step(md)
        s = md.state
        expected = len(brute_force_pairs(s.positions, s.cell, s.pbc, FF.cutoff))
        i, d = seen[-1]
        assert len(i) == expected and np.all((d * d).sum(1) < FF.cutoff ** 2)
    assert nl.n_builds >= 2


def test_non_finite_positions_stop_with_a_clear_error():
    state = start()
    nl = NeighborList(FF.cutoff, 0.5, state.pbc)
    force_fn = make_force_fn(FF, nl)
    force_fn(state)
    broken = state.positions.copy()
    broken[3, 0] = np.nan
    with pytest.raises(MDRunError, match="positions are not finite: the system blew up"):
        force_fn(state.replace(positions=broken))


def test_scatter_compaction_is_flatnonzero():
    rng = np.random.default_rng(0)
    for p in (0, 1, 7, 1000):
        mask = rng.random(p) < 0.3
        count = int(mask.sum())
        assert np.array_equal(scatter_compact(mask, count, np), np.flatnonzero(mask))
        assert np.array_equal(compact_indices(mask, count), np.flatnonzero(mask))


def test_to_host_counts_one_read_for_several_arrays():
    SYNCS.reset()
    a, b, c = to_host(np.eye(3), np.int64(7), 2.5)
    assert SYNCS.count == 1 and a.shape == (3, 3) and int(b) == 7 and float(c) == 2.5
    assert host_scalar(np.float64(1.5)) == 1.5 and SYNCS.reset() == 2


def test_bussi_leaves_a_state_at_rest_at_rest():
    state = from_atoms(cu(2))  # zero velocities: the rescaling factor is undefined, the O step does nothing
    init, _ = velocity_verlet(make_force_fn(FF, NeighborList(FF.cutoff, 0.5, state.pbc)), 1.0)
    md = Bussi(300.0, 50.0).end(init(state, seed=0), 1.0)
    assert np.array_equal(md.state.velocities, state.velocities) and float(md.heat) == 0.0
    moving = maxwell_boltzmann(state, 30.0, seed=1)
    assert float(Bussi(300.0, 50.0).end(init(moving, seed=0), 1.0).heat) < 0  # heated towards 300 K


def test_the_cell_is_a_host_array():
    s = from_atoms(cu(1))
    assert type(s.cell) is np.ndarray and s.cell.dtype == np.float64
    assert type(State(s.positions, s.velocities, s.masses, s.types, [[1, 0, 0], [0, 1, 0], [0, 0, 1]], s.pbc,
                      s.species).cell) is np.ndarray


@pytest.mark.parametrize("sheet", [False, True])
def test_the_array_cell_list_reads_the_host_twice_plus_once_for_open_axes(sheet):
    """The array builder (the CuPy path): one read for the bin occupancy, one for the pair counts of all
    bin offsets together (27 offsets in 3D, one transfer), one more for the
    atoms' extent along the open axes of a sheet; the same pairs as the brute-force reference."""
    from ase import Atoms

    from md_gpu.neighbors import array_build_pairs

    atoms = cu(3)
    atoms.positions += np.random.default_rng(3).normal(0, 0.1, atoms.positions.shape)
    if sheet:
        atoms = Atoms(atoms[atoms.positions[:, 2] < 4.0], cell=atoms.cell.array + np.diag([0, 0, 12.0]),
                      pbc=[True, True, False])
    before = SYNCS.count
    i, j, shifts = array_build_pairs(atoms.positions, atoms.cell.array, tuple(atoms.pbc), FF.cutoff)
    assert SYNCS.count - before == (3 if sheet else 2)
    found = {(int(a), int(b), tuple(int(round(v)) for v in s)) for a, b, s in zip(i, j, shifts)}
    assert found == brute_force_pairs(atoms.positions, atoms.cell.array, tuple(atoms.pbc), FF.cutoff)
    assert len(found) == len(i)  # no pair twice
