"""Serial = MPI on the whole chain: ``mpirun -n 2`` and a serial run give the same fits and properties.json.

A two-phase case (graphene and chi3 borophene, every 20th frame of the embedded GFN2-xTB datasets:
11 and 14 frames) runs data -> fit (level-4 MTPs, 10 iterations) -> md (tension along x and y, 2 seeds,
and the elastic constants at 300 K: 12 runs) -> constitutive -> fem (a coarse 20 nm stripe sample)
twice, each in a fresh process: once serially, once under ``mpirun -n 2``, where the fits and the MD
runs are farmed over the two ranks and the FE problem is split between them by PETSc.

What must be identical, byte for byte:

* every fitted potential ``runs/fit/*.mtp`` and active set ``*.als`` (the fit of a system runs on one
  rank, with a fixed seed and a fixed number of threads);
* ``runs/constitutive/properties.json``, after one provenance field is made relative to its case
  folder: ``phases.<phase>.provenance.potential`` (the absolute path of the potential the MD ran, which
  names the case folder; the two runs live in two folders). Nothing else is removed: the file holds no
  wall times, host names or rank counts (those are in ``runs/<stage>/stage.json``, which is not compared).

The FE results are compared to 1e-8 relative (the tolerance of ``tests/test_fem_stage.py -k two_ranks``):
a PETSc solve split over two ranks assembles and reduces in another order, so its last bits differ
(measured: 3e-15 relative on the modulus and the curve). Their path fields (``properties`` and
``tensile.materials.<phase>.strength_source``) are made relative the same way, and two provenance
fields are removed: ``tensile.n_ranks`` (1 and 2) and ``tensile.wall_s`` (the wall time).

About 60 s on 2 cores: 25 s serial, 35 s under MPI.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, clean_mpi_env, run_mpi

pytestmark = [pytest.mark.slow, pytest.mark.mpi]

DEFAULT = ROOT / "cases" / "graphene_borophene"
STAGES = "data,fit,md,constitutive,fem"

CASE = {
    "name": "serial_mpi",
    "systems": {"graphene": {"kind": "phase", "structure": "graphene"},
                "borophene": {"kind": "phase", "structure": "borophene_chi3"}},
    "fit": {"level": 4, "max_iter": 10, "passive": {"every_k": 2}},
    "md": {"seeds": 2, "directions": ["x", "y"], "strain_rate_per_s": 2.0e+11, "max_strain": 0.2,
           "equilibrate_steps": 100, "thermo_every": 10, "checkpoint_every": 0,
           "elastic": {"sample_steps": 100, "low_temperature_K": 0.0},
           "thermal": {"enabled": False}, "stability": {"enabled": False}, "heterostructure": {"enabled": False}},
    "fem": {"phases": ["graphene", "borophene"], "length_nm": 20.0, "height_nm": 20.0, "mesh_size_nm": 2.0,
            "ell_nm": 4.0, "interface_width_nm": 0.0, "load_direction": "x",
            "stripes": {"period_nm": 20.0, "fraction": 0.5, "orientation": "x"},
            "loading": {"max_strain": 0.3, "n_steps": 10}, "write_fields": False, "studies": [],
            "consistency": {"enabled": False}, "thermal": {"enabled": False}},
}

#: fields that name the case folder (an absolute path), compared relative to it
PATH_FIELDS = {"properties.json": ["phases.*.provenance.potential"],
               "fem_results.json": ["properties", "tensile.materials.*.strength_source"]}
#: provenance that differs by design between a serial and a 2-rank run: removed before comparing
FE_PROVENANCE = ("n_ranks", "wall_s")  # of fem_results.json "tensile"


@pytest.fixture(scope="module")
def frames_folder(tmp_path_factory):
    from training import datasets

    folder = tmp_path_factory.mktemp("frames")
    for system in CASE["systems"]:
        datasets.write(folder / f"{system}.extxyz.gz", datasets.read(DEFAULT / "data" / f"{system}.extxyz.gz")[::20])
    return folder


def make_case(root: Path, frames: Path) -> Path:
    (root / "data").mkdir(parents=True)
    for path in frames.iterdir():
        shutil.copy(path, root / "data" / path.name)
    (root / "case.yaml").write_text(yaml.safe_dump(CASE, sort_keys=False))
    return root


def relative_paths(data: dict, patterns: list[str], case_dir: Path) -> dict:
    """``data`` with the string at each dotted pattern (``*`` = every key) made relative to ``case_dir``."""
    def visit(node, keys):
        if not keys:
            return node
        key, rest = keys[0], keys[1:]
        for name in (list(node) if key == "*" else [key]):
            if rest:
                visit(node[name], rest)
            else:
                assert node[name].startswith(str(case_dir)), (name, node[name])
                node[name] = "CASE" + node[name][len(str(case_dir)):]
        return node

    for pattern in patterns:
        visit(data, pattern.split("."))
    return data


def close(a, b, path="", rel=1e-8) -> list[str]:
    """Paths where two JSON trees differ: numbers beyond ``rel``, anything else when not equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in close(a[k], b[k], f"{path}.{k}", rel)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for k, (x, y) in enumerate(zip(a, b)) for d in close(x, y, f"{path}[{k}]", rel)]
    if isinstance(a, float) and isinstance(b, float):
        same = a == b or (math.isnan(a) and math.isnan(b)) or (rel > 0 and math.isclose(a, b, rel_tol=rel,
                                                                                         abs_tol=1e-12))
        return [] if same else [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def test_two_ranks_give_the_serial_fits_properties_and_fe_results(tmp_path, frames_folder):
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun is not installed (apt-get install openmpi-bin): serial = MPI cannot be checked")
    serial = make_case(tmp_path / "serial", frames_folder)
    parallel = make_case(tmp_path / "parallel", frames_folder)
    command = ["-m", "multiscale.cli", "run"]
    done = subprocess.run([sys.executable, *command, str(serial), "--stages", STAGES], env=clean_mpi_env(),
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    done = run_mpi([*command, str(parallel), "--stages", STAGES], n=2, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "over 2 rank(s)" in done.stdout  # the md runs were farmed over both ranks

    fits = sorted(p.name for p in (serial / "runs" / "fit").iterdir() if p.suffix in (".mtp", ".als"))
    assert fits == ["borophene.als", "borophene.mtp", "borophene_preliminary.als", "borophene_preliminary.mtp",
                    "graphene.als", "graphene.mtp", "graphene_preliminary.als", "graphene_preliminary.mtp"]
    for name in fits:
        assert (serial / "runs" / "fit" / name).read_bytes() == (parallel / "runs" / "fit" / name).read_bytes(), name

    def read(case_dir, stage, name):
        data = json.loads((case_dir / "runs" / stage / name).read_text())
        return relative_paths(data, PATH_FIELDS[name], case_dir)

    ours, theirs = (read(case, "constitutive", "properties.json") for case in (serial, parallel))
    assert ours["phases"]["graphene"]["provenance"]["potential"] == "CASE/runs/fit/graphene.mtp"
    assert close(ours, theirs, rel=0.0) == []  # identical (NaN = NaN: a statistic no run gave)
    fe_serial, fe_parallel = (read(case, "fem", "fem_results.json") for case in (serial, parallel))
    assert (fe_serial["tensile"]["n_ranks"], fe_parallel["tensile"]["n_ranks"]) == (1, 2)
    for fe in (fe_serial, fe_parallel):
        for key in FE_PROVENANCE:
            del fe["tensile"][key]
    assert close(fe_serial, fe_parallel) == []
    assert fe_serial["tensile"]["modulus_N_per_m"] > 0
