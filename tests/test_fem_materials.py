"""fem.materials and fem.phase_field: calibration formulas against the homogeneous solution, properties.json reading, errors."""
import json

import numpy as np
import pytest

from fem import laminate, materials as M, phase_field as PF
from fem.errors import FemInputError

PROPS = "tests/data/fem/properties_graphene_borophene.json"


@pytest.mark.parametrize("model", ["AT1", "AT2"])
def test_calibrated_gc_gives_target_peak_of_homogeneous_curve(model):
    E, sigma, ell = 340.0, 35.0, 0.8
    gc = PF.calibrate_gc(model, E, sigma, ell)
    assert PF.critical_stress(model, E, gc, ell) == pytest.approx(sigma, rel=1e-12)
    # the peak of the closed-form homogeneous response (dense strain grid) is the calibrated strength
    strain = np.linspace(0, 0.5, 200001)
    stress = PF.homogeneous_response(model, E, gc, ell, strain)
    eps_c = PF.critical_strain(model, E, gc, ell)
    assert stress.max() <= sigma * (1 + 1e-12) and stress.max() == pytest.approx(sigma, rel=1e-4)
    assert strain[np.argmax(stress)] == pytest.approx(eps_c, abs=1e-5)
    assert PF.homogeneous_response(model, E, gc, ell, [eps_c])[0] == pytest.approx(sigma, rel=1e-12)


def test_at2_homogeneous_damage_minimises_the_energy():
    # d/da [ (1-a)^2 E e^2 / 2 + Gc/2 (a^2/ell) ] = 0 at the closed-form a (finite difference)
    E, gc, ell, e = 300.0, 5.0, 1.0, 0.12
    energy = lambda a: 0.5 * (1 - a) ** 2 * E * e ** 2 + gc / 2.0 * a ** 2 / ell
    a = E * e ** 2 / (E * e ** 2 + gc / ell)
    h = 1e-6
    assert (energy(a + h) - energy(a - h)) / (2 * h) == pytest.approx(0.0, abs=1e-6)
    assert PF.homogeneous_response("AT2", E, gc, ell, [e])[0] == pytest.approx((1 - a) ** 2 * E * e)


def test_orthotropic_constants_from_stiffness():
    props = M.read_properties(PROPS)
    g = M.phase_material(props, "graphene")
    c11, c22, c12, c66 = 350.0, 346.0, 59.5, 145.0
    assert g.E1 == pytest.approx(c11 - c12 ** 2 / c22)
    assert g.E2 == pytest.approx(c22 - c12 ** 2 / c11)
    assert g.nu12 == pytest.approx(c12 / c22)
    assert g.G12 == pytest.approx(c66)
    np.testing.assert_allclose(g.stiffness(), [[c11, c12, 0], [c12, c22, 0], [0, 0, c66]], rtol=1e-12)
    assert (g.strength("x"), g.strength("y")) == (35.0, 33.5)


def test_isotropic_option_and_fallback_to_uniaxial_tests(tmp_path):
    props = M.read_properties(PROPS)
    b = M.phase_material(props, "borophene", elasticity="isotropic")
    assert b.E1 == b.E2 and b.G12 == pytest.approx(b.E1 / (2 * (1 + b.nu12)))
    assert b.strength_x == b.strength_y == pytest.approx(11.5)
    del props["phases"]["borophene"]["elastic_N_per_m"]
    b2 = M.phase_material(props, "borophene")
    assert (b2.E1, b2.E2, b2.nu12) == (190.0, 160.0, 0.09)


def test_interface_band_strength_and_stiffness():
    props = M.read_properties(PROPS)
    g, b = M.phase_material(props, "graphene"), M.phase_material(props, "borophene")
    band, source = M.interface_material(props, b, g)
    assert band.strength_x == band.strength_y == 9.5
    assert band.name == "graphene|borophene" and "interfaces['graphene|borophene']" in source["strength"]
    np.testing.assert_allclose(band.stiffness(), 0.5 * (g.stiffness() + b.stiffness()), rtol=1e-12)
    assert source["compliance"].startswith("none") and source["normal_compliance_nm_per_N_per_m"] == 0.0


def _stiffness(c11, c22, c12, c66):
    return np.array([[c11, c12, 0.0], [c12, c22, 0.0], [0.0, 0.0, c66]])


def test_laminate_stiffness_limits_and_the_direct_average():
    """One layer is itself; no Poisson coupling: across = Reuss, along = Voigt, shear = Reuss; a
    laminate across x is the one across y with the axes swapped; the extra compliance adds in series."""
    C = _stiffness(400.0, 300.0, 120.0, 140.0)
    np.testing.assert_allclose(laminate.laminate_stiffness([(1.0, C)]), C, rtol=1e-12)
    a, b = _stiffness(400.0, 300.0, 0.0, 100.0), _stiffness(200.0, 100.0, 0.0, 50.0)
    lam = laminate.laminate_stiffness([(0.3, a), (0.7, b)], normal="y")
    assert lam[1, 1] == pytest.approx(1 / (0.3 / 300 + 0.7 / 100)) and lam[0, 0] == pytest.approx(0.3 * 400 + 0.7 * 200)
    assert lam[2, 2] == pytest.approx(1 / (0.3 / 100 + 0.7 / 50)) and lam[0, 1] == 0.0
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    lam_x = laminate.laminate_stiffness([(0.3, swap @ a @ swap), (0.7, swap @ b @ swap)], normal="x")
    np.testing.assert_allclose(lam_x, swap @ lam @ swap, rtol=1e-12)
    g, bo = _stiffness(410.0, 407.0, 137.0, 135.0), _stiffness(167.0, 168.0, 55.0, 38.0)
    E = laminate.laminate_modulus([(0.5, g), (0.5, bo)])
    assert 1 / laminate.laminate_modulus([(0.5, g), (0.5, bo)], extra_normal_compliance=1e-3) == pytest.approx(1 / E + 1e-3)
    # with Poisson coupling: direct average of the layers' strains under a stress sigma_yy = 1 (the
    # layers share eps_xx, their sigma_xx average to 0), independent of the closed form
    Sg, Sb = np.linalg.inv(g), np.linalg.inv(bo)
    # eps_xx = S11 sxx + S12 (same in both layers), 0.5 sxx_g + 0.5 sxx_b = 0
    A = np.array([[Sg[0, 0], -Sb[0, 0]], [0.5, 0.5]])
    sxx = np.linalg.solve(A, [Sb[0, 1] - Sg[0, 1], 0.0])
    eyy = 0.5 * (Sg[1, 0] * sxx[0] + Sg[1, 1]) + 0.5 * (Sb[1, 0] * sxx[1] + Sb[1, 1])
    assert E == pytest.approx(1 / eyy, rel=1e-12)
    with pytest.raises(FemInputError, match="without a positive stiffness"):
        laminate.laminate_stiffness([(0.5, g), (0.5, bo)], extra_normal_compliance=-1.0)
    with pytest.raises(FemInputError, match="laminate normal 'z'"):
        laminate.laminate_stiffness([(1.0, g)], normal="z")


def test_interface_band_of_stripes_is_its_halves_in_series_plus_the_interface_compliance():
    props = M.read_properties(PROPS)
    g, b = M.phase_material(props, "graphene"), M.phase_material(props, "borophene")
    halves = [(0.5, g.stiffness()), (0.5, b.stiffness())]
    band, source = M.interface_material(props, g, b, normal="y", width_nm=0.5)
    np.testing.assert_allclose(band.stiffness(), laminate.laminate_stiffness(halves), rtol=1e-12)
    props["interfaces"]["graphene|borophene"]["normal_compliance"] = {
        "nm_per_N_per_m": {"mean": 2.0e-3, "sem": 0.0, "n": 1}}
    band, source = M.interface_material(props, g, b, normal="y", width_nm=0.5)
    # across the band: its two halves in series plus the jump R sigma over the width
    assert 1 / band.E2 == pytest.approx(1 / laminate.laminate_modulus(halves) + 2.0e-3 / 0.5)
    assert band.E1 == pytest.approx(M.from_stiffness("l", laminate.laminate_stiffness(halves), 1, 1).E1, rel=1e-2)
    assert source["normal_compliance_nm_per_N_per_m"] == 2.0e-3 and "normal_compliance" in source["compliance"]
    islands, source = M.interface_material(props, g, b)  # no fixed normal: the mean, R named as not applied
    np.testing.assert_allclose(islands.stiffness(), 0.5 * (g.stiffness() + b.stiffness()), rtol=1e-12)
    assert source["compliance"].startswith("not applied") and source["normal_compliance_nm_per_N_per_m"] == 0.0
    with pytest.raises(FemInputError, match="width 0.0 nm must be > 0"):
        M.interface_material(props, g, b, normal="y", width_nm=0.0)
    props["interfaces"]["graphene|borophene"]["normal_compliance"] = {"nm_per_N_per_m": {"mean": None}}
    with pytest.raises(FemInputError, match=r"interfaces.graphene\|borophene.normal_compliance.nm_per_N_per_m.mean"):
        M.interface_material(props, g, b, normal="y", width_nm=0.5)


def test_interface_without_md_entry_falls_back_to_the_weaker_phase_by_name():
    props = M.read_properties(PROPS)
    del props["interfaces"]
    g, b = M.phase_material(props, "graphene"), M.phase_material(props, "borophene")
    band, source = M.interface_material(props, g, b)
    assert (band.strength_x, band.strength_y) == (12.0, 11.0)     # borophene's x and y strengths
    assert source["strength"].startswith("fallback weaker_phase") and "graphene and borophene" in source["strength"]
    with pytest.raises(FemInputError, match="no entry in 'interfaces' joins 'graphene' and 'borophene'"):
        M.interface_material(props, g, b, fallback="error")
    with pytest.raises(FemInputError, match="fem.interface_fallback"):
        M.interface_material(props, g, b, fallback="guess")


def test_voigt_reuss():
    assert laminate.voigt_reuss([300.0, 100.0], [0.5, 0.5]) == pytest.approx((200.0, 150.0))


def _write(tmp_path, data):
    path = tmp_path / "properties.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_bad_properties_files_name_the_problem(tmp_path):
    with pytest.raises(FemInputError, match="not found"):
        M.read_properties(tmp_path / "missing.json")
    with pytest.raises(FemInputError, match="not valid JSON"):
        M.read_properties(_write(tmp_path, "{oops"))
    with pytest.raises(FemInputError, match="'format'"):
        M.read_properties(_write(tmp_path, {"format": "other", "phases": {}}))
    with pytest.raises(FemInputError, match="'phases'"):
        M.read_properties(_write(tmp_path, {"format": M.FORMAT}))
    props = json.loads(open(PROPS).read())
    del props["phases"]["graphene"]["directions"]["y"]["ultimate_strength_N_per_m"]
    del props["interfaces"]
    loaded = M.read_properties(_write(tmp_path, props))
    with pytest.raises(FemInputError, match=r"phases\.graphene\.directions\.y\.ultimate_strength_N_per_m"):
        M.phase_material(loaded, "graphene")
    with pytest.raises(FemInputError, match="phase 'silicene' is not in 'phases'"):
        M.phase_material(loaded, "silicene")
    b = M.phase_material(loaded, "borophene")
    with pytest.raises(FemInputError, match="no entry in 'interfaces'"):
        M.interface_material(loaded, b, b, fallback="error")
    with pytest.raises(FemInputError, match="fem.model"):
        PF.calibrate_gc("AT3", 1.0, 1.0, 1.0)
    with pytest.raises(FemInputError, match="fem.elasticity"):
        M.phase_material(loaded, "borophene", elasticity="cubic")
    with pytest.raises(FemInputError, match="positive definite"):
        M.PhaseMaterial("bad", 100.0, 100.0, 1.2, 10.0, 1.0, 1.0)


def test_the_two_phases_default_to_the_one_interface_of_the_case():
    """fem.phases: [] takes [A, B] from the case's one interface system, or, without the case, from the one
    interface of properties.json; given phases are kept; anything else is one error naming fem.phases."""
    props = M.read_properties(PROPS)
    systems = {"a": {"kind": "phase"}, "b": {"kind": "phase"}, "ab": {"kind": "interface", "between": ["b", "a"]}}
    assert M.resolve_phases([], props, systems) == ["b", "a"]
    assert M.resolve_phases([], props) == ["graphene", "borophene"]
    assert M.resolve_phases(["x", "y"], props, systems) == ["x", "y"]
    with pytest.raises(FemInputError, match=r"fem.phases is not given and cannot be taken from the case's interface "
                                            r"systems \(none\)"):
        M.resolve_phases([], props, {"a": {"kind": "phase"}})
    two = {**systems, "ba": {"kind": "interface", "between": ["a", "b"]}}
    with pytest.raises(FemInputError, match=r"\(ab: \['b', 'a'\], ba: \['a', 'b'\]\).*set fem.phases: \[A, B\]"):
        M.resolve_phases([], props, two)


def _unfailed(props, node):
    node.update(strength_from_unfailed=True, runs_failed=0, runs_yielded=0, runs_unfailed=3)
    return props


def test_strength_from_runs_that_did_not_fail_is_refused_unless_allowed():
    props = M.read_properties(PROPS)
    _unfailed(props, props["phases"]["borophene"]["directions"]["y"])
    with pytest.raises(FemInputError, match=r"'phases.borophene.directions.y.ultimate_strength_N_per_m' = 11 N/m comes "
                                            r"from tensile runs that did not fail \(failed 0, yielded 0, neither 3\)"
                                            r".* set fem.allow_unfailed_strength: true"):
        M.phase_material(props, "borophene")
    b = M.phase_material(props, "borophene", allow_unfailed_strength=True)
    assert b.strength_y == 11.0
    g = M.phase_material(props, "graphene")
    _unfailed(props, props["interfaces"]["graphene|borophene"])
    with pytest.raises(FemInputError, match=r"'interfaces.graphene\|borophene.ultimate_strength_N_per_m' = 9.5 N/m "
                                            r"comes from tensile runs that did not fail"):
        M.interface_strength(props, b, g)
    assert M.interface_strength(props, b, g, allow_unfailed_strength=True)[0] == 9.5


def test_withheld_or_unresolved_inputs_are_not_used_and_named():
    """The one rule (common.uncertainty): a withheld statistic, or one not positive by two standard errors in a
    hand-written file, is refused naming its key; a single seed is used; an interface strength that cannot be
    used takes the fallback the case asks for."""
    props = M.read_properties(PROPS)
    props["phases"]["graphene"]["elastic_N_per_m"]["C11"]["withheld"] = ("C11 = 35 +- 20 N/m is not positive by two "
                                                                         "standard errors (n = 2)")
    with pytest.raises(FemInputError, match=r"'phases.graphene.elastic_N_per_m.C11' is withheld by the constitutive "
                                            r"stage and not used as a model input: C11 = 35 \+- 20 N/m"):
        M.phase_material(props, "graphene")
    props = M.read_properties(PROPS)
    props["phases"]["graphene"]["directions"]["x"]["ultimate_strength_N_per_m"] = {"mean": 1.0, "sem": 1.0, "n": 3}
    with pytest.raises(FemInputError, match=r"directions.x.ultimate_strength_N_per_m' is not used as a model input: "
                                            r"strength = 1 \+- 1 N/m is not positive by two standard errors \(n = 3\)"):
        M.phase_material(props, "graphene")
    props["phases"]["graphene"]["directions"]["x"]["ultimate_strength_N_per_m"] = {"mean": 35.0, "sem": None, "n": 1}
    assert M.phase_material(props, "graphene").strength_x == 35.0
    g, b = M.phase_material(props, "graphene"), M.phase_material(props, "borophene")
    props["interfaces"]["graphene|borophene"]["ultimate_strength_N_per_m"] = {"mean": 9.5, "sem": 6.0, "n": 2}
    sx, sy, source = M.interface_strength(props, b, g)
    assert (sx, sy) == (12.0, 11.0) and source.startswith("fallback weaker_phase") and "two standard errors" in source
    with pytest.raises(FemInputError, match=r"not positive by two standard errors .* fem.interface_fallback: weaker"):
        M.interface_strength(props, b, g, fallback="error")


def test_input_record_lists_single_seed_inputs_and_allowed_unfailed_strengths():
    from fem import fem_stage

    props = M.read_properties(PROPS)
    props["phases"]["graphene"]["elastic_N_per_m"]["C22"] = {"mean": 346.0, "sem": None, "n": 1}
    _unfailed(props, props["phases"]["borophene"]["directions"]["x"])
    s = {**fem_stage.defaults(), "phases": ["graphene", "borophene"]}
    record = M.input_record(props, s)
    assert record["single_seed"] == ["phases.graphene.elastic_N_per_m.C22"]
    assert record["allow_unfailed_strength"] is False and record["unfailed_strength"] == []
    record = M.input_record(props, {**s, "allow_unfailed_strength": True})
    assert record["unfailed_strength"] == ["phases.borophene.directions.x.ultimate_strength_N_per_m"]
    assert len(record["notes"]) == 2 and "fem.allow_unfailed_strength is true" in record["notes"][1]
