"""Options and results of a displacement-controlled tensile test (:class:`fem.mechanics.TensileTest`).

Plain data, no dolfinx. Units: lengths in nm, 2D stress and moduli in N/m, energies in nN nm (1e-18 J).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import FemInputError
from .phase_field import c_w

LINEAR_SOLVERS = ("auto", "direct", "iterative")


@dataclass
class TensileOptions:
    """Options of a displacement-controlled tensile test (keyword-only defaults shown).

    ``direction``: 'x' or 'y'; ``model``: 'AT1' | 'AT2'; ``ell_nm``: phase-field
    length (nm); ``max_strain``: end of loading; ``n_steps``: initial number of
    equal strain steps to ``max_strain``; ``min_step_fraction``: smallest step
    as a fraction of the initial one; ``max_damage_increment``: a step whose
    damage grows by more than this (anywhere) is cut; ``stop_fraction``: stop
    once the stress has fallen below this fraction of the peak;
    ``tol``/``max_iterations``: staggered-loop convergence; ``linear``: 'auto'
    (direct below ``direct_max_dofs`` global displacement dofs), 'direct',
    'iterative'; ``rtol``: Krylov relative tolerance; ``k_res``: residual
    stiffness of fully broken material; ``damage``: False gives pure elasticity.
    """

    direction: str = "x"
    model: str = "AT1"
    ell_nm: float = 1.0
    max_strain: float = 0.3
    n_steps: int = 30
    min_step_fraction: float = 1.0 / 64.0
    max_damage_increment: float = 0.3
    stop_fraction: float = 0.25
    tol: float = 1e-4
    max_iterations: int = 500
    linear: str = "auto"
    direct_max_dofs: int = 60000
    rtol: float = 1e-11
    k_res: float = 1e-6
    damage: bool = True

    def check(self) -> None:
        if self.direction not in ("x", "y"):
            raise FemInputError(f"fem.load_direction must be 'x' or 'y', got {self.direction!r}")
        if self.linear not in LINEAR_SOLVERS:
            raise FemInputError(f"fem.solver.linear must be one of {', '.join(LINEAR_SOLVERS)}, got {self.linear!r}")
        c_w(self.model)
        for key in ("ell_nm", "max_strain", "tol", "rtol"):
            if not getattr(self, key) > 0:
                raise FemInputError(f"fem option {key} must be > 0, got {getattr(self, key)}")
        if self.n_steps < 1 or self.max_iterations < 1:
            raise FemInputError("fem.loading.n_steps and fem.solver.max_iterations must be >= 1")
        if not 0 < self.min_step_fraction <= 1:
            raise FemInputError(f"fem.loading.min_step_fraction must be in (0, 1], got {self.min_step_fraction}")


@dataclass
class TensileResult:
    """The effective response of one test.

    ``strain [n]`` applied strain, ``stress [n]`` effective 2D stress (N/m),
    ``elastic_energy [n]``/``fracture_energy [n]`` (nN nm = 1e-18 J),
    ``max_damage [n]``, ``iterations [n]`` staggered iterations per step;
    ``modulus`` (N/m) from a linear elastic solve; ``strength`` (N/m) peak
    stress; ``failure_strain`` strain at the peak; ``failed``: the stress
    dropped below ``stop_fraction`` of the peak; ``rejected_steps``: steps cut;
    ``stopped``: why loading ended early past the peak ('' when it did not);
    ``work``: what the run cost: ``displacement_solves``, ``damage_solves``,
    ``damage_newton_iterations``, ``damage_jacobians`` (assemblies), ``solve_s``
    (wall seconds of :meth:`~fem.mechanics.TensileTest.run`).
    """

    strain: list = field(default_factory=list)
    stress: list = field(default_factory=list)
    elastic_energy: list = field(default_factory=list)
    fracture_energy: list = field(default_factory=list)
    max_damage: list = field(default_factory=list)
    iterations: list = field(default_factory=list)
    modulus: float = float("nan")
    strength: float = float("nan")
    failure_strain: float = float("nan")
    failed: bool = False
    rejected_steps: int = 0
    stopped: str = ""
    n_dofs: int = 0
    work: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: (list(map(float, v)) if isinstance(v, list) else v) for k, v in self.__dict__.items()}
