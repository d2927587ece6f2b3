"""Deferred neighbour-list checks (``Simulation(neighbor_check_every=N)``, md_gpu.neighbors "deferred checks").

The force fields give the pairs beyond their cut-off nothing (the whole Verlet list is handed over);
a deferred run equals the exact run; a list that goes stale between two checks is caught and the
steps replayed, so every step's forces saw every pair inside the cut-off; the host reads fall from one
per step to one per check.
"""
from pathlib import Path

import numpy as np
import pytest

from md_gpu.backend import SYNCS
from md_gpu.errors import MDRunError, MDSetupError
from md_gpu.forcefields import LennardJones
from md_gpu.integrators import Bussi, Langevin
from md_gpu.neighbors import NeighborList, brute_force_pairs
from md_gpu.simulation import Simulation, Stage
from md_gpu.state import from_atoms, maxwell_boltzmann
from tests.morse_cells import FF, QUIET, cu
from tests.test_md_syncs import builder_reads, pull_modifiers, reads_per_build

DATA = Path(__file__).parent / "data" / "md"


def far_pairs(ff, state, skin=1.0):
    """The list within cut-off + skin of a rattled ``state`` and which of its pairs lie inside the cut-off."""
    nl = NeighborList(ff.cutoff, skin, state.pbc)
    nl.build(state.positions, state.cell)
    d = nl.pair_vectors(state.positions, state.cell)
    inside = (d * d).sum(1) < ff.cutoff ** 2
    assert 0 < inside.sum() < inside.size  # both kinds present
    return nl.i, nl.j, d, inside


def force_fields():
    from md_gpu.forcefields.mtp import MTPForceField
    from md_gpu.forcefields.nep import NEPForceField
    from training.nep import random_nep

    mtp = MTPForceField.read(DATA / "cu_pot_10.mtp", species=("Cu",))
    nep = NEPForceField(random_nep(("Cu",), seed=3, rc=(4.2, 3.7)))
    return {"morse": (FF, FF.evaluate),
            "lennard-jones": (LennardJones(("Cu",), epsilon=0.4, sigma=2.3, cutoff=5.0), None),
            "mtp compiled": (mtp, mtp.evaluate),
            "mtp array": (mtp, lambda t, i, j, d, xp=np: mtp.mtp.evaluate(t, i, j, d, xp=np)),
            "nep compiled": (nep, nep.evaluate),
            "nep array": (nep, lambda t, i, j, d, xp=np: nep.nep.evaluate(t, i, j, d, xp=np))}


@pytest.mark.parametrize("name", ["morse", "lennard-jones", "mtp compiled", "mtp array", "nep compiled",
                                  "nep array"])
def test_pairs_beyond_the_cutoff_give_nothing(name):
    ff, evaluate = force_fields()[name]
    evaluate = evaluate or ff.evaluate
    atoms = cu(2)
    atoms.rattle(0.1, seed=1)
    state = from_atoms(atoms, species=ff.species)
    i, j, d, inside = far_pairs(ff, state)
    e_all, g_all = evaluate(state.types, i, j, d, xp=np)
    e_in, g_in = evaluate(state.types, i[inside], j[inside], d[inside], xp=np)
    np.testing.assert_allclose(e_all, e_in, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(g_all[inside], g_in, rtol=1e-12, atol=1e-12)
    assert np.all(g_all[~inside] == 0.0)
    assert np.abs(g_in).max() > 1e-3  # a real force field, not zeros


def nvt(check_every, skin=1.0, steps=120, thermostat=None, n=2, T=900.0, padded=None, **kwargs):
    state = maxwell_boltzmann(from_atoms(cu(n)), T, seed=4)
    sim = Simulation(FF, state, dt_fs=2.0, skin_A=skin, thermo_every=20, seed=3,
                     neighbor_check_every=check_every, **QUIET, **kwargs)
    sim.nlist.padded = padded
    stage = Stage("nvt", steps, thermostat=thermostat if thermostat is not None else Bussi(900.0, 50.0))
    return sim, sim.run([stage])


@pytest.mark.parametrize("thermostat", [Bussi(900.0, 50.0), Langevin(900.0, 100.0)])
def test_a_deferred_run_is_the_exact_run(thermostat):
    exact_sim, exact = nvt(1, skin=0.5, thermostat=thermostat)
    sim, run = nvt(10, skin=0.5, thermostat=thermostat)
    assert exact_sim.nlist.n_builds >= 2 and sim.n_replays == 0
    assert sim.nlist.n_builds <= 2 * exact_sim.nlist.n_builds  # rebuilt at the check before the list would go stale
    np.testing.assert_allclose(run.md.state.positions, exact.md.state.positions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(run.thermo["potential_eV"], exact.thermo["potential_eV"], rtol=1e-11)


def spy_force_field(seen):
    def spy(types, i, j, d, *, xp=np):
        seen.append((i.copy(), j.copy(), d.copy()))
        return FF.evaluate(types, i, j, d, xp=xp)

    return type("Spy", (), {"species": FF.species, "cutoff": FF.cutoff, "evaluate": staticmethod(spy)})()


def pairs_inside(i, j, d, cutoff):
    keep = (d * d).sum(1) < cutoff ** 2
    return {(int(a), int(b), tuple(np.round(v, 9))) for a, b, v in zip(i[keep], j[keep], d[keep])}


class KeptSteps:
    """Stage observer: (step, index of the force call, positions, cell) of every step the run keeps
    (a replay rewinds it)."""

    def __init__(self, seen):
        self.seen, self.rows = seen, []

    def __call__(self, md):
        self.rows.append((md.step, len(self.seen) - 1, md.state.positions.copy(), md.state.cell.copy()))

    def mark(self):
        return len(self.rows)

    def rewind(self, token):
        del self.rows[token:]


def missed_pairs(check_every, skin, padded=None, capacity=None):
    """Run a hot cell with a thin skin; return (pairs inside the cut-off that the force calls of the
    kept steps did not see, replays, run); ``padded``, ``capacity``: the neighbour list's."""
    seen = []
    state = maxwell_boltzmann(from_atoms(cu(2)), 1500.0, seed=4)
    sim = Simulation(spy_force_field(seen), state, dt_fs=2.0, skin_A=skin, thermo_every=20, seed=3,
                     neighbor_check_every=check_every, **QUIET)
    sim.nlist.padded, sim.nlist.capacity = padded, capacity
    kept = KeptSteps(seen)
    result = sim.run([Stage("nvt", 100, thermostat=Bussi(1500.0, 50.0), observers=(kept,))])
    assert [row[0] for row in kept.rows] == list(range(1, 101))  # each step kept once, in order
    missed = 0
    for _, call, positions, cell in kept.rows:
        i, j, d = seen[call]
        truth = brute_force_pairs(positions, cell, state.pbc, FF.cutoff)
        missed += len(truth) - len(pairs_inside(i, j, d, FF.cutoff))
    return missed, sim.n_replays, result


def test_a_list_gone_stale_between_checks_is_replayed_and_no_pair_is_missed():
    missed, replays, run = missed_pairs(20, 0.15)
    assert replays >= 1 and missed == 0
    _, _, exact = missed_pairs(1, 0.15)
    np.testing.assert_allclose(run.md.state.positions, exact.md.state.positions, rtol=0, atol=1e-9)
    missed, replays, run = missed_pairs(20, 0.15, padded=True)  # the lists built into fixed-size arrays
    assert replays >= 1 and missed == 0
    np.testing.assert_allclose(run.md.state.positions, exact.md.state.positions, rtol=0, atol=1e-9)


def test_without_the_replay_pairs_are_missed(monkeypatch):
    """The planted fault: a check that always says the list held. The spy then finds pairs inside the
    cut-off that forces never saw, so the test above can fail."""
    monkeypatch.setattr(NeighborList, "verify", lambda self, positions, cell, steps: True)
    missed, replays, _ = missed_pairs(20, 0.15)
    assert replays == 0 and missed > 0


def test_host_reads_fall_to_one_per_check():
    state = maxwell_boltzmann(from_atoms(cu(2)), 300.0, seed=4)
    steps, every, thermo = 200, 25, 50
    sim = Simulation(FF, state, dt_fs=1.0, skin_A=1.0, thermo_every=thermo, seed=3, neighbor_check_every=every,
                     **QUIET)
    SYNCS.reset()
    result = sim.run([Stage("nvt", steps, thermostat=Bussi(300.0, 50.0))])
    rows = len(result.thermo["step"])
    assert sim.n_replays == 0
    # the first force call (an exact build), one read per check (every 25 steps; the rows fall on checks),
    # one per row, and the builder's per rebuild at a check
    assert SYNCS.reset() == reads_per_build() + steps // every + rows + (sim.nlist.n_builds - 1) * builder_reads()


def test_a_stage_with_a_barostat_keeps_the_exact_check():
    state = maxwell_boltzmann(from_atoms(cu(2)), 300.0, seed=4)
    deform, barostat = pull_modifiers(state)
    sim = Simulation(FF, state, dt_fs=2.0, skin_A=1.0, thermo_every=10, seed=3, neighbor_check_every=10, **QUIET)
    stage = Stage("pull", 20, thermostat=Bussi(300.0, 50.0), deform_axis="x", strain_rate_per_s=5e10,
                  barostat=barostat)
    assert not sim._replayable(stage, ())
    assert sim._replayable(Stage("nvt", 20, thermostat=Bussi(300.0, 50.0)), ())
    assert not sim._replayable(Stage("nvt", 20, thermostat=Bussi(300.0, 50.0)), (lambda md: None,))
    assert not sim._replayable(Stage("nemd", 20, thermostat=object()), ())


def test_the_hnemd_current_is_the_exact_runs():
    """An observer with mark/rewind (the HNEMD heat-current recorder) keeps the currents of the kept steps."""
    from md_gpu.protocols.thermal_hnemd import CurrentRecorder

    series = {}
    for every in (1, 20):
        state = maxwell_boltzmann(from_atoms(cu(2)), 1500.0, seed=4)
        recorder = CurrentRecorder(100, np)
        from md_gpu.protocols.thermal_current import driving_forces

        fe = np.array([1e-3, 0.0, 0.0])
        sim = Simulation(FF, state, dt_fs=2.0, skin_A=0.15, thermo_every=50, seed=3, neighbor_check_every=every,
                         per_atom=True, external_force=lambda _state, result: driving_forces(result.virials, fe),
                         **QUIET)
        sim.run([Stage("nvt", 100, thermostat=Bussi(1500.0, 50.0), observers=(recorder,))])
        series[every] = (recorder.series.copy(), recorder.k, sim.n_replays)
    assert series[20][1] == 100 and series[20][2] >= 1
    np.testing.assert_allclose(series[20][0], series[1][0], rtol=1e-8, atol=1e-12)


def test_non_finite_positions_are_replayed_and_stop_with_the_exact_error():
    state = maxwell_boltzmann(from_atoms(cu(2)), 300.0, seed=4)
    nl = NeighborList(FF.cutoff, 0.5, state.pbc)
    nl.deferred = True
    nl.pairs_within(state.positions, state.cell, FF.cutoff)
    broken = state.positions.copy()
    broken[3, 0] = np.nan
    nl.pairs_within(broken, state.cell, FF.cutoff)  # no read, no error yet
    assert nl.verify(broken, state.cell, 10) is False  # the caller replays: the exact check decides
    # a run whose forces turn NaN at its 33rd force call stops with the exact check's error, its rows kept
    calls = []

    def failing(types, i, j, d, *, xp=np):
        calls.append(1)
        energies, grad = FF.evaluate(types, i, j, d, xp=xp)
        return energies, grad * (np.nan if len(calls) > 33 else 1.0)

    ff = type("Failing", (), {"species": FF.species, "cutoff": FF.cutoff, "evaluate": staticmethod(failing)})()
    sim = Simulation(ff, state, dt_fs=2.0, skin_A=0.5, thermo_every=5, seed=3, neighbor_check_every=10, **QUIET)
    with pytest.raises(MDRunError, match="positions are not finite") as caught:
        sim.run([Stage("nvt", 200, thermostat=Bussi(300.0, 50.0))])
    assert sim.n_replays == 1 and list(caught.value.thermo["step"]) == [0, 5, 10, 15, 20, 25, 30]


def test_a_deforming_cell_is_replayed_without_a_missed_pair():
    """Deformation without a barostat (transverse strain held) keeps deferred checks; the strain term of
    the stale measure must then count: every kept step saw every pair inside the cut-off."""
    from md_gpu.integrators import velocity_verlet  # noqa: F401  (the loop under test is Simulation's)

    for every, expect_replays in ((1, False), (20, True)):
        seen = []
        state = maxwell_boltzmann(from_atoms(cu(2)), 600.0, seed=4)
        sim = Simulation(spy_force_field(seen), state, dt_fs=2.0, skin_A=0.2, thermo_every=25, seed=3,
                         neighbor_check_every=every, **QUIET)
        kept = KeptSteps(seen)
        sim.run([Stage("pull", 100, thermostat=Bussi(600.0, 50.0), deform_axis="x", strain_rate_per_s=1e11,
                       observers=(kept,))])
        missed = sum(len(brute_force_pairs(positions, cell, state.pbc, FF.cutoff))
                     - len(pairs_inside(*seen[call], FF.cutoff)) for _, call, positions, cell in kept.rows)
        assert missed == 0 and (sim.n_replays > 0) == expect_replays
        assert kept.rows[-1][3][0, 0] == pytest.approx(state.cell[0, 0] * (1 + 1e11 * 200e-15), rel=1e-9)


@pytest.mark.parametrize("padded", [None, True])
def test_a_deferred_run_resumed_from_a_checkpoint_is_the_uninterrupted_run(tmp_path, padded):
    """Killed at step 100 (after replays), resumed from its checkpoint at step 90: the same trajectory to the
    last bit, because the checkpoint keeps the check interval and the list's check record (with padded
    builds: the list is built padded again, into the same capacity)."""
    kwargs = dict(dt_fs=2.0, skin_A=0.15, thermo_every=10, checkpoint_every=30, neighbor_check_every=20, **QUIET)

    def stage(*observers):
        return [Stage("nvt", 150, thermostat=Bussi(1500.0, 50.0), observers=observers)]

    def fresh(folder):
        folder.mkdir()
        state = maxwell_boltzmann(from_atoms(cu(2)), 1500.0, seed=4)
        sim = Simulation(FF, state, seed=3, checkpoint_path=folder / "run.ckpt.npz", **kwargs)
        sim.nlist.padded = padded
        return sim

    whole_sim = fresh(tmp_path / "whole")
    whole = whole_sim.run(stage())
    assert whole_sim.n_replays >= 2

    class Killed(Exception):
        pass

    with pytest.raises(Killed):
        fresh(tmp_path / "killed").run(stage(KillAt(100, Killed)))
    resumed_sim = Simulation.resume(tmp_path / "killed" / "run.ckpt.npz", FF, **kwargs)
    resumed_sim.nlist.padded = padded
    resumed = resumed_sim.run(stage())
    assert np.array_equal(resumed.md.state.positions, whole.md.state.positions)
    assert np.array_equal(resumed.thermo["potential_eV"], whole.thermo["potential_eV"])
    assert resumed_sim.nlist.n_builds < whole_sim.nlist.n_builds  # it did resume, not start again


class KillAt:
    """Stage observer that raises ``error`` once the run reaches ``step`` (a kill), replayable."""

    def __init__(self, step, error):
        self.step, self.error = step, error

    def __call__(self, md):
        if md.step >= self.step:
            raise self.error()

    def mark(self):
        return None

    def rewind(self, token):
        pass


def test_the_benchmark_times_the_loop_with_deferred_checks():
    from md_gpu.bench import benchmark

    exact = benchmark(FF, cu(2), steps=40, warmup=0, check_every=1, temperature_K=300.0)
    deferred = benchmark(FF, cu(2), steps=40, warmup=2, check_every=10, temperature_K=300.0)
    assert exact["syncs_per_step"] >= 1.0 and deferred["syncs_per_step"] < 0.2
    assert deferred["replays"] == 0 and deferred["atom_steps_per_s"] > 0 and exact["seconds"] > 0


def test_a_check_interval_below_one_is_refused():
    with pytest.raises(MDSetupError, match="neighbor_check_every=0"):
        Simulation(FF, from_atoms(cu(1)), neighbor_check_every=0, **QUIET)


# -- padded builds: the list built into arrays of a fixed size, a capacity and an overflow flag ----------------

def cells():
    """A rattled bulk cell, a sheet whose atoms lie partly below the cell (its open axis binned over the
    cell's own length), and a skewed small cell (several images of one bin)."""
    from ase import Atoms

    rng = np.random.default_rng(3)
    bulk = cu(3)
    bulk.positions += rng.normal(0, 0.1, bulk.positions.shape)
    sheet = Atoms(bulk[bulk.positions[:, 2] < 4.0], cell=bulk.cell.array + np.diag([0, 0, 12.0]),
                  pbc=[True, True, False])
    sheet.positions[:, 2] -= 3.0
    skew = cu(1)
    skew.set_cell(skew.cell.array + np.array([[0, 0, 0], [1.2, 0, 0], [0.5, -0.7, 0]]), scale_atoms=True)
    skew.positions += rng.normal(0, 0.1, skew.positions.shape)
    return {"bulk": bulk, "sheet": sheet, "skew": skew}


def listed(i, j, shifts, count):
    return {(int(a), int(b), tuple(int(round(v)) for v in s)) for a, b, s in zip(i[:count], j[:count], shifts[:count])}


@pytest.mark.parametrize("name", ["bulk", "sheet", "skew"])
def test_a_padded_build_lists_every_pair_without_a_read(name):
    from md_gpu.neighbors import array_build_pairs, padded_build_pairs

    atoms = cells()[name]
    args = (atoms.positions, atoms.cell.array, tuple(atoms.pbc), FF.cutoff)
    truth = brute_force_pairs(*args)
    before = SYNCS.count
    i, j, shifts, needed = padded_build_pairs(*args, (len(atoms), len(truth) + 40))
    assert SYNCS.count == before
    assert needed[1] == len(truth) and len(i) == len(truth) + 40
    assert listed(i, j, shifts, len(truth)) == truth
    d = atoms.positions[j] - atoms.positions[i] + shifts @ atoms.cell.array
    assert np.linalg.norm(d[len(truth):], axis=1).min() > FF.cutoff  # the padding: nothing to the force field
    assert np.array_equal(i[len(truth):], np.arange(len(truth), len(i)) % len(atoms))  # spread over the atoms
    if name != "sheet":  # periodic axes bin as the array builder does: the same pairs in the same order
        ai, aj, ashifts = array_build_pairs(*args)
        assert np.array_equal(i[:len(ai)], ai) and np.array_equal(shifts[:len(ai)], ashifts)


def test_a_full_bin_or_a_full_list_is_flagged_and_leaves_pairs_out():
    from md_gpu.neighbors import padded_build_pairs

    atoms = cells()["bulk"]
    args = (atoms.positions, atoms.cell.array, tuple(atoms.pbc), FF.cutoff)
    truth = brute_force_pairs(*args)
    occupancy = int(padded_build_pairs(*args, (1, 0))[3][0])
    assert padded_build_pairs(*args, (occupancy, len(truth)))[3].tolist() == [occupancy, len(truth)]  # it fits
    i, j, shifts, needed = padded_build_pairs(*args, (occupancy, len(truth) - 1))
    assert needed[1] > len(truth) - 1 and len(listed(i, j, shifts, len(i))) == len(truth) - 1
    i, j, shifts, needed = padded_build_pairs(*args, (occupancy - 1, len(truth)))
    assert needed[0] == occupancy and len(listed(i, j, shifts, len(i)) & truth) < len(truth)


def test_padded_deferred_runs_read_at_their_checks_only():
    """No read per rebuild: one read per check and per row, the first exact call's, and two to size the
    capacity at the first padded build; the trajectory is the exact run's."""
    steps, every = 120, 10
    state = maxwell_boltzmann(from_atoms(cu(2)), 900.0, seed=4)
    sim = Simulation(FF, state, dt_fs=2.0, skin_A=0.5, thermo_every=20, seed=3, neighbor_check_every=every, **QUIET)
    sim.nlist.padded = True
    SYNCS.reset()
    run = sim.run([Stage("nvt", steps, thermostat=Bussi(900.0, 50.0))])
    reads = SYNCS.reset()
    _, exact = nvt(1, skin=0.5)
    rows = len(run.thermo["step"])
    assert sim.n_replays == 0 and sim.nlist.n_builds >= 4 and sim.nlist.n_overflows == 0
    assert reads == reads_per_build() + 2 + steps // every + rows
    np.testing.assert_allclose(run.md.state.positions, exact.md.state.positions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(run.thermo["potential_eV"], exact.thermo["potential_eV"], rtol=1e-11)


def test_an_overflow_is_replayed_and_no_pair_is_missed():
    missed, replays, run = missed_pairs(20, 0.3, padded=True, capacity=(4, 100))
    assert replays >= 1 and missed == 0
    _, _, exact = missed_pairs(1, 0.3)
    np.testing.assert_allclose(run.md.state.positions, exact.md.state.positions, rtol=0, atol=1e-9)


def test_without_the_overflow_flag_pairs_are_missed(monkeypatch):
    """The planted fault: an overflow never seen. The kept steps then miss pairs, so the test above can fail."""
    monkeypatch.setattr(NeighborList, "_overflowed", lambda self, needed: False)
    missed, _, _ = missed_pairs(20, 0.3, padded=True, capacity=(4, 100))
    assert missed > 0


def test_settle_builds_an_overflowed_list_again_before_the_grade_reads_it():
    atoms = cells()["bulk"]
    state = from_atoms(atoms)
    nl = NeighborList(FF.cutoff, 0.0, state.pbc, padded=True, capacity=(4, 100))
    nl.deferred = True
    nl.build(state.positions, state.cell)
    truth = brute_force_pairs(state.positions, state.cell, state.pbc, FF.cutoff)
    assert len(listed(nl.i, nl.j, nl.shifts, len(nl.i)) & truth) < len(truth)
    before = SYNCS.count
    nl.settle(state.positions, state.cell)
    assert SYNCS.count == before + 1 + builder_reads() and nl.n_overflows == 1 and nl.capacity is None
    assert listed(nl.i, nl.j, nl.shifts, len(nl.i)) == truth


def test_every_padded_build_overflowing_leaves_no_kept_step_or_grade_short(monkeypatch):
    """Every padded build too small (capacity sized at 3 per bin, 50 pairs), a deferred stage then one that
    cannot be replayed (an observer without mark/rewind), the extrapolation grade every 7 steps: the kept
    steps' forces and the grades saw every pair inside the cut-off."""
    from md_gpu.extrapolation import ExtrapolationControl

    monkeypatch.setattr(NeighborList, "_size_capacity", lambda self, positions, cell: (3, 50))
    graded = []

    def grade(positions, cell, types, i, j, d):
        truth = brute_force_pairs(positions, cell, (True,) * 3, FF.cutoff)
        graded.append(len(truth) - len(pairs_inside(i, j, d, FF.cutoff)))
        return np.zeros(positions.shape[0])

    seen = []
    state = maxwell_boltzmann(from_atoms(cu(2)), 1500.0, seed=4)
    control = ExtrapolationControl(grade, every=7, warn=1e9, stop=1e10, cutoff=None, log=lambda line: None)
    sim = Simulation(spy_force_field(seen), state, dt_fs=2.0, skin_A=0.3, thermo_every=20, seed=3,
                     neighbor_check_every=20, extrapolation=control, **QUIET)
    sim.nlist.padded = True
    replayable, exact_rows = KeptSteps(seen), []

    def unreplayable(md):  # no mark/rewind: the second stage keeps the exact check
        exact_rows.append((md.step, len(seen) - 1, md.state.positions.copy(), md.state.cell.copy()))

    sim.run([Stage("deferred", 100, thermostat=Bussi(1500.0, 50.0), observers=(replayable,)),
             Stage("exact", 60, thermostat=Bussi(1500.0, 50.0), observers=(unreplayable,))])
    assert sim.nlist.n_overflows >= 3 and len(replayable.rows) == 100 and len(exact_rows) == 60
    missed = sum(len(brute_force_pairs(positions, cell, state.pbc, FF.cutoff)) - len(pairs_inside(*seen[call], FF.cutoff))
                 for _, call, positions, cell in replayable.rows + exact_rows)
    assert missed == 0 and len(graded) == 160 // 7 and sum(graded) == 0
