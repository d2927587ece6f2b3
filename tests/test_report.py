"""The report stage renders what the finished stages wrote (numbers come from the files)."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from multiscale.atomic import write_json
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
