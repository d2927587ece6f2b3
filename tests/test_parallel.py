"""MPI: mpirun -n 2 of the toy pipeline equals the serial run; a failing rank fails the run, no hang."""
import json
import shutil

import pytest

from conftest import TESTS
from multiscale.case import Case
from multiscale.runner import tree_hash
from toy_stages import TOY, make_case

pytestmark = pytest.mark.mpi


def test_mpi_equals_serial(tmp_path, mpirun):
    serial = make_case(tmp_path / "serial", numbers=range(1, 8))
    parallel = make_case(tmp_path / "parallel", numbers=range(1, 8))
    Case.load(serial, pipeline=TOY).run(["a", "b"])
    proc = mpirun(["mpi_toy_run.py", str(parallel)], n=2, cwd=str(TESTS))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for stage in ("a", "b"):
        assert tree_hash(serial / "runs" / stage) == tree_hash(parallel / "runs" / stage)
        record = json.loads((parallel / "runs" / stage / "stage.json").read_text())
        assert record["ranks"] == 2
        assert record["summary"] == json.loads((serial / "runs" / stage / "stage.json").read_text())["summary"]
    assert len(list((parallel / "runs/a").glob("task_*.txt"))) == 7


@pytest.mark.parametrize("fail_on", [0, 1])
def test_failure_on_one_rank_fails_all_without_hang(tmp_path, mpirun, fail_on):
    case = make_case(tmp_path / "case", numbers=range(1, 5))
    proc = mpirun(["mpi_toy_run.py", str(case), str(fail_on)], n=2, timeout=120,
                  cwd=str(TESTS))
    assert proc.returncode != 0
    assert f"rank {fail_on % 2}" in proc.stderr and f"task {fail_on} was told to fail" in proc.stderr
    assert not (case / "runs/a/stage.json").exists()


def test_ranks_use_ase_file_functions_out_of_step_without_hang(tmp_path, mpirun):
    """ASE broadcasts reads from rank 0 once mpi4py is loaded; the farm turns that off (serial_ase):
    ``mpirun -n 2 multiscale run`` hung in the data stage without it."""
    from ase import Atoms
    from ase.io import write

    write(tmp_path / "rank0.extxyz", [Atoms("H")] * 2)
    proc = mpirun(["mpi_ase_io.py", str(tmp_path)], n=2, timeout=60, cwd=str(TESTS))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "rank 0 done" in proc.stdout and "rank 1 done" in proc.stdout


def test_costly_items_go_first_to_the_least_loaded_rank_and_a_waiting_rank_sleeps(mpirun):
    """costs [1, 1, 10] on 2 ranks: the long item alone on rank 0, both short ones on rank 1, results
    in item order on every rank; rank 1, done at once, waits 2 s for rank 0 without spinning on its
    core (a blocking allgather spins; the fit's threads need that core)."""
    proc = mpirun(["mpi_farm_costs.py"], n=2, timeout=120, cwd=str(TESTS))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                   key=lambda r: r["rank"])
    assert [r["rank"] for r in lines] == [0, 1]
    for r in lines:
        assert r["results"] == [["a", 1], ["b", 1], ["long", 0]]
    assert lines[1]["cpu_s"] < 0.5, lines[1]
