"""The one rule that decides whether a measured statistic may be an input of the continuum model.

A statistic is ``{"mean", "sem", "n"}`` over ``n`` independent runs (seeds), as
``md_gpu.analysis.mean_sem`` writes it: ``sem`` is None (JSON null) for one run, which has no spread
(an older md stage wrote 0 there: :func:`normalised` reads ``n`` 1 with ``sem`` 0 as None).

The rule (:func:`withheld_reason`), applied by the constitutive stage to every continuum input it writes
(moduli, elastic constants, strengths, conductivities, the interface conductance; ``screen`` marks the
statistic) and again by the fem stage to every input it reads (so a hand-written properties.json gets
the same answer):

* no run gave a number (``n`` 0, or a mean that is not finite): withheld;
* a quantity that must be positive (a modulus, a strength, a conductivity, a conductance) must be
  positive by two standard errors, ``mean > 2 sem``: otherwise it is lost in the noise of the runs,
  withheld;
* one seed (``sem`` None): there is no spread to test the mean against; a positive value is used,
  marked ``single_seed: true``, and the fem stage lists it in its results: a case that runs one seed
  (a quick test, the tiny chain) still reaches the FE model, and nobody reads its numbers as exact;
* a quantity whose sign is free (Poisson's ratio, C12, the interface compliance) only needs a number.

A withheld statistic stays in properties.json with its numbers and ``withheld: <reason>``; the fem
stage does not use it and says which input and why (docs/properties.md, docs/fem.md).
"""
from __future__ import annotations

import math


def normalised(stat: dict) -> dict:
    """``{"mean", "sem", "n"}`` of ``stat`` with ``sem`` None for one run (0 from an older writer, or absent)."""
    sem = stat.get("sem")
    n = int(stat.get("n", 1))
    if sem is not None and (n == 1 and sem == 0):
        sem = None
    return {"mean": float(stat["mean"]), "sem": None if sem is None else float(sem), "n": n}


def withheld_reason(stat: dict, what: str, unit: str = "", *, positive: bool = True) -> str | None:
    """Why ``stat`` must not be a continuum input, or None when it may be (module docstring).

    ``what``: the symbol the reason names (e.g. ``kappa_x``); ``unit``: its unit; ``positive``: whether the
    quantity must be positive by two standard errors (a modulus, a strength, a conductivity, a
    conductance) or only a number (Poisson's ratio, C12, the interface compliance)."""
    s = normalised(stat)
    mean, sem, n = s["mean"], s["sem"], s["n"]
    unit = f" {unit}" if unit else ""
    if n < 1 or not math.isfinite(mean):
        lost = ", ".join(f"{stat[k]} {label}" for k, label in (("blown_up", "blew up"), ("failed", "gave no number"))
                         if stat.get(k))
        return f"{what}: no run gave a number{f' ({lost})' if lost else ''}"
    if not positive:
        return None
    if sem is None:
        return None if mean > 0 else f"{what} = {mean:.4g}{unit} (1 seed) is not positive"
    if mean > 0 and mean > 2.0 * sem:
        return None
    return f"{what} = {mean:.4g} +- {sem:.2g}{unit} is not positive by two standard errors (n = {n})"


def resolved(stat: dict) -> bool:
    """Whether ``stat`` passes :func:`withheld_reason` as a positive quantity (a positive single seed does)."""
    return withheld_reason(stat, "value") is None


def screen(stat: dict, what: str, unit: str = "", *, positive: bool = True) -> dict:
    """A copy of ``stat`` marked by :func:`withheld_reason`: ``withheld`` (the reason) when it must not be
    a continuum input, else ``single_seed: true`` when one run measured it (``sem`` None)."""
    out = dict(stat)
    reason = withheld_reason(stat, what, unit, positive=positive)
    if reason:
        out["withheld"] = reason
    elif normalised(stat)["sem"] is None:
        out["single_seed"] = True
    return out
