"""In-plane shear modulus C66 of each phase by a simple shear test (off by default: ``md.shear.enabled``).

Protocol, one run per phase and seed of ``md.seeds`` at ``md.temperature_K`` (``<phase>_shear_seed<k>``,
no run files; while it runs, checkpoints ``<name>.equilibrate.ckpt.npz`` and ``<name>.shear<k>.ckpt.npz``
per sheared cell, from which an interrupted task resumes, :mod:`.common`):

1. NPT at zero in-plane stress for ``md.equilibrate_steps`` (:func:`md_gpu.protocols.equilibrate`);
2. the equilibrated cell and positions sheared affinely by the simple shear ``x -> x + gamma y``
   (deformation gradient ``F = I + gamma e_x e_y``) for each ``gamma`` in ``k / points * max_strain``,
   ``k = -points .. points``;
3. each sheared cell in NVT: ``md.equilibrate_steps // 4`` steps to settle, then ``sample_steps`` steps
   over which the shear stress ``sigma_xy`` (virial + kinetic) is averaged;
4. ``C66 = d sigma_xy / d gamma``: the least-squares slope over the strains. The strains are symmetric about
   0, so the second-order term of ``sigma_xy(gamma)`` drops out of the slope, and the rotation that
   separates simple from pure shear enters ``sigma_xy`` only at second order.

Units: GPa for a bulk cell; N/m for a 2D sheet (vacuum along z; the 3D stress times the cell height).

summary.json, per phase (``N_per_m`` or ``GPa``)::

    "shear_N_per_m": {"C66": {mean, sem, n} over seeds, "temperature_K": float, "strains": [gamma, ...]}

The elastic-constant task (:mod:`.elastic`) measures the same C66 by central differences of a pure shear;
this task is the independent check by a direct shear test.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..analysis import mean_sem
from .common import load, progress_printer, resumable

KINDS = ("shear",)

SETTINGS = {
    "shear": {
        "enabled": (bool, False, "simple shear test of each phase at temperature_K: C66 (one run per seed)"),
        "max_strain": (float, 0.01, "largest engineering shear strain gamma of the test"),
        "points": (int, 2, "sheared cells per sign: gamma = k / points x max_strain, k = -points..points"),
        "sample_steps": (int, 2000, "NVT steps over which the shear stress of each sheared cell is averaged"),
    },
}


def check(settings: dict) -> None:
    s = settings["shear"]
    if not 0 < s["max_strain"] < 0.05:
        raise ValueError(f"md.shear.max_strain: {s['max_strain']} must be > 0 and < 0.05 (linear response)")
    for key in ("points", "sample_steps"):
        if s[key] < 1:
            raise ValueError(f"md.shear.{key}: {s[key]} must be >= 1")


def plan_seed(settings: dict, system, seed: int) -> list[dict]:
    if system.is_interface or not settings["shear"]["enabled"]:
        return []
    return [{**system.base, "kind": "shear", "direction": None, "seed": seed, "name": f"{system.name}_shear_seed{seed}"}]


def strains(s: dict) -> list[float]:
    """The engineering shear strains of the test (``s``: the md.shear block)."""
    return [k / s["points"] * s["max_strain"] for k in range(-s["points"], s["points"] + 1)]


def run(task: dict) -> dict:
    """``result``: {"C66", "stress_xy": [per strain], "strains": [...]} in ``unit`` ("N/m" or "GPa"),
    measured at ``temperature_K``; also ``n_atoms``."""
    from common.arrays import array_module
    from ..protocols import equilibrate
    from ..protocols.common import checkpoint_file
    from ..units import GPA_A_TO_N_PER_M

    ff, atoms, run_settings, prefix = load(task)
    s, log = task["settings"]["shear"], progress_printer(task)
    resume = resumable(task, prefix)
    ref = equilibrate(ff, atoms, run_settings, log=log, checkpoint=checkpoint_file(prefix, "equilibrate"),
                      resume=resume).md.state
    settle = max(run_settings.equilibrate_steps // 4, 1)
    nvt = replace(run_settings, equilibrate_steps=settle + s["sample_steps"], traj_every=0)
    xp = array_module(ref.positions)
    gammas = strains(s)
    stress_xy = []
    for k, gamma in enumerate(gammas):
        F = np.eye(3)
        F[1, 0] = gamma  # rows are vectors: (x, y, z) @ F = (x + gamma y, y, z)
        sheared = ref.replace(positions=ref.positions @ xp.asarray(F), cell=ref.cell @ F)  # the cell is on the host
        thermo = equilibrate(ff, sheared, nvt, barostat_axes=(), log=log,
                             checkpoint=checkpoint_file(prefix, f"shear{k}"), resume=resume).thermo
        stress_xy.append(float(np.mean(thermo["stress_xy_GPa"][thermo["step"] > settle])))
    sheet = not ref.pbc[2]
    scale = float(ref.cell[2, 2]) * GPA_A_TO_N_PER_M if sheet else 1.0
    stress_xy = [v * scale for v in stress_xy]
    slope = float(np.polyfit(gammas, stress_xy, 1)[0])
    return {**task, "result": {"C66": slope, "stress_xy": stress_xy, "strains": gammas},
            "unit": "N/m" if sheet else "GPa", "temperature_K": run_settings.temperature_K,
            "n_atoms": ref.n_atoms}


def summarise(results: list[dict], settings: dict) -> dict:
    """``{phase: {"shear_<unit>": ...}}`` (module docstring)."""
    by_system: dict = {}
    for r in results:
        by_system.setdefault(r["system"], []).append(r)
    out = {}
    for system, runs in by_system.items():
        unit = "N_per_m" if runs[0]["unit"] == "N/m" else "GPa"
        out[system] = {f"shear_{unit}": {"C66": mean_sem([r["result"]["C66"] for r in runs]),
                                         "temperature_K": runs[0]["temperature_K"],
                                         "strains": runs[0]["result"]["strains"]}}
    return out
