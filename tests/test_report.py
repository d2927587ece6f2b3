"""The report stage renders what the finished stages wrote (numbers come from the files)."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common.atomic import write_json
from multiscale.report import REPORT_SETTINGS, build_report, flatten, fmt


def _stage(runs, name, summary):
    folder = runs / name
    folder.mkdir(parents=True)
    write_json(folder / "stage.json", {"stage": name, "summary": summary, "finished": "2026-11-23T10:00:00",
                                       "elapsed_s": 1.5, "ranks": 1, "preset": "quick",
                                       "versions": {"numpy": "1.24.2"}})
    return folder


def test_report_shows_properties_in_both_units_and_plots(tmp_path):
    runs = tmp_path / "runs"
    data = _stage(runs, "data", {"frames": 321, "engine": "GFN1-xTB (tight binding, not DFT)"})
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.savefig(data / "energy_hist.png")
    plt.close(fig)
    constitutive = _stage(runs, "constitutive", {})
    write_json(constitutive / "properties.json", {"phases": {"graphene": {
        "thickness_A": 3.35,
        "directions": {"x": {"youngs_modulus_N_per_m": {"mean": 335.0, "sem": 3.35, "n": 3},
                             "ultimate_strength_N_per_m": {"mean": 33.5, "sem": 0.5, "n": 3},
                             "poisson_ratio": {"mean": 0.17, "sem": 0.01, "n": 3},
                             "failure_strain": {"mean": 0.2, "sem": 0.01, "n": 3}}}}}})
    settings = {k: v[1] for k, v in REPORT_SETTINGS.items()}
    out = tmp_path / "report"
    page = build_report(tmp_path, runs, out, settings, title="T").read_text()
    assert "321" in page and "not DFT" in page
    assert "335 ± 3.35 (n=3)" in page          # N/m
    assert "1000 ± 10 (n=3)" in page           # GPa at 3.35 Å: 335 N/m / 0.335 nm
    assert (out / "data" / "energy_hist.png").is_file() and "data/energy_hist.png" in page
    assert "not run" in page                   # fit, md, fem absent
    assert "<script" not in page


def test_flatten_and_fmt():
    rows = flatten({"a": {"b": 1.23456789, "c": {"mean": 1.0, "sem": 0.1, "n": 2}}, "d": [1, 2]})
    assert rows == [["a.b", 1.23456789], ["a.c", {"mean": 1.0, "sem": 0.1, "n": 2}], ["d", [1, 2]]]
    assert fmt(1.23456789) == "1.235" and fmt({"mean": 1.0, "sem": 0.1, "n": 2}) == "1 ± 0.1 (n=2)"


def test_thermal_table_shows_conductivities_conductance_and_kapitza_length():
    from multiscale.report import thermal_table

    stat = lambda m, s: {"mean": m, "sem": s, "n": 2}  # noqa: E731
    props = {"phases": {"graphene": {"thermal": {
                 "conductivity_W_per_mK": {"x": stat(812.5, 40.0)},
                 "length_dependence": {"x": {"extrapolated_W_per_mK": stat(1234.0, 99.0)}}}}},
             "interfaces": {"graphene|borophene": {"thermal": {
                 "conductance_W_per_m2K": stat(2.5e9, 1e8), "kapitza_length_nm": {"graphene": stat(325.0, 20.0)}}}}}
    page = thermal_table(props)
    assert "812.5 ± 40 (n=2)" in page and "1234 ± 99 (n=2)" in page
    assert "conductance G" in page and "2.5e+09 ± 1e+08 (n=2)" in page
    assert "Kapitza length (graphene)" in page and "325 ± 20 (n=2)" in page
    assert thermal_table({"phases": {"graphene": {}}}) == ""  # no thermal runs: no table
    props["phases"]["graphene"]["thermal"]["note"] = "conductivity along y is not positive by two standard errors"
    assert "not positive by two standard errors" in thermal_table(props)
