"""The stage runner: skip when unchanged, rerun when changed, atomic outputs, status."""
import json

import pytest

from common import atomic
from multiscale.case import Case
from multiscale.errors import StageError
from multiscale.runner import case_status, format_status
from toy_stages import CASE_YAML, TOY, make_case


def states(case):
    return {row.name: row.state for row in case_status(case)}


def test_run_then_skip_then_rerun_on_change(tmp_path):
    make_case(tmp_path)
    case = Case.load(tmp_path, pipeline=TOY)
    result = case.run(["a", "b"])
    assert result.ran == ["a", "b"]
    assert json.loads((tmp_path / "runs/b/b.json").read_text())["scaled"] == [3, 12, 27, 48, 75]
    assert states(case) == {"a": "done", "b": "done", "c": "unavailable"}

    again = Case.load(tmp_path, pipeline=TOY).run(["a", "b"])
    assert again.skipped == ["a", "b"] and again.ran == []
    (tmp_path / "data/README.md").write_text("# where the numbers come from\n")  # a note, not an input
    assert Case.load(tmp_path, pipeline=TOY).run(["a", "b"]).skipped == ["a", "b"]

    # A setting of b changes: only b reruns.
    (tmp_path / "case.yaml").write_text(CASE_YAML.replace("scale: 3.0", "scale: 1.0"))
    changed = Case.load(tmp_path, pipeline=TOY)
    rows = {row.name: row for row in case_status(changed)}
    assert rows["b"].state == "stale" and "settings.scale" in rows["b"].detail
    assert changed.run(["a", "b"]).ran == ["b"]

    # An input file of a changes: a reruns, and b reruns because a's output changed.
    (tmp_path / "data/numbers.txt").write_text("1 2 3\n")
    case = Case.load(tmp_path, pipeline=TOY)
    assert "file:data/numbers.txt" in {r.name: r for r in case_status(case)}["a"].detail
    assert case.run(["a", "b"]).ran == ["a", "b"]
    assert json.loads((tmp_path / "runs/b/b.json").read_text())["scaled"] == [1, 4, 9]


def test_same_output_does_not_invalidate_downstream(tmp_path):
    make_case(tmp_path)
    Case.load(tmp_path, pipeline=TOY).run(["a", "b"])
    # A label-only change reruns a, but its output differs (label is written), so b reruns too;
    # a change that leaves a's output identical (rewriting the same numbers) leaves b done.
    (tmp_path / "data/numbers.txt").write_text("1  2 3 4 5\n")  # same numbers, other bytes
    case = Case.load(tmp_path, pipeline=TOY)
    assert case.run(["a", "b"]).ran == ["a"]
    assert states(case)["b"] == "done"


def test_force_reruns(tmp_path):
    make_case(tmp_path)
    Case.load(tmp_path, pipeline=TOY).run(["a", "b"])
    assert Case.load(tmp_path, pipeline=TOY).run(["b"], force=True).ran == ["b"]


def test_missing_upstream_is_a_clear_error(tmp_path):
    make_case(tmp_path)
    with pytest.raises(Exception, match="needs the output of a"):
        Case.load(tmp_path, pipeline=TOY).run(["b"])


def test_unavailable_stage_is_reported_not_faked(tmp_path, capsys):
    make_case(tmp_path)
    result = Case.load(tmp_path, pipeline=TOY).run()
    assert result.ran == ["a", "b"] and result.not_available == ["c"]
    assert not (tmp_path / "runs/c").exists()
    assert "[c] not available: module toy_stages_not_written is not part of this installation" in capsys.readouterr().out


def test_failed_stage_keeps_previous_output(tmp_path):
    make_case(tmp_path)
    Case.load(tmp_path, pipeline=TOY).run(["a"])
    before = (tmp_path / "runs/a/a.json").read_text()
    (tmp_path / "case.yaml").write_text(CASE_YAML.replace("power: 2", "power: 3\n  fail_on: 2"))
    with pytest.raises(StageError, match="task 2 was told to fail"):
        Case.load(tmp_path, pipeline=TOY).run(["a"])
    assert (tmp_path / "runs/a/a.json").read_text() == before       # previous artefact intact
    assert (tmp_path / "runs/a.partial").is_dir()                     # scratch kept to resume from
    assert {r.name: r for r in case_status(Case.load(tmp_path, pipeline=TOY))}["a"].interrupted


def test_log_file_per_run(tmp_path):
    make_case(tmp_path)
    Case.load(tmp_path, pipeline=TOY).run(["a"])
    Case.load(tmp_path, pipeline=TOY).run(["a"])
    logs = sorted((tmp_path / "runs/logs").glob("run-*.log"))
    assert len(logs) == 2
    assert "[a] running" in logs[0].read_text() and "skipped" in logs[1].read_text()


def test_status_table(tmp_path):
    make_case(tmp_path)
    case = Case.load(tmp_path, pipeline=TOY)
    assert states(case) == {"a": "missing", "b": "missing", "c": "unavailable"}
    case.run(["a"])
    text = format_status(case)
    assert "done" in text and "missing" in text and "unavailable" in text


def test_atomic_write_interrupted_leaves_previous(tmp_path):
    target = tmp_path / "properties.json"
    atomic.write_json(target, {"E": 1.0})

    def half_then_crash(handle):
        handle.write('{"E": 2.')
        raise KeyboardInterrupt("power cut")

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(target, half_then_crash)
    assert json.loads(target.read_text()) == {"E": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["properties.json"]  # no temporary left behind


def test_interrupted_folder_swap_is_recovered(tmp_path):
    final = tmp_path / "runs" / "a"
    final.mkdir(parents=True)
    (final / "x").write_text("old")
    # simulate a crash between the two renames of replace_dir
    final.rename(final.with_name("a.old"))
    atomic.recover_dir(final)
    assert (final / "x").read_text() == "old"


def test_python_api_runs_a_stage_function_alone(tmp_path):
    """Each stage is a plain function of (settings, ctx): callable without the runner."""
    from multiscale.context import StageContext
    from multiscale.parallel import Farm
    from toy_stages import run_a

    make_case(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    ctx = StageContext(name="a", case_dir=tmp_path, runs_dir=tmp_path, out_dir=out, systems={}, farm=Farm())
    summary = run_a({"power": 3, "fail_on": -1, "sleep_s": 0.0, "nested": {"label": "x"}}, ctx)
    assert summary == {"n": 5, "sum": 225.0}


def test_assign_farms_the_costliest_items_first_to_the_least_loaded_rank():
    from multiscale.parallel import Farm, assign

    assert assign([1, 1, 10], 2) == [[2], [0, 1]]          # round-robin would put 0 and 2 on rank 0
    assert assign([3, 3, 2, 2, 2], 2) == [[0, 2, 4], [1, 3]]
    assert assign([5, 1], 4) == [[0], [1], [], []]
    shares = assign([4, 7, 1, 7, 3, 2], 3)
    assert sorted(i for share in shares for i in share) == list(range(6))
    assert Farm().map(lambda x: x * x, [1, 2, 3], costs=[1, 5, 2]) == [1, 4, 9]  # serial: in order
    with pytest.raises(ValueError, match="2 costs for 3 items"):
        Farm().map(lambda x: x, [1, 2, 3], costs=[1, 2])
