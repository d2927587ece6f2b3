"""The blocks of ``summary.json`` (md stage) and ``properties.json`` (constitutive stage), once.

Each ``TypedDict`` is the shape of one block and, through :func:`common.contracts.check.check`, its
validator. Rule for ``NotRequired``: a key the writer always writes is required; a key written only
under some settings (``md.thermal``, ``md.heterostructure``, ``md.stability``) or only for some runs
(a blown-up run, a failed extrapolation) is not. Units: 2D stiffness and strength in N/m (``_GPa``
at the phase's effective thickness), lengths in nm unless ``_A`` (Å), temperatures in K, strains and
ratios dimensionless; the unit is in every key that has one.

properties.json is also written by hand, to run the fem stage or ``multiscale fem`` alone
(tests/data/fem): there the keys that only record where numbers come from (``provenance``, an
interface's ``name``) are optional.

Written with plain annotations (no ``from __future__ import annotations``): ``NotRequired`` must be
seen by ``TypedDict`` when the class is built.
"""
from typing import Any

try:
    from typing import NotRequired, TypedDict
except ImportError:  # Python 3.10
    from typing_extensions import NotRequired, TypedDict


# -- statistics ----------------------------------------------------------------------------------------
class MeanSem(TypedDict):
    """A mean and its standard error, same unit (an extrapolation, which has no seed count)."""
    mean: float
    sem: float


class Stat(TypedDict):
    """A statistic over ``n`` independent runs (seeds), ``md_gpu.analysis.mean_sem``.

    ``sem``: the standard error over the seeds; null when ``n`` is 1 (one run has no spread), except
    where the run measures its own error (a thermal conductivity or conductance: its block-average
    sem). A summary written before this rule has 0 there; readers take ``n`` 1 with ``sem`` 0 as null.
    With ``n`` 0 (every run lost) ``mean`` and ``sem`` are NaN.

    Run counts of the statistic's group (a phase direction of the tensile test, a system's elastic or
    thermal runs, the stripe cell's seeds), where the md stage records them: ``attempted`` (runs
    planned), ``failed`` (finished without this number), ``blown_up`` (left the potential's domain,
    left out); ``n = attempted - failed - blown_up``.

    properties.json only (``multiscale.constitutive.screen``, docs/properties.md): ``withheld``, why the
    value must not be used as a continuum input (not positive by two standard errors, or no run gave
    it); ``single_seed``: true for an input measured by one run (no sem), which is used but flagged."""
    mean: float
    sem: float | None
    n: int
    attempted: NotRequired[int]
    failed: NotRequired[int]
    blown_up: NotRequired[int]
    withheld: NotRequired[str]
    single_seed: NotRequired[bool]


class TensileStats(TypedDict):
    """Uniaxial-stress tensile test of one direction, statistics over seeds (keys a run could not
    measure are absent; which ones the continuum needs is ``constitutive.require``). The fit errors
    (``*_fit_sem*``), the fit window, the yield and the transverse stress are described in
    ``md_gpu.tasks.tensile``; older summaries lack them."""
    youngs_modulus_N_per_m: NotRequired[Stat]
    poisson_ratio: NotRequired[Stat]
    ultimate_strength_N_per_m: NotRequired[Stat]
    failure_strain: NotRequired[Stat]
    youngs_modulus_GPa: NotRequired[Stat]
    ultimate_strength_GPa: NotRequired[Stat]
    youngs_modulus_fit_sem_N_per_m: NotRequired[Stat]
    youngs_modulus_fit_sem_GPa: NotRequired[Stat]
    poisson_ratio_fit_sem: NotRequired[Stat]
    fit_window_strain: NotRequired[Stat]
    fracture_strain: NotRequired[Stat]
    yield_strain: NotRequired[Stat]
    yield_stress_N_per_m: NotRequired[Stat]
    yield_stress_GPa: NotRequired[Stat]
    transverse_stress_mean_N_per_m: NotRequired[Stat]
    transverse_stress_sem_N_per_m: NotRequired[Stat]
    transverse_stress_mean_GPa: NotRequired[Stat]
    transverse_stress_sem_GPa: NotRequired[Stat]


class ElasticConstants(TypedDict):
    """In-plane elastic constants (Voigt, 2D: N/m; a bulk test cell: GPa), statistics over seeds."""
    C11: Stat
    C22: Stat
    C12: Stat
    C66: Stat


class ElasticLowT(ElasticConstants):
    """:class:`ElasticConstants` measured once at ``md.elastic.low_temperature_K``."""
    temperature_K: float


class DirectionModuli(TypedDict):
    """Young's modulus (N/m for a sheet, GPa for a bulk cell) and Poisson's ratio for a pull along one
    axis (direction ``x``: nu_xy, the contraction along y), statistics over seeds of the per-seed values."""
    youngs_modulus: Stat
    poisson_ratio: Stat


class Moduli(TypedDict):
    """``moduli_N_per_m`` / ``moduli_GPa``: engineering constants from each seed's elastic constants
    (``md_gpu.tasks.elastic``); ``method`` names the formula (plane stress, or cubic uniaxial stress)."""
    x: DirectionModuli
    y: DirectionModuli
    method: str


# -- the MD stripe heterostructure (md_gpu.heterostructure), passed on unchanged to properties.json --------
class StripeGeometry(TypedDict):
    """A periodic stripe cell as built: stripes along x, period ``period_nm`` along y, ``fraction_B``
    the area fraction of the second phase of ``between``; ``strain``: the relative strain along x of
    that phase (``strained``) that matches the two phases' periods."""
    period_nm: float
    fraction_B: float
    length_nm: float
    n_atoms: int
    stripes: str
    between: NotRequired[list[str]]  # the checked cell's geometry only
    strain: NotRequired[float]
    strained: NotRequired[str]


class StripeRun(TypedDict):
    """A stripe cell's elastic constants and its modulus across the stripes (uniaxial stress along y)."""
    elastic_N_per_m: ElasticConstants
    youngs_modulus_normal_N_per_m: Stat


class ComplianceCell(StripeRun):
    """The stripe cell ``md.heterostructure.compliance_periods`` times as wide (interface compliance)."""
    geometry: StripeGeometry


class HeterostructureLowT(StripeRun):
    """The stripe cell at ``temperature_K`` and, per phase it joins, that phase's constants with the same MTP."""
    temperature_K: float
    phases_elastic_N_per_m: dict[str, ElasticConstants]
    compliance_cell: NotRequired[ComplianceCell]


class Heterostructure(StripeRun):
    """``systems.<interface>.heterostructure`` (summary) = ``interfaces.<A|B>.heterostructure`` (properties)."""
    geometry: StripeGeometry
    low_T: NotRequired[HeterostructureLowT]


# -- provenance ------------------------------------------------------------------------------------------
class BlownUp(TypedDict):
    """A run that left its potential's domain (``blown_up``: left out of the statistics; ``collapsed``: a
    tensile run kept with its curve up to the blow-up)."""
    run: str
    reason: str


class RunCounts(TypedDict):
    """How many runs of a group were planned and how many of them blew up."""
    attempted: int
    blown_up: int


class StripeRuns(TypedDict):
    """``systems.<interface>.heterostructure_runs`` (md_gpu.tasks.stripes.run_record), passed on to
    ``interfaces.<A|B>.heterostructure_runs``: the stripe runs at temperature (one per seed) and at low
    temperature (stripe, compliance and phase cells), and the ones that blew up. There even when every
    stripe run blew up (then ``heterostructure`` is not): the checks say so instead of "not enabled"."""
    at_temperature: RunCounts
    low_T: NotRequired[RunCounts]
    blown_up: NotRequired[list[BlownUp]]


class Provenance(TypedDict):
    """Where a system's numbers come from (copied unchanged into properties.json)."""
    potential: str               # the MTP file the runs used
    md_runs: list[str]           # the tensile runs' HDF5 files, relative to runs/md
    strain_rate_per_s: float
    temperature_K: float
    n_atoms: NotRequired[int]    # of the tensile cell (absent when no tensile run finished)
    blown_up: NotRequired[list[BlownUp]]
    collapsed: NotRequired[list[BlownUp]]  # tensile runs kept after a blow-up that followed their stress drop


class ThermalProvenance(TypedDict):
    """Files and settings of a system's thermal runs (which settings depends on the method)."""
    runs: list[str]
    temperature_K: float
    thickness_A: NotRequired[float | None]
    seeds: NotRequired[int]
    equilibrate_steps: NotRequired[int]
    n_atoms: NotRequired[int]
    blown_up: NotRequired[list[BlownUp]]


# -- thermal transport (md.thermal) -------------------------------------------------------------------------
class LengthDependence(TypedDict):
    """NEMD conductivity per cell length and its 1/kappa vs 1/L extrapolation (or why there is none)."""
    length_nm: list[float]
    n_atoms: list[int]
    conductivity_W_per_mK: list[Stat]
    extrapolated_W_per_mK: NotRequired[MeanSem]
    extrapolation_error: NotRequired[str]


class Thermal(TypedDict):
    """``systems.<name>.thermal``: a phase's HNEMD conductivity per direction (W/(m K)), or an
    interface's NEMD conductance (W/(m^2 K)), temperature jump and heat flux."""
    conductivity_W_per_mK: NotRequired[dict[str, Stat]]
    method: NotRequired[str]
    length_dependence: NotRequired[dict[str, LengthDependence]]
    conductance_W_per_m2K: NotRequired[Stat]
    temperature_jump_K: NotRequired[Stat]
    heat_flux_W_per_m2: NotRequired[Stat]
    provenance: ThermalProvenance


# -- summary.json (md stage) ----------------------------------------------------------------------------
class TensileDirection(TensileStats):
    """``systems.<phase>.directions.<d>`` / ``systems.<interface>.normal``: the statistics and how many
    runs were planned (``runs_attempted``), failed (fractured, or collapsed: ``runs_collapsed``), yielded (a drop without a crack), neither
    (``runs_unfailed``: the peak stress is where the loading stopped) or blew up (left out); older
    summaries lack ``runs_attempted`` and ``runs_unfailed``."""
    runs_failed: int
    runs_blown_up: int
    runs_collapsed: NotRequired[int]
    runs_yielded: NotRequired[int]
    runs_attempted: NotRequired[int]
    runs_unfailed: NotRequired[int]


class Relaxation(TypedDict):
    """The 0 K relaxation before the structure check (md_gpu.protocols.relaxation)."""
    hole: bool
    converged: bool
    steps: int
    energy_change_meV_per_atom: float
    lowest_energy_change_meV_per_atom: float
    cell_strain: list[float]
    max_displacement_A: float
    min_distance_A: float | None
    fmax_eV_per_A: float
    n_atoms: int


class Stability(TypedDict):
    """``systems.<name>.stability`` (md_gpu.protocols.stability): does the structure keep its
    coordination numbers in NVT at temperature? A run that blew up has only ``retained`` and ``blew_up``."""
    retained: bool
    blew_up: NotRequired[str]
    changed_fraction: NotRequired[float]
    changed_fraction_series: NotRequired[list[float]]
    coordination_start: NotRequired[list[int]]  # atoms per coordination number 0, 1, 2, ...
    coordination_end: NotRequired[list[int]]
    energy_drift_meV_per_atom: NotRequired[float]
    cutoff_A: NotRequired[float]
    steps: NotRequired[int]
    temperature_K: NotRequired[float]
    n_atoms: NotRequired[int]
    max_changed: NotRequired[float]
    relaxation: NotRequired[Relaxation]


class SystemSummary(TypedDict):
    """``systems.<name>``: a phase has ``directions``, an interface cell ``normal``; the elastic
    constants are ``elastic_N_per_m`` (2D sheets) or ``elastic_GPa`` (bulk test cells), and the moduli
    from them ``moduli_N_per_m`` / ``moduli_GPa``."""
    provenance: Provenance
    directions: NotRequired[dict[str, TensileDirection]]
    normal: NotRequired[TensileDirection]
    elastic_N_per_m: NotRequired[ElasticConstants]
    elastic_GPa: NotRequired[ElasticConstants]
    moduli_N_per_m: NotRequired[Moduli]
    moduli_GPa: NotRequired[Moduli]
    elastic_low_T_N_per_m: NotRequired[ElasticLowT]
    elastic_low_T_GPa: NotRequired[ElasticLowT]
    elastic_scheme: NotRequired[dict[str, str]]  # task kind -> finite-difference scheme (md_gpu.tasks.elastic)
    stability: NotRequired[Stability]
    heterostructure: NotRequired[Heterostructure]
    heterostructure_runs: NotRequired[StripeRuns]
    thermal: NotRequired[Thermal]


class Summary(TypedDict):
    """``runs/md/summary.json``."""
    format: str
    temperature_K: float
    strain_rate_per_s: float
    systems: dict[str, SystemSummary]


# -- properties.json (constitutive stage) -----------------------------------------------------------------
class PhaseThermal(TypedDict):
    """``phases.<name>.thermal``: conductivity per direction (W/(m K)); one that is not resolved carries
    ``withheld`` (:class:`Stat`)."""
    conductivity_W_per_mK: dict[str, Stat]
    method: NotRequired[str]
    length_dependence: NotRequired[dict[str, LengthDependence]]
    provenance: NotRequired[ThermalProvenance]


class InterfaceThermal(TypedDict):
    """``interfaces.<A|B>.thermal``: the conductance G (W/(m^2 K); with ``withheld`` when the runs did not
    resolve it, :class:`Stat`) and the Kapitza length kappa/G (nm) per phase with a usable conductivity."""
    conductance_W_per_m2K: NotRequired[Stat]
    temperature_jump_K: NotRequired[Stat]
    heat_flux_W_per_m2: NotRequired[Stat]
    kapitza_length_nm: NotRequired[dict[str, Stat]]
    provenance: NotRequired[ThermalProvenance]


class ComplianceSource(TypedDict):
    """The stripe cell the interface compliance comes from, with its laminate modulus (N/m)."""
    period_nm: float
    fraction_B: float
    n_atoms: int | None
    youngs_modulus_normal_N_per_m: Stat
    laminate_N_per_m: float


class NormalCompliance(TypedDict):
    """The interfaces' normal compliance R (nm per N/m), multiscale.constitutive.interface_normal_compliance."""
    nm_per_N_per_m: Stat
    temperature_K: float
    equivalent_length_nm: dict[str, float]
    method: str
    cell: ComplianceSource


SOURCES = ("elastic", "tensile")


class PhaseDirection(TensileStats):
    """``phases.<name>.directions.<d>``: the properties of a pull along ``d``. ``sources`` says which MD
    protocol each continuum property comes from (one of :data:`SOURCES`): the moduli from the elastic
    constants at temperature when the md stage measured them, else from the tensile test; strength and
    failure strain from the tensile test. The tensile test's own modulus and Poisson's ratio are kept as
    ``tensile_*`` (with the fit errors); ``runs_*`` count the tensile runs (``TensileDirection``).
    ``strength_from_unfailed``: true when a run whose peak makes the strength neither failed nor
    yielded (the peak is the end of the loading, a lower bound): the fem stage refuses such a strength
    unless ``fem.allow_unfailed_strength``."""
    sources: NotRequired[dict[str, str]]
    tensile_youngs_modulus_N_per_m: NotRequired[Stat]
    tensile_youngs_modulus_GPa: NotRequired[Stat]
    tensile_youngs_modulus_fit_sem_N_per_m: NotRequired[Stat]
    tensile_youngs_modulus_fit_sem_GPa: NotRequired[Stat]
    tensile_poisson_ratio: NotRequired[Stat]
    tensile_poisson_ratio_fit_sem: NotRequired[Stat]
    runs_attempted: NotRequired[int]
    runs_failed: NotRequired[int]
    runs_collapsed: NotRequired[int]
    runs_yielded: NotRequired[int]
    runs_unfailed: NotRequired[int]
    runs_blown_up: NotRequired[int]
    strength_from_unfailed: NotRequired[bool]


class Phase(TypedDict):
    """``phases.<name>``: effective thickness (Å), properties per direction, elastic constants."""
    thickness_A: float
    directions: dict[str, PhaseDirection]
    provenance: NotRequired[dict[str, Any]]  # the summary's Provenance, as the md stage wrote it
    elastic_N_per_m: NotRequired[ElasticConstants]
    thermal: NotRequired[PhaseThermal]


class Interface(TensileStats):
    """``interfaces.<A|B>`` (``between`` joined by ``|``): the interface cell pulled normal to its lines."""
    name: NotRequired[str]  # the interface system of the case
    between: list[str]
    direction: str
    sources: NotRequired[dict[str, str]]  # every property: "tensile" (PhaseDirection)
    runs_attempted: NotRequired[int]
    runs_failed: NotRequired[int]
    runs_collapsed: NotRequired[int]
    runs_yielded: NotRequired[int]
    runs_unfailed: NotRequired[int]
    runs_blown_up: NotRequired[int]
    strength_from_unfailed: NotRequired[bool]
    provenance: NotRequired[dict[str, Any]]
    heterostructure: NotRequired[Heterostructure]
    heterostructure_runs: NotRequired[StripeRuns]
    normal_compliance: NotRequired[NormalCompliance]
    thermal: NotRequired[InterfaceThermal]


class Properties(TypedDict):
    """``runs/constitutive/properties.json`` (docs/properties.md)."""
    format: str
    temperature_K: float
    phases: dict[str, Phase]
    interfaces: dict[str, Interface]
