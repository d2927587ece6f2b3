"""HTML tables of the report: plain functions from the stages' JSON artefacts to HTML strings.

Inputs are the files the stages wrote, read as dicts: ``properties.json`` (phases and interfaces,
statistics ``{mean, sem, n}`` with ``n`` the number of MD seeds, ``sem`` null for one seed, and where
recorded the run counts ``attempted``, ``failed``, ``blown_up`` and a ``withheld`` reason), the data
and fit stage summaries (``runs/<stage>/stage.json`` ``summary``), ``fem_results.json`` and the list of
cross-scale checks (:func:`multiscale.checks.run_checks`). Nothing here computes a physical quantity; every number is
shown as the file has it (2D values in N/m, conductivities in W/(m K), compliances in nm per N/m).
"""
from __future__ import annotations

import html
import math
from pathlib import PurePath

STAT_KEYS = {"mean", "sem"}


class Html(str):
    """A table cell that is already HTML (not escaped again)."""


def esc(value) -> str:
    return html.escape(str(value))


def fmt(value) -> str:
    """Numbers to 4 significant digits; statistics as 'mean ± sem (n=…)' with the sem to 2 digits, 'mean
    (1 seed)' for one run (no sem: never '± 0'), 'no value' when no run gave one, the lost runs beside n
    (:func:`seeds`) and 'withheld' for a statistic the continuum model must not use."""
    if isinstance(value, dict) and STAT_KEYS <= set(value):
        return _stat_text(value) + (f" ({seeds(value)})" if value.get("n") is not None else "") + \
            (" withheld" if value.get("withheld") else "")
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and len(value) <= 8 and all(isinstance(v, (int, float)) for v in value):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def cell(value) -> str:
    """One ``<td>``: HTML as it is, None as '-', anything else formatted by :func:`fmt` and escaped; prose
    left-aligned."""
    if isinstance(value, Html):
        return f"<td>{value}</td>"
    if value is None:
        return "<td>-</td>"
    prose = isinstance(value, str) and len(value) > 24
    return f"<td{' class=t' if prose else ''}>{esc(fmt(value))}</td>"


def table(rows: list[list], header: list[str], *, cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table{f' class={cls!r}' if cls else ''}><tr>{head}</tr>{body}</table>"


def flatten(data, prefix: str = "") -> list[list]:
    """A nested JSON object as rows ``[dotted.key, value]`` (statistics kept whole)."""
    rows = []
    if isinstance(data, dict) and not (STAT_KEYS <= set(data)):
        for key, value in data.items():
            rows += flatten(value, f"{prefix}{key}.")
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        for index, value in enumerate(data):
            rows += flatten(value, f"{prefix}{index}.")
    else:
        rows.append([prefix.rstrip("."), data])
    return rows


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _stat_text(value: dict, scale: float = 1.0) -> str:
    """'mean ± sem' (4 and 2 significant digits), 'mean' when there is no sem, 'no value' without a mean."""
    mean, sem = value.get("mean"), value.get("sem")
    if not _number(mean) or value.get("n") == 0:
        return "no value"
    if not _number(sem) or (value.get("n") == 1 and sem == 0):  # one seed (null; an older file's 0), or NaN
        return fmt(float(mean) * scale)
    return f"{fmt(float(mean) * scale)} ± {float(sem) * scale:.2g}"


def seeds(value: dict) -> str:
    """The seeds behind a statistic: 'n=3', '1 seed' (no sem), and the runs lost when recorded, e.g.
    'n=2 of 3: 1 blew up' or '1 seed of 2: 1 gave no number'."""
    n = value.get("n")
    text = "1 seed" if n == 1 else f"n={n}"
    attempted = value.get("attempted")
    lost = [f"{value[k]} {label}" for k, label in (("blown_up", "blew up"), ("failed", "gave no number"))
            if value.get(k)]
    if attempted is not None and attempted != n:
        text += f" of {attempted}"
    return text + (f": {', '.join(lost)}" if lost else "")


def stat(value, *, scale: float = 1.0) -> Html:
    """A statistic as ``mean ± sem`` with the seeds beside it (:func:`seeds`: '1 seed' for one run, the
    runs that blew up or gave no number) and 'withheld' (with its reason on hover) when the continuum
    model must not use it; '-' when absent."""
    if not (isinstance(value, dict) and STAT_KEYS <= set(value)):
        return Html("-") if value is None else Html(esc(fmt(value)))
    out = esc(_stat_text(value, scale))
    if value.get("n") is not None:
        out += f" <span class='n'>{esc(seeds(value))}</span>"
    if value.get("withheld"):
        out += f" <span class='fail' title='{esc(value['withheld'])}'>withheld</span>"
    return Html(out)


def link(href: str, text: str) -> Html:
    return Html(f"<a href='{esc(href)}'>{esc(text)}</a>")


def _get(node, *keys):
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


# -- results at a glance --------------------------------------------------------------------------
def phase_table(props: dict) -> str:
    """Per phase and direction: E, nu, strength, failure strain, kappa; then per phase C11, C22, C12, C66."""
    rows, elastic, notes = [], [], []
    for phase, entry in props.get("phases", {}).items():
        kappa = _get(entry, "thermal", "conductivity_W_per_mK") or {}
        for i, (direction, values) in enumerate((entry.get("directions") or {}).items()):
            rows.append([phase if i == 0 else "", direction,
                         _sourced(values, "youngs_modulus_N_per_m"), _sourced(values, "poisson_ratio"),
                         Html(f"{stat(values.get('tensile_youngs_modulus_N_per_m'))} / "
                              f"{stat(values.get('tensile_poisson_ratio'))}"),
                         stat(values.get("ultimate_strength_N_per_m")), stat(values.get("failure_strain")),
                         _run_counts(values), stat(kappa.get(direction))])
        if entry.get("elastic_N_per_m"):
            elastic.append([phase] + [stat(entry["elastic_N_per_m"].get(c)) for c in ("C11", "C22", "C12", "C66")])
        notes += withheld_notes(entry, phase)
        for direction, values in (entry.get("directions") or {}).items():
            if values.get("strength_from_unfailed"):
                notes.append(f"{phase}, {direction}: the strength comes from tensile runs that did not fail "
                             f"({values.get('runs_unfailed', '?')} of them neither failed nor yielded: their "
                             "peak is where the loading stopped, a lower bound); the fem stage refuses it unless "
                             "fem.allow_unfailed_strength")
    out = table(rows, ["phase", "direction", "E (N/m)", "Poisson ratio ν", "tensile fit: E (N/m) / ν",
                       "strength (N/m)", "failure strain", "tensile runs", "κ (W/(m K))"], cls="glance")
    out += ("<p class='note'>E and ν: from the elastic constants at temperature (md.elastic, strains held "
            "fixed) where marked 'elastic', else from the tensile fit; the tensile fit's own values (fit window "
            "chosen from the data) stand beside them. Strength and failure strain: tensile runs.</p>")
    if elastic:
        out += table(elastic, ["phase", "C11 (N/m)", "C22 (N/m)", "C12 (N/m)", "C66 (N/m)"], cls="glance")
    return out + "".join(f"<p class='note'>{esc(n)}</p>" for n in notes)


def _sourced(values: dict, key: str) -> Html:
    """The statistic of ``key`` with the protocol it came from (``sources``), e.g. '340 ± 3 n=3 (elastic)'."""
    source = (values.get("sources") or {}).get(key)
    return Html(f"{stat(values.get(key))}" + (f" <span class='n'>({esc(source)})</span>" if source else ""))


def _run_counts(values: dict) -> Html:
    """'of 3: failed f (c by collapse), yielded y, neither u, blew up b' of the tensile runs of one direction
    ('-' when not recorded; the collapse count only when some failed that way: runs that blew up after their
    drop); 'neither' (the peak is the end of the loading) marked."""
    collapsed = values.get("runs_collapsed")
    shown = [f"{label} {values[key]}" + (f" ({collapsed} by collapse)" if key == "runs_failed" and collapsed else "")
             for label, key in (("failed", "runs_failed"), ("yielded", "runs_yielded"), ("neither", "runs_unfailed"),
                                ("blew up", "runs_blown_up")) if values.get(key) is not None]
    if not shown:
        return Html("-")
    text = esc((f"of {values['runs_attempted']}: " if "runs_attempted" in values else "") + ", ".join(shown))
    if values.get("strength_from_unfailed"):
        text += " <span class='fail'>strength from unfailed runs</span>"
    return Html(text)


def withheld_notes(entry: dict, name: str) -> list[str]:
    """'<name>: <key> withheld: <reason>' for every statistic of a properties.json entry marked ``withheld``."""
    notes = []

    def walk(node, path):
        if isinstance(node, dict) and STAT_KEYS <= set(node):
            if node.get("withheld"):
                notes.append(f"{name}: {path} withheld (not a model input): {node['withheld']}")
        elif isinstance(node, dict):
            for key, value in node.items():
                if key not in ("heterostructure", "provenance"):
                    walk(value, f"{path}.{key}" if path else key)

    walk(entry, "")
    return notes


def interface_table(props: dict) -> str:
    """Per interface: strength, normal compliance R, thermal conductance G, stripe-cell modulus."""
    rows = []
    for name, entry in props.get("interfaces", {}).items():
        rows.append([name, stat(entry.get("ultimate_strength_N_per_m")),
                     stat(_get(entry, "normal_compliance", "nm_per_N_per_m")),
                     stat(_get(entry, "thermal", "conductance_W_per_m2K")),
                     stat(_get(entry, "heterostructure", "youngs_modulus_normal_N_per_m"))])
    if not rows:
        return "<p>No interfaces in properties.json.</p>"
    notes = [n for name, entry in props.get("interfaces", {}).items() for n in withheld_notes(entry, name)]
    for name, entry in props.get("interfaces", {}).items():
        runs = entry.get("heterostructure_runs") or {}
        for which, what in (("at_temperature", "stripe runs"), ("low_T", "low-temperature stripe and phase runs")):
            c = runs.get(which) or {}
            if c.get("blown_up"):
                notes.append(f"{name}: {c['blown_up']} of {c['attempted']} MD {what} blew up")
    return (table(rows, ["interface", "strength (N/m)", "normal compliance R (nm per N/m)",
                         "conductance G (W/(m² K))", "stripe cell E across the stripes (N/m)"], cls="glance")
            + "".join(f"<p class='note'>{esc(n)}</p>" for n in notes))


def fem_table(results: dict | None, summary: dict | None) -> str:
    """The FE effective properties: main sample (modulus, strength, failure strain), the MD stripe
    cell's twin, heat conduction. ``results``: fem_results.json (may be None); ``summary``: the stage's."""
    summary = summary or {}
    if not results and not summary:
        return "<p>The fem stage has not run.</p>"
    main = (results or {}).get("tensile", summary)
    settings = (results or {}).get("settings", {})
    sample = ", ".join(str(x) for x in (_get(main, "geometry", "kind") or settings.get("geometry"),
                                          settings.get("model"),
                                          settings.get("load_direction") and f"load along {settings['load_direction']}")
                       if x)
    rows = [["effective modulus", main.get("modulus_N_per_m"), "N/m", sample],
            ["strength", main.get("strength_N_per_m"), "N/m", sample],
            ["failure strain", main.get("failure_strain"), "", sample]]
    if main.get("voigt_N_per_m") is not None:
        rows.append(["Voigt / Reuss bounds of the modulus",
                     f"{fmt(main['voigt_N_per_m'])} / {fmt(main['reuss_N_per_m'])}", "N/m", "phases in parallel / series"])
    twin = (results or {}).get("consistency") or summary.get("consistency")
    if twin and twin.get("skipped"):
        rows.append(["MD stripe cell's FE twin", "not run", "", twin["skipped"]])
    elif twin:
        rows.append(["MD stripe cell's FE twin: modulus", twin.get("modulus_N_per_m"), "N/m",
                     f"MD: {fmt(twin.get('md_modulus_N_per_m'))}; perfect interfaces: "
                     f"{fmt(twin.get('perfect_interface_modulus_N_per_m'))}"])
    thermal = (results or {}).get("thermal") or summary.get("thermal") or {}
    if thermal.get("skipped"):
        rows.append(["thermal conductivity", "skipped", "", thermal["skipped"]])
    else:
        kappa = _get(thermal, "main", "kappa_eff_W_per_mK") or thermal.get("kappa_eff_W_per_mK")
        if kappa is not None:
            rows.append(["effective thermal conductivity", kappa, "W/(m K)",
                         f"along {_get(thermal, 'main', 'load_direction') or thermal.get('load_direction')}"])
    notes = list(main.get("notes") or []) + list(_get(results, "inputs", "notes") or summary.get("input_notes") or [])
    return (table(rows, ["quantity", "value", "unit", "sample / note"], cls="glance fe")
            + "".join(f"<p class='note'>{esc(n)}</p>" for n in notes))


def _difference(check: dict) -> list[str]:
    """The difference and tolerance cells of a check row: per cent, or the plain numbers of an absolute one."""
    if check["rel_diff"] is None:
        return ["-", "-"]
    if check.get("tolerance_kind") == "absolute":
        return [f"{check['abs_diff']:.3f}", f"{check['tolerance']:g}"]
    return [f"{100 * check['rel_diff']:.2f} %", "-" if check["tolerance"] is None else f"{100 * check['tolerance']:.0f} %"]


def checks_table(checks: list[dict]) -> str:
    """The cross-scale checks: a one-line verdict count, then ours, reference, difference, verdict."""
    verdict = {"pass": Html("<b class='pass'>pass</b>"), "fail": Html("<b class='fail'>FAIL</b>")}
    counts = {label: sum(c["status"] == label for c in checks) for label in ("pass", "fail", "not run", "compared")}
    rows = [[c["check"], verdict.get(c["status"], c["status"]), c["ours"], c["reference"], *_difference(c), c["what"]]
            for c in checks]
    line = ", ".join(f"{n} {label}" for label, n in counts.items() if n)
    return (f"<p>{esc(line or 'no checks')}</p>"
            + table(rows, ["check", "verdict", "ours", "reference", "difference", "tolerance", "what"], cls="checks"))


# -- stage sections -------------------------------------------------------------------------------
def _range(node: dict | None) -> str:
    if not isinstance(node, dict) or "min" not in node:
        return "-"
    return f"{fmt(node['min'])} … {fmt(node['max'])}"


def data_table(summary: dict) -> str:
    """One row per system of the data stage: frames, atoms, temperatures, energy and force ranges, engine."""
    rows = []
    for name, s in (summary.get("systems") or {}).items():
        atoms = s.get("atoms_per_frame") or {}
        temps = ", ".join(f"{t}" for t in (s.get("temperatures_K") or {}))
        rows.append([name, s.get("n_frames"),
                     atoms.get("min") if atoms.get("min") == atoms.get("max") else _range(atoms),
                     temps, _range(s.get("energy_eV_per_atom")), _get(s, "force_eV_per_A", "rms"),
                     s.get("frames_with_stress"), s.get("engine", "")])
    return table(rows, ["system", "frames", "atoms per frame", "temperatures (K)", "energy (eV/atom)",
                        "force rms (eV/Å)", "frames with stress", "engine"])


def _final_errors(s: dict) -> tuple[str, dict]:
    """The errors of the last fit step: on the validation frames when there are any, else on all."""
    fits = [step for step in s.get("steps", []) if "errors" in step]
    errors = fits[-1]["errors"] if fits else {}
    for subset in ("valid", "all", "train"):
        if subset in errors:
            return subset, errors[subset]
    return "-", s.get("errors_all_frames") or {}


def _brought_file(s: dict) -> str:
    """`` (<file name>, sha256 <first 12 hex digits>)`` of a brought potential's fit report, or ''."""
    if not s.get("source"):
        return ""
    name = PurePath(str(s["source"])).name
    return f" ({name}, sha256 {str(s.get('sha256', ''))[:12]})" if s.get("sha256") else f" ({name})"


def fit_table(summary: dict) -> str:
    """One row per potential: level (or the model a system brought, with its file name and sha256),
    frames, RMSE of energy, forces and stress (a brought potential's on all frames of its dataset, if
    evaluated), grades, time."""
    rows = []
    for name, s in (summary.get("systems") or {}).items():
        subset, err = _final_errors(s)
        if s.get("brought"):
            subset = "all" if err else "-"
        energy = _get(err, "energy_per_atom", "rmse")
        model = (f"brought {str(s.get('model', '')).upper()}{_brought_file(s)}" if s.get("brought") else
                 f"NEP{s['sizes']['version']}, {s.get('n_parameters')} parameters" if s.get("model") == "nep" else
                 f"MTP level {s.get('level')}")
        rows.append([name, model, s.get("n_train_final"), s.get("n_valid"), subset,
                     None if energy is None else 1000.0 * energy, _get(err, "forces", "rmse"),
                     _get(err, "stress", "rmse"),
                     "-" if s.get("brought") else
                     f"{fmt(s.get('max_grade_preliminary'))} → {fmt(s.get('max_grade_final'))}",
                     s.get("active_set_rank"), s.get("seconds_total")])
    return table(rows, ["system", "potential", "training frames", "validation frames", "errors on",
                        "RMSE energy (meV/atom)", "RMSE forces (eV/Å)", "RMSE stress (GPa)",
                        "max grade (first fit → final)", "active set", "time (s)"])


def fem_studies_table(summary: dict) -> str:
    """The fem stage's sweeps, one table per study (rows as the stage summary has them)."""
    out = []
    for name, rows in (summary.get("studies") or {}).items():
        if rows:
            header = list(rows[0])
            out.append(f"<p>Study <b>{esc(name)}</b>:</p>" + table([[r.get(h) for h in header] for r in rows], header))
    size = _get(summary, "thermal", "size")
    if size:
        out.append("<p>Heat conduction, stripes in series: size effect</p>"
                   + table([[r["period_nm"], r["kappa_W_per_mK"]] for r in size], ["period (nm)", "κ (W/(m K))"]))
    return "".join(out)
