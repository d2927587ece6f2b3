"""The ``report`` stage: one offline HTML page with every plot and number of the run.

Data flow: for each upstream stage that finished (``runs/<stage>/stage.json``),
read its record (timings, summary, versions), copy its PNG plots next to the page,
and render its known JSON artefacts as tables: the dataset summary, fit reports,
``properties.json`` (with GPa at each phase's effective thickness next to N/m),
``fem_results.json``. The page has no JavaScript and no external resources.
"""
from __future__ import annotations

import html
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from common.atomic import write_json, write_text
from .checks import run_checks

REPORT_SETTINGS = {
    "title": (str, "", "page title (default: the case name)"),
    "max_plots_per_stage": (int, 60, "at most this many PNGs shown per stage"),
}

UPSTREAM = ("data", "fit", "md", "constitutive", "fem")
STAGE_TITLES = {
    "data": "Datasets (reference engine)",
    "fit": "Moment tensor potentials (two-step passive training)",
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
"""


def esc(value) -> str:
    return html.escape(str(value))


def fmt(value) -> str:
    """Numbers to 4 significant digits, statistics as mean ± sem (n)."""
    if isinstance(value, dict) and {"mean", "sem"} <= set(value):
        n = value.get("n")
        return f"{fmt(value['mean'])} ± {fmt(value['sem'])}" + (f" (n={n})" if n is not None else "")
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and len(value) <= 8 and all(isinstance(v, (int, float)) for v in value):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def flatten(data, prefix: str = "") -> list[list]:
    """A nested JSON object as rows ``[dotted.key, value]`` (statistics kept whole)."""
    rows = []
    if isinstance(data, dict) and not ({"mean", "sem"} <= set(data)):
        for key, value in data.items():
            rows += flatten(value, f"{prefix}{key}.")
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        for index, value in enumerate(data):
            rows += flatten(value, f"{prefix}{index}.")
    else:
        rows.append([prefix.rstrip("."), data])
    return rows


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
                row.append({k: (v / thickness_nm if k in ("mean", "sem") else v) for k, v in stat.items()}
                           if stat is not None else "-")
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
        if entry.get("thermal", {}).get("note"):
            rows.append([phase, "note", "", entry["thermal"]["note"]])
    labels = {"conductance_W_per_m2K": ("conductance G", "W/(m^2 K)"), "temperature_jump_K": ("temperature jump", "K"),
              "heat_flux_W_per_m2": ("heat flux", "W/m^2")}
    for name, entry in props.get("interfaces", {}).items():
        thermal = entry.get("thermal", {})
        rows += [[name, *labels.get(key, (key, "")), stat]
                 for key, stat in thermal.items() if isinstance(stat, dict) and "mean" in stat]
        rows += [[name, f"Kapitza length ({phase})", "nm", stat]
                 for phase, stat in thermal.get("kapitza_length_nm", {}).items()]
        if thermal.get("note"):
            rows.append([name, "note", "", thermal["note"]])
    if not rows:
        return ""
    return "<p>Thermal transport (MD):</p>" + table(rows, ["system", "quantity", "unit", "value"])


def checks_table(checks: list[dict]) -> str:
    """The cross-scale checks (multiscale.checks) as a table: ours, reference, difference, verdict."""
    verdict = {True: "pass", False: "FAIL", None: "not run"}
    rows = [[c["check"], c["ours"], c["reference"],
             "-" if c["rel_diff"] is None else f"{100 * c['rel_diff']:.2f} %",
             "-" if c["tolerance"] is None else f"{100 * c['tolerance']:.0f} %", verdict[c["passed"]], c["what"]]
            for c in checks]
    return table(rows, ["check", "ours", "reference", "difference", "tolerance", "verdict", "what"])


def stage_section(name: str, folder: Path, out_dir: Path, settings: dict) -> str:
    record = json.loads((folder / "stage.json").read_text())
    parts = [f"<h2 id='{name}'>{esc(STAGE_TITLES.get(name, name))}</h2>",
             f"<p>finished {esc(record.get('finished', '')[:19])} UTC in {record.get('elapsed_s', 0):.1f} s"
             f" on {record.get('ranks', 1)} rank(s); preset {esc(record.get('preset'))}</p>"]
    summary = record.get("summary") or {}
    if name == "constitutive" and (folder / "properties.json").is_file():
        parts.append(properties_table(json.loads((folder / "properties.json").read_text())))
    elif summary:
        parts.append(table(flatten(summary), ["quantity", "value"]))
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
        timings.append([name, record.get("finished", "")[:19].replace("T", " "), record.get("elapsed_s", 0.0)])
        versions.update(record.get("versions", {}))
        sections.append(stage_section(name, folder, out_dir, settings))
    checks = run_checks(runs_dir)
    write_json(out_dir / "checks.json", checks)
    nav = " · ".join(f"<a href='#{n}'>{esc(n)}</a>" for n in UPSTREAM if (runs_dir / n / "stage.json").is_file())
    page = f"""<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{esc(title)}</h1><p>{esc(description)}</p><p>{nav}</p>
<p>case directory: <code>{esc(case_dir)}</code>; report written {datetime.now(timezone.utc).isoformat()[:19]} UTC</p>
<h2>Timings</h2>{table(timings, ['stage', 'finished (UTC)', 'wall time (s)'])}
<h2>Cross-scale checks</h2>{checks_table(checks)}
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
