"""A case whose graphene brings its own NEP runs data -> fit -> md -> constitutive -> fem -> report.

The NEP is fitted here (:func:`training.nep_fit.fit_nep`, a small NEP4 on every 8th frame of the
embedded GFN2-xTB graphene set, 40 L-BFGS iterations) and written as ``potentials/graphene.nep.txt``
of a one-system case (``systems.graphene.potential``). The FE sample is homogeneous graphene
(``fem.phases: [graphene, graphene]``, stripe fraction 0: the FE stage takes two phase names; with one
phase the stripes are all of it), so its modulus has a closed form: the plane-stress modulus along
the load, E_y = (C11 C22 - C12²) / C11, of the elastic constants in properties.json. MD settings are
tiny (60 atoms, one seed, a few hundred steps) as in tests/test_chain.py.

What the chain must show: the fit stage copies the brought file and records its sha256;
properties.json names that file and hash; the md stage ran that NEP (the energy of a trajectory frame
equals NEPCalculator's on the same positions and cell, and the thermo row of the same step); the
1 K elastic constants lie between the NEP's static ones on the data-stage cell and on the NEP's own
relaxed cell; the FE modulus equals the closed form; the report names the brought NEP, its file and
hash, and compares its 1 K modulus with the reference engine's.
"""
import argparse
import hashlib
import json
import math
import shutil
from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest
import yaml

from md_gpu import cli as md_cli
from md_gpu.forcefields.nep import NEPCalculator, NEPForceField
from md_gpu.protocols import static_elastic_constants
from md_gpu.structures import load_structure
from multiscale.case import Case
from multiscale.constitutive import record_potentials
from multiscale.report_tables import fit_table
from training import datasets
from training.nep import write_nep
from training.nep_fit import fit_nep

DEFAULT = Path(__file__).resolve().parents[1] / "cases" / "graphene_borophene"
NEP_SIZES = {"neurons": 8, "n_max": [3, 3], "basis_size": [6, 6], "l_max": [4, 2, 0]}


def nep_case(root: Path) -> tuple[Path, Path]:
    """A graphene-only case (every 8th embedded frame) that brings a NEP fitted on those frames;
    returns (case folder, nep.txt)."""
    frames = datasets.read(DEFAULT / "data" / "graphene.extxyz.gz")[::8]
    model, report = fit_nep(frames, sizes=NEP_SIZES, max_iter=40, seed=0)
    assert report["train"]["forces"]["rmse"] < 0.6  # a fit, not a random NEP (force std of the set: 1.7 eV/Å)
    case = root / "nep_case"
    nep = write_nep(model, case / "potentials" / "graphene.nep.txt")
    raw = yaml.safe_load((DEFAULT / "case.yaml").read_text())
    for key in ("presets", "default_preset"):
        raw.pop(key)
    raw["systems"] = {"graphene": {**raw["systems"]["graphene"], "potential": "potentials/graphene.nep.txt"}}
    raw["md"].update(seeds=1, directions=["x", "y"], strain_rate_per_s=5e11, max_strain=0.2, equilibrate_steps=100,
                     thermo_every=10, traj_every=100, checkpoint_every=0,
                     elastic={"sample_steps": 200, "low_temperature_K": 1.0},
                     thermal={"enabled": False}, heterostructure={"enabled": False}, stability={"enabled": False})
    # 0.2 strain at 5e11/s does not break graphene: its peak stress is a lower bound of the strength,
    # which the FE stage takes only when told (and records)
    raw["fem"].update(phases=["graphene", "graphene"], length_nm=20.0, height_nm=20.0, mesh_size_nm=2.0, ell_nm=4.0,
                      interface_width_nm=0.0, allow_unfailed_strength=True,
                      stripes={"period_nm": 20.0, "fraction": 0.0, "orientation": "x"},
                      loading={"max_strain": 0.2, "n_steps": 8}, write_fields=False, studies=[],
                      thermal={"enabled": False})
    (case / "data").mkdir(parents=True)
    (case / "case.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    datasets.write(case / "data" / "graphene.extxyz.gz", frames)
    shutil.copy(DEFAULT / "data" / "graphene.meta.json", case / "data" / "graphene.meta.json")
    return case, nep


@pytest.mark.slow
def test_a_case_bringing_a_fitted_nep_runs_the_chain(tmp_path, capsys):
    case_dir, nep = nep_case(tmp_path)
    sha = hashlib.sha256(nep.read_bytes()).hexdigest()
    result = Case.load(case_dir).run()
    assert result.ran == ["data", "fit", "md", "constitutive", "fem", "report"]
    runs = case_dir / "runs"

    # fit: the brought file, copied and recorded, not refitted
    fit = json.loads((runs / "fit" / "graphene_fit.json").read_text())
    assert fit["brought"] is True and fit["model"] == "nep" and fit["sha256"] == sha
    assert (runs / "fit" / "graphene.nep.txt").read_bytes() == nep.read_bytes()

    # properties.json: every number of graphene names the NEP file and its hash
    props = json.loads((runs / "constitutive" / "properties.json").read_text())
    provenance = props["phases"]["graphene"]["provenance"]
    assert provenance["potential"] == str(runs / "fit" / "graphene.nep.txt")
    assert provenance["potential_sha256"] == sha

    # md: the trajectory of a tensile run was made by this NEP: the energy stored with its last frame
    # (strained, at 300 K) is NEPCalculator's on the same positions and cell (extxyz keeps 8 decimals
    # of the positions: 60 atoms x ~1e-8 Å x a few eV/Å), and the thermo row of that step holds it too
    frame = ase.io.read(runs / "md" / "graphene_x_seed0.extxyz", index=-1)
    stored = frame.get_potential_energy()  # ASE reads the frame's 'energy' into a SinglePointCalculator
    frame.calc = NEPCalculator(nep)
    assert frame.get_potential_energy() == pytest.approx(stored, abs=1e-5)
    with h5py.File(runs / "md" / "graphene_x_seed0.h5") as h5:
        row = int(np.flatnonzero(h5["thermo/step"][:] == frame.info["step"])[-1])
        assert h5["thermo/potential_eV"][row] == pytest.approx(stored, abs=1e-9)
    assert frame.info["step"] > 0 and frame.cell[0, 0] > 1.01 * load_structure(
        runs / "data" / "graphene.structure.extxyz").cell[0, 0]  # strained along x

    # the 1 K elastic constants: between the NEP's static (0 K) ones on the data stage's cell and on
    # the NEP's own relaxed cell (the barostat leaves the MD cell between the two), 1 % beyond for
    # 200 samples at 1 K (as tests/test_chain.py does for an MTP)
    md = json.loads((runs / "md" / "summary.json").read_text())["systems"]["graphene"]
    low = md["elastic_low_T_N_per_m"]
    assert low["temperature_K"] == 1.0
    ff, cell = NEPForceField.read(nep), load_structure(runs / "data" / "graphene.structure.extxyz")
    bracket = [static_elastic_constants(ff, cell, relax_cell=relax) for relax in (False, True)]
    for key in ("C11", "C22", "C12", "C66"):
        lo, hi = sorted(b[key] for b in bracket)
        assert 0.99 * lo < low[key]["mean"] < 1.01 * hi, (key, lo, hi, low[key]["mean"])

    # fem: a homogeneous graphene sample pulled along y with free sides has the plane-stress modulus
    # E_y = (C11 C22 - C12^2) / C11 of the properties' elastic constants (at md.temperature_K)
    c = {k: v["mean"] for k, v in props["phases"]["graphene"]["elastic_N_per_m"].items()}
    e_y = (c["C11"] * c["C22"] - c["C12"] ** 2) / c["C11"]
    fem = json.loads((runs / "fem" / "fem_results.json").read_text())
    modulus = fem["tensile"]["modulus_N_per_m"]
    assert math.isfinite(modulus) and modulus > 0
    assert modulus == pytest.approx(e_y, rel=1e-6)
    assert fem["tensile"]["strength_N_per_m"] > 0

    # report: the brought NEP by file and hash, and its 1 K modulus against the reference engine's
    html = (runs / "report" / "index.html").read_text()
    assert f"brought NEP (graphene.nep.txt, sha256 {sha[:12]})" in html
    checks = {row["check"]: row for row in json.loads((runs / "report" / "checks.json").read_text())}
    row = checks["MTP-MD vs reference engine stiffness (graphene, E_x)"]
    e_x_low = (low["C11"]["mean"] * low["C22"]["mean"] - low["C12"]["mean"] ** 2) / low["C22"]["mean"]
    assert row["ours"] == pytest.approx(e_x_low, rel=1e-9)
    meta = json.loads((DEFAULT / "data" / "graphene.meta.json").read_text())
    assert row["reference"] == pytest.approx(meta["reference"]["E_x_N_per_m"], rel=1e-9)

    # the command line takes the same file (`multiscale md elastic` and `bench`; tensile and thermal load
    # it through the same md_gpu.forcefields.loading): its static constants are the stage's bracket's
    parser = argparse.ArgumentParser()
    md_cli.register(parser.add_subparsers())
    structure = str(runs / "data" / "graphene.structure.extxyz")
    args = parser.parse_args(["elastic", "--potential", str(nep), "--structure", structure, "--temperature", "1",
                              "--equilibrate-steps", "20", "--sample-steps", "20", "--static"])
    capsys.readouterr()  # the stages' log so far
    assert args.func(args) == 0
    static = json.loads(capsys.readouterr().out)["static"]
    assert static["C11"] == pytest.approx(bracket[1]["C11"], rel=1e-9)  # relaxed cell, delta 0.005 both
    args = parser.parse_args(["bench", "--potential", str(nep), "--structure", structure, "--atoms", "60",
                              "--steps", "2", "--backend", "numpy"])
    assert args.func(args) == 0 and "atom-steps/s" in capsys.readouterr().out


def test_provenance_and_fit_table_name_the_potential_file_and_hash(tmp_path):
    """Fast: record_potentials hashes the file each provenance names (a missing file: no hash, no
    error), and the fit table names a brought file and its hash."""
    nep = tmp_path / "graphene.nep.txt"
    nep.write_text("nep4 1 C\n")
    props = {"phases": {"graphene": {"provenance": {"potential": str(nep)}},
                        "borophene": {"provenance": {"potential": str(tmp_path / "gone.mtp")}}},
             "interfaces": {"graphene|borophene": {"provenance": {"potential": str(nep)}}}}
    sha = hashlib.sha256(b"nep4 1 C\n").hexdigest()
    record_potentials(props)
    assert props["phases"]["graphene"]["provenance"]["potential_sha256"] == sha
    assert props["interfaces"]["graphene|borophene"]["provenance"]["potential_sha256"] == sha
    assert "potential_sha256" not in props["phases"]["borophene"]["provenance"]
    summary = {"systems": {"graphene": {"brought": True, "model": "nep", "source": str(nep), "sha256": sha},
                           "borophene": {"brought": True, "model": "mtp", "source": "b.mtp"}}}
    table = fit_table(summary)
    assert f"brought NEP (graphene.nep.txt, sha256 {sha[:12]})" in table and "brought MTP (b.mtp)" in table
