"""The bad-input matrix: one broken input per row, one clear error each, its message asserted.

Each row of :data:`FILE_ROWS` and :data:`CASE_ROWS` is (stage, how the input is broken, the input, the error
class, fragments of the message). Every message must name the file (or the key of ``case.yaml``), the
value or line that is wrong, and say what to do. The rows are the cases no other test covers; the ones
that are covered elsewhere are listed with their tests in docs/validation.md ("Bad input"), which lists
these rows too. The later tests of this module break what one stage hands the next (a damaged artefact,
an MD run that blows up, an FE solve that does not converge) and check that nothing already computed
is lost. Every input is a small file written in ``tmp_path``.
"""
from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from multiscale.case import Case
from multiscale.errors import CaseError, StageError
from training import datasets
from training.datasets import DatasetError
from training.mtp import MTP, read_cfg
from training.mtp.errors import MTPFormatError

ROOT = Path(__file__).resolve().parents[1]
MTP_FILE = ROOT / "tests" / "data" / "mlip" / "cubic" / "pot_06.mtp"   # trained, 1 species, 2 radial functions
CU_MTP = ROOT / "tests" / "data" / "md" / "cu_pot_10.mtp"

# -- small inputs ---------------------------------------------------------------------------------------
GOOD_CFG = """BEGIN_CFG
 Size
    1
 Supercell
   3.0 0.0 0.0
   0.0 3.0 0.0
   0.0 0.0 3.0
 AtomData:  id type cartes_x cartes_y cartes_z fx fy fz
    1 0 0.0 0.0 0.0 0.1 0.2 0.3
 Energy
   -1.0
END_CFG
"""
GOOD_XYZ = ('2\nLattice="3 0 0 0 3 0 0 0 20" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.0 pbc="T T F"\n'
            "C 0 0 10 0.1 0 0\nC 1.4 0 10 -0.1 0 0\n")


def _mtp_lines() -> list[str]:
    return MTP_FILE.read_text().splitlines(keepends=True)


def _mtp_until(key: str) -> str:
    """The trained .mtp cut just before the line starting with ``key`` (a copy interrupted there)."""
    lines = _mtp_lines()
    return "".join(lines[: next(k for k, line in enumerate(lines) if line.startswith(key))])


def _with_nan_coefficient() -> str:
    text = MTP_FILE.read_text()
    head, _, tail = text.partition("moment_coeffs = {")
    return head + "moment_coeffs = {nan, " + tail.split(",", 1)[1]


def _gzip_cut(text: str) -> bytes:
    return gzip.compress(text.encode())[:-12]


def _outcar_cut_in_step_2() -> str | None:
    """ASE's one-step OUTCAR with its ionic step written twice, cut inside the second step's forces."""
    import ase

    source = Path(ase.__file__).parent / "test" / "testdata" / "vasp" / "OUTCAR_example_1"
    if not source.is_file():
        return None
    lines = source.read_text().splitlines(keepends=True)
    start = next(k for k, line in enumerate(lines) if "Iteration    1(   1)" in line)
    stop = next(k for k, line in enumerate(lines) if "General timing" in line)
    step = lines[start:stop]
    second = [line.replace("Iteration    1(", "Iteration    2(") for line in step]
    forces = next(k for k, line in enumerate(second) if "TOTAL-FORCE" in line)
    return "".join(lines[:start] + step + second[: forces + 3])


# (stage, how it is broken, file name, content (str or bytes), reader, error, message fragments)
FILE_ROWS = [
    ("fit/md: .mtp", "trained potential cut before species_coeffs (read as a zeroed template before)",
     "cut.mtp", lambda: _mtp_until("species_coeffs"), MTP.read, MTPFormatError,
     ["cut.mtp: the file ends at line 22 without species_coeffs and moment_coeffs", "after radial_coeffs",
      "cut short", "rerun the fit"]),
    ("fit/md: .mtp", "trained potential cut inside its basis tables",
     "cut.mtp", lambda: _mtp_until("alpha_moments_count"), MTP.read, MTPFormatError,
     ["cut.mtp: required key 'alpha_moments_count' is missing (the file ends at line 15: cut short?)"]),
    ("fit/md: .mtp", "trained potential cut before moment_coeffs",
     "cut.mtp", lambda: _mtp_until("moment_coeffs"), MTP.read, MTPFormatError,
     ["cut.mtp", "without moment_coeffs", "after species_coeffs", "copy it again"]),
    ("fit/md: .mtp", "cut inside a line (the list has no closing brace)",
     "cut.mtp", lambda: MTP_FILE.read_text()[:-40], MTP.read, MTPFormatError,
     ["cut.mtp: line 24", "moment_coeffs", "not closed by '}'", "cut short"]),
    ("fit/md: .mtp", "radial_funcs_count larger than the rows written (a wrong count)",
     "count.mtp", lambda: MTP_FILE.read_text().replace("radial_funcs_count = 2", "radial_funcs_count = 3"),
     MTP.read, MTPFormatError, ["count.mtp: line 16", "radial_coeffs 0-0 has 2 rows", "radial_funcs_count = 3"]),
    ("fit/md: .mtp", "alpha_moments_count smaller than the basic moments (a wrong count)",
     "count.mtp", lambda: MTP_FILE.read_text().replace("alpha_moments_count = 8", "alpha_moments_count = 3"),
     MTP.read, MTPFormatError, ["count.mtp: line 18", "5 entries but alpha_moments_count = 3"]),
    ("fit/md: .mtp", "species_count = 2 with the coefficients of one species",
     "species.mtp", lambda: MTP_FILE.read_text().replace("species_count = 1", "species_count = 2"),
     MTP.read, MTPFormatError, ["species.mtp", "radial_coeffs lack species pairs [(0, 1), (1, 0), (1, 1)]"]),
    ("fit/md: .mtp", "a NaN coefficient (a diverged fit)",
     "nan.mtp", _with_nan_coefficient, MTP.read, MTPFormatError,
     ["nan.mtp: line 24", "moment_coeffs", "not finite", "refit"]),
    ("fit/md: .mtp", "a binary file (an HDF5 file named .mtp)",
     "binary.mtp", lambda: b"\x89HDF\r\n\x1a\n\x00\x00", MTP.read, MTPFormatError,
     ["binary.mtp", "not a text file", "byte 0x89 at offset 0", "plain text"]),
    ("data: .cfg", "a force that is not a number",
     "bad.cfg", lambda: GOOD_CFG.replace("0.1 0.2 0.3", "0.1 abc 0.3"), read_cfg, MTPFormatError,
     ["bad.cfg: configuration 1, line 9", "atom 1 of AtomData is not a list of float numbers", "abc"]),
    ("data: .cfg", "Size larger than the atom rows",
     "bad.cfg", lambda: GOOD_CFG.replace("    1\n Super", "    2\n Super"), read_cfg, MTPFormatError,
     ["bad.cfg: configuration 1, line 10", "expected 8 numbers for atom 2 of AtomData", "'Energy'"]),
    ("data: .cfg", "a Supercell value that is not a number",
     "bad.cfg", lambda: GOOD_CFG.replace("0.0 0.0 3.0", "0.0 0.0 x"), read_cfg, MTPFormatError,
     ["bad.cfg: configuration 1, line 7", "a Supercell row with a value that is not a number"]),
    ("data: .cfg.gz", "compressed file cut short",
     "bad.cfg.gz", lambda: _gzip_cut(GOOD_CFG * 3), read_cfg, MTPFormatError,
     ["bad.cfg.gz: configuration", "EOFError", "truncated or corrupt"]),
    ("data: extxyz", "an unknown element symbol",
     "bad.extxyz", lambda: GOOD_XYZ.replace("C 0 0 10", "Qq 0 0 10"), datasets.read, DatasetError,
     ["bad.extxyz: frame 0", "unknown element 'Qq'", "use element symbols"]),
    ("data: extxyz", "a force that is not a number",
     "bad.extxyz", lambda: GOOD_XYZ.replace("0.1 0 0", "abc 0 0"), datasets.read, DatasetError,
     ["bad.extxyz: frame 0 is truncated or malformed", "could not convert string to float: 'abc'"]),
    ("data: extxyz.gz", "not gzip at all (a plain file named .gz)",
     "bad.extxyz.gz", lambda: GOOD_XYZ, datasets.read, DatasetError,
     ["bad.extxyz.gz: cannot read it as text", "BadGzipFile", "copy or write it again"]),
    ("data: extxyz.gz", "compressed stream cut short",
     "bad.extxyz.gz", lambda: _gzip_cut(GOOD_XYZ * 20), datasets.read, DatasetError,
     ["bad.extxyz.gz: cannot read it as text", "EOFError", "truncated or corrupt"]),
    ("data: extxyz", "binary content",
     "bad.extxyz", lambda: b"\x89HDF\r\n\x1a\n\x00\x00\xff", datasets.read, DatasetError,
     ["bad.extxyz: cannot read it as text", "UnicodeDecodeError"]),
    ("data: OUTCAR", "VASP stopped inside ionic step 2 (ASE dropped the step without a word)",
     "OUTCAR", _outcar_cut_in_step_2, datasets.read, DatasetError,
     ["OUTCAR: ionic step 2 (from line ", ") is cut short", "1 complete step(s) before it",
      "Delete the lines from ", "or rerun VASP"]),
]


@pytest.mark.parametrize("stage, broken, name, content, reader, error, fragments", FILE_ROWS,
                         ids=[f"{row[0]}: {row[1]}" for row in FILE_ROWS])
def test_a_broken_file_gives_one_named_error(tmp_path, stage, broken, name, content, reader, error, fragments):
    data = content()
    if data is None:
        pytest.skip("ASE's test data (OUTCAR_example_1) is not installed")
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(error) as info:
        reader(path)
    message = str(info.value)
    assert message.startswith(str(tmp_path)), message  # the file comes first
    for fragment in fragments:
        assert fragment in message, message


def test_the_unbroken_inputs_read():
    """The rows' inputs before they were broken read without error (so each row tests its one change)."""
    assert len(MTP.read(MTP_FILE).moment_coeffs) == 5


@pytest.mark.parametrize("name, text", [("good.cfg", GOOD_CFG), ("good.extxyz", GOOD_XYZ)])
def test_the_unbroken_datasets_read(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    (frame,) = datasets.read(tmp_path / name)
    assert frame.get_potential_energy() == -1.0


# -- case.yaml: values of the wrong type, unit or range, with the product's own stages ------------------
CASE = """\
name: matrix
systems:
  graphene: {kind: phase, structure: graphene}
"""

# (section text added to CASE, message fragments); every value is refused at load, before any stage runs
CASE_ROWS = [
    ("md: {temperature_K: 300K}", ["'md.temperature_K' must be a number", "got '300K'",
                                   "write the number alone (300)", "'K' is not read"]),
    ("md: {dt_fs: -1.0}", ["md.dt_fs: must be > 0, got -1.0"]),
    ("md: {temperature_K: -5}", ["md.temperature_K: must be >= 0 K, got -5.0"]),
    ("md: {directions: [z]}", ["md.directions: 'z' is not one of x, y"]),
    ("md: {seeds: 0}", ["md.seeds: 0 must be >= 1"]),
    ("md: {neighbor_check_every: 0}", ["md.neighbor_check_every: 0 must be >= 1 step"]),
    ("fit: {level: 7}", ["fit.level: 7 is not one of MLIP's levels 2, 4, ..., 20"]),
    ("fit: {max_iter: -1}", ["fit.max_iter: must be >= 0, got -1"]),
    ("data: {aimd: {temperatures_K: [300K]}}", ["data.aimd.temperatures_K: '300K' is not a number",
                                                "write numbers alone"]),
    ("data: {aimd: {timestep_fs: -0.5}}", ["data.aimd.timestep_fs: must be > 0 fs, got -0.5"]),
    ("fem: {loading: {n_steps: 0}}", ["fem.loading: need n_steps >= 1 and max_strain > 0, got 0 and 0.3"]),
]


@pytest.mark.parametrize("section, fragments", CASE_ROWS, ids=[row[0] for row in CASE_ROWS])
def test_a_bad_value_in_case_yaml_stops_the_load(tmp_path, section, fragments):
    (tmp_path / "case.yaml").write_text(CASE + section + "\n")
    with pytest.raises(CaseError) as info:
        Case.load(tmp_path)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "case.yaml")), message
    for fragment in fragments:
        assert fragment in message, message


def test_a_thickness_with_its_unit_or_below_zero(tmp_path):
    for value, fragment in (("3.35 A", "write the number alone (3.35)"), ("-3.35", "must be > 0 (Å), got -3.35")):
        (tmp_path / "case.yaml").write_text(CASE.replace("structure: graphene", f"structure: graphene, "
                                                                                 f"thickness_A: {value}"))
        with pytest.raises(CaseError, match=re.escape(f"'systems.graphene.thickness_A' ")) as info:
            Case.load(tmp_path)
        assert fragment in str(info.value)


def test_a_yaml_exponent_without_a_dot_is_a_number(tmp_path):
    """PyYAML (YAML 1.1) reads 1e9 and 2.0e10 as text; a number key takes them as the numbers they are."""
    (tmp_path / "case.yaml").write_text(CASE + "md: {strain_rate_per_s: 1e9, max_strain: 2.5e-1}\n")
    settings = Case.load(tmp_path).settings["md"]
    assert settings["strain_rate_per_s"] == 1e9 and settings["max_strain"] == 0.25


# -- a potential whose species do not match the data ------------------------------------------------------
def test_fit_init_of_other_elements_is_refused(tmp_path):
    from ase import Atoms

    from training.fit_stage import FIT_SETTINGS, defaults, initial_potential

    frames = [Atoms("CB", positions=[[0, 0, 0], [1.4, 0, 0]], cell=[5, 5, 5], pbc=True)]
    tagged = tmp_path / "cu.mtp"
    tagged.write_text(CU_MTP.read_text().replace("potential_tag = ", "potential_tag = species:Cu", 1))
    settings = {**defaults(FIT_SETTINGS), "init": "cu.mtp"}
    with pytest.raises(ValueError, match=r"fit.init: \S+cu.mtp is a potential for Cu; the data also has B, C: "
                                         r"start from a potential of these elements or leave fit.init empty"):
        initial_potential(settings, frames, tmp_path)
    untagged = tmp_path / "one.mtp"
    shutil.copy(CU_MTP, untagged)
    with pytest.raises(ValueError, match=r"fit.init: \S+one.mtp has species_count = 1 and names no elements, "
                                         r"the data has 2 \(B, C\)"):
        initial_potential({**settings, "init": "one.mtp"}, frames, tmp_path)


# -- an artefact damaged between stages -----------------------------------------------------------------
def test_md_reads_a_damaged_fit_report_and_a_cut_potential(tmp_path):
    from md_gpu.errors import MDSetupError
    from md_gpu.forcefields.loading import load_forcefield
    from md_gpu.md_stage import fit_potential

    (tmp_path / "gr.mtp").write_text(CU_MTP.read_text())
    (tmp_path / "gr_fit.json").write_text('{"files": {"potential": "gr.m')
    with pytest.raises(MDSetupError, match=r"gr_fit.json is not valid JSON .*rerun `multiscale run CASE --stages "
                                           r"fit --force`"):
        fit_potential(tmp_path, "gr", "CASE")
    (tmp_path / "gr.mtp").write_text(CU_MTP.read_text()[:1500])  # a copy interrupted inside alpha_index_times
    with pytest.raises(MTPFormatError, match=r"gr.mtp: line 21: alpha_index_times: the list is not closed"):
        load_forcefield(str(tmp_path / "gr.mtp"))


def test_md_reads_a_cut_or_incomplete_active_set(tmp_path):
    """The fit stage's .als (HDF5) cut in half, or without one of its datasets: named, with what to do."""
    import h5py

    from training.mtp.maxvol import ALS_FORMAT, ActiveSet, ActiveSetError

    full = ActiveSet(mode="neighbourhood", matrix=np.eye(4), scale=np.ones(4), inverse=np.eye(4),
                     source_frame=np.zeros(4, int), source_atom=np.arange(4), fingerprint="x", species=["C"],
                     rank=4).save(tmp_path / "full.als")
    data = full.read_bytes()
    (tmp_path / "cut.als").write_bytes(data[: len(data) // 2])
    with pytest.raises(ActiveSetError, match=r"cut.als: cannot read it as HDF5 \(.*truncated file"):
        ActiveSet.load(tmp_path / "cut.als")
    with h5py.File(tmp_path / "part.als", "w") as handle:
        handle.attrs["format"] = ALS_FORMAT
    with pytest.raises(ActiveSetError, match=r"part.als: an incomplete active set file \(.*'matrix' doesn't exist.*"
                                             r"rerun the fit stage that writes it with --force"):
        ActiveSet.load(tmp_path / "part.als")


def _case_with_md_output(root: Path, summary_text: str) -> Path:
    """A case whose md stage has finished (its record) with ``summary_text`` as runs/md/summary.json, and
    an earlier constitutive output."""
    (root / "case.yaml").write_text(CASE)
    md = root / "runs" / "md"
    md.mkdir(parents=True)
    (md / "summary.json").write_text(summary_text)
    (md / "graphene_x_seed0.h5").write_bytes(b"an MD run's file")
    (md / "stage.json").write_text(json.dumps({"stage": "md", "inputs": {}, "output_hash": "md-1",
                                               "finished": "2026-01-01T00:00:00"}))
    earlier = root / "runs" / "constitutive"
    earlier.mkdir()
    shutil.copy(ROOT / "tests" / "data" / "contracts" / "properties.json", earlier / "properties.json")
    (earlier / "stage.json").write_text(json.dumps({"stage": "constitutive", "inputs": {}, "output_hash": "c-0"}))
    return root


def _tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_later_stage_failing_on_a_cut_artefact_loses_nothing(tmp_path):
    """constitutive reads a summary.json cut in half: one error naming the file and the stage to rerun; the md
    output it read and the constitutive output of the earlier run stay byte for byte."""
    text = (ROOT / "tests" / "data" / "contracts" / "summary.json").read_text()
    case_dir = _case_with_md_output(tmp_path, text[: len(text) // 2])
    before = _tree(case_dir / "runs")
    with pytest.raises(StageError) as info:
        Case.load(case_dir).run(["constitutive"], force=True)
    message = str(info.value)
    summary = case_dir / "runs" / "md" / "summary.json"
    assert message.startswith("stage 'constitutive' failed: ") and f"{summary}: not valid JSON" in message
    assert "the file is truncated or corrupt; rerun the md stage that writes it with --force" in message
    assert "finished outputs of earlier runs are untouched" in message
    after = _tree(case_dir / "runs")
    assert {k: v for k, v in after.items() if not k.startswith("logs/")} == before


# -- an MD run that blows up: counted and reported, the stage stops only when no run is left --------------
def _md_ctx(tmp_path):
    """The md stage's stand-in context of tests/test_md_stage.py: one system 'cu' (fcc Cu, its MTP)."""
    from test_md_stage import _ctx

    return _ctx(tmp_path)


def _md_settings(**overrides):
    from md_gpu.md_stage import MD_SETTINGS
    from multiscale.schema import validate

    tiny = {"equilibrate_steps": 20, "strain_rate_per_s": 1e9, "max_strain": 0.03, "thermo_every": 2,
            "fit_max_strain": 0.03, "seeds": 2, "checkpoint_every": 0, "supercell": [2, 2],
            "elastic": {"enabled": False}, "stability": {"steps": 20}}
    return validate({**tiny, **overrides}, MD_SETTINGS, where="md", source="test")


def test_a_huge_time_step_blows_up_the_structure_check_which_is_reported_not_fatal(tmp_path):
    """100 fs steps for Cu (its period of vibration is ~200 fs): the NVT structure check heats past 10 T in
    two steps. The stage finishes; summary.json says the structure was not kept and why."""
    from md_gpu.md_stage import run_md

    ctx = _md_ctx(tmp_path)
    run_md(_md_settings(dt_fs=100.0, directions=[]), ctx)
    stability = json.loads((ctx.out_dir / "summary.json").read_text())["systems"]["cu"]["stability"]
    assert stability["retained"] is False
    assert re.match(r"step \d+: the run blew up: the temperature is \S+ K in stage 'nvt 1/10' held at 300 K",
                    stability["blew_up"]), stability["blew_up"]


def test_a_huge_time_step_in_every_tensile_run_stops_the_stage_naming_the_runs(tmp_path):
    from md_gpu.errors import MDRunError
    from md_gpu.md_stage import run_md

    ctx = _md_ctx(tmp_path)
    with pytest.raises(MDRunError) as info:
        run_md(_md_settings(dt_fs=100.0, directions=["x"]), ctx)
    message = str(info.value)
    assert message.startswith("md: every run of cu along x blew up (cu_x_seed0, cu_x_seed1): barostat: at step 1 ")
    assert "the system blew up" in message and "md.extrapolation.every" in message


# -- an FE solve that does not converge: PETSc's reason and the setting to change ------------------------
def _fe_test(**options):
    from mpi4py import MPI

    from fem import geometry, materials, mesh_io, phase_field
    from fem.mechanics import TensileOptions, TensileTest

    msh, tags, _, layout = mesh_io.mesh_from_gmsh(geometry.stripes, MPI.COMM_WORLD, phases=("a", "b"),
                                                  length_nm=5.0, height_nm=2.0, period_nm=5.0, fraction=0.0,
                                                  orientation="y", mesh_size_nm=0.5)
    g = materials.isotropic("g", 340.0, 0.17, 35.0)
    gc = phase_field.calibrate_gc("AT1", 340.0, 35.0, 0.5)
    return TensileTest(msh, tags, {1: (g, gc), 2: (g, gc)}, (layout.length_nm, layout.height_nm),
                       TensileOptions(ell_nm=0.5, **options))


def test_a_staggered_loop_that_does_not_converge_names_the_step_and_the_settings():
    pytest.importorskip("dolfinx")
    from fem.errors import FemSolveError

    test = _fe_test(max_strain=0.3, n_steps=10, max_iterations=1, min_step_fraction=1.0)
    with pytest.raises(FemSolveError, match=r"load step to strain 0.12 \(the smallest step\): staggered loop did "
                                            r"not converge in 1 iterations \(tol 0.0001\); raise "
                                            r"fem.solver.max_iterations, lower fem.loading.min_step_fraction"):
        test.run()


def test_a_diverged_linear_solve_names_petscs_reason():
    pytest.importorskip("dolfinx")
    from fem.errors import FemSolveError

    test = _fe_test(linear="iterative", damage=False)
    test.ksp.setTolerances(rtol=1e-14, max_it=1)  # CG + GAMG cannot reach 1e-14 in one iteration
    test.set_strain(0.01)
    with pytest.raises(FemSolveError, match=r"displacement solve \(CG \+ GAMG\) diverged, PETSc reason -\d+ "
                                            r"\(DIVERGED_[A-Z_]+\); try fem.solver.linear: direct"):
        test.solve_displacement()


def test_petsc_reason_names():
    from petsc4py import PETSc

    from fem.solvers import reason_name

    assert reason_name(PETSc.KSP, -3) == "DIVERGED_MAX_IT" and reason_name(PETSc.SNES, -5) == "DIVERGED_MAX_IT"
    assert reason_name(PETSc.KSP, -99) == "unknown reason"
