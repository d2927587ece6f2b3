"""Driver run by the motep peer's own Python (``.venv-peers/motep``, numpy 2): never imported by our code.

Usage: ``python motep_driver.py request.json result.json``.  The request is JSON:

* ``potentials``: list of ``{"path": .mtp file, "cells": [cell, ...]}``; a cell is
  ``{"numbers": [n] int, "positions": [n, 3] Å, "cell": [3, 3] Å, "pbc": [3] bool}``.  The potential is
  read with ``motep.io.mlip.mtp.read_mtp``; its species (atomic numbers of types 0..S-1) come from the
  file's own ``potential_tag`` (``species:C,B``), so a file that does not name its species fails here;
  then ``motep.calculator.make_calculator(data, engine="cext")`` evaluates each cell.
* ``cfgs``: list of ``{"path": .cfg file, "species": [symbols of types 0..S-1]}``, read with
  ``motep.io.mlip.cfg.read_cfg``.

The result is JSON: per potential ``{"potential_tag", "species", "results": [{"energy" eV, "forces"
[n, 3] eV/Å, "stress" [6] eV/Å³ (ASE sign, Voigt xx yy zz yz xz xy)}]}``; per cfg a list of frames
``{"numbers", "positions", "cell", "energy", "forces", "stress", "info"}``.  JSON keeps every double
exactly (shortest round-trip repr).
"""
from __future__ import annotations

import json
import sys


def _species_from_tag(tag: str) -> list[int]:
    from ase.data import atomic_numbers

    tag = tag.strip()
    if not tag.startswith("species:"):
        raise SystemExit(f"potential_tag {tag!r} does not name the species (expected 'species:C,B')")
    return [atomic_numbers[s.strip()] for s in tag[len("species:"):].split(",")]


def _potential(item: dict) -> dict:
    from ase import Atoms
    from motep.calculator import make_calculator
    from motep.io.mlip.mtp import read_mtp

    data = read_mtp(item["path"])
    data.species = _species_from_tag(data.potential_tag)
    calc = make_calculator(data, engine="cext")
    results = []
    for cell in item["cells"]:
        atoms = Atoms(numbers=cell["numbers"], positions=cell["positions"], cell=cell["cell"], pbc=cell["pbc"])
        atoms.calc = calc
        results.append({"energy": float(atoms.get_potential_energy()),
                        "forces": atoms.get_forces().tolist(), "stress": atoms.get_stress().tolist()})
    return {"potential_tag": data.potential_tag, "species": [int(z) for z in data.species], "results": results}


def _cfg(item: dict) -> list[dict]:
    from motep.io.mlip.cfg import read_cfg

    frames = read_cfg(item["path"], index=":", species=item.get("species"))
    out = []
    for atoms in frames:
        res = atoms.calc.results if atoms.calc is not None else {}
        out.append({"numbers": atoms.numbers.tolist(), "positions": atoms.positions.tolist(),
                    "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist(),
                    "energy": float(res["energy"]) if "energy" in res else None,
                    "forces": res["forces"].tolist() if "forces" in res else None,
                    "stress": [float(v) for v in res["stress"]] if "stress" in res else None,
                    "info": {k: v for k, v in atoms.info.items() if isinstance(v, (int, float, str))}})
    return out


def main(request_path: str, result_path: str) -> None:
    import motep  # noqa: F401  (fails early, with motep's own message, outside the peer venv)

    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    result = {"potentials": [_potential(item) for item in request.get("potentials", [])],
              "cfgs": [_cfg(item) for item in request.get("cfgs", [])]}
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(*sys.argv[1:3])
