"""Peer driver: evaluate a nep.txt with GPUMD's NEP_CPU, as built by calorine, in calorine's venv.

Runs ONLY under ``.venv-peers/calorine/bin/python`` (calorine pulls numpy 2); the project talks to it
through files (``make peer-calorine`` builds the venv):

    python calorine_driver.py job.json result.json

``job.json``: ``{"potential": path, "structures": [{"symbols": [n], "positions": [n, 3] Å,
"cell": [3, 3] Å (rows)}, ...]}``; NEP_CPU treats every cell as periodic, so a 2D sheet needs a
vacuum wider than the cut-off. ``result.json``: ``{"calorine": version, "results": [{"energy": eV,
"energies": [n] eV, "forces": [n, 3] eV/Å, "stress": [6] eV/Å^3 (ASE Voigt order and sign),
"virials": [n, 3, 3] eV (NEP_CPU's per-atom virials, row-major), "seconds": best wall time of one
evaluation}, ...]}``; an optional ``"repeat": k`` in the job times k evaluations (benchmarks/nep_eval.py).

The structures go to calorine's ``_nepy.NEPY`` (its binding of NEP_CPU's ``NEP::compute``) with the
same data layout as ``calorine.calculators.CPUNEP``, which is not used because calorine 4.1's Python
header check refuses NEP3 files that NEP_CPU itself reads.
"""
import contextlib
import json
import sys
import time
from tempfile import TemporaryFile


def evaluate(potential: str, symbols, positions, cell, masses, repeat: int = 1) -> dict:
    import _nepy
    import numpy as np

    pos = np.asarray(positions, float)
    c = np.asarray(cell, float).ravel()
    n = len(symbols)
    with TemporaryFile("w") as quiet, contextlib.redirect_stdout(quiet):
        nepy = _nepy.NEPY(potential, n, [c[0], c[3], c[6], c[1], c[4], c[7], c[2], c[5], c[8]],
                          list(symbols), list(pos.T.ravel()), list(masses))
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            energies, forces, virials = nepy.get_potential_forces_and_virials()
            seconds.append(time.perf_counter() - start)
    volume = abs(np.linalg.det(np.asarray(cell, float)))
    virials = np.asarray(virials).reshape(9, n).T.reshape(n, 3, 3)  # [xx, xy, xz, yx, ...] per atom
    sigma = -virials.sum(0) / volume
    return {"energy": float(np.sum(energies)), "energies": list(energies),
            "forces": np.asarray(forces).reshape(3, n).T.tolist(),
            "stress": [sigma[0, 0], sigma[1, 1], sigma[2, 2], sigma[1, 2], sigma[0, 2], sigma[0, 1]],
            "virials": virials.tolist(), "seconds": min(seconds)}


def main(job_path: str, out_path: str) -> None:
    import calorine
    from ase.data import atomic_masses, atomic_numbers

    with open(job_path) as fh:
        job = json.load(fh)
    results = []
    for s in job["structures"]:
        masses = [float(atomic_masses[atomic_numbers[x]]) for x in s["symbols"]]
        results.append(evaluate(job["potential"], s["symbols"], s["positions"], s["cell"], masses,
                                max(1, int(job.get("repeat", 1)))))
    with open(out_path, "w") as fh:
        json.dump({"calorine": calorine.__version__, "results": results}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
