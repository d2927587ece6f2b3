"""In-plane elastic constants C11, C22, C12, C66 of each phase (:func:`md_gpu.protocols.elastic_constants`,
finite differences of the stress at strains of ``md.elastic.delta``).

The difference scheme is ``md.elastic.scheme``; "auto" (:func:`md_gpu.protocols.elastic.choose_scheme`)
takes central differences (cells at +-delta) for a bulk cell and for a sheet that the compressed cell
cannot buckle, and otherwise a one-sided scheme ("tension" at temperature, "tension2" at low
temperature): a sheet a few nm long buckles under a compression of 0.5 %, and its central difference
then reads it softer than it is. Each result records the scheme and, for a sheet, the ripple curvatures
that decided it.

Tasks: ``elastic`` at ``md.temperature_K``, one per seed (``<phase>_elastic_seed<k>``), and ``elastic_low_T``
once (seed 0) at ``md.elastic.low_temperature_K`` (``<phase>_elastic_low_T``), near the 0 K stiffness of the
reference engine. No run files; while a task runs, its equilibration and each strained cell checkpoint to
``<name>.<part>.ckpt.npz`` (:func:`md_gpu.protocols.elastic_constants`), so an interrupted task resumes
(:mod:`.common`).

summary.json, per phase (``N_per_m`` for sheets, ``GPa`` for bulk cells; ``{mean, sem, n}`` over seeds, ``sem``
null for one run, with the run counts ``attempted``, ``failed`` (no number), ``blown_up`` (always 0: a
blow-up stops the stage), :func:`md_gpu.analysis.mean_sem`)::

    "elastic_N_per_m": {"C11": {mean, sem, n}, "C22": ..., "C12": ..., "C66": ...}
    "moduli_N_per_m": {"x": {"youngs_modulus": {mean, sem, n}, "poisson_ratio": {...}}, "y": {...},
                       "method": str}
    "elastic_low_T_N_per_m": {"C11": {mean, sem, n}, ..., "temperature_K": float}
    "elastic_scheme": {"elastic": "central" | "tension" | "tension2", "elastic_low_T": ...}

``moduli_<unit>`` (:func:`engineering_constants`): Young's modulus and Poisson's ratio for a pull along
each axis, computed for every seed from that seed's constants and then averaged over seeds with
:func:`md_gpu.analysis.mean_sem`, so that the scatter of C11 and C12 together within a seed (they are
measured on the same equilibrated cell) sets the standard error, not errors propagated as if independent.
Direction ``x``: ``poisson_ratio`` is nu_xy, the contraction along y per stretch along x (the tensile
test's ``poisson_ratio`` along x). A sheet (N/m, plane stress, orthotropic)::

    E_x = (C11 C22 - C12^2) / C22,   E_y = (C11 C22 - C12^2) / C11,   nu_xy = C12 / C22,   nu_yx = C12 / C11

A bulk cell (GPa, uniaxial stress with every transverse axis free, as the tensile test pulls it): the
protocol strains only xx, yy and xy, so C33, C13 and C23 are not measured and cubic symmetry is assumed
(C33 = C11, C13 = C23 = C12; ``method`` says so), the axis' own C_ii with the common C12::

    E_x = (C11 - C12)(C11 + 2 C12) / (C11 + C12),   nu_xy = C12 / (C11 + C12)     (y: C22 for C11)

These are the moduli the ``constitutive`` stage puts in ``properties.json`` (docs/md.md, "Which
protocol gives which property"): the elastic protocol samples the stress at fixed strains, with no
barostat lag and no fit window to choose, so its moduli are less noisy and not biased by the ramp.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..analysis import mean_sem
from .common import load, progress_printer, resumable

KINDS = ("elastic", "elastic_low_T")
SUMMARY_ORDER = 40
CONSTANTS = ("C11", "C22", "C12", "C66")
PLANE_STRESS = "plane stress, orthotropic: E_x = (C11 C22 - C12^2) / C22, nu_xy = C12 / C22 (y: C11, C22 swapped)"
CUBIC = ("uniaxial stress, cubic symmetry assumed (C33 = C11, C13 = C23 = C12; not measured): "
         "E_x = (C11 - C12)(C11 + 2 C12) / (C11 + C12), nu_xy = C12 / (C11 + C12) (y: C22 for C11)")

SETTINGS = {
    "elastic": {
        "enabled": (bool, True, "also measure C11, C22, C12, C66 at temperature_K (one run per seed)"),
        "delta": (float, 0.005, "strain amplitude of the finite differences"),
        "sample_steps": (int, 2000, "steps averaged per strained cell"),
        "low_temperature_K": (float, 1.0, "also measure them once (seed 0) at this temperature (K), near the "
                                          "reference engine's 0 K stiffness (0: off)"),
        "scheme": (str, "auto", "finite differences: auto (central unless a sheet would buckle under the "
                                "compressed cell, then one-sided) | central | tension | tension2"),
    },
}


def check(settings: dict) -> None:
    from ..protocols.elastic import SCHEMES

    scheme = settings["elastic"]["scheme"]
    if scheme not in ("auto",) + SCHEMES:
        raise ValueError(f"md.elastic.scheme: {scheme!r} is not one of auto, {', '.join(SCHEMES)}")


def low_temperature(settings: dict) -> bool:
    """Whether the runs at ``md.elastic.low_temperature_K`` are on."""
    return settings["elastic"]["enabled"] and settings["elastic"]["low_temperature_K"] > 0


def plan_seed(settings: dict, system, seed: int) -> list[dict]:
    if system.is_interface or not settings["elastic"]["enabled"]:
        return []
    return [{**system.base, "kind": "elastic", "direction": None, "seed": seed,
             "name": f"{system.name}_elastic_seed{seed}"}]


def plan(settings: dict, system) -> list[dict]:
    if system.is_interface or not low_temperature(settings):
        return []
    return [{**system.base, "kind": "elastic_low_T", "direction": None, "seed": 0,
             "name": f"{system.name}_elastic_low_T"}]


def run(task: dict) -> dict:
    """``result``: {C11, C22, C12, C66} in ``unit`` ("N/m" or "GPa"), measured at ``temperature_K``.
    A blow-up raises :class:`md_gpu.errors.MDRunError` (the stage stops)."""
    ff, atoms, run_settings, _ = load(task)
    if task["kind"] == "elastic_low_T":
        run_settings = replace(run_settings, temperature_K=task["settings"]["elastic"]["low_temperature_K"])
    return measure(task, ff, atoms, run_settings)


def measure(task: dict, ff, atoms, run_settings) -> dict:
    """The elastic-constant run of ``task`` on ``atoms`` with ``md.elastic`` (also the stripe module's
    phase cells), checkpointed per strained cell and resumed (:mod:`.common`); ``scheme`` and ``scheme_why``
    say which finite differences were taken and why (module docstring)."""
    from ..protocols import elastic_constants
    from ..protocols.elastic import choose_scheme

    e = task["settings"]["elastic"]
    prefix = Path(task["out_dir"]) / task["name"]
    log = progress_printer(task)
    scheme, why = e["scheme"], {"asked": e["scheme"]}
    if scheme == "auto":
        scheme, why = choose_scheme(ff, atoms, e["delta"], low_temperature=task["kind"] != "elastic")
        curvature = why.get("ripple_curvature_meV_per_A2_per_atom")
        said = (f" (0 K ripple curvature under a compression of {e['delta']:g}: {curvature['x']:.3g} and "
                f"{curvature['y']:.3g} meV/Å^2 per atom along x and y)" if curvature else " (bulk cell)")
        log(f"elastic: {scheme} differences{said}")
    c = elastic_constants(ff, atoms, delta=e["delta"], sample_steps=e["sample_steps"], settings=run_settings,
                          scheme=scheme, checkpoints=prefix, resume=resumable(task, prefix), log=log)
    return {**task, "result": {k: c[k] for k in CONSTANTS}, "unit": c["unit"], "temperature_K": c["temperature_K"],
            "scheme": scheme, "scheme_why": why}


def summarise(results: list[dict], settings: dict) -> dict:
    """``{phase: {"elastic_<unit>": ..., "moduli_<unit>": ..., "elastic_low_T_<unit>": ...}}`` (module
    docstring)."""
    out: dict = {}
    for kind, suffix in (("elastic", ""), ("elastic_low_T", "_low_T")):
        by_system: dict = {}
        for r in results:
            if r["kind"] == kind:
                by_system.setdefault(r["system"], []).append(r)
        for system, runs in by_system.items():
            unit = "N_per_m" if runs[0]["unit"] == "N/m" else "GPa"  # bulk test cells: GPa
            # a blow-up stops the stage (run): every planned run finished, none blew up
            stats = {k: mean_sem([r["result"][k] for r in runs], blown_up=0) for k in CONSTANTS}
            if suffix:
                stats["temperature_K"] = runs[0]["temperature_K"]
            out.setdefault(system, {})[f"elastic{suffix}_{unit}"] = stats
            out[system].setdefault("elastic_scheme", {})[kind] = runs[0].get("scheme", "central")
            if not suffix:
                out[system][f"moduli_{unit}"] = moduli([r["result"] for r in runs], sheet=unit == "N_per_m")
    return out


def engineering_constants(c: dict, *, sheet: bool = True) -> dict:
    """``{"x": {"youngs_modulus", "poisson_ratio"}, "y": {...}}`` (floats) of one set of constants ``c``
    ({C11, C22, C12}, N/m for a sheet, GPa for a bulk cell; module docstring: plane stress for a sheet,
    uniaxial stress with cubic symmetry assumed for a bulk cell). NaN where a denominator is 0."""
    c11, c22, c12 = float(c["C11"]), float(c["C22"]), float(c["C12"])

    def ratio(a, b):
        return a / b if b != 0 else float("nan")

    if sheet:
        det = c11 * c22 - c12 ** 2
        return {"x": {"youngs_modulus": ratio(det, c22), "poisson_ratio": ratio(c12, c22)},
                "y": {"youngs_modulus": ratio(det, c11), "poisson_ratio": ratio(c12, c11)}}
    return {d: {"youngs_modulus": ratio((cii - c12) * (cii + 2 * c12), cii + c12),
                "poisson_ratio": ratio(c12, cii + c12)} for d, cii in (("x", c11), ("y", c22))}


def moduli(results: list[dict], *, sheet: bool = True) -> dict:
    """``moduli_<unit>`` of the module docstring from each seed's constants ``results`` [n_seeds]:
    :func:`engineering_constants` per seed, then ``{mean, sem, n}`` over seeds, and ``method``."""
    per_seed = [engineering_constants(c, sheet=sheet) for c in results]
    out = {d: {k: mean_sem([p[d][k] for p in per_seed], blown_up=0) for k in ("youngs_modulus", "poisson_ratio")}
           for d in ("x", "y")}
    out["method"] = PLANE_STRESS if sheet else CUBIC
    return out
