"""Exactness of md_gpu's NEP against GPUMD's NEP_CPU (built by calorine, in its own venv).

NEP_CPU runs in ``.venv-peers/calorine`` (``make peer-calorine``; calorine pulls numpy 2, so it is
never imported here) through ``tests/peers/calorine_driver.py``: a job file in, a result file out.
Random-parameter NEP3 and NEP4 files (seeded) with two and three species, typewise cut-offs,
universal (also with a typewise factor) and flexible ZBL, on a periodic bulk cell, a triclinic cell and a 2D sheet (NEP_CPU treats
every cell as periodic, so the sheet has more vacuum than the cut-off). Required agreement: energy
1e-6 eV, forces 1e-6 eV/Å, stress 1e-7 eV/Å^3; per-atom energies and GPUMD's per-atom virials are
compared too (the heat current uses them). The two codes agree to ~1e-13 in practice.
"""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk, graphene

from md_gpu.forcefields import compute_forces
from md_gpu.forcefields.nep import NEPCalculator, NEPForceField
from md_gpu.neighbors import NeighborList
from md_gpu.state import from_atoms
from training.nep import random_nep, write_nep

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peers" / "calorine" / "bin" / "python"
DRIVER = ROOT / "tests" / "peers" / "calorine_driver.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PEER_PYTHON.exists(),
                       reason="GPUMD's NEP_CPU peer is not installed: run `make peer-calorine` "
                              "(calorine in .venv-peers/calorine)"),
]


def _flexible(model, seed):
    rng = np.random.default_rng(seed)
    n = model.n_types * (model.n_types + 1) // 2
    para = np.zeros((n, 10))
    para[:, 0], para[:, 1] = 0.7, 1.5
    para[:, 2::2] = rng.uniform(0.05, 0.5, (n, 4))
    para[:, 3::2] = rng.uniform(0.2, 3.0, (n, 4))
    model.zbl_flexible = para
    return model


MODELS = {
    "nep3_2types": lambda: random_nep(("C", "B"), version=3, seed=11, rc=(4.2, 3.7)),
    "nep4_2types": lambda: random_nep(("C", "B"), version=4, seed=12, rc=(4.2, 3.7)),
    "nep3_3types": lambda: random_nep(("C", "B", "N"), version=3, seed=13, rc=(4.2, 3.7), l_max=(4, 2, 0)),
    "nep4_3types": lambda: random_nep(("C", "B", "N"), version=4, seed=14, rc=(4.2, 3.7), n_max=(6, 3),
                                      basis_size=(8, 5), l_max=(6, 0, 1)),
    "nep4_typewise": lambda: random_nep(("C", "B", "N"), version=4, seed=15,
                                        typewise_rc=[[4.2, 3.7], [3.6, 3.0], [4.6, 3.3]]),
    "nep4_radial_only": lambda: random_nep(("C", "B"), version=4, seed=18, rc=(4.2, 3.7), l_max=(0, 0, 0)),
    "nep4_zbl": lambda: random_nep(("C", "B"), version=4, seed=16, rc=(4.2, 3.7), zbl=(0.9, 1.7)),
    "nep4_zbl_typewise": lambda: random_nep(("C", "B", "H"), version=4, seed=19, rc=(4.2, 3.7), zbl=(0.9, 1.7),
                                            zbl_factor=0.7),
    "nep4_zbl_flexible": lambda: _flexible(random_nep(("C", "B", "N"), version=4, seed=17, rc=(4.2, 3.7),
                                                      zbl=(0.0, 0.0)), 17),
}


def _cells(species, seed):
    rng = np.random.default_rng(seed)
    bulk_cell = bulk("C", "diamond", a=3.57, cubic=True).repeat(2)
    triclinic = bulk("C", "diamond", a=3.57).repeat(3)
    triclinic.set_cell(triclinic.cell.array @ np.array([[1.0, 0.05, 0.02], [0.0, 1.0, 0.07], [0.0, 0.0, 1.03]]),
                       scale_atoms=True)
    sheet = graphene(a=2.46, vacuum=6.0).repeat((4, 4, 1))  # 12 Å of vacuum > 2 x 4.6 Å
    sheet.pbc = (True, True, False)
    out = {}
    for name, atoms in (("bulk", bulk_cell), ("triclinic", triclinic), ("sheet", sheet)):
        atoms.symbols = [species[k] for k in rng.integers(0, len(species), len(atoms))]
        atoms.rattle(0.12, seed=seed)
        out[name] = atoms
    out["bulk"].positions[1] = out["bulk"].positions[0] + [0.8, 0.5, 0.4]  # one close pair (ZBL range)
    return out


def _nep_cpu(potential: Path, structures: dict, tmp_path: Path) -> dict:
    job = {"potential": str(potential),
           "structures": [{"symbols": a.get_chemical_symbols(), "positions": a.positions.tolist(),
                           "cell": a.cell.array.tolist()} for a in structures.values()]}
    (tmp_path / "job.json").write_text(json.dumps(job))
    run = subprocess.run([str(PEER_PYTHON), str(DRIVER), str(tmp_path / "job.json"), str(tmp_path / "result.json")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"NEP_CPU driver failed:\n{run.stderr[-3000:]}"
    results = json.loads((tmp_path / "result.json").read_text())["results"]
    return dict(zip(structures, results))


@pytest.mark.parametrize("name", MODELS)
def test_matches_nep_cpu(tmp_path, name):
    model = MODELS[name]()
    potential = write_nep(model, tmp_path / "nep.txt")
    structures = _cells(model.species, seed=len(name))
    reference = _nep_cpu(potential, structures, tmp_path)
    ff = NEPForceField.read(potential)
    report = []
    for cell, atoms in structures.items():
        ref = reference[cell]
        atoms.calc = NEPCalculator(ff)
        energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        state = from_atoms(atoms, species=ff.species)
        nl = NeighborList(ff.cutoff, 0.0, state.pbc)
        nl.build(state.positions, state.cell)
        res = compute_forces(ff, state.positions, state.cell, state.types, nl, per_atom=True)
        diffs = {"energy": abs(energy - ref["energy"]),
                 "energies": np.abs(res.energies - np.array(ref["energies"])).max(),
                 "forces": np.abs(forces - np.array(ref["forces"])).max(),
                 "stress": np.abs(stress - np.array(ref["stress"])).max(),
                 "virials": np.abs(res.virials - np.array(ref["virials"])).max()}
        report.append(f"{cell}: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
        assert np.abs(np.array(ref["forces"])).max() > 0.1  # a real test: forces are not ~0
        assert diffs["energy"] < 1e-6, report[-1]
        assert diffs["energies"] < 1e-6, report[-1]
        assert diffs["forces"] < 1e-6, report[-1]
        assert diffs["stress"] < 1e-7, report[-1]
        assert diffs["virials"] < 1e-6, report[-1]
    print(f"{name}: " + "; ".join(report))
