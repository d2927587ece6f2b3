"""Tiny md tasks of every kind, planned by md_gpu.tasks as the md stage plans them (tests/test_fault_injection.py).

Systems (Morse pair potentials, so each task runs in about a second on one core):

* ``cu``: fcc copper (Girifalco-Weizer Morse, ``morse-cu``), the 4-atom cubic cell x ``md.supercell``
  [2, 2]: tensile, elastic (and at low T), stability, shear, HNEMD and NEMD at two lengths;
* ``alu``: an fcc Morse block, lower half Al, upper half U (``morse-alu``: one bond, two masses), an
  interface system: interface NEMD across its two interfaces;
* ``sheets``: the lateral interface of two triangular Morse sheets, Cu and Au (``morse-cuau``): the stripe
  heterostructure tasks (stripe cell, its low-temperature and compliance twins, the phases' cells).

``tasks(root)`` writes the structure files under ``root`` and returns ``{kind: task}``, one task per kind,
with ``out_dir`` = ``root/out``. ``register_potentials()`` adds the two-species Morse potentials to the
built-ins (a subprocess that runs a task calls it too).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.io import write

from md_gpu.forcefields import Morse
from md_gpu.forcefields.loading import BUILTIN
from md_gpu.md_stage import MD_SETTINGS
from md_gpu.tasks import TASKS, System
from multiscale.schema import validate

MORSE = dict(D=0.3429, a=1.3588, r0=2.866, cutoff=5.5)
POTENTIALS = {"morse-alu": ("Al", "U"), "morse-cuau": ("Cu", "Au")}

TINY = {"dt_fs": 2.0, "seeds": 1, "equilibrate_steps": 20, "thermo_every": 5, "checkpoint_every": 10,
        "strain_rate_per_s": 1e12, "max_strain": 0.04, "fit_max_strain": 0.03, "directions": ["x"],
        "supercell": [2, 2],
        "elastic": {"sample_steps": 10, "delta": 0.005},
        "stability": {"steps": 20, "relax_steps": 5},
        "shear": {"enabled": True, "sample_steps": 10, "points": 1},
        "heterostructure": {"enabled": True, "stripe_widths_nm": [0.6, 0.6], "compliance_periods": 2},
        "thermal": {"enabled": True, "seeds": 1, "directions": ["x"], "equilibrate_steps": 20,
                    "production_steps": 40, "supercell": [2, 1],
                    "nemd": {"repeats": [9, 10], "bath_width_A": 3.0, "production_steps": 40},
                    "interface": {"repeats_normal": 2, "bath_width_A": 4.0, "production_steps": 40}}}

#: the kinds, and the system that runs each one
KIND_SYSTEM = {"tensile": "cu", "elastic": "cu", "elastic_low_T": "cu", "stability": "cu", "shear": "cu",
               "hnemd": "cu", "nemd": "cu", "interface_nemd": "alu", "heterostructure": "sheets",
               "heterostructure_low_T": "sheets", "heterostructure_compliance_low_T": "sheets",
               "heterostructure_phase_low_T": "sheets"}


def register_potentials() -> None:
    for name, species in POTENTIALS.items():
        BUILTIN[name] = lambda species=species: Morse(species, **MORSE)


def settings(**overrides) -> dict:
    return validate({**TINY, **overrides}, MD_SETTINGS, where="md", source="test")


def _sheet(symbol: str, a: float = 2.9):
    """A rectangular cell of a flat triangular sheet (2 atoms), periodic in x and y, 15 Å of vacuum."""
    from ase import Atoms

    h = a * np.sqrt(3)
    return Atoms(symbol * 2, positions=[(0, 0, 7.5), (a / 2, h / 2, 7.5)], cell=[a, h, 15.0], pbc=[1, 1, 0])


def _two_mass_block():
    """fcc block 1 x 6 x 1 cubic cells, y < 3 a: Al, above: U (two interfaces normal to y)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((1, 6, 1))
    atoms.set_chemical_symbols(np.where(atoms.positions[:, 1] >= 3 * 3.61 - 0.1, "U", "Al"))
    return atoms


def tasks(root, md_settings: dict | None = None) -> dict:
    """``{kind: task}`` (module docstring); structure files in ``root``, outputs in ``root/out``."""
    register_potentials()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    md_settings = md_settings or settings()
    cells = {"cu": bulk("Cu", "fcc", a=3.61, cubic=True), "alu": _two_mass_block(), "sa": _sheet("Cu"),
             "sb": _sheet("Au")}
    files = {}
    for name, atoms in cells.items():
        files[name] = str(root / f"{name}.structure.extxyz")
        write(files[name], atoms)
    entries = {"cu": {"kind": "phase", "thickness_A": None},
               "alu": {"kind": "interface", "thickness_A": None, "between": []},
               "sheets": {"kind": "interface", "thickness_A": 3.35, "between": ["sa", "sb"]},
               "sa": {"kind": "phase", "thickness_A": 3.35}, "sb": {"kind": "phase", "thickness_A": 3.35}}
    potentials = {"cu": "morse-cu", "alu": "morse-alu", "sheets": "morse-cuau"}
    out = {}
    for name in ("cu", "alu", "sheets"):
        base = {"system": name, "potential": potentials[name], "structure": files.get(name, files["sa"]),
                "core_radii": None, "active_set": None, "out_dir": str(root / "out"), "settings": md_settings,
                "thickness_A": entries[name]["thickness_A"]}
        system = System(name, entries[name], base, entries, files)
        for kind in (k for k, s in KIND_SYSTEM.items() if s == name):
            module = TASKS.module_of(kind)
            planned = (module.plan_seed(md_settings, system, 0) if hasattr(module, "plan_seed") else []) + \
                (module.plan(md_settings, system) if hasattr(module, "plan") else [])
            out[kind] = next(t for t in planned if t["kind"] == kind)
    (root / "out").mkdir(exist_ok=True)
    return out
