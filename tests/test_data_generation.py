"""Structures, engines, resumable AIMD generation and the 0 K reference scan."""
from __future__ import annotations

import json
import shutil

import ase.io

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import neighbor_list

from training import aimd, datasets, engines, reference, structures

# Cheap stand-in engine for the MD machinery: Lennard-Jones with its minimum near a C-C bond.
LJ = "python:ase.calculators.lj.LennardJones"
LJ_SETTINGS = {"sigma": 1.3, "epsilon": 0.2, "rc": 3.0, "smooth": True}


def _coordination(atoms, cutoff):
    i = neighbor_list("i", atoms, cutoff)
    return np.bincount(i, minlength=len(atoms))


def test_graphene_geometry():
    a = 2.46
    atoms = structures.graphene(a=a)
    assert len(atoms) == 60 and atoms.cell.lengths()[:2].min() >= 10.0
    assert atoms.cell[2, 2] >= 15.0 + 0.0  # vacuum along z
    i, j, d = neighbor_list("ijd", atoms, 1.6)
    np.testing.assert_allclose(d, a / np.sqrt(3), atol=1e-12)
    assert np.all(np.bincount(i) == 3)


def test_borophene_chi3_geometry():
    atoms = structures.borophene(a=2.94, b=8.48)
    d = 8.48 / 5
    assert len(atoms) == 64 and atoms.cell.lengths()[:2].min() >= 10.0
    # a triangular lattice with 1/5 of the sites empty: 4- and 5-fold coordination, equally many
    coordination = _coordination(atoms, 1.1 * d)
    assert sorted(set(coordination)) == [4, 5]
    assert np.sum(coordination == 4) == np.sum(coordination == 5)
    sites = atoms.cell[0, 0] * atoms.cell[1, 1] / (np.sqrt(3) / 2 * d ** 2)
    assert 1 - len(atoms) / sites == pytest.approx(0.2, abs=0.01)


def test_interface_cell_and_aliases():
    atoms = structures.build("graphene_borophene_interface")
    assert atoms.symbols.formula.count() == {"C": 48, "B": 40}
    assert atoms.cell.lengths()[:2].min() >= 10.0
    i, j, d = neighbor_list("ijd", atoms, 1.9)
    assert d.min() > 1.35
    z = atoms.numbers
    assert np.sum(z[i] != z[j]) > 0  # B-C bonds across the interface
    assert structures.canonical("borophene_chi3") == "borophene"
    with pytest.raises(ValueError, match="'diamond' is not one of"):
        structures.build("diamond")


def test_engine_factory_and_metadata():
    calc = engines.make_calculator("tblite-gfn1")
    assert calc.parameters["method"] == "GFN1-xTB"
    meta = engines.engine_metadata("tblite-gfn1")
    assert "not DFT" in meta["theory"] and meta["versions"]["tblite"] != "unknown"
    assert engines.engine_label("tblite-gfn2").endswith("GFN2-xTB")
    lj = engines.make_calculator(LJ, LJ_SETTINGS)
    assert lj.parameters["sigma"] == 1.3
    with pytest.raises(engines.EngineError, match="data.engine: 'vasp' is not one of"):
        engines.make_calculator("vasp")
    with pytest.raises(engines.EngineError, match="cannot import"):
        engines.make_calculator("python:ase.calculators.nothere.Calc")


def test_gfn1_graphene_forces_match_energy_differences():
    """The default engine on a small graphene cell: forces are -dE/dx (central differences)."""
    atoms = structures.graphene(repeat=(3, 2))
    atoms.positions += np.random.default_rng(1).normal(0, 0.05, atoms.positions.shape)
    atoms.calc = engines.make_calculator("tblite-gfn1", {"accuracy": 0.01})
    forces = atoms.get_forces()
    h = 1e-4
    for k in (0, 2):
        x = atoms.positions.copy()
        atoms.positions[3, k] = x[3, k] + h
        e_plus = atoms.get_potential_energy()
        atoms.positions[3, k] = x[3, k] - h
        e_minus = atoms.get_potential_energy()
        atoms.positions = x
        assert forces[3, k] == pytest.approx(-(e_plus - e_minus) / (2 * h), abs=2e-3)


@pytest.mark.slow
def test_gpaw_engine_on_a_tiny_cell():
    """GPAW (plane waves, the DFT option): forces are the gradient of its energy, momentum is conserved,
    the stress is finite, and the metadata names the engine."""
    pytest.importorskip("gpaw")
    settings = {"mode": {"name": "pw", "ecut": 300.0}, "kpts": (4, 4, 1)}
    atoms = structures.graphene(repeat=(1, 1), vacuum_A=6.0)
    atoms.calc = engines.make_calculator("gpaw", settings)
    forces = atoms.get_forces()
    assert np.abs(forces.sum(axis=0)).max() < 2e-2
    assert np.isfinite(atoms.get_stress()).all()
    h, energies = 0.01, []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[1, 1] += sign * h
        moved.calc = atoms.calc
        energies.append(moved.get_potential_energy())
    assert forces[1, 1] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=2e-2)
    meta = engines.engine_metadata("gpaw", settings)
    assert meta["versions"]["gpaw"] and meta["method"].startswith("DFT")


class _Harmonic2D(Calculator):
    """E = A0 (C11 exx^2/2 + C22 eyy^2/2 + C12 exx eyy + 2 C66 exy^2) with C in eV/A^2: known elastic constants."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, cell0, c11, c22, c12, c66=0.0):
        super().__init__()
        self.cell0, self.c, self.c66 = np.asarray(cell0), (c11, c22, c12), c66

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        deformation = np.linalg.solve(self.cell0, self.atoms.cell.array).T  # cell = cell0 F^T
        strain = 0.5 * (deformation + deformation.T) - np.eye(3)
        exx, eyy, exy = strain[0, 0], strain[1, 1], strain[0, 1]
        c11, c22, c12 = self.c
        area0 = self.cell0[0, 0] * self.cell0[1, 1]
        energy = area0 * (0.5 * c11 * exx ** 2 + 0.5 * c22 * eyy ** 2 + c12 * exx * eyy + 2 * self.c66 * exy ** 2)
        volume = self.atoms.get_volume()
        # stress = (1/V) dE/d(strain) with the current cell as reference
        sxx = area0 * (c11 * exx + c12 * eyy) * (1 + exx) / volume
        syy = area0 * (c22 * eyy + c12 * exx) * (1 + eyy) / volume
        self.results = {"energy": energy, "forces": np.zeros((len(self.atoms), 3)),
                        "stress": np.array([sxx, syy, 0, 0, 0, area0 * self.c66 * 2 * exy / volume])}


def test_strain_scan_recovers_known_elastic_constants():
    atoms = structures.graphene(repeat=(1, 1))
    c11, c22, c12, c66 = 21.0, 19.0, 4.0, 7.5  # eV/A^2
    calc = _Harmonic2D(atoms.cell.array, c11, c22, c12, c66)
    result = reference.strain_scan(atoms, calc, strains=(-0.001, 0.001))
    to_n_per_m = reference.EV_PER_A2_TO_N_PER_M
    assert result["C11_N_per_m"] == pytest.approx(c11 * to_n_per_m, rel=2e-3)
    assert result["C22_N_per_m"] == pytest.approx(c22 * to_n_per_m, rel=2e-3)
    assert result["C12_N_per_m"] == pytest.approx(c12 * to_n_per_m, rel=2e-3)
    assert result["C66_N_per_m"] == pytest.approx(c66 * to_n_per_m, rel=2e-3)
    assert result["E_x_N_per_m"] == pytest.approx((c11 * c22 - c12 ** 2) / c22 * to_n_per_m, rel=3e-3)
    assert result["nu_xy"] == pytest.approx(c12 / c22, rel=3e-3)


def _plan(**kw):
    base = dict(temperatures_K=(600.0,), strain_modes=("x", "xy"), strains=(0.0, 0.1), equilibration_steps=3,
                settle_steps=2, stride_steps=2, frames_per_strain=2)
    base.update(kw)
    return aimd.AIMDPlan(**base)


class _Stop(Exception):
    pass


def test_interrupted_generation_resumes_to_the_same_frames(tmp_path):
    plan = _plan(strain_modes=("x",))
    full = aimd.generate("graphene", tmp_path / "full", atoms=structures.graphene(), plan=plan, engine=LJ, engine_settings=LJ_SETTINGS,
                         reference_scan=False)
    reference = datasets.read(full)

    work = tmp_path / "cut" / "graphene.work"
    work.mkdir(parents=True)
    # the same relaxed start cell as the full run (its cache file, as a resumed run reads it): two 0 K
    # relaxations of one cell can end a few ulp apart (BLAS summation order with the arrays' memory
    # alignment), MD amplifies that, and what this test checks is the resume, not the relaxation
    shutil.copyfile(aimd.structure_path(full), work / "graphene.start.extxyz")
    task = aimd.chain_tasks("graphene", work, plan=plan, engine=LJ, engine_settings=LJ_SETTINGS)[0]

    def stop_after_three(done, total, what):
        if done == 3:
            raise _Stop

    with pytest.raises(_Stop):
        aimd.run_chain(task, progress=stop_after_three)
    assert len(datasets.read(work / f"{task.stem}.extxyz")) == 3
    # a frame written after the last saved state (killed in between) is dropped on resume
    with open(work / f"{task.stem}.extxyz", "a") as handle:
        datasets.write_extxyz(handle, reference[:1])
    resumed = datasets.read(aimd.generate("graphene", tmp_path / "cut", atoms=structures.graphene(), plan=plan, engine=LJ,
                                          engine_settings=LJ_SETTINGS, reference_scan=False))
    assert len(resumed) == len(reference) == plan.frames_per_chain
    for a, b in zip(reference, resumed):
        np.testing.assert_array_equal(a.positions, b.positions)
        # the same positions: the engine's energy differs by the round-off of its sums at most (their order
        # follows the arrays' memory alignment; 1 ulp of 59 eV seen), far below any real difference
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=1e-13, abs=0)
        assert a.info["step"] == b.info["step"]


def test_generated_frames_and_metadata(tmp_path):
    plan = _plan()
    path = aimd.generate("graphene", tmp_path, atoms=structures.graphene(), plan=plan, engine=LJ, engine_settings=LJ_SETTINGS,
                         reference_scan=False)
    frames = datasets.read(path)
    assert len(frames) == len(plan.chains) * plan.frames_per_chain
    last = frames[-1]
    assert last.info["system"] == "graphene" and last.info["temperature_K"] == 600.0
    np.testing.assert_allclose(last.info["strain"], [0.1, 0.1])
    start = ase.io.read(aimd.structure_path(path))  # the relaxed 0 K cell written beside the dataset
    np.testing.assert_allclose(np.diag(last.cell.array)[:2], 1.1 * np.diag(start.cell.array)[:2], rtol=1e-9)
    assert last.info["step"] == plan.steps_per_chain
    assert "LennardJones" in last.info["engine"]
    assert last.get_stress().shape == (6,)
    meta = json.loads((tmp_path / "graphene.meta.json").read_text())
    assert meta["engine"]["engine"] == LJ and meta["n_frames"] == len(frames)
    assert meta["plan"]["strains"] == [0.0, 0.1] and meta["timing"]["s_per_step"] > 0
    assert aimd.read_metadata(path)["system"] == "graphene"
    assert meta["structure"]["start_cell_A"] == pytest.approx(start.cell.lengths().tolist())


def test_plan_rejects_bad_values():
    with pytest.raises(ValueError, match="data.aimd.strain_modes: 'z'"):
        aimd.AIMDPlan(strain_modes=("z",))
    with pytest.raises(ValueError, match="data.aimd.temperatures_K"):
        aimd.AIMDPlan(temperatures_K=(0.0,))
    with pytest.raises(ValueError, match="data.aimd.stride_steps"):
        aimd.AIMDPlan(stride_steps=0)


@pytest.mark.slow
def test_default_engine_graphene_lattice_constant_is_the_stored_one():
    # The Γ-point 5 x 3 cell relaxes slightly anisotropically (a 2.4523 Å along x, 2.4478 Å along y);
    # the stored constant is the isotropic minimum, i.e. the lattice constant of the same area per atom.
    relaxed = reference.relax_cell(structures.graphene(), engines.make_calculator(engines.DEFAULT_ENGINE))
    lx, ly = relaxed.cell.lengths()[:2]
    assert np.sqrt(lx * ly / (15 * np.sqrt(3))) == pytest.approx(structures.LATTICE["graphene"]["a"], abs=2e-4)
