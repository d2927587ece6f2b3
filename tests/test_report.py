"""The report stage renders what the finished stages wrote (numbers come from the files)."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common.atomic import write_json
from common.contracts import PROPERTIES_FORMAT
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
    write_json(constitutive / "properties.json", {"format": PROPERTIES_FORMAT, "temperature_K": 300.0, "interfaces": {},
                                                  "phases": {"graphene": {
        "thickness_A": 3.35,
        "directions": {"x": {"youngs_modulus_N_per_m": {"mean": 335.0, "sem": 3.35, "n": 3},
                             "ultimate_strength_N_per_m": {"mean": 33.5, "sem": 0.5, "n": 3},
                             "poisson_ratio": {"mean": 0.17, "sem": 0.01, "n": 3},
                             "failure_strain": {"mean": 0.2, "sem": 0.01, "n": 3}}}}}})
    settings = {k: v[1] for k, v in REPORT_SETTINGS.items()}
    out = tmp_path / "report"
    page = build_report(tmp_path, runs, out, settings, title="T").read_text()
    assert "321" in page and "not DFT" in page
    assert "335 ± 3.4 (n=3)" in page           # N/m (the sem to 2 significant digits)
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
    props["phases"]["graphene"]["thermal"]["conductivity_W_per_mK"]["y"] = {
        **stat(-14.0, 3.0), "withheld": "kappa_y = -14 +- 3 W/(m K) is not positive by two standard errors (n = 2)"}
    page = thermal_table(props)
    assert "-14 ± 3 (n=2) withheld" in page
    assert "conductivity_W_per_mK.y withheld (not a model input): kappa_y = -14 +- 3 W/(m K) is not positive" in page


def test_one_seed_reads_1_seed_and_lost_runs_stand_beside_the_numbers():
    from multiscale.report_tables import seeds, stat

    one = {"mean": 335.123456, "sem": None, "n": 1}
    assert fmt(one) == "335.1 (1 seed)" and "±" not in fmt(one)
    assert fmt({"mean": 335.0, "sem": 0.0, "n": 1}) == "335 (1 seed)"  # an older file's 0: no '± 0'
    assert fmt({"mean": 812.5, "sem": 40.0, "n": 1}) == "812.5 ± 40 (1 seed)"  # a run's own (block) error is shown
    assert fmt({"mean": float("nan"), "sem": float("nan"), "n": 0}) == "no value (n=0)"
    assert fmt({"mean": 1234.5678, "sem": 12.3456, "n": 3}) == "1235 ± 12 (n=3)"  # 4 and 2 significant digits
    lost = {"mean": 33.5, "sem": None, "n": 1, "attempted": 3, "failed": 1, "blown_up": 1}
    assert seeds(lost) == "1 seed of 3: 1 blew up, 1 gave no number"
    assert str(stat(lost)) == "33.5 <span class='n'>1 seed of 3: 1 blew up, 1 gave no number</span>"
    assert seeds({"mean": 1.0, "sem": 0.1, "n": 3, "attempted": 3, "failed": 0, "blown_up": 0}) == "n=3"
    withheld = stat({"mean": 5.0, "sem": 4.0, "n": 2, "withheld": "G = 5 +- 4 is not positive by two standard errors"})
    assert "5 ± 4" in withheld and "withheld" in withheld and "title='G = 5 +- 4" in withheld


def _fit_system(rmse_e, rmse_f, rmse_s):
    err = {"n_frames": 7, "energy_per_atom": {"rmse": rmse_e, "unit": "eV/atom"},
           "forces": {"rmse": rmse_f, "unit": "eV/A"}, "stress": {"rmse": rmse_s, "unit": "GPa"}}
    return {"level": 6, "n_frames": 66, "n_valid": 7, "n_train_final": 37, "active_set_rank": 19,
            "max_grade_preliminary": 33.4, "max_grade_final": 1.05, "seconds_total": 5.5,
            "steps": [{"step": "preliminary fit", "errors": {"train": err, "valid": err}},
                      {"step": "grade 1", "n_added": 9},
                      {"step": "refit 1", "errors": {"valid": err}}]}


def test_first_screen_is_results_at_a_glance_and_stages_are_compact_tables(tmp_path):
    stat = lambda m, s, n=3: {"mean": m, "sem": s, "n": n}  # noqa: E731
    runs = tmp_path / "runs"
    _stage(runs, "data", {"systems": {"graphene": {"n_frames": 66, "atoms_per_frame": {"min": 60, "max": 60},
                                                   "temperatures_K": {"0": 12, "300": 54},
                                                   "energy_eV_per_atom": {"min": -58.6, "max": -55.4},
                                                   "force_eV_per_A": {"rms": 1.586}, "frames_with_stress": 66,
                                                   "engine": "tblite-gfn2"}}})
    _stage(runs, "fit", {"systems": {"graphene": _fit_system(0.0362, 0.631, 0.956)}})
    constitutive = _stage(runs, "constitutive", {"phases": ["graphene"]})
    write_json(constitutive / "properties.json", {"format": PROPERTIES_FORMAT, "temperature_K": 300.0, "phases": {"graphene": {
        "thickness_A": 3.35,
        "directions": {"x": {"youngs_modulus_N_per_m": stat(335.0, 3.35), "poisson_ratio": stat(0.17, 0.01),
                             "sources": {"youngs_modulus_N_per_m": "elastic", "poisson_ratio": "elastic"},
                             "tensile_youngs_modulus_N_per_m": stat(341.0, 12.0), "tensile_poisson_ratio": stat(0.21, 0.05),
                             "runs_failed": 2, "runs_collapsed": 1, "runs_yielded": 1, "runs_blown_up": 0,
                             "ultimate_strength_N_per_m": stat(33.5, 0.5), "failure_strain": stat(0.2, 0.01)}},
        "elastic_N_per_m": {"C11": stat(350.0, 2.0), "C22": stat(351.0, 2.0), "C12": stat(60.0, 1.0),
                            "C66": stat(145.0, 1.5)},
        "thermal": {"conductivity_W_per_mK": {"x": stat(812.5, 40.0, 2)}}}},
        "interfaces": {"graphene|borophene": {"between": ["graphene", "borophene"], "direction": "normal",
                                              "ultimate_strength_N_per_m": stat(9.5, 0.2),
                                              "normal_compliance": {
                                                  "nm_per_N_per_m": stat(0.0081, 0.0004), "temperature_K": 1.0,
                                                  "equivalent_length_nm": {"graphene": 0.85}, "method": "stripe cell",
                                                  "cell": {"period_nm": 13.5, "fraction_B": 0.5, "n_atoms": 704,
                                                           "youngs_modulus_normal_N_per_m": stat(200.3, 1.0),
                                                           "laminate_N_per_m": 215.4}},
                                              "thermal": {"conductance_W_per_m2K": stat(2.5e9, 1e8, 2)}}}})
    fem = _stage(runs, "fem", {"modulus_N_per_m": 174.82, "strength_N_per_m": 9.31, "failure_strain": 0.061,
                               "notes": [], "studies": {"stripes_fraction": [
                                   {"fraction": 0.5, "modulus_N_per_m": 180.0, "strength_N_per_m": 9.0}]}})
    write_json(fem / "fem_results.json", {"settings": {"geometry": "stripes", "model": "AT1", "load_direction": "y"},
                                          "tensile": {"modulus_N_per_m": 174.82, "strength_N_per_m": 9.31,
                                                      "failure_strain": 0.061, "geometry": {"kind": "stripes"},
                                                      "notes": ["mesh_size_nm 1 > ell_nm / 2"]}})
    settings = {k: v[1] for k, v in REPORT_SETTINGS.items()}
    page = build_report(tmp_path, runs, runs / "report", settings, title="T").read_text()
    glance = page[page.index("Results at a glance"):page.index("<h2>Timings")]
    # phases per direction with mean ± sem and n beside each number; elastic constants; kappa
    for text in ("335 ± 3.4 <span class='n'>n=3</span>", "0.17 ± 0.01", "33.5 ± 0.5", "0.2 ± 0.01",
                 "350 ± 2", "145 ± 1.5", "812.5 ± 40 <span class='n'>n=2</span>"):
        assert text in glance, text
    # where E and nu come from, the tensile fit beside them, and what happened to the tensile runs
    assert "n=3</span> <span class='n'>(elastic)</span>" in glance
    assert "341 ± 12" in glance and "0.21 ± 0.05" in glance and "failed 2 (1 by collapse), yielded 1, blew up 0" in glance
    # interfaces: strength, normal compliance, conductance
    assert "9.5 ± 0.2" in glance and "0.0081 ± 0.0004" in glance and "2.5e+09 ± 1e+08" in glance
    # FE effective properties and the checks with their verdicts
    assert "174.8" in glance and "9.31" in glance and "stripes, AT1, load along y" in glance
    assert "mesh_size_nm 1 &gt; ell_nm / 2" in glance
    assert "Cross-scale checks" in glance and "verdict" in glance
    # datasets and fits: one row per system, no flattened keys; the JSON files are linked
    assert "systems.graphene" not in page and "steps.0" not in page
    assert "36.2" in page and "0.631" in page and "0.956" in page      # RMSE meV/atom, eV/Å, GPa (validation)
    assert "33.4 → 1.05" in page
    assert "href='../fem/fem_results.json'" in page and "href='../constitutive/properties.json'" in page
    assert "stripes_fraction" in page


def test_report_of_a_case_without_upstream_results(tmp_path):
    settings = {k: v[1] for k, v in REPORT_SETTINGS.items()}
    page = build_report(tmp_path, tmp_path / "runs", tmp_path / "report", settings, title="T").read_text()
    assert "constitutive stage has not run" in page and "fem stage has not run" in page


def test_glance_shows_single_seeds_lost_runs_unfailed_strengths_and_checks_not_run(tmp_path):
    """One seed reads '1 seed' (no '± 0'), lost runs stand beside the numbers, a strength from runs that did
    not fail is flagged, and a check whose stripe runs blew up is a 'not run' row with the reason."""
    one = lambda m: {"mean": m, "sem": None, "n": 1, "attempted": 2, "failed": 0, "blown_up": 1}  # noqa: E731
    runs = tmp_path / "runs"
    constitutive = _stage(runs, "constitutive", {"phases": ["graphene"]})
    write_json(constitutive / "properties.json", {"format": PROPERTIES_FORMAT, "temperature_K": 300.0, "phases": {
        "graphene": {"thickness_A": 3.35, "directions": {"x": {
            "youngs_modulus_N_per_m": {**one(335.0), "single_seed": True}, "poisson_ratio": one(0.17),
            "ultimate_strength_N_per_m": {**one(33.5), "single_seed": True}, "failure_strain": one(0.3),
            "runs_attempted": 2, "runs_failed": 0, "runs_yielded": 0, "runs_unfailed": 1, "runs_blown_up": 1,
            "strength_from_unfailed": True}}}},
        "interfaces": {"graphene|borophene": {
            "between": ["graphene", "borophene"], "direction": "normal",
            "ultimate_strength_N_per_m": {"mean": 9.5, "sem": 0.2, "n": 3},
            "heterostructure_runs": {"at_temperature": {"attempted": 2, "blown_up": 2}},
            "thermal": {"conductance_W_per_m2K": {"mean": 1e8, "sem": 2e8, "n": 2, "withheld": "G = 1e+08 +- 2e+08 "
                                                  "W/(m^2 K) is not positive by two standard errors (n = 2)"}}}}})
    md = _stage(runs, "md", {})
    provenance = {"potential": "interface.mtp", "md_runs": [], "strain_rate_per_s": 1e9, "temperature_K": 300.0}
    stripe_runs = {"at_temperature": {"attempted": 2, "blown_up": 2},
                   "blown_up": [{"run": "interface_heterostructure_seed0", "reason": "T > 2 T0"}]}
    write_json(md / "summary.json", {"format": "md_gpu-summary/1", "temperature_K": 300.0, "strain_rate_per_s": 1e9,
                                     "systems": {"interface": {"provenance": provenance,
                                                               "heterostructure_runs": stripe_runs}}})
    fem = _stage(runs, "fem", {"modulus_N_per_m": 174.82, "strength_N_per_m": 9.31, "failure_strain": 0.061})
    write_json(fem / "fem_results.json", {
        "settings": {"geometry": "stripes", "model": "AT1", "load_direction": "y", "phases": ["graphene", "borophene"]},
        "inputs": {"notes": ["inputs measured by one MD run (single seed: ...): phases.graphene.elastic_N_per_m.C11"]},
        "tensile": {"modulus_N_per_m": 174.8234567, "strength_N_per_m": 9.31, "failure_strain": 0.061, "notes": []},
        "consistency": {"skipped": "2 of 2 MD stripe runs blew up (interface_heterostructure_seed0: T > 2 T0)"}})
    settings = {k: v[1] for k, v in REPORT_SETTINGS.items()}
    page = build_report(tmp_path, runs, runs / "report", settings, title="T").read_text()
    glance = page[page.index("Results at a glance"):page.index("<h2>Timings")]
    assert "335 <span class='n'>1 seed of 2: 1 blew up</span>" in glance and "335 ±" not in glance
    assert "of 2: failed 0, yielded 0, neither 1, blew up 1" in glance
    assert "strength from unfailed runs" in glance and "fem.allow_unfailed_strength" in glance
    assert "1 seed" in glance and "withheld" in glance and "G = 1e+08 +- 2e+08" in glance
    assert "2 of 2 MD stripe runs blew up" in glance
    assert "174.8<" in glance and "174.82345" not in glance  # 4 significant digits
    assert "single seed" in glance  # the FE stage's record of its single-seed inputs
    checks = json.loads((runs / "report" / "checks.json").read_text())
    stripe = next(c for c in checks if c["check"] == "FE stripes vs direct MD (stripe heterostructure)")
    assert stripe["status"] == "not run" and "2 of 2 MD stripe runs blew up" in stripe["what"]
    assert any(c["check"].startswith("FE stripes vs direct MD at low T") for c in checks)
