"""docs/your-material.md, run as written on a pair of phases no code of the project knows.

The test reads the tutorial itself: its case.yaml (the ```yaml block whose first line is ``# case.yaml``)
and its command lines (every ```sh block, in order). It writes two close-packed monolayers, Cu and Ni
with made-up lattice constants, as POSCAR files under the names the tutorial copies from, and runs the
commands: ``mkdir`` and ``cp`` in a shell, ``multiscale ...`` (and ``mpirun ... multiscale ...``) in
process through :func:`multiscale.cli.main`, serially. ``source`` and ``make`` lines are skipped.
Before the first ``multiscale run`` the case.yaml is made tiny: only the engine (ASE's EMT instead of
GFN2-xTB) and the sizes of the data plan, the fit, the MD and the FE mesh change (sizes as in
tests/test_chain.py); ``multiscale status`` has checked the case.yaml as written before that.
"""
import glob
import json
import re
import shlex
import subprocess
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from ase import Atoms

from multiscale.case import Case
from multiscale.cli import main
from multiscale.runner import case_status

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "your-material.md"
STAGES = ("data", "fit", "md", "constitutive", "fem", "report")
SPECIES = ("Cu", "Ni")                 # the tutorial's two phases, in its order
LATTICE_A = {"Cu": 2.45, "Ni": 2.40}   # made up; EMT relaxes them (about 2.49 and 2.45 Å)

# What must be tiny (engine and sizes only), merged over the tutorial's case.yaml; its presets are dropped.
TINY = {
    "data": {"engine": "python:ase.calculators.emt.EMT", "engine_settings": {}, "ripples": 2, "strain_frames": 2,
             "aimd": {"temperatures_K": [300.0], "strain_modes": ["x", "y"], "strains": [0.0, 0.05],
                      "equilibration_steps": 5, "settle_steps": 3, "stride_steps": 3, "frames_per_strain": 2}},
    "fit": {"level": 6, "max_iter": 15, "passive": {"every_k": 3, "threshold": 2.0}},
    "md": {"seeds": 1, "strain_rate_per_s": 2e11, "max_strain": 0.3, "equilibrate_steps": 200, "thermo_every": 10,
           "checkpoint_every": 0, "elastic": {"sample_steps": 500, "low_temperature_K": 1.0},
           "thermal": {"enabled": True, "seeds": 1, "directions": ["x"], "supercell": [1, 1], "equilibrate_steps": 100,
                       "production_steps": 500, "nemd": {"enabled": False}, "interface": {"enabled": False}},
           # whole cells of each phase across; the interface-compliance cell twice as wide
           "heterostructure": {"enabled": True, "stripe_widths_nm": [1.3, 1.3], "seeds": 1},
           "stability": {"steps": 200}},
    "fem": {"length_nm": 20.0, "height_nm": 20.0, "mesh_size_nm": 1.0, "ell_nm": 2.0, "interface_width_nm": 0.0,
            "stripes": {"period_nm": 20.0, "fraction": 0.5, "orientation": "x"},
            "loading": {"max_strain": 0.3, "n_steps": 10}, "write_fields": False, "studies": [],
            "thermal": {"load_direction": "y", "mesh_size_nm": 2.0, "period_count": 3, "fractions": [0.5],
                        "on_bad_input": "skip"}},
}


def fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.M | re.S)


def tutorial_yaml(text: str) -> str:
    blocks = [b for b in fenced(text, "yaml") if b.startswith("# case.yaml\n")]
    assert len(blocks) == 1, "docs/your-material.md: one ```yaml block must start with the line '# case.yaml'"
    return blocks[0]


def tutorial_commands(text: str) -> list[str]:
    lines = [line.strip() for block in fenced(text, "sh") for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def monolayer(symbol: str, a: float) -> Atoms:
    """A close-packed (triangular) monolayer, primitive cell, 20 Å along z."""
    cell = [[a, 0.0, 0.0], [a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, 20.0]]
    return Atoms(symbol, positions=[[0.0, 0.0, 10.0]], cell=cell, pbc=True)


@pytest.mark.slow
def test_the_tutorial_runs_on_a_new_pair_of_phases(tmp_path, monkeypatch, capsys):
    text = DOC.read_text()
    raw = yaml.safe_load(tutorial_yaml(text))
    phases = [name for name, s in raw["systems"].items() if s["kind"] == "phase"]
    interface = next(name for name, s in raw["systems"].items() if s["kind"] == "interface")
    assert len(phases) == 2 and raw["systems"][interface]["between"] == phases
    assert "structure" not in raw["systems"][interface] and raw["data"]["generate"] is True
    assert set(raw["presets"]) >= {"quick"}
    commands = tutorial_commands(text)
    status = next(c for c in commands if c.startswith("multiscale status "))
    case_dir = tmp_path / shlex.split(status)[-1]

    # the user's POSCAR files, where the tutorial's cp lines copy them from
    monkeypatch.chdir(tmp_path)
    for phase, symbol in zip(phases, SPECIES):
        target = (case_dir / raw["systems"][phase]["structure"]).relative_to(tmp_path)
        copies = [shlex.split(c) for c in commands if c.startswith("cp ")]
        source = next(args[1] for args in copies if Path(args[2]) == target)
        ase.io.write(tmp_path / source, monolayer(symbol, LATTICE_A[symbol]), format="vasp")

    ran = []
    for command in commands:
        words = shlex.split(command)
        if words[0] in ("source", "make"):
            continue
        elif words[0] in ("mkdir", "cp"):
            done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True)
            assert done.returncode == 0, f"{command}: {done.stderr}"
        elif "multiscale" in words and words[0] in ("multiscale", "mpirun"):
            args = words[words.index("multiscale") + 1:]
            args = [match for arg in args for match in (sorted(glob.glob(arg)) if "*" in arg else [arg])]
            if args[0] == "status" and not ran:  # the case.yaml as written: it loads, with its preset
                (case_dir / "case.yaml").write_text(tutorial_yaml(text))
                assert Case.load(case_dir).preset == raw["default_preset"]
            if args[0] == "run" and not any(c[0] == "run" for c in ran):
                tiny = merged({k: v for k, v in raw.items() if k not in ("presets", "default_preset")}, TINY)
                (case_dir / "case.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
            rc = main(args)
            out = capsys.readouterr()
            assert rc == 0, f"{command}: exit {rc}\n{out.err[-3000:]}"
            ran.append(args)
        else:
            pytest.fail(f"docs/your-material.md: command {command!r}: the test does not know how to run it")
    assert [a[0] for a in ran].count("run") >= 2 and any(a[:2] == ["data", "summary"] for a in ran)

    # every stage finished, and a rerun would skip all of them
    runs = case_dir / "runs"
    for stage in STAGES:
        assert (runs / stage / "stage.json").is_file(), stage
    assert {row.state for row in case_status(Case.load(case_dir))} == {"done"}

    # the generated interface: both species, which phase was strained and by how much
    cell = ase.io.read(runs / "data" / f"{interface}.structure.extxyz")
    assert set(cell.get_chemical_symbols()) == set(SPECIES)
    data = json.loads((runs / "data" / "summary.json").read_text())["systems"]
    record = data[interface]["structure"]
    assert record["source"] == f"generated from {phases[0]} and {phases[1]}"
    assert record["strained"] == phases[1] and 0 < abs(record["strain"]) <= raw["data"].get("interface_tolerance", 0.04)
    for phase in phases:  # the engine's own 0 K cell and stiffness
        ref = data[phase]["reference"]
        assert len(ref["cell_A"]) == 3 and ref["E_x_N_per_m"] > 0 and ref["E_y_N_per_m"] > 0
    assert (case_dir / "data" / f"{interface}.extxyz.gz").is_file()  # the copy the tutorial keeps

    # the report names the user's phases and its checks carry numbers
    html = (runs / "report" / "index.html").read_text()
    for phase in phases:
        assert re.search(rf"\b{phase}\b", html), phase
    assert "Cross-scale checks" in html
    checks = json.loads((runs / "report" / "checks.json").read_text())
    measured = {row["check"] for row in checks if row["ours"] is not None}
    for phase in phases:
        assert f"MTP-MD vs reference engine stiffness ({phase}, E_x)" in measured
    assert "FE stripes vs direct MD (stripe heterostructure)" in measured


def test_relaxed_phase_cell_reduces_to_its_unit_cell():
    from ase.calculators.emt import EMT

    from common.sheets import rectangular_sheet
    from training.cells import phase_cell
    from training.reference import relax_cell

    cell, _ = phase_cell(monolayer("Cu", LATTICE_A["Cu"]))
    relaxed = relax_cell(cell, EMT(), free="lattice")
    assert len(cell) == 30 and len(rectangular_sheet(cell)) == 2
    assert len(rectangular_sheet(relaxed)) == 2
