"""How compliant are the interfaces of a stripe heterostructure? E_y of stripe cells of one fraction
and several periods, against the laminate of the phases with perfect interfaces.

    python scripts/stripe_period_sweep.py [--runs cases/graphene_borophene/runs] [--widths-nm 0.85,1.7,3.4,6.8]
                                          [--gap-A 1.55] [--temperature 1.0] [--out sweep.json]

Data flow::

    runs/fit/<interface>.mtp (+ _fit.json for the short-range core)
    runs/data/<A>.structure.extxyz, <B>.structure.extxyz (the phases' 0 K cells; A|B the interface's key)
    runs/md/stage.json md.heterostructure gap_A, match_tolerance (the md stage's stripe cells)
    runs/constitutive/properties.json interfaces[A|B].heterostructure.low_T.phases_elastic_N_per_m
      -> per w in --widths-nm: md_gpu.heterostructure.run on the stripe cell with stripes of A and B each
         w wide (period L ~ 2 w, fraction of B ~0.5; the default case: 2, 4, 8, 16 graphene cells and
         half as many chi3 cells), md.elastic protocol at --temperature with second-order one-sided
         differences (tension2)
      -> E_y (N/m) and the interface compliance R from 1/E_y = 1/E_laminate + 2R/L (nm per N/m), E_laminate
         from the phases' low-temperature constants: multiscale.constitutive.interface_normal_compliance,
         the function that turns the md stage's compliance cell into properties.json normal_compliance

A spring-like interface (compliance R per interface, in series with the phases) keeps R constant
as L grows; docs/report.md has the default case's table (2R constant from about 7 nm on). Runs one
process, one cell after another (704 atoms at --widths-nm 6.8 in the default case: about 2 min on one core).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from md_gpu import heterostructure  # noqa: E402
from md_gpu.forcefields.loading import load_forcefield  # noqa: E402
from md_gpu.protocols import RunSettings  # noqa: E402
from md_gpu.structures import load_structure  # noqa: E402
from multiscale.constitutive import interface_normal_compliance  # noqa: E402


def low_t_phases(properties: Path) -> tuple[str, dict, float]:
    """(interface key, its heterostructure.low_T entry, temperature) of the first interface with a
    low-T twin in properties.json."""
    props = json.loads(properties.read_text())
    for key, entry in props.get("interfaces", {}).items():
        low = (entry.get("heterostructure") or {}).get("low_T")
        if low:
            return key, low, float(low["temperature_K"])
    raise SystemExit(f"{properties}: no interfaces.*.heterostructure.low_T entry; run the case with "
                     "md.heterostructure.low_temperature: true")


def md_stripe_settings(runs: Path) -> dict:
    """``gap_A`` and ``match_tolerance`` of the md stage's md.heterostructure (runs/md/stage.json), or the
    defaults of md_gpu.heterostructure when the md stage has not run."""
    keys = ("gap_A", "match_tolerance")
    out = {k: heterostructure.HETEROSTRUCTURE_SETTINGS[k][1] for k in keys}
    record = runs / "md" / "stage.json"
    if record.is_file():
        h = json.loads(record.read_text()).get("inputs", {}).get("settings", {}).get("heterostructure", {})
        out.update({k: h[k] for k in keys if k in h})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="cases/graphene_borophene/runs", help="the case's runs/ folder")
    ap.add_argument("--interface", default="interface", help="the interface system (runs/fit/<name>.mtp)")
    ap.add_argument("--widths-nm", default="0.85,1.7,3.4,6.8", help="width of each phase's stripe (nm), one cell "
                                                                   "per value")
    ap.add_argument("--gap-A", type=float, default=None, help="distance of the facing atom rows at the interfaces "
                                                           "(Å; 0: sum of covalent radii); default: the md stage's "
                                                           "md.heterostructure.gap_A (runs/md/stage.json)")
    ap.add_argument("--temperature", type=float, default=None, help="K (default: the low-T twin's)")
    ap.add_argument("--sample-steps", type=int, default=1000, help="steps averaged per strained cell")
    ap.add_argument("--out", default="", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    widths = [float(w) for w in args.widths_nm.split(",") if w.strip()]
    if not widths or any(w <= 0 for w in widths):
        raise SystemExit(f"--widths-nm {args.widths_nm}: each must be a width > 0 (nm)")
    potential = runs / "fit" / f"{args.interface}.mtp"
    if not potential.is_file():
        raise SystemExit(f"{potential} is missing: run the case's fit stage first")
    fit_report = runs / "fit" / f"{args.interface}_fit.json"
    core_radii = json.loads(fit_report.read_text()).get("shortest_distance_A") if fit_report.is_file() else None
    key, low, temperature = low_t_phases(runs / "constitutive" / "properties.json")
    phases = [(name, load_structure(runs / "data" / f"{name}.structure.extxyz", key=f"phase {name}"))
              for name in key.split("|")]
    stripes = md_stripe_settings(runs)
    if args.gap_A is not None:
        stripes["gap_A"] = args.gap_A
    temperature = args.temperature if args.temperature is not None else temperature
    ff = load_forcefield(str(potential), core=True, core_radii=core_radii)
    settings = RunSettings(temperature_K=temperature, equilibrate_steps=2000, thermo_every=20, seed=0)
    rows = []
    print(f"{key}: stripe cells at {temperature:g} K, interface MTP {potential}, tension2")
    print(f"{'L (nm)':>8} {'atoms':>6} {'f_B':>6} {'E_y':>8} {'laminate':>9} {'2R (nm m/N)':>12} {'s':>5}")
    for width in widths:
        t0 = time.time()
        h = {**stripes, "stripe_widths_nm": [width, width], "repeat_x": 1}
        r = heterostructure.run(ff, h, phases, {"delta": 0.005, "sample_steps": args.sample_steps}, settings,
                                relax_steps=0, scheme="tension2", log=lambda line: None)
        g, e = r["geometry"], r["youngs_modulus_normal_N_per_m"]
        f = g["fraction_B"]
        compliance = interface_normal_compliance({"youngs_modulus_normal_N_per_m": {"mean": e, "sem": None, "n": 1},
                                                  "geometry": g}, low, key.split("|"), key)
        laminate = compliance["cell"]["laminate_N_per_m"]
        row = {"period_nm": g["period_nm"], "n_atoms": g["n_atoms"], "fraction_B": f, "E_y_N_per_m": e,
               "laminate_N_per_m": laminate, "two_R_nm_per_N_per_m": 2 * compliance["nm_per_N_per_m"]["mean"],
               "elastic_N_per_m": r["elastic_N_per_m"], "seconds": time.time() - t0}
        rows.append(row)
        print(f"{row['period_nm']:8.2f} {row['n_atoms']:6d} {f:6.3f} {e:8.1f} {laminate:9.1f} "
              f"{row['two_R_nm_per_N_per_m']:12.2e} {row['seconds']:5.0f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"interface": key, "temperature_K": temperature, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
