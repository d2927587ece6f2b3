"""``multiscale mtp calc-efs`` reproduces MLIP-2's ``mlp calc-efs`` output files number for number.

``calc-efs pot_NN.mtp training.cfg.gz out.cfg`` is compared with MLIP's ``efs_NN.cfg.gz`` line by line and
token by token: the same lines and words; sizes, ids, types, cell and positions as identical text; energy,
forces and PlusStress within |ΔE| <= 1e-6 eV, |ΔF| <= 2e-6 eV/Å, |ΔPlusStress| <= 2e-5 eV (one or two
units of the last printed digit; a printed ``-0.000000`` equals ``0.000000``).  ``multi/efs_10`` also
carries MLIP's extrapolation grades (``nbh_grades`` column, ``Feature ID``/``MV_grade`` lines) from its
active-set selection, which ``calc-efs`` does not compute: they are removed from the reference side.
multi/06 runs in the fast suite (cubic/06 and multi/06 are compared value by value in
test_mtp_reference.py there too), the other files are marked slow.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from multiscale.cli import main

DATA = Path(__file__).parent / "data" / "mlip"
TOLERANCE = {"Energy": 1e-6, "AtomData": 2e-6, "PlusStress": 2e-5}


def _lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return handle.read().splitlines()


def _without_grades(lines: list[str]) -> list[str]:
    """Drop the ``nbh_grades`` column and ``Feature`` lines (not calc-efs output) from MLIP's text."""
    out, drop_last = [], False
    for line in lines:
        if line.startswith(" Feature"):
            continue
        if line.startswith(" AtomData:"):
            drop_last = line.split()[-1] == "nbh_grades"
            line = line[: line.rindex("nbh_grades")].rstrip() if drop_last else line
        elif drop_last and line.startswith("    ") and len(line.split()) == 9:
            line = line[: line.rstrip().rindex(" ")].rstrip()
        out.append(line)
    return out


def _first_frames(path: Path, count: int, out: Path) -> Path:
    """Write the first ``count`` configurations of the cfg ``path`` to ``out``."""
    lines = _lines(path)
    starts = [k for k, line in enumerate(lines) if line == "BEGIN_CFG"] + [len(lines)]
    out.write_text("\n".join(lines[: starts[count]]) + "\n")
    return out


def _compare(ours: list[str], mlip: list[str]) -> None:
    """Assert that the two cfg texts agree (see the module docstring)."""
    assert len(ours) == len(mlip), f"{len(ours)} lines, MLIP has {len(mlip)}"
    block = None
    for number, (a, b) in enumerate(zip(ours, mlip), start=1):
        wa, wb = a.split(), b.split()
        if wb and wb[0] in ("Energy", "PlusStress:", "AtomData:", "Supercell", "Size", "END_CFG"):
            block = wb[0].rstrip(":")
            assert wa == wb, f"line {number}: {a!r} != {b!r}"
            continue
        assert len(wa) == len(wb), f"line {number}: {a!r} != {b!r}"
        exact = len(wa) if block not in TOLERANCE else (5 if block == "AtomData" else 0)
        assert wa[:exact] == wb[:exact], f"line {number}: {a!r} != {b!r}"
        for x, y in zip(wa[exact:], wb[exact:]):
            diff = abs(float(x) - float(y))
            assert diff <= TOLERANCE[block] + 1e-12, f"line {number} ({block}): {a!r} vs MLIP {b!r}"


def _check_calc_efs(system: str, level: str, tmp_path: Path) -> None:
    out = tmp_path / "efs.cfg"
    code = main(["mtp", "calc-efs", str(DATA / system / f"pot_{level}.mtp"), str(DATA / system / "training.cfg.gz"),
                 str(out)])
    assert code == 0
    mlip = _lines(DATA / system / f"efs_{level}.cfg.gz")
    if system == "multi" and level == "10":
        mlip = _without_grades(mlip)
    assert mlip.count("BEGIN_CFG") == 1001
    ours = _lines(out)
    _compare(ours, mlip)
    # the input's own (EMT) energies were replaced: the test would catch a calc-efs that copies them through
    with pytest.raises(AssertionError):
        _compare(_lines(DATA / system / "training.cfg.gz"), mlip)


@pytest.mark.parametrize("system,level", [("multi", "06")])
def test_calc_efs_reproduces_mlip_fast(system, level, tmp_path):
    _check_calc_efs(system, level, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("system,level", [("cubic", "02"), ("cubic", "06"), ("cubic", "10"), ("cubic", "16"),
                                          ("cubic", "20"), ("multi", "10")])
def test_calc_efs_reproduces_mlip_slow(system, level, tmp_path):
    _check_calc_efs(system, level, tmp_path)


def test_calc_efs_extxyz_output_and_gz(tmp_path):
    """Output format follows the file name: ``.cfg.gz`` (MLIP layout, compressed) and extended XYZ."""
    from ase.io import read

    from training.mtp import read_cfg

    pot = DATA / "cubic" / "pot_06.mtp"
    src = _first_frames(DATA / "cubic" / "training.cfg.gz", 3, tmp_path / "three.cfg")
    assert main(["mtp", "calc-efs", str(pot), str(src), str(tmp_path / "o.cfg.gz")]) == 0
    assert main(["mtp", "calc-efs", str(pot), str(src), str(tmp_path / "o.extxyz")]) == 0
    ref = read_cfg(DATA / "cubic" / "efs_06.cfg.gz")[:3]
    for frames in (read_cfg(tmp_path / "o.cfg.gz"), read(tmp_path / "o.extxyz", ":")):
        assert len(frames) == 3
        for atoms, want in zip(frames, ref):
            assert atoms.get_potential_energy() == pytest.approx(want.get_potential_energy(), abs=1e-6)
            assert abs(atoms.get_forces() - want.get_forces()).max() <= 2e-6
            assert abs((atoms.get_stress() - want.get_stress()) * want.get_volume()).max() <= 2e-5


@pytest.mark.parametrize("case,message", [
    ("missing-potential", "nope.mtp"),
    ("missing-input", "nope.cfg"),
    ("bad-species", "species"),
])
def test_calc_efs_bad_input_is_one_clear_error(case, message, tmp_path, capsys):
    pot, src = DATA / "cubic" / "pot_06.mtp", _first_frames(DATA / "cubic" / "training.cfg.gz", 1, tmp_path / "one.cfg")
    args = {"missing-potential": [str(tmp_path / "nope.mtp"), str(src)],
            "missing-input": [str(pot), str(tmp_path / "nope.cfg")],
            "bad-species": [str(pot), str(src), "--species", "Cu,Ag"]}[case]
    if case != "bad-species":
        args = args + [str(tmp_path / "out.cfg")]
    else:
        args = args[:2] + [str(tmp_path / "out.cfg")] + args[2:]
    assert main(["mtp", "calc-efs", *args]) == 1
    err = capsys.readouterr().err
    assert "calc-efs: error" in err and message in err
    assert err.count("\n") == 1
