"""The multiscale command line: run, status and error reporting (in-process)."""
import pytest

from multiscale import cli


def test_run_and_status_on_embedded_case_layout(tmp_path, capsys):
    # A case whose every stage is still unwritten or works: the CLI must not crash and must say so.
    case = tmp_path / "c"
    case.mkdir()
    (case / "case.yaml").write_text("name: c\nsystems:\n  g: {kind: phase, structure: graphene}\n")
    assert cli.main(["status", str(case)]) == 0
    out = capsys.readouterr().out
    for stage in ("data", "fit", "md", "constitutive", "fem", "report"):
        assert stage in out


def test_bad_case_is_one_line_error(tmp_path, capsys):
    (tmp_path / "case.yaml").write_text("name: c\nsystems:\n  g: {kind: phase, thickness: 3}\n")
    assert cli.main(["status", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("multiscale: error:") and "systems.g.thickness" in err and "did you mean 'thickness_A'" in err


def test_unknown_stage(tmp_path, capsys):
    (tmp_path / "case.yaml").write_text("name: c\nsystems:\n  g: {kind: phase, structure: graphene}\n")
    assert cli.main(["run", str(tmp_path), "--stages", "dta"]) == 1
    assert "unknown stage 'dta'" in capsys.readouterr().err


def test_help_lists_engine_groups(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for group in ("run", "status", "data", "mtp", "md", "fem"):
        assert group in out
