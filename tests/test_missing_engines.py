"""A stage whose engine package is missing is *not available*, named, and the other stages still run.

The CLI tests run ``multiscale`` in a subprocess in which a meta-path finder hides some packages
(``import dolfinx`` raises ModuleNotFoundError, as on a machine without python3-dolfinx), on a tiny
one-phase case: 7 frames of the embedded graphene dataset and a level-2 MTP, so that a ``data,fit``
run takes seconds. The in-process tests hide a package by setting ``sys.modules[name] = None``,
which makes both ``import name`` and ``importlib.util.find_spec(name)`` fail the same way.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from multiscale.case import Case
from multiscale.errors import CaseError, StageError
from multiscale.parallel import Farm, MPIUnavailable
from multiscale.stages import Pipeline, Stage, find_missing, from_import_error, install_hint
from toy_stages import make_case

ROOT = Path(__file__).resolve().parents[1]
GRAPHENE = ROOT / "cases" / "graphene_borophene" / "data" / "graphene.extxyz.gz"

TINY_YAML = """\
name: tiny
systems:
  graphene: {kind: phase}
fit:
  level: 2
  max_iter: 2
  passive: {every_k: 2}
"""

#: Run the CLI with the packages named in argv[1] (comma-separated) hidden; argv[2:] is the command line.
HIDE_AND_RUN = """\
import importlib.abc, sys
HIDDEN = set(filter(None, sys.argv[1].split(",")))
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None
sys.meta_path.insert(0, Hide())
from multiscale.cli import main
sys.exit(main(sys.argv[2:]))
"""
LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK", "PMIX_RANK",
                 "MPI_LOCALNRANKS")


def multiscale(hidden, *args, env=None):
    """``multiscale ARGS`` in a subprocess with the packages ``hidden``; returns the CompletedProcess."""
    environ = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    environ.update(PYTHONPATH=os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")]), MPLBACKEND="Agg",
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-c", HIDE_AND_RUN, ",".join(hidden), *map(str, args)],
                          capture_output=True, text=True, env=environ, timeout=120, cwd=ROOT)


def status_rows(out: str) -> dict:
    """The rows of ``multiscale status`` by stage name."""
    stages = ("data", "fit", "md", "constitutive", "fem", "report")
    return {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in stages}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from training import datasets

    folder = tmp_path_factory.mktemp("tiny_data")
    datasets.write(folder / "graphene.extxyz.gz", datasets.read(GRAPHENE)[::40])
    return folder


@pytest.fixture
def tiny(tmp_path, tiny_data):
    """A one-phase case with 7 frames of graphene and tiny fit settings."""
    case = tmp_path / "tiny"
    (case / "data").mkdir(parents=True)
    (case / "data" / "graphene.extxyz.gz").write_bytes((tiny_data / "graphene.extxyz.gz").read_bytes())
    (case / "case.yaml").write_text(TINY_YAML)
    return case


# -- the CLI with a package hidden ----------------------------------------------------------------------
def test_without_dolfinx_fem_is_not_available_and_data_fit_run(tiny):
    status = multiscale(["dolfinx"], "status", tiny)
    assert status.returncode == 0, status.stderr
    rows = status_rows(status.stdout)
    assert "unavailable" in rows["fem"]
    assert "dolfinx is not installed: apt-get install python3-dolfinx, see README" in rows["fem"]
    assert "blocked: needs the output of fem, which is not available" in rows["report"]
    for stage in ("data", "fit", "md", "constitutive"):
        assert "never run" in rows[stage] and "blocked" not in rows[stage]

    run = multiscale(["dolfinx"], "run", tiny, "--stages", "data,fit")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tiny / "runs" / "fit" / "graphene.mtp").is_file()

    asked = multiscale(["dolfinx"], "run", tiny, "--stages", "fem")
    assert asked.returncode == 1
    assert asked.stderr.strip() == ("multiscale: error: stage 'fem' is not available: dolfinx is not installed: "
                                    "apt-get install python3-dolfinx, see README")
    later = multiscale(["dolfinx"], "run", tiny, "--stages", "report")
    assert later.returncode == 1
    assert "stage 'report' needs the output of fem, which is not available: dolfinx is not installed" in later.stderr
    assert not (tiny / "runs" / "fem").exists() and not (tiny / "runs" / "report").exists()

    props = ROOT / "tests" / "data" / "fem" / "properties_graphene_borophene.json"
    command = multiscale(["dolfinx"], "fem", "tensile", "--properties", props, "--out", tiny / "fem_out")
    assert command.returncode == 2
    assert command.stderr.strip() == ("multiscale fem: not available: dolfinx is not installed: "
                                      "apt-get install python3-dolfinx, see README")


@pytest.mark.parametrize("package, hint", [("petsc4py", "apt-get install python3-petsc4py"),
                                           ("mpi4py", "apt-get install python3-mpi4py")])
def test_without_a_fem_package_fem_is_not_available(tiny, package, hint):
    status = multiscale([package], "status", tiny)
    assert status.returncode == 0, status.stderr
    rows = status_rows(status.stdout)
    assert f"{package} is not installed: {hint}, see README" in rows["fem"]
    assert all("unavailable" not in rows[s] for s in ("data", "fit", "md", "constitutive"))


def test_without_mpi4py_runs_are_serial(tiny):
    run = multiscale(["mpi4py"], "run", tiny, "--stages", "data")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ranks=1" in run.stdout and (tiny / "runs" / "data" / "stage.json").is_file()
    # one rank under a launcher: serial too; several ranks without mpi4py: one clear error, nothing run
    one = multiscale(["mpi4py"], "run", tiny, "--stages", "data", "--force", env={"OMPI_COMM_WORLD_SIZE": "1"})
    assert one.returncode == 0, one.stdout + one.stderr
    two = multiscale(["mpi4py"], "run", tiny, "--stages", "data", "--force", env={"OMPI_COMM_WORLD_SIZE": "2"})
    assert two.returncode == 1
    assert "with 2 ranks, but mpi4py does not import" in two.stderr and "apt-get install python3-mpi4py" in two.stderr


def test_without_ase_the_atomistic_stages_are_not_available(tiny):
    status = multiscale(["ase"], "status", tiny)
    assert status.returncode == 0, status.stderr
    rows = status_rows(status.stdout)
    for stage in ("data", "fit", "md"):
        assert "ase is not installed: pip install ase, see README" in rows[stage]
    assert "blocked: needs the output of md, which is not available" in rows["constitutive"]

    run = multiscale(["ase"], "run", tiny, "--stages", "data")
    assert run.returncode == 1
    assert "stage 'data' is not available: ase is not installed: pip install ase, see README" in run.stderr
    command = multiscale(["ase"], "data", "summary", GRAPHENE)
    assert command.returncode == 2
    assert command.stderr.startswith("multiscale data: not available: ase is not installed")


def test_without_h5py_fit_and_md_are_not_available_data_runs(tiny):
    status = multiscale(["h5py"], "status", tiny)
    rows = status_rows(status.stdout)
    for stage in ("fit", "md"):
        assert "h5py is not installed: apt-get install python3-h5py, see README" in rows[stage]
    assert "unavailable" not in rows["data"]
    run = multiscale(["h5py"], "run", tiny, "--stages", "data")
    assert run.returncode == 0, run.stdout + run.stderr


def test_without_tblite_generation_is_not_available(tiny):
    # the shipped dataset is read, not generated: no tblite needed, even with data.generate
    (tiny / "case.yaml").write_text(TINY_YAML + "data: {generate: true, engine: tblite-gfn2}\n")
    assert "unavailable" not in status_rows(multiscale(["tblite"], "status", tiny).stdout)["data"]
    # a missing dataset that data.generate asks tblite for
    (tiny / "data" / "graphene.extxyz.gz").unlink()
    status = multiscale(["tblite"], "status", tiny)
    assert status.returncode == 0, status.stderr
    assert ("tblite is not installed (data.engine: tblite-gfn2 generates the missing dataset of graphene): "
            "pip install tblite, see README") in status_rows(status.stdout)["data"]
    run = multiscale(["tblite"], "run", tiny, "--stages", "fit")
    assert run.returncode == 1
    assert "stage 'fit' needs the output of data, which is not available: tblite is not installed" in run.stderr


# -- in process -----------------------------------------------------------------------------------------
def hide(monkeypatch, *packages):
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)


def test_gpaw_only_when_the_case_asks_for_it(tiny, monkeypatch):
    hide(monkeypatch, "gpaw")
    (tiny / "case.yaml").write_text(TINY_YAML + "data: {generate: true, engine: gpaw}\n")
    assert "data" not in Case.load(tiny).unavailable  # every dataset is there: nothing to generate
    (tiny / "data" / "graphene.extxyz.gz").unlink()
    reason = Case.load(tiny).unavailable["data"]
    assert reason.startswith("gpaw is not installed (data.engine: gpaw generates the missing dataset of graphene)")
    assert "apt-get install gpaw gpaw-data" in reason
    (tiny / "case.yaml").write_text(TINY_YAML + "data: {generate: false, engine: gpaw}\n")
    assert "data" not in Case.load(tiny).unavailable


def test_cupy_only_when_the_gpu_backend_is_asked_for(tiny, monkeypatch):
    hide(monkeypatch, "cupy")
    monkeypatch.delenv("MULTISCALE_BACKEND", raising=False)
    assert "md" not in Case.load(tiny).unavailable  # NumPy will do
    monkeypatch.setenv("MULTISCALE_BACKEND", "cupy")
    assert Case.load(tiny).unavailable["md"].startswith("cupy is not installed (MULTISCALE_BACKEND=cupy)")


def test_missing_engine_is_not_imported_and_settings_are_kept(tiny, monkeypatch):
    hide(monkeypatch, "dolfinx")
    (tiny / "case.yaml").write_text(TINY_YAML + "fem: {length_nm: 10.0, not_a_key: 1}\n")
    case = Case.load(tiny)  # the fem section cannot be validated without its engine: kept as written
    assert case.unavailable == {"fem": "dolfinx is not installed: apt-get install python3-dolfinx, see README"}
    assert case.settings["fem"] == {"length_nm": 10.0, "not_a_key": 1} and "fem" not in case.runners
    assert find_missing(["dolfinx", "numpy"]) == ["dolfinx"]


def test_messages_name_the_package_and_the_install_command():
    assert install_hint(["dolfinx", "ufl", "petsc4py", "gmsh"]) == (
        "apt-get install python3-dolfinx python3-petsc4py; pip install gmsh, see README")
    absent = ModuleNotFoundError("No module named 'h5py'", name="h5py")
    assert str(from_import_error(absent, "md_gpu.io")) == (
        "h5py is not installed (needed by md_gpu.io): apt-get install python3-h5py, see README")
    broken = ModuleNotFoundError("No module named 'numpy.not_a_submodule'", name="numpy.not_a_submodule")
    assert str(from_import_error(broken)).startswith("numpy is installed but does not import")
    own_bug = ImportError("cannot import name 'nothing' from 'training.datasets'", name="training.datasets")
    assert from_import_error(own_bug, "training.data_stage") is None  # a bug of ours is raised, not hidden


def test_mpi_launch_without_mpi4py(monkeypatch):
    hide(monkeypatch, "mpi4py")
    for var in LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    assert Farm.from_environment().comm is None
    monkeypatch.setenv("PMIX_RANK", "0")
    assert Farm.from_environment().comm is None
    monkeypatch.setenv("PMIX_RANK", "1")
    with pytest.raises(MPIUnavailable, match="mpi4py does not import"):
        Farm.from_environment()


# Toy pipelines: b needs a package that is not installed and c needs b's output; d imports one as it runs.
SETTINGS = {}


def run_ok(settings, ctx):
    (ctx.out_dir / "ok.txt").write_text("ok\n")
    return {}


def run_importing(settings, ctx):
    import not_installed_engine_xyz  # noqa: F401

    return {}


TOY = Pipeline((
    Stage("a", "test_missing_engines", "SETTINGS", "run_ok"),
    Stage("b", "test_missing_engines", "SETTINGS", "run_ok", after=("a",), engines=("not_installed_engine_xyz",)),
    Stage("c", "test_missing_engines", "SETTINGS", "run_ok", after=("b",)),
))
def _import_in_task(item):
    import not_installed_engine_xyz  # noqa: F401


def run_mapped(settings, ctx):
    ctx.map(_import_in_task, [1, 2])
    return {}


TOY_RUNTIME = Pipeline((Stage("d", "test_missing_engines", "SETTINGS", "run_importing"),
                        Stage("e", "test_missing_engines", "SETTINGS", "run_mapped")))
TOY_YAML = "name: toy\nsystems:\n  alpha: {kind: phase}\n"
MISSING = "not_installed_engine_xyz is not installed: pip install not_installed_engine_xyz, see README"


def test_asking_for_a_stage_that_cannot_run_is_one_error(tmp_path):
    make_case(tmp_path, yaml_text=TOY_YAML)
    case = Case.load(tmp_path, pipeline=TOY)
    assert case.unavailable == {"b": MISSING}
    with pytest.raises(CaseError) as err:
        case.run(["a", "b", "c"])
    assert str(err.value) == (f"stage 'b' is not available: {MISSING}; "
                              f"stage 'c' needs the output of b, which is not available: {MISSING}")
    assert not (tmp_path / "runs" / "a").exists()  # raised before anything ran


def test_the_others_run_and_later_stages_say_why_they_are_blocked(tmp_path, capsys):
    make_case(tmp_path, yaml_text=TOY_YAML)
    result = Case.load(tmp_path, pipeline=TOY).run()
    assert result.outcome == {"a": "ran", "b": "unavailable", "c": "blocked"}
    out = capsys.readouterr().out
    assert f"[b] not available: {MISSING}" in out
    assert f"[c] blocked: needs the output of b, which is not available: {MISSING}" in out
    assert "not available here: b, c (no output was faked for them)" in out
    assert not (tmp_path / "runs" / "b").exists() and not (tmp_path / "runs" / "c").exists()


def test_an_engine_imported_while_running_names_the_package(tmp_path):
    make_case(tmp_path, yaml_text=TOY_YAML)
    with pytest.raises(StageError, match=f"stage 'd' failed: not available: not_installed_engine_xyz is not "
                                         f"installed \\(needed by test_missing_engines\\)"):
        Case.load(tmp_path, pipeline=TOY_RUNTIME).run(["d"])
    with pytest.raises(StageError, match="stage 'e' failed: task 0 \\(1\\): not available: not_installed_engine_xyz "
                                         "is not installed: pip install"):
        Case.load(tmp_path, pipeline=TOY_RUNTIME).run(["e"])
