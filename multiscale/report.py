"""The ``report`` stage: one offline HTML page with the results of the run, for people.

Page layout (``runs/report/index.html``, no JavaScript, no external resources):

1. Results at a glance: the phase properties per direction (mean ± sem, n seeds; "1 seed" and no sem
   for one run; the runs that blew up or gave no number beside n; "withheld" for an input the FE
   model must not use, with the reason below the table), the interface
   properties, the FE effective properties, the cross-scale checks with their verdicts.
2. Timings, then one section per finished upstream stage (``runs/<stage>/stage.json``): compact
   tables (one row per system) with links to the stage's JSON files, which keep every number,
   and the stage's PNG plots, copied next to the page.
3. Versions.

Inputs: ``stage.json`` of each stage (timings, summary, versions), ``constitutive/properties.json``,
``fem/fem_results.json`` and :func:`multiscale.checks.run_checks`, written to ``checks.json``.
Table rendering is :mod:`multiscale.report_tables`.
"""
from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from common.atomic import write_json, write_text
from common.contracts import read_properties

from .checks import run_checks
from .report_tables import (Html, checks_table, data_table, esc, fem_studies_table, fem_table, fit_table, flatten,
                            fmt, interface_table, link, phase_table, table, withheld_notes)

__all__ = ["REPORT_SETTINGS", "build_report", "run_report", "flatten", "fmt", "properties_table", "thermal_table"]

REPORT_SETTINGS = {
    "title": (str, "", "page title (default: the case name)"),
    "max_plots_per_stage": (int, 60, "at most this many PNGs shown per stage"),
}

UPSTREAM = ("data", "fit", "md", "constitutive", "fem")
STAGE_TITLES = {
    "data": "Datasets (reference engine)",
    "fit": "Interatomic potentials (MTPs by two-step passive training, NEPs, brought potentials)",
    "md": "Molecular dynamics at temperature",
    "constitutive": "Constitutive inputs (properties.json)",
    "fem": "Continuum heterostructures (FEniCSx)",
}

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:0.5em;vertical-align:top}figure img{max-width:540px}
figcaption{font-size:0.85em;color:#555}.note{background:#fff6d6;padding:0.5em 1em;border-left:4px solid #e0b000}
td.t{text-align:left;font-size:0.9em}.n{color:#888;font-size:0.8em}.pass{color:#17702a}.fail{color:#b00020}.links{font-size:0.9em;color:#555}
table.glance td{white-space:nowrap}table.glance{display:inline-table;margin-right:1.5em;vertical-align:top}
table.fe td:last-child,table.checks td:last-child{white-space:normal;text-align:left;font-size:0.85em;max-width:40em}
table.fe th:last-child,table.checks th:last-child{text-align:left}
#glance{border-bottom:2px solid #888;padding-bottom:0.3em}
"""


def properties_table(props: dict) -> str:
    """The constitutive inputs: per phase and direction, N/m and GPa at the effective thickness."""
    keys = [("youngs_modulus_N_per_m", "E"), ("ultimate_strength_N_per_m", "UTS")]
    rows = []
    for phase, entry in props.get("phases", {}).items():
        thickness_nm = entry.get("thickness_A", float("nan")) / 10.0
        for direction, values in entry.get("directions", {}).items():
            row = [phase, direction]
            for key, _ in keys:
                stat = values.get(key)
                row.append(stat if stat is not None else "-")
                row.append({k: (v / thickness_nm if k in ("mean", "sem") and v is not None else v)
                            for k, v in stat.items()} if stat is not None else "-")
            row.append(values.get("poisson_ratio", "-"))
            row.append(values.get("failure_strain", "-"))
            rows.append(row)
    header = ["phase", "direction", "E (N/m)", "E (GPa)", "UTS (N/m)", "UTS (GPa)", "Poisson ratio",
              "failure strain"]
    out = table(rows, header)
    elastic = [[phase, name, stat] for phase, entry in props.get("phases", {}).items()
               for name, stat in entry.get("elastic_N_per_m", {}).items()]
    if elastic:
        out += "<p>2D elastic constants at temperature (N/m):</p>" + table(elastic, ["phase", "constant", "value"])
    interfaces = [[name, key, stat] for name, entry in props.get("interfaces", {}).items()
                  for key, stat in entry.items() if isinstance(stat, dict) and "mean" in stat]
    if interfaces:
        out += "<p>Interfaces:</p>" + table(interfaces, ["interface", "quantity", "value"])
    return out + thermal_table(props)


def thermal_table(props: dict) -> str:
    """Thermal conductivities of the phases per direction (W/(m K)) and, per interface, the conductance
    G (W/(m^2 K)), the temperature jump and the Kapitza length kappa/G (nm) beside each phase."""
    rows = [[phase, f"conductivity {direction}", "W/(m K)", stat]
            for phase, entry in props.get("phases", {}).items()
            for direction, stat in entry.get("thermal", {}).get("conductivity_W_per_mK", {}).items()]
    for phase, entry in props.get("phases", {}).items():
        extrapolated = {d: v.get("extrapolated_W_per_mK")
                        for d, v in entry.get("thermal", {}).get("length_dependence", {}).items()}
        rows += [[phase, f"NEMD, L -> infinity, {d}", "W/(m K)", v] for d, v in extrapolated.items() if v]
        rows += [[phase, "withheld", "", note] for note in withheld_notes(entry.get("thermal") or {}, phase)]
    labels = {"conductance_W_per_m2K": ("conductance G", "W/(m^2 K)"), "temperature_jump_K": ("temperature jump", "K"),
              "heat_flux_W_per_m2": ("heat flux", "W/m^2")}
    for name, entry in props.get("interfaces", {}).items():
        thermal = entry.get("thermal", {})
        rows += [[name, *labels.get(key, (key, "")), stat]
                 for key, stat in thermal.items() if isinstance(stat, dict) and "mean" in stat]
        rows += [[name, f"Kapitza length ({phase})", "nm", stat]
                 for phase, stat in thermal.get("kapitza_length_nm", {}).items()]
        rows += [[name, "withheld", "", note] for note in withheld_notes(thermal, name)]
    if not rows:
        return ""
    return "<p>Thermal transport (MD):</p>" + table(rows, ["system", "quantity", "unit", "value"])


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _links(folder: Path, out_dir: Path, names) -> str:
    """Links from the page to the stage's JSON files that exist (they keep every number)."""
    found = [link(os.path.relpath(folder / n, out_dir), n) for n in names if (folder / n).is_file()]
    return f"<p class='links'>all numbers: {', '.join(found)}</p>" if found else ""


def stage_body(name: str, folder: Path, out_dir: Path, summary: dict) -> str:
    """The tables of one stage: compact, one row per system; the JSON files linked for the rest."""
    if name == "data" and summary.get("systems"):
        return data_table(summary) + _links(folder, out_dir, ["summary.json"] + sorted(
            p.name for p in folder.glob("*.meta.json")))
    if name == "fit" and summary.get("systems"):
        return fit_table(summary) + _links(folder, out_dir, ["summary.json"] + sorted(
            p.name for p in folder.glob("*_fit.json")))
    if name == "constitutive" and (folder / "properties.json").is_file():
        return properties_table(read_properties(folder / "properties.json")) + _links(folder, out_dir, ["properties.json"])
    if name == "fem":
        return fem_studies_table(summary) + _links(folder, out_dir, ["fem_results.json"])
    links = _links(folder, out_dir, ["summary.json"])
    return (table(flatten(summary), ["quantity", "value"]) if summary else "") + links


def stage_section(name: str, folder: Path, out_dir: Path, settings: dict) -> str:
    record = json.loads((folder / "stage.json").read_text())
    parts = [f"<h2 id='{name}'>{esc(STAGE_TITLES.get(name, name))}</h2>",
             f"<p>finished {esc(record.get('finished', '')[:19])} UTC in {record.get('elapsed_s', 0):.1f} s"
             f" on {record.get('ranks', 1)} rank(s); preset {esc(record.get('preset'))}</p>",
             stage_body(name, folder, out_dir, record.get("summary") or {})]
    plots = sorted(folder.rglob("*.png"))[: settings["max_plots_per_stage"]]
    if plots:
        target = out_dir / name
        target.mkdir(parents=True, exist_ok=True)
        figures = []
        for png in plots:
            rel = png.relative_to(folder).as_posix().replace("/", "__")
            shutil.copy2(png, target / rel)
            figures.append(f"<figure><img src='{esc(name)}/{esc(rel)}' alt='{esc(rel)}'>"
                           f"<figcaption>{esc(png.relative_to(folder).as_posix())}</figcaption></figure>")
        parts.append("".join(figures))
    return "\n".join(parts)


def glance_section(runs_dir: Path, checks: list[dict]) -> str:
    """The first screen: phase and interface properties, FE effective properties, cross-scale checks."""
    path = runs_dir / "constitutive" / "properties.json"
    props = read_properties(path) if path.is_file() else None
    fem_record = _read(runs_dir / "fem" / "stage.json")
    parts = ["<h2 id='glance'>Results at a glance</h2>"]
    if props:
        t = props.get("temperature_K")
        parts.append(f"<h3>Phases (MD{f' at {fmt(t)} K' if t is not None else ''}; mean ± standard error, "
                     f"n = seeds)</h3>" + phase_table(props))
        parts.append("<h3>Interfaces</h3>" + interface_table(props))
    else:
        parts.append("<p>The constitutive stage has not run: no material properties yet.</p>")
    parts.append("<h3>Continuum (FE) effective properties</h3>"
                 + fem_table(_read(runs_dir / "fem" / "fem_results.json"), (fem_record or {}).get("summary")))
    parts.append("<h3>Cross-scale checks</h3>" + checks_table(checks))
    return "\n".join(parts)


def build_report(case_dir: Path, runs_dir: Path, out_dir: Path, settings: dict, *, title: str,
                 description: str = "") -> Path:
    """Write ``out_dir/index.html`` (and the copied PNGs) from the finished stages in ``runs_dir``."""
    sections, timings, versions = [], [], {}
    for name in UPSTREAM:
        folder = runs_dir / name
        if not (folder / "stage.json").is_file():
            timings.append([name, "not run", "-"])
            continue
        record = json.loads((folder / "stage.json").read_text())
        timings.append([Html(f"<a href='#{esc(name)}'>{esc(name)}</a>"),
                        record.get("finished", "")[:19].replace("T", " "), record.get("elapsed_s", 0.0)])
        versions.update(record.get("versions", {}))
        sections.append(stage_section(name, folder, out_dir, settings))
    checks = run_checks(runs_dir)
    write_json(out_dir / "checks.json", checks)
    nav = " · ".join(f"<a href='#{n}'>{esc(n)}</a>" for n in UPSTREAM if (runs_dir / n / "stage.json").is_file())
    page = f"""<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{esc(title)}</h1><p>{esc(description)}</p>
{glance_section(runs_dir, checks)}
<p>stages: {nav} · <a href='checks.json'>checks.json</a></p>
<p>case directory: <code>{esc(case_dir)}</code>; report written {datetime.now(timezone.utc).isoformat()[:19]} UTC</p>
<h2>Timings</h2>{table(timings, ['stage', 'finished (UTC)', 'wall time (s)'])}
{''.join(sections)}
<h2>Versions</h2>{table([[k, v] for k, v in versions.items()], ['software', 'version'])}
</body></html>
"""
    return write_text(out_dir / "index.html", page)


def run_report(settings: dict, ctx) -> dict:
    """Stage entry point: the report of every finished upstream stage of the case."""
    if ctx.is_root:
        import yaml

        meta = yaml.safe_load((ctx.case_dir / "case.yaml").read_text()) or {}
        title = settings["title"] or f"Multiscale report: {meta.get('name', ctx.case_dir.name)}"
        path = build_report(ctx.case_dir, ctx.runs_dir, ctx.out_dir, settings, title=title,
                            description=str(meta.get("description", "")))
        ctx.log(f"report written: {ctx.runs_dir / 'report' / path.name}")
    return {"page": "index.html"}
