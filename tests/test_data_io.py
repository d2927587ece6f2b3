"""Dataset files: extxyz / cfg / VASP readers and writers, round trips, and bad-input errors."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.units import GPa

from training import datasets
from training.datasets import DatasetError

VASP = Path(__file__).parent / "data" / "vasp"


def _frames(n=3, seed=0):
    """Frames with several species, a triclinic cell, stress and per-frame metadata."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = Atoms("CBCBC"[: 3 + k % 3], positions=rng.uniform(0, 4, (3 + k % 3, 3)),
                      cell=[[6.1, 0.0, 0.0], [0.7, 5.3, 0.0], [0.0, 0.2, 18.0]], pbc=True)
        frame = datasets.with_reference(atoms, energy=-50.0 + rng.normal(), forces=rng.normal(0, 1, (len(atoms), 3)),
                                        stress=rng.normal(0, 0.01, 6))
        frame.info.update(system="interface", temperature_K=900.0 + k, strain=np.array([0.05, 0.0]),
                          engine="tblite 0.8.0 GFN1-xTB")
        out.append(frame)
    return out


def _assert_same(a_frames, b_frames, *, atol):
    assert len(a_frames) == len(b_frames)
    for a, b in zip(a_frames, b_frames):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        np.testing.assert_allclose(a.cell.array, b.cell.array, atol=atol, rtol=0)
        np.testing.assert_allclose(a.positions, b.positions, atol=atol, rtol=0)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=atol, rtol=0)
        np.testing.assert_allclose(a.get_stress(), b.get_stress(), atol=atol, rtol=0)
        assert abs(a.get_potential_energy() - b.get_potential_energy()) <= atol


@pytest.mark.parametrize("name", ["set.extxyz", "set.extxyz.gz", "set.xyz"])
def test_extxyz_round_trip_keeps_every_number(tmp_path, name):
    frames = _frames()
    path = datasets.write(tmp_path / name, frames)
    back = datasets.read(path)
    # per-atom columns are printed with 8 decimals; cell, energy, stress and info exactly
    _assert_same(frames, back, atol=5e-9)
    for a, b in zip(frames, back):
        assert b.get_potential_energy() == a.get_potential_energy()
        np.testing.assert_array_equal(b.get_stress(), a.get_stress())
        np.testing.assert_array_equal(b.cell.array, a.cell.array)
        assert b.info["temperature_K"] == a.info["temperature_K"]
        np.testing.assert_array_equal(b.info["strain"], a.info["strain"])
        assert b.info["engine"] == a.info["engine"] and b.info["system"] == "interface"
    # a second round trip changes nothing at all: the file is a fixed point
    again = datasets.read(datasets.write(tmp_path / ("again_" + name), back))
    _assert_same(back, again, atol=0.0)


def test_cfg_round_trip_keeps_every_number(tmp_path):
    mtp = pytest.importorskip("training.mtp")
    if not hasattr(mtp, "read_cfg"):
        pytest.skip("training.mtp.read_cfg is not written yet")
    frames = _frames()
    extxyz = datasets.read(datasets.write(tmp_path / "a.extxyz", frames))
    species = ["B", "C"]
    cfg = datasets.read(datasets.write(tmp_path / "a.cfg", extxyz), species=species)
    # cfg prints 6 decimals (A, eV/A) and PlusStress = -stress V with 5 decimals (eV)
    _assert_same(extxyz, cfg, atol=5.01e-7)
    for a, b in zip(extxyz, cfg):
        np.testing.assert_allclose(b.get_stress() * b.get_volume(), a.get_stress() * a.get_volume(),
                                   atol=5e-6, rtol=0)
        assert b.info["temperature_K"] == a.info["temperature_K"] and b.info["system"] == a.info["system"]
        assert b.info["engine"] == a.info["engine"]
        np.testing.assert_array_equal(b.info["strain"], a.info["strain"])
    back = datasets.read(datasets.write(tmp_path / "b.extxyz", cfg))
    _assert_same(cfg, back, atol=0.0)
    datasets.write(tmp_path / "b.cfg", back)
    # every number of the cfg survives cfg -> ASE -> extxyz -> ASE -> cfg unchanged
    assert (tmp_path / "b.cfg").read_text() == (tmp_path / "a.cfg").read_text()
    assert datasets.read(tmp_path / "b.cfg")[0].arrays["mlip_type"].tolist() == [1, 0, 1]


def test_vasprun_energies_forces_stress():
    """The hand-written vasprun.xml: free energy, forces as printed, stress from kB with VASP's sign flipped."""
    frames = datasets.read(VASP / "vasprun.xml")
    assert len(frames) == 2
    assert frames[0].get_chemical_symbols() == ["B", "C", "C"]
    assert frames[0].get_potential_energy() == pytest.approx(-20.12345678, abs=1e-9)  # TOTEN, not sigma->0
    assert frames[1].get_potential_energy() == pytest.approx(-20.54321, abs=1e-9)
    np.testing.assert_allclose(frames[0].get_forces()[1], [-0.3, 0.4, -0.01], atol=1e-12)
    kb = np.array([[12.5, 1.5, -0.5], [1.5, -7.25, 2.0], [-0.5, 2.0, 0.75]])
    expected = -0.1 * GPa * kb[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    np.testing.assert_allclose(frames[0].get_stress(), expected, rtol=1e-12)
    assert frames[0].get_stress()[0] < 0  # +12.5 kB in VASP is compressive
    np.testing.assert_allclose(frames[1].cell.array, [[4, 0, 0], [1, 5, 0], [0, 0, 12]])
    np.testing.assert_allclose(frames[1].get_scaled_positions()[2], [0.58, 0.56, 0.51], atol=1e-12)


def test_vasp_outcar_from_ase_test_data():
    import ase

    outcar = Path(ase.__file__).parent / "test" / "testdata" / "vasp" / "OUTCAR_example_1"
    if not outcar.is_file():
        pytest.skip("ASE's test data is not installed")
    text = outcar.read_text()
    totens = [float(line.split()[-2]) for line in text.splitlines() if "free  energy   TOTEN" in line]
    frames = datasets.read(outcar)
    assert frames[-1].get_potential_energy() == pytest.approx(totens[-1], abs=1e-8)
    assert frames[-1].get_forces().shape == (len(frames[-1]), 3)


def test_truncated_files_name_file_and_frame(tmp_path):
    path = datasets.write(tmp_path / "t.extxyz", _frames(3))
    lines = path.read_text().splitlines(keepends=True)
    first = int(lines[0]) + 2
    cut = tmp_path / "cut.extxyz"
    cut.write_text("".join(lines[: first + 4]))  # frame 1 stops after two atoms
    with pytest.raises(DatasetError, match=r"cut\.extxyz: frame 1 "):
        datasets.read(cut)
    gz = tmp_path / "cut.extxyz.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write("".join(lines[: first + 4]))
    with pytest.raises(DatasetError, match=r"cut\.extxyz\.gz: frame 1 "):
        datasets.read(gz)
    xml = (VASP / "vasprun.xml").read_text()
    bad = tmp_path / "vasprun.xml"
    bad.write_text(xml[: len(xml) * 2 // 3])
    with pytest.raises(DatasetError, match="truncated vasprun.xml"):
        datasets.read(bad)


def test_missing_forces_flat_cell_nan_and_unknown_format(tmp_path):
    frames = _frames(2)
    no_forces = frames[1].copy()
    from ase.calculators.singlepoint import SinglePointCalculator
    no_forces.calc = SinglePointCalculator(no_forces, energy=1.0)
    with pytest.raises(DatasetError, match=r"x\.extxyz: frame 1 has no forces"):
        datasets.validate([frames[0], no_forces], source="x.extxyz")
    path = tmp_path / "noforces.extxyz"
    import ase.io
    ase.io.write(path, [frames[0], no_forces], format="extxyz")
    with pytest.raises(DatasetError, match=r"noforces\.extxyz: frame 1 has no forces"):
        datasets.read(path)
    flat = frames[0].copy()
    flat.set_cell([[6.1, 0, 0], [0, 5.3, 0], [0, 0, 0]])
    flat.calc = frames[0].calc
    with pytest.raises(DatasetError, match="frame 0: cell has no volume"):
        datasets.validate([flat], source="flat.extxyz")
    nan = datasets.with_reference(frames[0], energy=np.nan, forces=frames[0].get_forces())
    with pytest.raises(DatasetError, match="frame 0: energy is not finite"):
        datasets.validate([nan])
    (tmp_path / "data.txt").write_text("1\n\nC 0 0 0\n")
    with pytest.raises(DatasetError, match="unknown dataset format"):
        datasets.read(tmp_path / "data.txt")
    with pytest.raises(DatasetError, match="not found"):
        datasets.read(tmp_path / "absent.extxyz")


def test_format_dispatch():
    assert datasets.format_of("a/graphene.extxyz.gz") == "extxyz"
    assert datasets.format_of("train.cfg") == "cfg"
    assert datasets.format_of("run1/OUTCAR") == "vasp-out"
    assert datasets.format_of("vasprun.xml") == "vasp-xml"
