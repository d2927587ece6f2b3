"""Moduli from the elastic constants: per-seed engineering constants (md_gpu.tasks.elastic) and the
constitutive stage taking them as the phases' Young's modulus and Poisson's ratio, with their source."""
import pytest

from common.contracts import validate_properties, validate_summary
from md_gpu.tasks import elastic
from multiscale.constitutive import CONSTITUTIVE_SETTINGS, build_properties

SETTINGS = {k: v[1] for k, v in CONSTITUTIVE_SETTINGS.items()}
SYSTEMS = {"graphene": {"kind": "phase", "thickness_A": 3.35, "between": []}}


def run(c11, c22, c12, c66, *, seed=0, unit="N/m"):
    """One elastic task's result as md_gpu.tasks.elastic.measure returns it."""
    return {"system": "graphene", "kind": "elastic", "seed": seed, "name": f"graphene_elastic_seed{seed}",
            "result": {"C11": c11, "C22": c22, "C12": c12, "C66": c66}, "unit": unit, "temperature_K": 300.0}


def test_orthotropic_sheet_closed_form():
    """C11 = 400, C22 = 300, C12 = 60: E_x = (400*300 - 3600)/300 = 388, E_y = 116400/400 = 291,
    nu_xy = 60/300 = 0.2, nu_yx = 60/400 = 0.15 (and nu_xy / E_x = nu_yx / E_y, the symmetry of S)."""
    m = elastic.summarise([run(400.0, 300.0, 60.0, 120.0)], {})["graphene"]["moduli_N_per_m"]
    # one seed: no sem (never 0), with the run counts
    assert m["x"]["youngs_modulus"] == {"mean": pytest.approx(388.0), "sem": None, "n": 1,
                                        "attempted": 1, "failed": 0, "blown_up": 0}
    assert m["y"]["youngs_modulus"]["mean"] == pytest.approx(291.0)
    assert m["x"]["poisson_ratio"]["mean"] == pytest.approx(0.2)
    assert m["y"]["poisson_ratio"]["mean"] == pytest.approx(0.15)
    assert m["x"]["poisson_ratio"]["mean"] / 388.0 == pytest.approx(m["y"]["poisson_ratio"]["mean"] / 291.0)
    assert m["method"].startswith("plane stress")


def test_isotropic_sheet():
    """C11 = C22, C66 = (C11 - C12)/2: E_x = E_y = C11 (1 - nu^2), nu = C12 / C11 both ways."""
    c11, c12 = 350.0, 60.0
    m = elastic.engineering_constants({"C11": c11, "C22": c11, "C12": c12, "C66": (c11 - c12) / 2})
    nu = c12 / c11
    assert m["x"]["youngs_modulus"] == pytest.approx(m["y"]["youngs_modulus"])
    assert m["x"]["youngs_modulus"] == pytest.approx(c11 * (1 - nu ** 2))
    assert m["x"]["poisson_ratio"] == pytest.approx(nu) and m["y"]["poisson_ratio"] == pytest.approx(nu)


def test_bulk_cell_assumes_cubic_symmetry():
    """A bulk cell (GPa): uniaxial stress with cubic symmetry, E = (C11 - C12)(C11 + 2 C12)/(C11 + C12),
    nu = C12 / (C11 + C12): C11 = 170, C12 = 120 gives E = 50 * 410 / 290 and nu = 120 / 290."""
    out = elastic.summarise([run(170.0, 170.0, 120.0, 75.0, unit="GPa")], {})["graphene"]
    assert "moduli_N_per_m" not in out and "cubic" in out["moduli_GPa"]["method"]
    assert out["moduli_GPa"]["x"]["youngs_modulus"]["mean"] == pytest.approx(50.0 * 410.0 / 290.0)
    assert out["moduli_GPa"]["y"]["poisson_ratio"]["mean"] == pytest.approx(120.0 / 290.0)


def test_seeds_are_combined_after_the_per_seed_moduli():
    """Two seeds whose C11 and C12 move together: (C11, C12) = (400, 100) and (440, 140), C22 = 400.
    E_x per seed = (C11 * 400 - C12^2) / 400: 375 and 391; mean 383, sem = |391 - 375| / 2 = 8.
    Propagating the sems of the mean constants as if independent (sem C11 = sem C12 = 20,
    dE/dC11 = 1, dE/dC12 = -2 C12 / C22 = -0.6 at the means) would give 20 * sqrt(1 + 0.36) = 23.3."""
    runs = [run(400.0, 400.0, 100.0, 150.0, seed=0), run(440.0, 400.0, 140.0, 150.0, seed=1)]
    out = elastic.summarise(runs, {})["graphene"]
    assert out["elastic_N_per_m"]["C11"] == {"mean": 420.0, "sem": 20.0, "n": 2,
                                             "attempted": 2, "failed": 0, "blown_up": 0}
    ex = out["moduli_N_per_m"]["x"]["youngs_modulus"]
    assert ex["mean"] == pytest.approx(383.0) and ex["sem"] == pytest.approx(8.0) and ex["n"] == 2
    nu = out["moduli_N_per_m"]["x"]["poisson_ratio"]  # 0.25 and 0.35
    assert nu["mean"] == pytest.approx(0.30) and nu["sem"] == pytest.approx(0.05)


def md_summary(with_elastic: bool):
    tensile = {"youngs_modulus_N_per_m": {"mean": 300.0, "sem": 30.0, "n": 2},
               "youngs_modulus_GPa": {"mean": 300.0 / 0.335, "sem": 30.0 / 0.335, "n": 2},
               "youngs_modulus_fit_sem_N_per_m": {"mean": 12.0, "sem": 1.0, "n": 2},
               "poisson_ratio": {"mean": 0.5, "sem": 0.1, "n": 2},
               "poisson_ratio_fit_sem": {"mean": 0.08, "sem": 0.01, "n": 2},
               "fit_window_strain": {"mean": 0.02, "sem": 0.0, "n": 2},
               "ultimate_strength_N_per_m": {"mean": 30.0, "sem": 1.0, "n": 2},
               "failure_strain": {"mean": 0.2, "sem": 0.01, "n": 2},
               "transverse_stress_mean_N_per_m": {"mean": 0.1, "sem": 0.05, "n": 2},
               "runs_failed": 2, "runs_yielded": 0, "runs_blown_up": 0}
    system = {"directions": {"x": dict(tensile), "y": dict(tensile)},
              "provenance": {"potential": "g.mtp", "md_runs": ["g_x_seed0.h5"], "strain_rate_per_s": 1e9,
                             "temperature_K": 300.0}}
    if with_elastic:
        system.update(elastic.summarise([run(400.0, 400.0, 100.0, 150.0, seed=0),
                                         run(440.0, 400.0, 140.0, 150.0, seed=1)], {})["graphene"])
    data = {"format": "md_gpu-summary/1", "temperature_K": 300.0, "strain_rate_per_s": 1e9,
            "systems": {"graphene": system}}
    validate_summary(data)
    return data


def test_constitutive_takes_the_elastic_moduli():
    props = build_properties(md_summary(True), SYSTEMS, SETTINGS, source="md/summary.json")
    validate_properties(props)
    x = props["phases"]["graphene"]["directions"]["x"]
    assert x["youngs_modulus_N_per_m"] == {"mean": pytest.approx(383.0), "sem": pytest.approx(8.0), "n": 2,
                                           "attempted": 2, "failed": 0, "blown_up": 0}
    assert x["youngs_modulus_GPa"]["mean"] == pytest.approx(383.0 / 0.335)
    assert x["youngs_modulus_GPa"]["sem"] == pytest.approx(8.0 / 0.335)
    assert x["poisson_ratio"]["mean"] == pytest.approx(0.30)
    assert x["sources"] == {"youngs_modulus_N_per_m": "elastic", "youngs_modulus_GPa": "elastic",
                            "poisson_ratio": "elastic", "ultimate_strength_N_per_m": "tensile",
                            "failure_strain": "tensile"}
    # the tensile test's own values, kept for the report, and its quality keys passed on
    assert x["tensile_youngs_modulus_N_per_m"]["mean"] == 300.0 and x["tensile_poisson_ratio"]["mean"] == 0.5
    assert x["tensile_youngs_modulus_fit_sem_N_per_m"]["mean"] == 12.0
    assert x["tensile_poisson_ratio_fit_sem"]["mean"] == 0.08 and "youngs_modulus_fit_sem_N_per_m" not in x
    assert x["fit_window_strain"]["mean"] == 0.02 and x["transverse_stress_mean_N_per_m"]["mean"] == 0.1
    assert x["ultimate_strength_N_per_m"]["mean"] == 30.0 and x["runs_failed"] == 2 and x["runs_yielded"] == 0
    # y: E_y per seed = (C11 C22 - C12^2) / C11 = 375 and (176000 - 19600) / 440 = 355.45...
    y = props["phases"]["graphene"]["directions"]["y"]
    assert y["youngs_modulus_N_per_m"]["mean"] == pytest.approx(0.5 * (375.0 + 156400.0 / 440.0))


def test_constitutive_falls_back_to_the_tensile_moduli():
    props = build_properties(md_summary(False), SYSTEMS, SETTINGS, source="md/summary.json")
    validate_properties(props)
    x = props["phases"]["graphene"]["directions"]["x"]
    assert x["youngs_modulus_N_per_m"] == {"mean": 300.0, "sem": 30.0, "n": 2}
    assert x["youngs_modulus_GPa"]["mean"] == pytest.approx(300.0 / 0.335)
    assert x["poisson_ratio"] == {"mean": 0.5, "sem": 0.1, "n": 2}
    assert set(x["sources"].values()) == {"tensile"} and "poisson_ratio" in x["sources"]
    assert x["tensile_youngs_modulus_N_per_m"] == x["youngs_modulus_N_per_m"]


def test_fe_material_reads_the_elastic_moduli():
    """fem.materials reads the same numbers: with elastic constants in properties.json the FE stiffness
    is theirs; without, the directions' Young's modulus, now the elastic one."""
    from fem.materials import phase_material

    props = build_properties(md_summary(True), SYSTEMS, SETTINGS, source="md/summary.json")
    del props["phases"]["graphene"]["elastic_N_per_m"]
    mat = phase_material(props, "graphene")
    assert mat.E1 == pytest.approx(383.0) and mat.nu12 == pytest.approx(0.30)
