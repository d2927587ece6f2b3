"""Our ``.mtp`` and ``.cfg`` files open in motep (the MIT Python MTP code that reads MLIP files) with our numbers.

motep pulls numpy 2, so it lives in its own venv (``make peer-motep`` -> ``.venv-peers/motep``) and runs
``tests/peers/motep_driver.py`` in a subprocess; files and JSON go between the two.  Checked:

* every kind of ``.mtp`` we write: a phase MTP and its preliminary fit (one species), an interface MTP and
  its preliminary fit (two species; each from ``fit_stage.fit_system`` on a few frames of the embedded
  graphene/borophene data), and MLIP-2's own trained potentials of one and three species written back
  through our writer.  motep reads the species from our ``potential_tag`` (``species:C,B``), and its C
  engine gives our energies, forces and stresses to 1e-10 on rattled and sheared cells.
* the ``.cfg`` files we write (``training.datasets.write`` of a dataset, ``write_cfg`` of MLIP frames with
  an extra per-atom column and ``Feature`` lines): motep reads the same structures, energies, forces and
  stresses as our reader.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
PEER_PYTHON = ROOT / ".venv-peers" / "motep" / "bin" / "python"
DRIVER = Path(__file__).parent / "peers" / "motep_driver.py"
DATA = ROOT / "cases" / "graphene_borophene" / "data"
MLIP = Path(__file__).parent / "data" / "mlip"
TOL = 1e-10  # eV, eV/Å, eV/Å³

needs_motep = pytest.mark.skipif(
    not PEER_PYTHON.is_file(),
    reason=f"the motep peer venv {PEER_PYTHON.parent.parent} is missing: run `make peer-motep` (pip install motep "
           "into its own venv; it needs numpy 2)")


def test_species_tag_every_reader_accepts_and_the_legacy_tag_still_loads(tmp_path):
    """Without motep: the tag we write has no '=' (motep splits at each one) and no space; old files load."""
    from training.mtp import MTP
    from training.mtp.errors import MTPFormatError, MTPSpeciesError
    from training.mtp.mtp_file import format_mtp, tag_species

    mtp = MTP.untrained(6, 2, species=["C", "B"], seed=0)
    assert mtp.potential_tag == "species:C,B" and mtp.species == ["C", "B"]
    mtp.write(tmp_path / "new.mtp")
    text = (tmp_path / "new.mtp").read_text()
    assert "potential_tag = species:C,B\n" in text
    assert all(line.count("=") <= 1 for line in text.splitlines())  # what motep's reader needs
    # a file in our first form (species=C,B) loads with the same species and is written back in the new form
    legacy = tmp_path / "legacy.mtp"
    legacy.write_text(text.replace("potential_tag = species:C,B", "potential_tag = species=C,B"))
    old = MTP.read(legacy)
    assert old.species == ["C", "B"] and old.potential_tag == "species:C,B"
    old.write(tmp_path / "again.mtp")
    assert (tmp_path / "again.mtp").read_text() == text
    assert MTP.read(Path(__file__).parent / "data" / "md" / "graphene_l08.mtp").species == ["C"]  # a legacy file
    assert MTP.read(MLIP / "multi" / "pot_10.mtp").species is None  # MLIP's own files name no species
    assert tag_species("") is None and tag_species("species:Cu, Ag") == ["Cu", "Ag"]
    for bad in (["C B", "N"], ["C=1", "N"], ["C", ""]):
        with pytest.raises(MTPSpeciesError):
            mtp.species = bad
    with pytest.raises(MTPFormatError, match="motep"):
        format_mtp({**mtp.fields(), "potential_tag": "species=C,B"})


def _run_peer(tmp_path: Path, request: dict) -> dict:
    req, res = tmp_path / "motep_request.json", tmp_path / "motep_result.json"
    req.write_text(json.dumps(request), encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    proc = subprocess.run([str(PEER_PYTHON), str(DRIVER), str(req), str(res)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, f"motep driver failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(res.read_text(encoding="utf-8"))


def _cell(atoms) -> dict:
    return {"numbers": atoms.numbers.tolist(), "positions": atoms.positions.tolist(),
            "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist()}


def _test_cells(frames, seed: int) -> list:
    """Three cells from ``frames``: two rattled (0.03 Å), one rattled and sheared (a triclinic cell)."""
    rng = np.random.default_rng(seed)
    cells = []
    for k, atoms in enumerate(frames[:3]):
        atoms = atoms.copy()
        atoms.calc = None
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        if k == 2:
            atoms.set_cell(atoms.cell.array @ [[1.0, 0.0, 0.0], [0.04, 1.0, 0.0], [0.02, -0.03, 1.0]],
                           scale_atoms=True)
        cells.append(atoms)
    return cells


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Our ``.mtp`` files, each with the cells to evaluate it on: {kind: (path, [Atoms])}."""
    from multiscale.schema import validate
    from training import datasets, fit_stage
    from training.mtp import MTP, read_cfg

    for name in ("graphene", "borophene", "interface"):
        if not (DATA / f"{name}.extxyz.gz").is_file():
            pytest.skip(f"{DATA / name}.extxyz.gz is not there")
    out = tmp_path_factory.mktemp("motep_fit")
    data = {name: datasets.read(DATA / f"{name}.extxyz.gz")[::8] for name in ("graphene", "borophene", "interface")}
    paths = {name: str(datasets.write(out / f"{name}.extxyz.gz", frames)) for name, frames in data.items()}
    settings = validate({"level": 6, "method": "linear", "passive": {"every_k": 3, "threshold": 1.01}},
                        fit_stage.FIT_SETTINGS, where="fit", source="test_motep_peer")
    files = {}
    for system, extra in (("graphene", []), ("interface", [paths["graphene"], paths["borophene"]])):
        fit_stage.fit_system({"settings": settings, "system": system, "dataset": paths[system],
                              "extra_datasets": extra, "out_dir": out, "case_dir": out})
        cells = _test_cells(data[system], seed=len(files))
        files[f"{system} MTP"] = (out / f"{system}.mtp", cells)
        files[f"{system} preliminary MTP"] = (out / f"{system}_preliminary.mtp", cells)
        # step 2 added frames: the final potential is another one than the preliminary
        assert (out / f"{system}.mtp").read_bytes() != (out / f"{system}_preliminary.mtp").read_bytes()
    for sub, level, species in (("cubic", 16, ["Cu"]), ("multi", 10, ["Cu", "Ag", "Au"])):
        mtp = MTP.read(MLIP / sub / f"pot_{level:02d}.mtp")
        mtp.species = species
        path = out / f"mlip_{sub}_{level:02d}.mtp"
        mtp.write(path)
        frames = read_cfg(MLIP / sub / f"efs_{level:02d}.cfg.gz", species=species)[::300]
        files[f"MLIP {sub} level {level} through our writer"] = (path, _test_cells(frames, seed=len(files)))
    return files


@needs_motep
def test_motep_reads_our_mtp_files_with_our_species_and_numbers(written, tmp_path):
    from ase.data import atomic_numbers

    from training.mtp import MTP, MTPCalculator

    kinds = list(written)
    request = {"potentials": [{"path": str(path), "cells": [_cell(a) for a in cells]}
                              for path, cells in written.values()]}
    answer = _run_peer(tmp_path, request)["potentials"]
    worst = {}
    for kind, (path, cells), theirs in zip(kinds, written.values(), answer):
        mtp = MTP.read(path)
        assert theirs["potential_tag"] == f"species:{','.join(mtp.species)}", kind
        assert theirs["species"] == [atomic_numbers[s] for s in mtp.species], kind
        calc = MTPCalculator(mtp)
        errs = []
        for atoms, res in zip(cells, theirs["results"]):
            atoms.calc = calc
            errs.append([abs(atoms.get_potential_energy() - res["energy"]),
                         np.abs(atoms.get_forces() - np.array(res["forces"])).max(),
                         np.abs(atoms.get_stress() - np.array(res["stress"])).max()])
        worst[kind] = np.max(errs, axis=0)
    report = "\n".join(f"{k}: |dE| {e[0]:.1e} eV, |dF| {e[1]:.1e} eV/A, |dS| {e[2]:.1e} eV/A^3"
                       for k, e in worst.items())
    print("motep (cext) against ours, worst over 3 cells:\n" + report)
    assert all(np.all(e <= TOL) for e in worst.values()), report


@needs_motep
def test_motep_reads_our_cfg_files(written, tmp_path):
    from ase.calculators.singlepoint import SinglePointCalculator

    from training import datasets
    from training.mtp import MTPCalculator, read_cfg, write_cfg

    # a dataset as the data stage's tools write it (species sorted by atomic number, Feature lines)
    path, cells = written["interface MTP"]
    calc = MTPCalculator(path)
    frames = []
    for source in cells:
        atoms = source.copy()
        atoms.calc = calc
        res = {k: calc.get_property(k, atoms) for k in ("energy", "forces", "stress")}
        atoms.calc = SinglePointCalculator(atoms, **res)
        atoms.info.update(system="interface", temperature_K=300.0)
        frames.append(atoms)
    dataset_cfg = datasets.write(tmp_path / "interface.cfg", frames)
    # MLIP frames with an extra per-atom column (nbh_grades) and a Feature line (MV_grade)
    mlip_frames = read_cfg(MLIP / "multi" / "efs_10.cfg.gz", species=["Cu", "Ag", "Au"])[:4]
    mlip_cfg = tmp_path / "mlip_multi.cfg"
    write_cfg(mlip_cfg, mlip_frames, species=["Cu", "Ag", "Au"])
    cases = [(dataset_cfg, ["B", "C"]), (mlip_cfg, ["Cu", "Ag", "Au"])]
    answer = _run_peer(tmp_path, {"cfgs": [{"path": str(p), "species": s} for p, s in cases]})["cfgs"]
    for (path, species), theirs in zip(cases, answer):
        ours = read_cfg(path, species=species)
        assert len(theirs) == len(ours), path
        for a, t in zip(ours, theirs):
            assert t["numbers"] == a.numbers.tolist(), path
            np.testing.assert_array_equal(np.array(t["positions"]), a.positions)
            np.testing.assert_array_equal(np.array(t["cell"]), a.cell.array)
            assert t["energy"] == a.get_potential_energy()
            np.testing.assert_array_equal(np.array(t["forces"]), a.get_forces())
            np.testing.assert_allclose(np.array(t["stress"]), a.get_stress(), rtol=1e-15, atol=1e-18)
    # and the numbers are the ones written, to the printed precision of MLIP's layout
    for a, t in zip(frames, answer[0]):
        assert abs(t["energy"] - a.get_potential_energy()) <= 5e-13
        assert np.abs(np.array(t["forces"]) - a.get_forces()).max() <= 5e-7
        # PlusStress = -stress V is printed to 1e-5 eV; the reader divides by the volume of the printed cell
        v_read = abs(np.linalg.det(np.array(t["cell"])))
        assert np.abs(np.array(t["stress"]) * v_read - a.get_stress() * a.get_volume()).max() <= 5e-6
