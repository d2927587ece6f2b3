"""Steady heat conduction (fem.thermal): exact limits, the size effect, serial vs MPI, bad input, stage and CLI."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from fem import fem_stage, geometry, materials as M, mesh_io, thermal_inputs, thermal_limits as TL, thermal_study as TS
from fem.__main__ import main as fem_main
from fem.errors import FemInputError
from fem.thermal import Conduction, ConductionOptions

PROPS = Path("tests/data/fem/properties_graphene_borophene.json").resolve()
ROOT = Path(__file__).resolve().parents[1]
# test input, not MD results: orthotropic phases and a conductance with Kapitza lengths of 2 um and 150 nm
KAPPA = {"graphene": (2000.0, 1800.0), "borophene": (150.0, 100.0)}
G = 1.0e9


def thermal_props(*, phases=True, interface=True, G_mean=G) -> dict:
    props = M.read_properties(PROPS)
    if phases:
        for name, (kx, ky) in KAPPA.items():
            props["phases"][name]["thermal"] = {"conductivity_W_per_mK": {
                "x": {"mean": kx, "sem": 1.0, "n": 3}, "y": {"mean": ky, "sem": 1.0, "n": 3}}}
    if interface:
        props["interfaces"]["graphene|borophene"]["thermal"] = {
            "conductance_W_per_m2K": {"mean": G_mean, "sem": 1e7, "n": 3}}
    return props


def _stripes(L, H, h, *, fraction, period, orientation):
    return mesh_io.mesh_from_gmsh(geometry.stripes, MPI.COMM_WORLD, phases=("a", "b"), length_nm=L, height_nm=H,
                                  period_nm=period, fraction=fraction, orientation=orientation, mesh_size_nm=h)


def _kappa(sample, kappas, G_W_per_m2K, **options):
    msh, ct, _, lay = sample
    return Conduction(msh, ct, kappas, G_W_per_m2K, (lay.length_nm, lay.height_nm),
                      ConductionOptions(**options)).solve()


def test_unit_conversion_and_closed_forms():
    assert TL.conductance_per_nm(1e9) == pytest.approx(1.0)               # W/(m^2 K) -> W/(m K) per nm
    assert TL.kapitza_length_nm(150.0, 1e9) == pytest.approx(150.0)      # 150 W/(m K) / 1e9 W/(m^2 K) = 150 nm
    k, f = [2000.0, 150.0], [0.5, 0.5]
    harmonic = 1 / (0.5 / 2000 + 0.5 / 150)
    assert TL.series(k, f) == pytest.approx(harmonic)
    P_c = TL.crossover_period_nm(k, f, G)
    assert P_c == pytest.approx(2 * harmonic / G * 1e9)
    # at the crossover the interfaces resist as much as the bulk: half the bulk conductivity
    assert TL.superlattice(k, f, P_c, G) == pytest.approx(harmonic / 2)
    assert TL.superlattice(k, f, 1e-3, G) == pytest.approx(TL.interface_limited(1e-3, G), rel=1e-4)


@pytest.mark.parametrize("direction", ["x", "y"])
def test_stripes_parallel_give_the_area_mean_and_in_series_the_harmonic_mean_plus_interfaces(direction):
    kappas = {1: (2000.0, 1800.0), 2: (150.0, 100.0)}
    i = "xy".index(direction)
    k, f = [kappas[1][i], kappas[2][i]], [0.6, 0.4]
    across = "y" if direction == "x" else "x"
    parallel = _kappa(_stripes(10.0, 10.0, 1.0, fraction=0.4, period=5.0, orientation=direction), kappas, G,
                      direction=direction)
    sample = _stripes(10.0, 10.0, 1.0, fraction=0.4, period=5.0, orientation=across)
    series = _kappa(sample, kappas, G, direction=direction)
    n_if = sample[3].info["n_interfaces"]
    assert n_if == 3
    assert parallel.kappa_eff == pytest.approx(TL.parallel(k, f), rel=1e-9)
    # the DG/SIPG interface law reproduces the piecewise-linear exact solution: far below the 0.5 % asked
    assert series.kappa_eff == pytest.approx(TL.series(k, f, length_nm=10.0, n_interfaces=n_if, G_W_per_m2K=G),
                                             rel=1e-8)
    perfect = _kappa(sample, kappas, math.inf, direction=direction)
    assert perfect.kappa_eff == pytest.approx(TL.series(k, f), rel=1e-8)
    assert series.imbalance < 1e-8 and perfect.imbalance < 1e-8       # heat in = heat out


@pytest.mark.parametrize("direction", ["x", "y"])
def test_homogeneous_orthotropic_sample_gives_kappa_x_and_kappa_y(direction):
    res = _kappa(_stripes(6.0, 4.0, 1.0, fraction=0.0, period=6.0, orientation="y"),
                 {1: (2000.0, 1800.0), 2: (2000.0, 1800.0)}, G, direction=direction)
    assert res.kappa_eff == pytest.approx(2000.0 if direction == "x" else 1800.0, rel=1e-10)


def _settings(**thermal):
    s = fem_stage.defaults()
    s.update(phases=["graphene", "borophene"], length_nm=8.0, height_nm=6.0, mesh_size_nm=1.0, interface_width_nm=1.0,
             ell_nm=2.0, damage=False, studies=[], write_fields=True)
    s["stripes"].update(period_nm=4.0, fraction=0.5, orientation="y")
    s["islands"].update(radius_nm=1.2, fraction=0.15)
    s["loading"].update(max_strain=0.1, n_steps=2)
    s["thermal"].update(fractions=[0.0, 0.15, 1.0], periods_nm=[10.0, 100.0, 1000.0, 10000.0], **thermal)
    return s


def test_size_effect_is_exact_and_crosses_over_at_the_kapitza_length():
    s = _settings()
    m = TS.SampleMaterials(s, thermal_props())
    size = TS.run_size_sweep(s, m)
    for row in size["rows"]:     # 1- and 2-period samples, the mesh scaled with the period
        assert row["kappa_fe"] == pytest.approx(row["kappa_exact"], rel=1e-6)
    k = [r["kappa_fe"] for r in size["rows"]]
    assert all(a < b for a, b in zip(k, k[1:]))
    bulk, P_c = size["bulk_harmonic_W_per_mK"], size["crossover_period_nm"]
    assert size["kapitza_length_nm"] == pytest.approx({"graphene": 2000.0, "borophene": 150.0})
    # interface-dominated (G P / 2) well below the crossover, the bulk harmonic mean well above it
    assert k[0] == pytest.approx(TL.interface_limited(10.0, G), rel=0.05)
    assert k[-1] == pytest.approx(bulk, rel=0.06)
    # the FE conductivity at the crossover period is half the bulk one; the crossover lies between the
    # two Kapitza lengths
    assert TS.superlattice_kappa(s, m, P_c) == pytest.approx(bulk / 2, rel=1e-6)
    # closed form: 1/kappa(P) = 1/bulk + 2 / (G P) halves kappa at P_c = 2 bulk / G (SI, to nm), between
    # the two Kapitza lengths
    assert P_c == pytest.approx(2.0 * bulk / G * 1e9, rel=1e-12)
    assert 150.0 < P_c < 2000.0


def test_missing_thermal_conductivity_names_the_phase_and_md_thermal():
    with pytest.raises(FemInputError, match=r"no thermal conductivity for phase graphene: enable md.thermal in "
                                            r"case.yaml \(or set fem.thermal.enabled: false\)"):
        thermal_inputs.phase_conductivity(thermal_props(phases=False), "graphene")


def test_stage_stops_before_the_mechanics_when_thermal_inputs_are_missing(tmp_path):
    with pytest.raises(FemInputError, match="no thermal conductivity for phase graphene"):
        fem_stage.run_all(_settings(), thermal_props(phases=False), out_dir=tmp_path)
    assert not (tmp_path / "tensile_curve.png").exists()


@pytest.mark.parametrize("G_mean", [-1e8, 0.0, 1.5e7])
def test_unresolved_conductance_is_not_used_and_the_fallback_says_why(G_mean):
    """A G not positive by two standard errors (sem 1e7 here) is not used, as a withheld one: an error with
    fem.thermal.interface_fallback: error, else perfect contact, recorded with the reason."""
    props = thermal_props(G_mean=G_mean)
    with pytest.raises(FemInputError, match=r"graphene\|borophene.thermal.conductance_W_per_m2K' is not used as a "
                                            r"model input: G = .* is not positive by two standard errors \(n = 3\)"):
        thermal_inputs.interface_conductance(props, "graphene", "borophene", fallback="error")
    G_fb, source = thermal_inputs.interface_conductance(props, "graphene", "borophene")
    assert G_fb == math.inf and source.startswith("fallback perfect") and "two standard errors" in source
    props["interfaces"]["graphene|borophene"]["thermal"]["conductance_W_per_m2K"] = {
        "mean": 2e9, "sem": 1e7, "n": 3, "withheld": "G = ... (set by the constitutive stage)"}
    with pytest.raises(FemInputError, match=r"is withheld by the constitutive stage .*: G = \.\.\. \(set by"):
        thermal_inputs.interface_conductance(props, "graphene", "borophene", fallback="error")


def test_one_rule_for_the_conductivities_withheld_or_unresolved():
    props = thermal_props()
    props["phases"]["borophene"]["thermal"]["conductivity_W_per_mK"]["y"] = {"mean": 30.0, "sem": 20.0, "n": 2}
    with pytest.raises(FemInputError, match=r"phases.borophene.thermal.conductivity_W_per_mK.y' is not used as a model "
                                            r"input: kappa_y = 30 \+- 20 W/\(m K\) is not positive by two standard"):
        thermal_inputs.phase_conductivity(props, "borophene")
    props["phases"]["borophene"]["thermal"]["conductivity_W_per_mK"]["y"] = {"mean": 30.0, "sem": None, "n": 1}
    assert thermal_inputs.phase_conductivity(props, "borophene")[1] == 30.0  # one seed: used (and listed by input_record)
    record = M.input_record(props, {**_settings(), "phases": ["graphene", "borophene"]})
    assert record["single_seed"] == ["phases.borophene.thermal.conductivity_W_per_mK.y"]
    assert "single seed" in record["notes"][0]


def test_missing_conductance_falls_back_to_perfect_contact_or_errors():
    props = thermal_props(interface=False)
    G_fb, source = thermal_inputs.interface_conductance(props, "graphene", "borophene")
    assert G_fb == math.inf and source.startswith("fallback perfect")
    lines = []
    m = TS.SampleMaterials(_settings(), props, log=lines.append)
    assert m.G == math.inf and "perfect thermal contact" in m.notes[0] and lines
    with pytest.raises(FemInputError, match="interface_fallback: perfect"):
        thermal_inputs.interface_conductance(props, "graphene", "borophene", fallback="error")


@pytest.mark.parametrize("key,value,message", [
    ("load_direction", "z", r"fem.thermal.load_direction: 'z' is not one of x, y"),
    ("interface", "band", r"fem.thermal.interface: 'band' is not one of jump, perfect"),
    ("delta_T_K", -1.0, r"fem.thermal.delta_T_K must be > 0"),
    ("fraction_samples", ["hexagons"], r"fem.thermal.fraction_samples: \['hexagons'\]"),
    ("size_fraction", 1.0, r"fem.thermal.size_fraction must be in \(0, 1\)"),
])
def test_bad_thermal_settings_name_the_key(key, value, message):
    s = _settings(**{key: value})
    with pytest.raises(FemInputError, match=message):
        fem_stage.check_settings(s)


def test_unknown_direction_of_the_solver_and_an_unassigned_band_tag_are_errors():
    with pytest.raises(FemInputError, match="fem.thermal.load_direction must be 'x' or 'y'"):
        ConductionOptions(direction="z").check()
    msh, ct, _, lay = mesh_io.mesh_from_gmsh(geometry.stripes, MPI.COMM_WORLD, phases=("a", "b"), length_nm=8.0,
                                             height_nm=2.0, period_nm=8.0, fraction=0.5, orientation="y",
                                             interface_width_nm=1.0, mesh_size_nm=0.5)
    with pytest.raises(FemInputError, match=r"cell tags \[100\] with no thermal conductivity"):
        Conduction(msh, ct, {1: (1.0, 1.0), 2: (1.0, 1.0)}, G, (8.0, 2.0), ConductionOptions())


def test_different_sheet_thicknesses_scale_the_conductivities():
    props = thermal_props()
    props["phases"]["borophene"]["thickness_A"] = 6.70        # graphene 3.35 A: reference is their mean, 5.025 A
    m = TS.SampleMaterials(_settings(), props)
    assert m.kappa["graphene"][0] == pytest.approx(2000.0 * 3.35 / 5.025)
    assert m.kappa["borophene"][1] == pytest.approx(100.0 * 6.70 / 5.025)
    assert "differ" in m.notes[0]
    assert TS.SampleMaterials(_settings(), thermal_props()).kappa == KAPPA


def test_stage_writes_the_thermal_section_and_plots(tmp_path):
    s = _settings()
    s["thermal"]["load_direction"] = "x"      # series stripes of the main sample: harmonic mean + interfaces
    summary = fem_stage.run_all(s, thermal_props(), out_dir=tmp_path)
    results = json.loads((tmp_path / "fem_results.json").read_text())
    th = results["thermal"]
    main = th["main"]
    assert main["kappa_eff_W_per_mK"] == pytest.approx(main["exact_W_per_mK"], rel=1e-8)
    assert main["series_W_per_mK"] > main["kappa_eff_W_per_mK"]         # the interfaces resist
    assert th["materials"]["G_W_per_m2K"] == G and th["materials"]["G_source"].endswith("= 1e+09 W/(m^2 K)")
    rows = th["fraction_sweeps"]["stripes_parallel"]
    assert [r["kappa_fe"] for r in rows] == pytest.approx([r["parallel"] for r in rows], rel=1e-9)
    assert th["fraction_sweeps"]["islands"][0]["kappa_fe"] == pytest.approx(2000.0, rel=1e-9)
    assert len(th["size_sweep"]["rows"]) == 4
    for name in ("thermal_temperature.png", "thermal_size.png", "thermal_fraction.png", "thermal_fields.xdmf",
                 "thermal_fields.h5"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert th["files"] == {"temperature_png": "thermal_temperature.png", "fraction_png": "thermal_fraction.png",
                           "size_png": "thermal_size.png"}
    assert summary["thermal"]["kappa_eff_W_per_mK"] == main["kappa_eff_W_per_mK"]
    assert th["wall_s"] < 60


THERMAL_ARGS = ["--length-nm", "8", "--height-nm", "6", "--mesh-size-nm", "1", "--period-nm", "4",
                "--fraction", "0.5", "--interface-width-nm", "1", "--no-fields"]


def test_cli_thermal(tmp_path, capsys):
    props = tmp_path / "properties.json"
    props.write_text(json.dumps({k: v for k, v in thermal_props().items() if k != "_source"}))
    assert fem_main(["thermal", "--properties", str(props), "--out", str(tmp_path / "t"), *THERMAL_ARGS,
                     "--direction", "y", "--fractions", "", "--periods-nm", "100,1000"]) == 0
    result = json.loads((tmp_path / "t" / "fem_results.json").read_text())["thermal"]
    assert result["main"]["load_direction"] == "y" and result["fraction_sweeps"] == {}
    # stripes across x, heat along y: parallel, the area mean of kappa_y
    assert result["main"]["kappa_eff_W_per_mK"] == pytest.approx(0.5 * (1800.0 + 100.0), rel=1e-9)
    assert "kappa_eff 950 W/(m K) along y" in capsys.readouterr().out
    assert fem_main(["thermal", "--properties", str(PROPS), "--out", str(tmp_path / "x"), *THERMAL_ARGS]) == 1
    assert "no thermal conductivity for phase graphene" in capsys.readouterr().err


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("geometry", ["stripes", "islands"])
def test_serial_and_two_ranks_give_the_same_conductivity(tmp_path, mpirun, geometry):
    props = tmp_path / "properties.json"
    props.write_text(json.dumps({k: v for k, v in thermal_props().items() if k != "_source"}))
    results = {}
    for n in (1, 2):
        out = tmp_path / f"n{n}"
        args = ["-m", "fem", "thermal", "--properties", str(props), "--out", str(out), *THERMAL_ARGS,
                "--geometry", geometry, "--samples", "stripes_series,islands", "--periods-nm", "30,3000"]
        if geometry == "islands":
            args += ["--length-nm", "12", "--height-nm", "8", "--radius-nm", "1.5", "--fraction", "0.1",
                     "--fractions", "0.1"]
        else:
            args += ["--fractions", "0.5"]
        if n == 1:
            proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
        else:
            proc = mpirun(args, n=2, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[n] = json.loads((out / "fem_results.json").read_text())["thermal"]
    a, b = results[1], results[2]
    assert a["main"]["n_ranks"] == 1 and b["main"]["n_ranks"] == 2
    assert b["main"]["kappa_eff_W_per_mK"] == pytest.approx(a["main"]["kappa_eff_W_per_mK"], rel=1e-8)
    for name in ("stripes_series", "islands"):
        assert [r["kappa_fe"] for r in b["fraction_sweeps"][name]] == pytest.approx(
            [r["kappa_fe"] for r in a["fraction_sweeps"][name]], rel=1e-8)
    assert [r["kappa_fe"] for r in b["size_sweep"]["rows"]] == pytest.approx(
        [r["kappa_fe"] for r in a["size_sweep"]["rows"]], rel=1e-8)
