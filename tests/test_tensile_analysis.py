"""Tensile analysis: automatic fit window with honest errors, sustained drops, cracks, transverse stress.

(a) window and modulus on synthetic curves; (b) one noisy drop is not a failure; (c) a crack is
(synthetic structures and a Morse sheet pulled apart); (d) the loading barostat holds the
transverse stress of a Morse Cu cell at zero; (e) the static moduli of that cell, the reference of the
300 K benchmark against LAMMPS (``benchmarks/lammps_compare.py --parts protocol``).
"""
import importlib

import numpy as np
import pytest

from md_gpu.analysis import (choose_fit_window, inefficiency, linear_fit, stress_strain_curve, sustained_drop,
                             tensile_properties)
from md_gpu.errors import MDRunError
from md_gpu.forcefields import Morse
from md_gpu.protocols import RunSettings, static_elastic_constants, tensile
from md_gpu.protocols.fracture import spans_axis, yield_point

import morse_cells
from morse_cells import FF, QUIET, triangular_sheet


def cu(n=4):
    return morse_cells.cu(n)


def synthetic(rng, *, E=50.0, noise=0.3, n=1500, top=0.15):
    """Linear E eps up to the curvature of a softening solid (peak near 0.1), white noise."""
    strain = np.linspace(0, top, n)
    clean = E * strain - 0.5 * E / 0.1 * strain ** 2
    return strain, clean + rng.normal(0, noise, n), -0.35 * strain + rng.normal(0, 2e-4, n)


def test_auto_window_recovers_E_within_its_error_and_the_error_matches_the_scatter():
    rng = np.random.default_rng(1)
    E_fit, sems, windows, nus = [], [], [], []
    for _ in range(200):
        strain, stress, trans = synthetic(rng)
        p = tensile_properties(strain, stress, trans, fit_window=(0.0, 0.1), window="auto")
        E_fit.append(p["youngs_modulus"])
        sems.append(p["youngs_modulus_sem"])
        windows.append(p["fit_window_strain"])
        nus.append(p["poisson_ratio"])
    E_fit, sems = np.array(E_fit), np.array(sems)
    # the window is not the tiny lower bound nor the whole curve: the curvature limits it
    assert 0.005 < np.median(windows) < 0.05
    # every draw within 3 reported errors of the true E (with a margin of 1 % of draws)
    assert np.mean(np.abs(E_fit - 50.0) <= 3 * sems) >= 0.99
    # the reported error matches the scatter about the truth (bias included) within 30 %
    rms = np.sqrt(np.mean((E_fit - 50.0) ** 2))
    assert rms == pytest.approx(np.mean(sems), rel=0.3)
    assert np.mean(nus) == pytest.approx(0.35, abs=0.005)


def test_poisson_ratio_takes_its_own_window():
    """A straight transverse curve (nu = 0.35) under a curved stress: nu's window is longer than the
    modulus' (measured medians 3.0 % and 1.9 %: the curvature's own uncertainty still limits it below
    the 5 % bound), its reported error holds (every draw within 3 errors, 1 % margin), and its scatter
    is below that of nu fitted over the modulus' window (measured 1.9x less; the slope error of a
    window h falls as h^-3/2, (3.0 / 1.9)^1.5 = 2.0)."""
    rng = np.random.default_rng(4)
    own, on_e_window, sems, windows, e_windows = [], [], [], [], []
    for _ in range(200):
        strain, stress, _ = synthetic(rng)
        trans = -0.35 * strain + rng.normal(0, 2e-3, strain.size)
        p = tensile_properties(strain, stress, trans, fit_window=(0.0, 0.1), window="auto")
        fixed = tensile_properties(strain, stress, trans, fit_window=(0.0, p["fit_window_strain"]))
        own.append(p["poisson_ratio"])
        sems.append(p["poisson_ratio_sem"])
        windows.append(p["poisson_fit_window_strain"])
        e_windows.append(p["fit_window_strain"])
        on_e_window.append(fixed["poisson_ratio"])
    own, on_e_window, sems = np.array(own), np.array(on_e_window), np.array(sems)
    assert np.median(windows) > 1.3 * np.median(e_windows)
    assert np.mean(np.abs(own - 0.35) <= 3 * sems) >= 0.99
    assert np.sqrt(np.mean((own - 0.35) ** 2)) < np.sqrt(np.mean((on_e_window - 0.35) ** 2)) / 1.5


def test_transverse_strain_is_the_mean_over_the_transverse_axes():
    """y contracts by 0.3 and z by 0.5 per unit axial strain: the curve's transverse strain is -0.4 x."""
    x = np.linspace(0.0, 0.02, 11)
    thermo = {"cell_xx_A": 10 * (1 + x), "cell_yy_A": 12 * (1 - 0.3 * x), "cell_zz_A": 8 * (1 - 0.5 * x),
              "stress_xx_GPa": 50 * x, "temperature_K": np.full_like(x, 300.0), "time_fs": np.arange(x.size) * 10.0}
    both = stress_strain_curve(thermo, 0, "x", ("y", "z"), sheet=False)
    np.testing.assert_allclose(both["transverse_strain"], -0.4 * x, atol=1e-15)
    one = stress_strain_curve(thermo, 0, "x", "y", sheet=False)
    np.testing.assert_allclose(one["transverse_strain"], -0.3 * x, atol=1e-15)


def test_fixed_window_keeps_the_old_rule_and_errors_count_correlation():
    strain = np.linspace(0, 0.2, 201)
    stress = 300 * strain - 900 * strain ** 2
    fixed = tensile_properties(strain, stress, -0.2 * strain, fit_window=(0, 0.004))
    assert fixed["fit_window_strain"] == 0.004 and fixed["youngs_modulus"] == pytest.approx(300, rel=0.02)
    with pytest.raises(MDRunError, match="fit window"):
        tensile_properties(strain[:2], stress[:2], fit_window=(0, 0.01))
    # AR(1) noise with rho = 0.8: inefficiency (1 + rho) / (1 - rho) = 9; the error grows by 3
    rng = np.random.default_rng(2)
    e = np.zeros(20000)
    for k in range(1, e.size):
        e[k] = 0.8 * e[k - 1] + rng.normal()
    assert inefficiency(e) == pytest.approx(9.0, rel=0.2)
    x = np.linspace(0, 1, e.size)
    fit = linear_fit(x, 2 * x + e)
    assert fit["g"] == pytest.approx(9.0, rel=0.2)


def test_noise_cannot_pick_a_tiny_window():
    """A noisy, perfectly linear curve: the window is the upper bound, never below 0.5 %."""
    rng = np.random.default_rng(3)
    strain = np.linspace(0, 0.2, 2000)
    stress = np.minimum(40 * strain, 4.0) + rng.normal(0, 1.0, strain.size)
    h = choose_fit_window(strain, stress, max_window=0.05)["h"]
    assert 0.005 <= h <= 0.05


def test_a_single_noisy_drop_is_not_a_failure_but_a_sustained_one_is():
    strain = np.linspace(0, 0.2, 1001)
    stress = 50 * strain
    spiky = stress.copy()
    spiky[600] = -5.0  # one row far below the curve (half the peak and more)
    assert sustained_drop(strain, spiky, window_strain=0.005, drop=0.5) is None
    broken = np.where(strain < 0.15, stress, 0.5)
    hit = sustained_drop(strain, broken, window_strain=0.005, drop=0.5)
    assert hit is not None and 0.15 <= strain[hit] < 0.155
    # yield: a drop of 30 % that the structure did not confirm, then hardening again
    yielding = np.where(strain < 0.1, stress, 0.7 * 5 + 10 * (strain - 0.1))
    y_strain, y_stress = yield_point(strain, yielding, float("nan"), 0.005, 0.2, 0.02)
    assert y_strain == pytest.approx(0.1, abs=1e-3) and y_stress == pytest.approx(5.0, rel=0.01)
    # a brittle drop confirmed as fracture is no yield
    assert np.isnan(yield_point(strain, broken, 0.151, 0.005, 0.2, 0.02)[0])


def test_the_bond_network_spans_an_intact_cell_and_not_a_cracked_one():
    cutoff = 3.1  # between the first (2.55 Å) and second (3.61 Å) shells of fcc Cu
    intact = cu(3)
    rng = np.random.default_rng(4)
    intact.positions += rng.normal(0, 0.08, intact.positions.shape)  # thermal disorder
    assert spans_axis(intact, "x", cutoff)
    slipped = cu(3)  # a stacking shift of the upper half along y (slip) keeps the network whole
    upper = slipped.positions[:, 2] > slipped.cell[2, 2] / 2
    slipped.positions[upper, 1] += 1.2
    assert spans_axis(slipped, "x", cutoff)
    cracked = cu(3)
    cracked.cell[0, 0] += 2.0                          # open a 2 Å gap ...
    cracked.positions[cracked.positions[:, 0] > cracked.cell[0, 0] / 2 - 1.0, 0] += 2.0
    assert not spans_axis(cracked, "x", cutoff)
    assert spans_axis(cracked, "y", cutoff)            # ... that runs along y: y still carries load
    inclined = cu(3)                                   # a crack at an angle to the load axis
    inclined.cell[0, 0] += 5.0                         # (a cut at an angle must open wider to break
    x, z = inclined.positions[:, 0], inclined.positions[:, 2]   # the bonds that lean across it)
    inclined.positions[x > 2.0 + 0.5 * z, 0] += 5.0
    assert not spans_axis(inclined, "x", cutoff)


def test_a_sheet_pulled_apart_fractures_and_stops():
    """A Morse sheet whose bonds break: the pair potential ends between the first and second shells."""
    short = Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=3.6)
    settings = RunSettings(temperature_K=50.0, dt_fs=2.0, equilibrate_steps=200, thermo_every=5, seed=1)
    r = tensile(short, triangular_sheet(), direction="x", strain_rate_per_s=5e11, max_strain=1.0,
                settings=settings, **QUIET)
    p = r["properties"]
    assert p["failure_mode"] == "fracture" and p["failed"]
    assert p["failure_strain"] < p["fracture_strain"] < 1.0
    assert r["curve"]["strain"][-1] < 1.0                    # the run stopped at the crack
    assert r["settings"]["events"][-1]["kind"] == "fracture"


def _sheet_run(settings=None, **kwargs):
    """The Morse sheet of the test above, pulled apart (its bonds break); thermo rows 0.005 strain apart."""
    short = Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=3.6)
    settings = settings or RunSettings(temperature_K=50.0, dt_fs=2.0, equilibrate_steps=200, thermo_every=5, seed=1)
    return tensile(short, triangular_sheet(), direction="x", strain_rate_per_s=5e11, max_strain=1.0,
                   settings=settings, **QUIET, **kwargs)


def _crack_unseen_at_the_pause(monkeypatch):
    """``fractured`` answers False the first time (at the pause, the broken bonds not yet opened past the bond
    cutoff), the truth afterwards."""
    protocol = importlib.import_module("md_gpu.protocols.tensile")  # the package re-exports the function
    real, calls = protocol.fractured, []

    def late(*args, **kwargs):
        calls.append(args)
        return len(calls) > 1 and real(*args, **kwargs)

    monkeypatch.setattr(protocol, "fractured", late)
    return calls


def _segments_after_the_first_raise(monkeypatch, error):
    """The protocol's Simulations after the first (the main run) raise ``error`` when run; returns the list of
    the checkpoint each Simulation was made with."""
    protocol = importlib.import_module("md_gpu.protocols.tensile")
    real, made = protocol.simulation, []

    class Raises:
        def run(self, stages):
            raise error

    def first_or_raise(ff, state, settings, **kwargs):
        made.append(kwargs.get("checkpoint"))
        return real(ff, state, settings, **kwargs) if len(made) == 1 else Raises()

    monkeypatch.setattr(protocol, "simulation", first_or_raise)
    return made


def test_a_crack_seen_only_after_the_pause_is_a_fracture_dated_at_the_drop(monkeypatch):
    """The structure is looked at again one drop window after the pause: a crack found then is a fracture at
    the drop, not a yield followed by a later fracture."""
    calls = _crack_unseen_at_the_pause(monkeypatch)
    r = _sheet_run()
    p, (event,) = r["properties"], r["settings"]["events"]
    assert len(calls) == 2 and event["kind"] == "fracture" and p["failure_mode"] == "fracture"
    assert p["fracture_strain"] == event["strain"]
    # one drop window later: 0.005 strain, at least 5 thermo rows of 5e11 1/s x 5 steps x 2 fs = 0.005 each
    assert event["checked_at_strain"] - event["strain"] == pytest.approx(5 * 0.005, abs=1e-9)
    assert not any(e["kind"] == "yield" for e in r["settings"]["events"])
    assert r["curve"]["strain"][-1] == pytest.approx(event["checked_at_strain"], abs=1e-9)


def test_a_run_that_blows_up_after_its_drop_keeps_its_curve_and_fails_by_collapse(monkeypatch):
    """A segment after the pause that raises MDRunError (a broken structure in a hole of the potential) loses
    nothing already computed: the curve up to the drop, its modulus and strength, failure mode 'collapse'."""
    whole = _sheet_run()["properties"]
    _crack_unseen_at_the_pause(monkeypatch)
    segments = _segments_after_the_first_raise(
        monkeypatch, MDRunError("step 20: the potential energy fell 1.55 eV/atom below the run's start"))
    r = _sheet_run()
    p, (event,) = r["properties"], r["settings"]["events"]
    assert len(segments) == 2 and event["kind"] == "collapse" and "1.55 eV/atom" in event["reason"]
    assert p["failure_mode"] == "collapse" and p["failed"] and np.isnan(p["fracture_strain"])
    assert event["strain"] == event["after_drop_at_strain"]  # the look blew up before its first row
    assert r["curve"]["strain"][-1] == pytest.approx(event["strain"], abs=1e-9)
    # the curve before the drop is the same run's: the same modulus, Poisson's ratio and strength
    for key in ("youngs_modulus_N_per_m", "poisson_ratio", "ultimate_strength_N_per_m", "failure_strain"):
        assert p[key] == whole[key], key


def test_a_blow_up_after_a_yield_keeps_the_rows_that_passed_the_guards(monkeypatch):
    """Every drop reads as yield; the segment after the first yield is stopped by a guard at its 4th thermo row:
    the curve keeps that segment's first 3 rows (the 4th, rejected, is left out), the run failed by collapse
    there, after the drop."""
    from md_gpu.simulation import BlowUpGuard

    protocol = importlib.import_module("md_gpu.protocols.tensile")
    monkeypatch.setattr(protocol, "fractured", lambda *args, **kwargs: False)

    class TripsAtTheFourthRow(BlowUpGuard):
        checks = 0

        def check(self, rows, n_atoms, stage):
            TripsAtTheFourthRow.checks += 1
            if TripsAtTheFourthRow.checks == 4:
                raise MDRunError("step 20: planted")

    real, made = protocol.simulation, []

    def tripping(ff, state, settings, **kwargs):
        sim = real(ff, state, settings, **kwargs)
        made.append(kwargs.get("checkpoint"))
        if len(made) == 3:  # the main run, the look at the first drop, then the tension after the yield
            sim.blowup = TripsAtTheFourthRow()
        return sim

    monkeypatch.setattr(protocol, "simulation", tripping)
    r = _sheet_run()
    yielded, collapse = r["settings"]["events"]
    assert yielded["kind"] == "yield" and collapse["kind"] == "collapse" and collapse["reason"] == "step 20: planted"
    assert collapse["after_drop_at_strain"] == yielded["strain"]
    assert collapse["strain"] == pytest.approx(yielded["checked_at_strain"] + 3 * 0.005, abs=1e-9)
    assert r["curve"]["strain"][-1] == pytest.approx(collapse["strain"], abs=1e-9)
    assert r["properties"]["failure_mode"] == "collapse" and r["properties"]["failed"]


def test_the_extrapolation_stop_after_a_drop_is_raised_not_read_as_collapse(monkeypatch):
    """md.extrapolation.stop asks for a refit: a protocol never turns it into a result."""
    from md_gpu.errors import MDExtrapolationError

    _crack_unseen_at_the_pause(monkeypatch)
    _segments_after_the_first_raise(monkeypatch, MDExtrapolationError("step 40: the potential extrapolates "
                                                                      "(max grade 12 > stop 10)"))
    with pytest.raises(MDExtrapolationError, match="extrapolates"):
        _sheet_run()


def test_a_finished_multi_segment_run_resumed_from_its_checkpoints_keeps_its_files(monkeypatch, tmp_path):
    """Resuming replays each segment from its last checkpoint (the main run, ``look1``): the results and the
    trajectory file come out byte for byte the same (a finished segment's checkpoint must not cut the frames
    that later segments appended)."""
    from dataclasses import replace

    _crack_unseen_at_the_pause(monkeypatch)
    settings = RunSettings(temperature_K=50.0, dt_fs=2.0, equilibrate_steps=200, thermo_every=5, seed=1,
                           traj_every=5, checkpoint_every=10)
    first = _sheet_run(settings, out_prefix=tmp_path / "sheet")
    assert (tmp_path / "sheet.look1.ckpt.npz").is_file() and (tmp_path / "sheet.ckpt.npz").is_file()
    frames = (tmp_path / "sheet.extxyz").read_bytes()
    _crack_unseen_at_the_pause(monkeypatch)
    again = _sheet_run(replace(settings), out_prefix=tmp_path / "sheet", resume=True)
    assert (tmp_path / "sheet.extxyz").read_bytes() == frames
    assert again["settings"]["events"] == first["settings"]["events"]
    assert np.array_equal(again["curve"]["stress_N_per_m"], first["curve"]["stress_N_per_m"])


def test_a_run_killed_in_its_second_look_resumes_without_duplicate_frames(monkeypatch, tmp_path):
    """Killed while the second look (no checkpoint of its own yet) writes frames: the resumed run cuts them back
    (to the look's step-0 checkpoint) and ends with the uninterrupted run's trajectory, byte for byte."""
    from dataclasses import replace

    from md_gpu.simulation import Simulation

    settings = RunSettings(temperature_K=50.0, dt_fs=2.0, equilibrate_steps=200, thermo_every=5, seed=1,
                           traj_every=5, checkpoint_every=1000)
    _crack_unseen_at_the_pause(monkeypatch)
    whole = _sheet_run(settings, out_prefix=tmp_path / "whole")
    frames = (tmp_path / "whole.extxyz").read_bytes()

    class Killed(Exception):
        pass

    write, written = Simulation._write_frame, []

    def dies_in_the_look(self, md):
        write(self, md)
        if "look1" in str(self.checkpoint_path):
            written.append(md.step)
            if len(written) == 2:
                raise Killed

    _crack_unseen_at_the_pause(monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(Simulation, "_write_frame", dies_in_the_look)
        with pytest.raises(Killed):
            _sheet_run(settings, out_prefix=tmp_path / "cut")
    assert len(written) == 2 and (tmp_path / "cut.look1.ckpt.npz").is_file()
    _crack_unseen_at_the_pause(monkeypatch)
    resumed = _sheet_run(replace(settings), out_prefix=tmp_path / "cut", resume=True)
    assert (tmp_path / "cut.extxyz").read_bytes() == frames
    assert resumed["settings"]["events"] == whole["settings"]["events"]


def test_a_stopped_stage_resumed_from_its_final_checkpoint_says_why_it_stopped(tmp_path):
    """The final checkpoint keeps ``stopped_by``: a protocol that replays a finished segment from it (a tensile
    run resumed after a kill) sees the same sustained drop as the uninterrupted run, also when the drop came
    at the segment's last row."""
    from md_gpu.protocols.common import prepare_state
    from md_gpu.simulation import Simulation, Stage

    short = Morse(("Cu",), D=0.3429, a=1.3588, r0=2.866, cutoff=3.6)
    settings = RunSettings(temperature_K=50.0, dt_fs=2.0, thermo_every=5, seed=1)
    stage = Stage("tension", 1000, thermostat=settings.make_thermostat(), deform_axis="x", strain_rate_per_s=5e11,
                  stop_on_failure=True, failure_drop=0.5, failure_window=5, failure_min_strain=0.05)
    state = prepare_state(short, triangular_sheet(), settings)
    path = tmp_path / "tension.ckpt.npz"
    first = Simulation(short, state, dt_fs=2.0, thermo_every=5, seed=1, checkpoint_every=50, checkpoint_path=path,
                       **QUIET).run([stage])
    assert first.stopped_by.startswith("stage 'tension': failure at step")
    again = Simulation.resume(path, short, dt_fs=2.0, thermo_every=5, checkpoint_every=50, **QUIET).run([stage])
    assert again.stopped_by == first.stopped_by
    assert np.array_equal(again.thermo["stress_xx_GPa"], first.thermo["stress_xx_GPa"])


def test_loading_barostat_holds_the_transverse_stress_of_morse_cu():
    """256 atoms, 300 K, 2e10 1/s to 3 %: the mean transverse stress is within 3 sem of zero."""
    settings = RunSettings(temperature_K=300.0, dt_fs=2.0, equilibrate_steps=1000, thermo_every=5, seed=2)
    r = tensile(FF, cu(), direction="x", strain_rate_per_s=2e10, max_strain=0.03, settings=settings, **QUIET)
    p = r["properties"]
    assert np.isfinite(p["transverse_stress_sem_GPa"]) and p["transverse_stress_sem_GPa"] < 0.3
    assert abs(p["transverse_stress_mean_GPa"]) < 3 * p["transverse_stress_sem_GPa"]
    assert p["failure_mode"] == "none" and not p["failed"]
    assert r["settings"]["transverse_control"]["poisson"][0] == pytest.approx(0.40, abs=0.01)


def test_static_youngs_modulus_and_poisson_ratio_of_morse_cu():
    """0 K reference of the Morse Cu tensile numbers: E[100] = (C11 - C12)(C11 + 2 C12)/(C11 + C12) = 45.2 GPa,
    nu = C12/(C11 + C12) = 0.40 (benchmarks/lammps_compare.py gets C11 = 97.5, C12 = 65.2 GPa from its own
    central differences of the stress at the zero-stress lattice constant). One cubic cell: the relaxed
    fcc crystal needs no more for homogeneous strain.

    The 300 K tensile runs of that cell against these numbers and LAMMPS are a benchmark
    (``python benchmarks/lammps_compare.py --parts protocol``): with 256 atoms the modulus the protocol
    fits carries an error of 9-18 GPa per seed. The tests keep the protocol's parts: moduli at 1 K
    (tests/test_md_protocols.py::test_tensile_at_1K_matches_static_moduli), the transverse stress at
    300 K (above), the automatic window on noisy curves (above), yield without a crack
    (tests/test_md_protocols.py::test_ductile_copper_yields_without_a_crack_and_runs_to_max_strain)."""
    c = static_elastic_constants(FF, cu(1))
    assert (c["C11"] - c["C12"]) * (c["C11"] + 2 * c["C12"]) / (c["C11"] + c["C12"]) == pytest.approx(45.2, abs=0.3)
    assert c["C12"] / (c["C11"] + c["C12"]) == pytest.approx(0.40, abs=0.005)
