"""Work the fem stage does not repeat: a sample solved once per stage, the damage Jacobian once per displacement.

Each saving is checked against the computation it replaces: the reused result equals an independent
solve, and the run with the lagged Jacobian equals one that assembles it at every Newton step.
"""
import numpy as np
import pytest
from mpi4py import MPI

from fem import fem_stage, geometry, materials as M, mesh_io, study
from fem.mechanics import TensileOptions, TensileTest
from fem.solvers import assemble_jacobian, configure, create_ksp, linear_solver_options, solve_linear

PROPS = "tests/data/fem/properties_graphene_borophene.json"


@pytest.fixture(scope="module")
def props():
    return M.read_properties(PROPS)


def _rectangle(L, H, h):
    """A one-phase rectangle ``L x H`` nm, elements of ``h`` nm: ``(mesh, cell_tags)``."""
    msh, ct, _, _ = mesh_io.mesh_from_gmsh(geometry.stripes, MPI.COMM_WORLD, phases=("a", "b"), length_nm=L,
                                           height_nm=H, period_nm=L, fraction=0.0, mesh_size_nm=h)
    return msh, ct


def small_settings(geometry: str, fraction: float) -> dict:
    s = fem_stage.defaults()
    s.update(phases=["graphene", "borophene"], geometry=geometry, length_nm=6.0, height_nm=4.0, mesh_size_nm=0.5,
             interface_width_nm=1.0, ell_nm=1.0)
    s["islands"].update(radius_nm=1.0)
    s["loading"].update(max_strain=0.2, n_steps=10)
    s[geometry]["fraction"] = fraction
    return s


def _test_of(s: dict, props: dict) -> TensileTest:
    msh, ct, _, layout = study.build_sample(s, MPI.COMM_WORLD)
    mats, _ = study.sample_materials(layout, props, s)
    return TensileTest(msh, ct, mats, (layout.length_nm, layout.height_nm), study.options_from_settings(s))


def test_one_phase_stripes_and_islands_are_the_same_problem_and_others_are_not(props):
    """All-graphene stripes and all-graphene 'islands' mesh the same rectangle (cell tag 1 there, 2 here):
    one fingerprint. A different phase, another fraction or another option changes it."""
    key = _test_of(small_settings("stripes", 0.0), props).fingerprint()
    assert _test_of(small_settings("islands", 0.0), props).fingerprint() == key
    assert _test_of(small_settings("stripes", 1.0), props).fingerprint() != key      # all borophene
    assert _test_of(small_settings("islands", 0.15), props).fingerprint() != key
    other = small_settings("stripes", 0.0)
    other["loading"]["stop_fraction"] = 0.5
    assert _test_of(other, props).fingerprint() != key


def test_a_sample_solved_before_takes_that_result_and_equals_its_own_solve(props, tmp_path):
    solved = study.SolvedSamples()
    first = study.run_tensile(small_settings("stripes", 0.0), props, out_dir=tmp_path, label="first",
                              write_fields=False, solved=solved)
    again = study.run_tensile(small_settings("islands", 0.0), props, out_dir=tmp_path, label="again",
                              write_fields=False, solved=solved)
    alone = study.run_tensile(small_settings("islands", 0.0), props, write_fields=False)
    assert first["reused_from"] is None and again["reused_from"] == "first" and alone["reused_from"] is None
    assert [(w["label"], w["reused_from"]) for w in solved.work] == [("first", None), ("again", "first")]
    assert solved.work[0]["displacement_solves"] > 10 and solved.work[1]["displacement_solves"] == 0
    for key in ("modulus_N_per_m", "strength_N_per_m", "failure_strain", "failed", "curve"):
        assert again[key] == alone[key], key           # the same numbers, not only close ones
    # the reused point has its own geometry, labels and plots
    assert again["geometry"]["kind"] == "islands" and (tmp_path / "again_damage.png").stat().st_size > 0
    assert again["fractions"] == alone["fractions"] == {"graphene": 1.0, "borophene": 0.0}


@pytest.mark.parametrize("model", ["AT1", "AT2"])
def test_the_damage_jacobian_depends_on_the_displacement_only(props, model):
    """g(a) and w(a) are quadratic, so the energy's Hessian in a is the same at any damage: what lets one
    assembly serve all Newton steps at one displacement."""
    b = M.phase_material(props, "borophene")
    t = TensileTest(*_rectangle(4.0, 3.0, 0.5), {1: (b, 1.0), 2: (b, 1.0)}, (4.0, 3.0),
                    TensileOptions(model=model, ell_nm=1.0))
    t.set_strain(0.05)
    t.solve_displacement()
    mats = []
    for damage in (np.zeros_like(t.alpha.x.array), np.random.default_rng(0).uniform(0, 1, t.alpha.x.array.size)):
        t.alpha.x.array[:] = damage
        assemble_jacobian(t.Ja, t.J_a)
        mats.append(t.Ja.convert("dense").getDenseArray().copy())
    assert np.abs(mats[0]).max() > 0
    np.testing.assert_allclose(mats[1], mats[0], rtol=0, atol=1e-13 * np.abs(mats[0]).max())


class EveryStepJacobian(TensileTest):
    """The damage Jacobian assembled at every Newton step (the reference for the lagged one)."""

    def _damage_jacobian(self, snes, x, J, P):
        assemble_jacobian(J, self.J_a)
        self.work["damage_jacobians"] += 1


def test_one_jacobian_per_displacement_gives_the_same_run_with_fewer_assemblies(props):
    """An island sample through its crack (damage solves of several Newton steps): the run with one
    Jacobian per displacement is the run that assembles it at every Newton step, number for number."""
    s = small_settings("islands", 0.15)
    runs = {}
    for cls in (TensileTest, EveryStepJacobian):
        msh, ct, _, layout = study.build_sample(s, MPI.COMM_WORLD)
        mats, _ = study.sample_materials(layout, props, s)
        runs[cls] = cls(msh, ct, mats, (layout.length_nm, layout.height_nm), study.options_from_settings(s)).run()
    lagged, every = runs[TensileTest], runs[EveryStepJacobian]
    assert lagged.failed and lagged.rejected_steps > 0        # through the peak and the crack
    for key in ("strain", "stress", "max_damage", "iterations", "fracture_energy"):
        assert getattr(lagged, key) == getattr(every, key), key
    w, w_every = lagged.work, every.work
    assert w_every["damage_jacobians"] == w_every["damage_newton_iterations"] == w["damage_newton_iterations"]
    assert w["damage_jacobians"] <= w["damage_solves"] < w["damage_newton_iterations"]


class LUDamage(TensileTest):
    """The damage Newton steps solved by MUMPS LU (the reference for LDL^T)."""

    def _build_solvers(self):
        super()._build_solvers()
        configure(self.snes, f"test_lu_damage_{id(self)}_", {"pc_type": "lu"})


def test_the_ldlt_solves_are_the_lu_solves_on_a_damaged_two_phase_sample(props):
    """MUMPS LDL^T reads one triangle of the matrix: it solves the elastic problem and the damage Newton
    steps only because those matrices are symmetric (Dirichlet rows and columns zeroed together; a Hessian
    and its principal submatrices). Against LU on the same systems, with a rough damage field and a
    stiff/soft contrast: the same displacement and damage to round-off."""
    s = small_settings("islands", 0.15)
    damage = []
    for cls in (TensileTest, LUDamage):
        msh, ct, _, layout = study.build_sample(s, MPI.COMM_WORLD)
        mats, _ = study.sample_materials(layout, props, s)
        t = cls(msh, ct, mats, (layout.length_nm, layout.height_nm), study.options_from_settings(s))
        t.alpha_prev.x.array[:] = np.random.default_rng(1).uniform(0.0, 0.9, t.alpha.x.array.size)
        t.alpha.x.array[:] = t.alpha_prev.x.array
        t.set_strain(0.06)
        t.solve_displacement()
        assert t.solve_damage() > 1      # bounds active and inactive: several Newton steps
        damage.append(t.alpha.x.array.copy())
        if cls is TensileTest:
            assert t.ksp.getPC().getType() == t.snes.getKSP().getPC().getType() == "cholesky"
            lu = create_ksp(MPI.COMM_WORLD, t.A, prefix="test_lu_", options=linear_solver_options(True, 1e-12))
            reference = t.u.copy()
            solve_linear(lu, t.b, reference, what="reference", setting="none")
            scale = np.abs(reference.x.array).max()
            assert scale > 0.01
            np.testing.assert_allclose(t.u.x.array, reference.x.array, rtol=0, atol=1e-10 * scale)
    assert np.abs(damage[0] - t.alpha_prev.x.array).max() > 0.01
    np.testing.assert_allclose(damage[0], damage[1], rtol=0, atol=1e-10)
