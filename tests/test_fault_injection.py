"""Fault injection: a killed run resumes to the uninterrupted result, bit for bit; a corrupt checkpoint or
stored result is one error naming the file, and ``--force`` recovers; a full disk keeps the previous file.

How the kills are made:

* **SIGKILL** (a fit, a tensile task): the run goes in a subprocess; the test polls for its first
  checkpoint file and sends SIGKILL, then resumes in this process and compares with an uninterrupted run
  of the same task in the same folder (the paths are part of the results).
* **At a checkpoint boundary, in-process** (every md task kind, tests/md_fault_cases.py; a whole md stage;
  the fit stage; an FE sweep): the checkpoint writer (or the solver of the next sweep point) raises a
  ``BaseException`` (which no code catches, as no code survives SIGKILL) right after its n-th file is
  in place: half-way through the files the uninterrupted run writes, or for a thermal run a checkpoint
  inside its production. What a kill leaves on disk at any moment between checkpoints k and k + 1 is
  what this leaves right after checkpoint k, plus steps that are computed again and files that the
  resumed run writes again in full (atomically: run HDF5, final snapshots, stored results) or cuts back
  to their length at checkpoint k (trajectory, extrapolative frames; tested apart below); so the resumed
  state, and from it every later step, is the same. The SIGKILL tests check the same claim with a real
  kill at whatever step the run has reached.

Comparisons are exact: the stored result JSON text, every HDF5 dataset and attribute, trajectory bytes.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import md_fault_cases as cases
from common import atomic
from md_gpu import io as md_io
from md_gpu.errors import MDSetupError
from md_gpu.tasks import TASKS

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)]), "OPENBLAS_NUM_THREADS": "1",
       "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


class Killed(BaseException):
    """The injected kill (a BaseException, so that no ``except Exception`` of the code under test stops it)."""


@pytest.fixture(autouse=True)
def _potentials(monkeypatch):
    for name in cases.POTENTIALS:
        monkeypatch.setitem(cases.BUILTIN, name, None)  # restored after the test
    cases.register_potentials()


def _outputs(out: Path) -> dict:
    """Every file of a task folder, comparable exactly: JSON and extxyz as text, HDF5 as its contents."""
    files = {}
    for path in sorted(out.iterdir()):
        if path.suffix == ".h5":
            data = md_io.read_run_h5(path)
            files[path.name] = json.dumps({k: data[k] for k in ("settings", "results", "backend")}, sort_keys=True)
            for group in ("thermo", "stress_strain"):
                for name, values in data[group].items():
                    files[f"{path.name}/{group}/{name}"] = np.asarray(values).tobytes()
        else:
            files[path.name] = path.read_bytes()
    return files


def _count(monkeypatch, target, name, *, kill_after=None):
    """Wrap ``target.name`` to count its calls; with ``kill_after``, raise :class:`Killed` after that call."""
    real = getattr(target, name)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if kill_after is not None and calls["n"] == kill_after:
            raise Killed
        return out

    monkeypatch.setattr(target, name, wrapped)
    return calls


def _reference(tmp_path, kind, monkeypatch, settings=None):
    """Run ``kind`` uninterrupted; returns (task, result, outputs, checkpoints written, force calls)."""
    import md_gpu.forcefields.base as base

    task = cases.tasks(tmp_path, settings)[kind]
    with monkeypatch.context() as m:
        written = _count(m, md_io, "write_checkpoint")
        forces = _count(m, base, "compute_forces")
        result = TASKS.run(task)
    out = Path(task["out_dir"])
    assert (out / f"{task['name']}.result.json").is_file()
    assert not list(out.glob("*.ckpt.npz")) and not list(out.glob("*.task.json"))  # removed when it finished
    reference = _outputs(out)
    shutil.rmtree(out)
    out.mkdir()
    return task, result, reference, written["n"], forces["n"]


KINDS = ["tensile", "elastic", "stability", "shear", "hnemd", "nemd", "interface_nemd", "heterostructure"]
THERMAL = ("hnemd", "nemd", "interface_nemd")


def _kill_point(kind: str, n_checkpoints: int) -> int:
    """Which checkpoint the kill follows: half-way, or for a thermal run the third-last, a step checkpoint
    late in its production (the last two are both written at its last step)."""
    return n_checkpoints - 2 if kind in THERMAL else n_checkpoints // 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_task_killed_midway_resumes_to_the_uninterrupted_result(kind, tmp_path, monkeypatch):
    """Kill after a checkpoint midway (:func:`_kill_point`), run the task again: the same result JSON and run
    files, exactly,
    with fewer force calls than from the start; the finished task leaves no checkpoint behind. The thermal
    kinds are killed in their production, so their heat-current record or block sums travel with the
    checkpoint."""
    import md_gpu.forcefields.base as base

    task, result, reference, n_checkpoints, n_forces = _reference(tmp_path, kind, monkeypatch)
    assert n_checkpoints >= 4
    out = Path(task["out_dir"])
    with monkeypatch.context() as m:
        _count(m, md_io, "write_checkpoint", kill_after=_kill_point(kind, n_checkpoints))
        with pytest.raises(Killed):
            TASKS.run(task)
    assert list(out.glob("*.ckpt.npz")) and not (out / f"{task['name']}.result.json").exists()
    if kind in THERMAL:  # killed in the production stage, with the accumulators in the checkpoint
        with np.load(out / f"{task['name']}.production.ckpt.npz") as saved:
            meta = json.loads(str(saved["meta"]))  # stages: [hnemd] or [nemd_transient, nemd]
            assert meta["stage_index"] == (0 if kind == "hnemd" else 1) and meta["step_in_stage"] > 0
            assert any(name.startswith("array_observer0.") for name in saved.files)
    with monkeypatch.context() as m:
        forces = _count(m, base, "compute_forces")
        resumed = TASKS.run(task)
    assert forces["n"] < n_forces
    assert json.dumps(resumed, sort_keys=True) == json.dumps(result, sort_keys=True)
    assert _outputs(out) == reference
    assert not list(out.glob("*.ckpt.npz")) and not list(out.glob("*.task.json"))


def _md_stage_context(root: Path):
    """A stand-in md stage context of one fcc Cu system with the MTP of tests/data/md (runs/fit, runs/data)."""
    from types import SimpleNamespace

    from ase.build import bulk
    from ase.io import write

    (root / "runs" / "fit").mkdir(parents=True)
    text = (HERE / "data" / "md" / "cu_pot_10.mtp").read_text()
    (root / "runs" / "fit" / "cu.mtp").write_text(text.replace("potential_tag = ", "potential_tag = species=Cu", 1))
    (root / "runs" / "data").mkdir()
    write(root / "runs" / "data" / "cu.structure.extxyz", bulk("Cu", "fcc", a=3.61, cubic=True))
    out = root / "runs" / "md.partial"
    out.mkdir()
    return SimpleNamespace(case_dir=root, out_dir=out, stage_dir=lambda name: root / "runs" / name,
                           systems={"cu": {"kind": "phase", "thickness_A": None}},
                           map=lambda fn, items, what="": [fn(item) for item in items], log=lambda msg: None,
                           is_root=True)


def test_an_md_stage_killed_midway_resumes_to_the_same_summary_and_files(tmp_path, monkeypatch):
    """The whole stage (tension, elastic constants at T and at 1 K, the stability check) killed half-way through
    its checkpoints, then run again: finished tasks come from their stored results, the interrupted one
    from its checkpoints, and summary.json and every file are those of the uninterrupted stage."""
    from md_gpu.md_stage import run_md

    settings = cases.settings(shear={"enabled": False}, heterostructure={"enabled": False},
                              thermal={"enabled": False})
    ctx = _md_stage_context(tmp_path)
    with monkeypatch.context() as m:
        written = _count(m, md_io, "write_checkpoint")
        run_md(settings, ctx)
    reference = _outputs(ctx.out_dir)
    assert "summary.json" in reference and not [n for n in reference if n.endswith(".ckpt.npz")]
    shutil.rmtree(ctx.out_dir)
    ctx.out_dir.mkdir()
    with monkeypatch.context() as m:
        _count(m, md_io, "write_checkpoint", kill_after=written["n"] // 2)
        with pytest.raises(Killed):
            run_md(settings, ctx)
    assert list(ctx.out_dir.glob("*.result.json")) and list(ctx.out_dir.glob("*.ckpt.npz"))
    run_md(settings, ctx)
    assert _outputs(ctx.out_dir) == reference


def test_trajectory_frames_written_after_the_last_checkpoint_are_not_written_twice(tmp_path, monkeypatch):
    """Killed just after the frame of step 30 (checkpoints every 20 steps, frames every 10): the resumed run
    cuts the trajectory back to its length at the checkpoint of step 20 and the file ends as the
    uninterrupted run's, byte for byte."""
    from md_gpu.simulation import Simulation

    settings = cases.settings(checkpoint_every=20, traj_every=10)
    task, result, reference, _, _ = _reference(tmp_path, "tensile", monkeypatch, settings)
    out = Path(task["out_dir"])
    with monkeypatch.context() as m:
        _count(m, Simulation, "_write_frame", kill_after=3)
        with pytest.raises(Killed):
            TASKS.run(task)
    assert (out / f"{task['name']}.extxyz").read_text().count("step=30 ") == 1
    assert json.dumps(TASKS.run(task), sort_keys=True) == json.dumps(result, sort_keys=True)
    assert _outputs(out) == reference


def test_extrapolative_frames_saved_after_the_last_checkpoint_are_not_saved_twice(tmp_path, monkeypatch):
    """A grader that flags every check (grade 3 > warn 2, every 5 steps; checkpoints every 10): killed
    after the frame of step 15, the resumed run cuts the frames file back to the checkpoint of step 10 and
    it ends as the uninterrupted run's, byte for byte."""
    from md_gpu.extrapolation import ExtrapolationControl
    from md_gpu.integrators import Bussi
    from md_gpu.simulation import Simulation, Stage
    from md_gpu.state import from_atoms, maxwell_boltzmann
    from morse_cells import FF, cu

    def run(folder: Path, *, resume: bool = False):
        control = ExtrapolationControl(lambda positions, *_: np.full(positions.shape[0], 3.0), every=5, warn=2.0,
                                       stop=10.0, frames_path=folder / "frames.extxyz", log=lambda line: None)
        options = dict(dt_fs=2.0, thermo_every=5, checkpoint_every=10, extrapolation=control, log=lambda line: None)
        stages = [Stage("nvt", 40, thermostat=Bussi(300.0, 50.0))]
        if resume:
            return Simulation.resume(folder / "run.ckpt.npz", FF, **options).run(stages)
        state = maxwell_boltzmann(from_atoms(cu(2), species=FF.species), 600.0, seed=1)
        return Simulation(FF, state, seed=3, checkpoint_path=folder / "run.ckpt.npz", **options).run(stages)

    full = run(tmp_path / "a")
    with monkeypatch.context() as m:
        _count(m, ExtrapolationControl, "_save", kill_after=3)
        with pytest.raises(Killed):
            run(tmp_path / "b")
    resumed = run(tmp_path / "b", resume=True)
    assert (tmp_path / "a" / "frames.extxyz").read_bytes() == (tmp_path / "b" / "frames.extxyz").read_bytes()
    assert (tmp_path / "b" / "frames.extxyz").read_text().count("step=15 ") == 1
    np.testing.assert_array_equal(resumed.md.state.positions, full.md.state.positions)


def test_a_finished_task_is_not_run_again_and_a_changed_one_is(tmp_path, monkeypatch):
    """The stored result is returned without a step; another seed (another fingerprint) runs afresh."""
    import md_gpu.forcefields.base as base

    task, result, _, _, _ = _reference(tmp_path, "elastic", monkeypatch)
    first = TASKS.run(task)
    with monkeypatch.context() as m:
        forces = _count(m, base, "compute_forces")
        assert TASKS.run(task) == first == result
        assert forces["n"] == 0
        other = TASKS.run({**task, "seed": 1})
        assert forces["n"] > 0 and other["result"] != first["result"]


def _run_in_subprocess(code: str, args: list, watch: Path, *, timeout_s: float = 60.0) -> int:
    """Start ``python -c code args``, wait for the file ``watch``, SIGKILL it; returns its return code."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    start = time.monotonic()
    while not watch.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before its first checkpoint: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() - start > timeout_s:
            proc.kill()
            raise AssertionError(f"no checkpoint {watch} after {timeout_s} s")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return proc.returncode


RUN_TASK = """
import json, sys
import md_fault_cases
from md_gpu.tasks import TASKS
md_fault_cases.register_potentials()
TASKS.run(json.loads(sys.argv[1]))
"""


def test_sigkill_of_a_tensile_task_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """A real kill at whatever step the run has reached once its first checkpoint is on disk, with a
    trajectory being written: the resumed task gives the same result, HDF5 and trajectory bytes."""
    settings = cases.settings(equilibrate_steps=600, checkpoint_every=40, traj_every=20)
    task, result, reference, _, _ = _reference(tmp_path, "tensile", monkeypatch, settings)
    out = Path(task["out_dir"])
    code = _run_in_subprocess(RUN_TASK, [json.dumps(task)], out / f"{task['name']}.ckpt.npz")
    assert code == -signal.SIGKILL
    assert not (out / f"{task['name']}.result.json").exists()  # killed before it finished
    resumed = TASKS.run(task)
    assert json.dumps(resumed, sort_keys=True) == json.dumps(result, sort_keys=True)
    assert _outputs(out) == reference


RUN_FIT = """
import sys
from pathlib import Path
from training.fit import fit, load_template
from training.mtp import read_cfg
frames = read_cfg(sys.argv[1])[:6]
_, init = load_template(Path(sys.argv[2]))
fit(init, frames, max_iter=int(sys.argv[4]), seed=1, method="lbfgs", starts=2, start_iter=2, checkpoint=sys.argv[3],
    progress=lambda done, total, text: None)
"""


def test_sigkill_of_a_fit_resumes_to_the_uninterrupted_potential(tmp_path):
    """The fit killed after its first checkpoint (optimiser state) resumes to the same coefficients and loss
    history, bit for bit."""
    from training.fit import fit, load_template
    from training.mtp import read_cfg

    data = HERE / "data" / "fit" / "cubic_training.cfg.gz"
    template = HERE.parent / "training" / "mtp" / "templates" / "06.mtp"
    frames = read_cfg(data)[:6]
    _, init = load_template(template)
    opts = dict(max_iter=40, seed=1, method="lbfgs", starts=2, start_iter=2)
    straight = fit(init, frames, **opts, progress=lambda *a: None)
    ckpt = tmp_path / "fit.npz"
    code = _run_in_subprocess(RUN_FIT, [str(data), str(template), str(ckpt), str(opts["max_iter"])], ckpt)
    assert code == -signal.SIGKILL
    lines = []
    resumed = fit(init, frames, **opts, checkpoint=ckpt, resume=True, progress=lambda d, t, text: lines.append(text))
    assert "resuming" in lines[0]
    assert len(resumed.history) == len(straight.history)
    np.testing.assert_array_equal(resumed.theta, straight.theta)
    np.testing.assert_array_equal(resumed.moment_coeffs, straight.moment_coeffs)
    assert resumed.history == straight.history


@pytest.mark.slow
def test_an_fe_sweep_killed_midway_reuses_its_finished_points_to_the_same_table(tmp_path, monkeypatch):
    """The fem sweep stores each finished point (``points/<study>_<i>.json``); killed as its second point
    starts (a kill anywhere inside that point leaves the same files: a point is stored only when it is
    done), the rerun solves only that point and writes the same table (JSON, CSV) as an uninterrupted run.
    A truncated point file is one error naming it."""
    pytest.importorskip("dolfinx")
    import fem.study as study_module
    from fem import materials
    from fem.errors import FemInputError
    from test_fem_stage import PROPS, tiny_settings

    s = {**tiny_settings(), "phases": ["graphene", "borophene"]}
    study = {"name": "stripes_fraction", "geometry": "stripes", "variable": "fraction", "values": [0.0, 0.5]}
    props = materials.read_properties(PROPS)
    out = tmp_path / "fem"

    def sweep():
        table = study_module.run_sweep(s, study, 0, props, out_dir=out)
        return json.dumps(table, sort_keys=True), (out / "stripes_fraction.json").read_bytes(), \
            (out / "stripes_fraction.csv").read_bytes()

    reference = sweep()
    shutil.rmtree(out)
    with monkeypatch.context() as m:
        solves = _count(m, study_module, "run_tensile", kill_after=2)
        with pytest.raises(Killed):
            sweep()
    assert solves["n"] == 2 and [p.name for p in (out / "points").iterdir()] == ["stripes_fraction_0.json"]
    with monkeypatch.context() as m:
        solves = _count(m, study_module, "run_tensile")
        assert sweep() == reference
    assert solves["n"] == 1
    point = out / "points" / "stripes_fraction_1.json"
    point.write_text(point.read_text()[:50])  # a truncated point: one error naming it, before any solve
    with monkeypatch.context() as m:
        solves = _count(m, study_module, "run_tensile")
        with pytest.raises(FemInputError, match=f"{re.escape(str(point))}: a finished sweep point is truncated "
                                                "or corrupt.*--force"):
            sweep()
    assert solves["n"] == 0


def _without_timings(report):
    """A fit report without what depends on the clock (``seconds*`` keys, ``timing``, the log lines)."""
    if isinstance(report, dict):
        return {k: _without_timings(v) for k, v in report.items()
                if "seconds" not in k and k not in ("log", "timing")}
    if isinstance(report, list):
        return [_without_timings(v) for v in report]
    return report


@pytest.mark.slow
def test_a_fit_stage_killed_in_its_second_fit_resumes_to_the_same_potentials(tmp_path, monkeypatch):
    """The fit stage (passive training: a fit, grades, a refit) killed after the second iteration of its
    refit: run again, the first fit resumes from its finished checkpoint, the refit from its second
    iteration, and the potentials (MLIP text), active sets and report numbers are those of an
    uninterrupted stage; no checkpoint is left."""
    import training.optimize as optimize
    from test_fit_stage import GRAPHENE, _Ctx, _settings
    from training import datasets, fit_stage
    from training.mtp.maxvol import ActiveSet

    if not GRAPHENE.is_file():
        pytest.skip(f"{GRAPHENE} not there")
    (tmp_path / "runs" / "data").mkdir(parents=True)
    datasets.write(tmp_path / "runs" / "data" / "graphene.extxyz.gz", datasets.read(GRAPHENE)[::6])
    out = tmp_path / "runs" / "fit.partial"
    settings = _settings(level=6, method="full", max_iter=4, passive={"every_k": 12})

    def run():
        out.mkdir(exist_ok=True)
        fit_stage.run_fit(settings, _Ctx(case_dir=tmp_path, out_dir=out, systems={"graphene": {"kind": "phase"}},
                                         is_root=True, lines=[]))
        report = json.loads((out / "graphene_fit.json").read_text())
        sets = [ActiveSet.read(out / name) for name in ("graphene.als", "graphene_preliminary.als")]
        return ((out / "graphene.mtp").read_text(), (out / "graphene_preliminary.mtp").read_text(),
                [(a.matrix.tobytes(), a.source_frame.tolist(), a.source_atom.tolist()) for a in sets],
                _without_timings(report))

    with monkeypatch.context() as m:
        saves = _count(m, optimize.OptState, "save")
        reference = run()
    assert saves["n"] == 8  # 4 iterations per fit
    shutil.rmtree(out)
    with monkeypatch.context() as m:
        _count(m, optimize.OptState, "save", kill_after=6)
        with pytest.raises(Killed):
            run()
    assert sorted(p.name for p in out.glob("*.npz")) == ["graphene.fit0.npz", "graphene.fit1.npz"]
    with monkeypatch.context() as m:
        saves = _count(m, optimize.OptState, "save")
        assert run() == reference
    assert saves["n"] == 2 and not list(out.glob("*.npz"))  # deleted when the stage is done


def test_the_fit_stage_replaces_a_checkpoint_of_another_fit_instead_of_resuming_it(tmp_path):
    """A ``<system>.fit0.npz`` left by a fit of another problem (another seed) is deleted and the fit runs
    afresh to the potential of a fit without any checkpoint."""
    from training.fit import fit, load_template
    from training.fit_stage import checkpointed
    from training.mtp import read_cfg

    frames = read_cfg(HERE / "data" / "fit" / "cubic_training.cfg.gz")[:3]
    _, init = load_template(HERE.parent / "training" / "mtp" / "templates" / "06.mtp")
    opts = dict(max_iter=3, method="lbfgs", starts=1, start_iter=1, progress=lambda *a: None)
    fit(init, frames, seed=2, checkpoint=tmp_path / "cu.fit0.npz", **opts)
    straight = fit(init, frames, seed=1, **opts)
    resumed = checkpointed(lambda i, f, **kw: fit(i, f, seed=1, **opts, **kw), tmp_path, "cu")(init, frames)
    np.testing.assert_array_equal(resumed.theta, straight.theta)
    assert resumed.history == straight.history


def _interrupted(tmp_path, kind, monkeypatch):
    task, result, reference, n_checkpoints, _ = _reference(tmp_path, kind, monkeypatch)
    with monkeypatch.context() as m:
        _count(m, md_io, "write_checkpoint", kill_after=_kill_point(kind, n_checkpoints))
        with pytest.raises(Killed):
            TASKS.run(task)
    return task, result, reference


def test_a_truncated_checkpoint_is_one_error_naming_it_and_force_recovers(tmp_path, monkeypatch):
    """Half a checkpoint file: MDSetupError naming the file and --force; the toy runner's --force deletes the
    stage's scratch folder (checkpoints included), after which the task runs to the uninterrupted result."""
    from multiscale.case import Case
    from toy_stages import TOY, make_case

    task, result, reference = _interrupted(tmp_path / "md", "elastic", monkeypatch)
    out = Path(task["out_dir"])
    broken = sorted(out.glob("*.ckpt.npz"))[-1]
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    with pytest.raises(MDSetupError) as error:
        TASKS.run(task)
    message = str(error.value)
    assert str(broken) in message and "truncated or corrupt" in message and "--force" in message

    case = make_case(tmp_path / "case")
    partial = case / "runs" / "a.partial"
    partial.mkdir(parents=True)
    (partial / "run.ckpt.npz").write_bytes(b"PK\x03\x04 half a file")
    assert Case.load(case, pipeline=TOY).run(["a"], force=True).ran == ["a"]
    assert not partial.exists() and not (case / "runs" / "a" / "run.ckpt.npz").exists()

    shutil.rmtree(out)  # what --force does to runs/md.partial
    out.mkdir()
    assert json.dumps(TASKS.run(task), sort_keys=True) == json.dumps(result, sort_keys=True)
    assert _outputs(out) == reference


def test_a_truncated_stored_result_is_one_error_naming_it(tmp_path, monkeypatch):
    task, _, _, _, _ = _reference(tmp_path, "stability", monkeypatch)
    TASKS.run(task)
    stored = Path(task["out_dir"]) / f"{task['name']}.result.json"
    stored.write_text(stored.read_text()[:100])
    with pytest.raises(MDSetupError, match=f"stored result {re.escape(str(stored))} of a finished run is truncated "
                                           "or corrupt.*--force"):
        TASKS.run(task)


class _FullDisk:
    """A file object that takes ``room`` bytes, then raises OSError(ENOSPC), as a write on a full disk does."""

    def __init__(self, handle, room: int):
        self.handle, self.room = handle, room

    def write(self, data):
        if len(data) > self.room:
            self.handle.write(data[: self.room])
            self.handle.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def _fill_disk_after(monkeypatch, room: int):
    """Every atomic write from now on hits a full disk after ``room`` bytes of its temporary file; returns
    the function that frees the disk again."""
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode="r", *a, **k: _FullDisk(real_fdopen(fd, mode, *a, **k),
                                                                                      room))
    return lambda: monkeypatch.setattr(atomic.os, "fdopen", real_fdopen)


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_the_run_resumes(tmp_path, monkeypatch):
    """ENOSPC half-way through the third checkpoint: the run stops with the OSError, the second checkpoint
    is intact (same bytes) with no temporary file beside it, and resuming from it (disk freed) gives the
    uninterrupted result."""
    task, result, reference, _, _ = _reference(tmp_path, "hnemd", monkeypatch)
    out = Path(task["out_dir"])
    real_write = md_io.write_checkpoint
    state = {"n": 0}

    def write_checkpoint(path, *args, **kwargs):
        state["n"] += 1
        if state["n"] == 3:
            state["before"] = (Path(path), Path(path).read_bytes())
            state["free"] = _fill_disk_after(monkeypatch, 200)
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(md_io, "write_checkpoint", write_checkpoint)
    with pytest.raises(OSError) as error:
        TASKS.run(task)
    assert error.value.errno == errno.ENOSPC
    state["free"]()
    monkeypatch.setattr(md_io, "write_checkpoint", real_write)
    path, before = state["before"]
    assert path.read_bytes() == before
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    assert json.dumps(TASKS.run(task), sort_keys=True) == json.dumps(result, sort_keys=True)
    assert _outputs(out) == reference


@pytest.mark.parametrize("kind", ["summary", "properties"])
def test_a_full_disk_during_a_summary_or_properties_write_keeps_the_previous_file(kind, tmp_path, monkeypatch):
    """summary.json / properties.json written again onto a full disk (ENOSPC after 4 kB): the OSError
    reaches the caller, the previous file is unchanged and still reads, no temporary file is left."""
    from common import contracts

    read, write = getattr(contracts, f"read_{kind}"), getattr(contracts, f"write_{kind}")
    data = read(HERE / "data" / "contracts" / f"{kind}.json")
    path = tmp_path / f"{kind}.json"
    write(path, data)
    before = path.read_bytes()
    free = _fill_disk_after(monkeypatch, 4096)
    with pytest.raises(OSError) as error:
        write(path, {**data, "note": "x" * 10000})
    assert error.value.errno == errno.ENOSPC
    free()
    assert path.read_bytes() == before and read(path) == data
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
