"""Heat-conduction runs and sweeps from the ``fem.thermal`` settings: what the stage and the CLI both call.

Data flow::

    fem settings (FEM_SETTINGS, with the ``thermal`` block) + properties.json data
        -> conduction_settings(s)              the fem sample, meshed without the mechanics' interface band
        -> run_conduction(...)                 one sample: kappa_eff, bounds, XDMF field, temperature PNG
        -> run_fraction_sweeps(...)            kappa_eff vs area fraction: stripes parallel, in series, islands
        -> run_size_sweep(...)                 stripes in series vs period: superlattice kappa_eff, PNG
        -> run_thermal(...)                    all three -> the "thermal" section of fem_results.json

The interface is the phase boundary itself, with the conductance law
``q.n = G [T]`` (:mod:`fem.thermal`), so the thermal samples have no
interface band (``interface_width_nm`` is set to 0); with islands this
changes their seeded placement slightly from the mechanics run (the band
keeps them further apart). All ranks call these functions together; rank 0
writes files. Units: nm, K, W/(m K), W/(m^2 K).
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from . import materials as mat, thermal_inputs, thermal_limits as limits
from .errors import FemInputError
from .mesh_io import FieldWriter
from .study import build_sample
from .thermal import DIRECTIONS, LINEAR, Conduction, ConductionOptions

INTERFACES = ("jump", "perfect")
FRACTION_SAMPLES = ("stripes_parallel", "stripes_series", "islands")


def check_thermal_settings(t: dict) -> None:
    """Value checks of the ``fem.thermal`` block; each error names the key and what is allowed."""
    choices = {"load_direction": DIRECTIONS, "interface": INTERFACES, "interface_fallback": thermal_inputs.THERMAL_FALLBACKS,
               "linear": LINEAR, "on_bad_input": ("error", "skip")}
    for key, allowed in choices.items():
        if t[key] not in allowed:
            raise FemInputError(f"fem.thermal.{key}: {t[key]!r} is not one of {', '.join(allowed)}")
    positive = ("delta_T_K", "period_min_nm", "period_max_nm")
    for key in positive:
        if not t[key] > 0:
            raise FemInputError(f"fem.thermal.{key} must be > 0, got {t[key]}")
    if t["mesh_size_nm"] < 0:
        raise FemInputError(f"fem.thermal.mesh_size_nm must be >= 0 (0: fem.mesh_size_nm), got {t['mesh_size_nm']}")
    if not all(_number(f) and 0 <= f <= 1 for f in t["fractions"]):
        raise FemInputError(f"fem.thermal.fractions must be numbers in [0, 1], got {t['fractions']!r}")
    unknown = [n for n in t["fraction_samples"] if n not in FRACTION_SAMPLES]
    if unknown:
        raise FemInputError(f"fem.thermal.fraction_samples: {unknown} not among {', '.join(FRACTION_SAMPLES)}")
    if not all(_number(p) and p > 0 for p in t["periods_nm"]):
        raise FemInputError(f"fem.thermal.periods_nm must be positive numbers (nm), got {t['periods_nm']!r}")
    if t["period_count"] < 0 or t["period_min_nm"] > t["period_max_nm"]:
        raise FemInputError(f"fem.thermal: need period_count >= 0 and period_min_nm <= period_max_nm, got "
                            f"{t['period_count']}, {t['period_min_nm']}, {t['period_max_nm']}")
    if not 0 < t["size_fraction"] < 1:
        raise FemInputError(f"fem.thermal.size_fraction must be in (0, 1), got {t['size_fraction']}")
    if t["elements_per_stripe"] < 1:
        raise FemInputError(f"fem.thermal.elements_per_stripe must be >= 1, got {t['elements_per_stripe']}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def periods_nm(t: dict) -> list[float]:
    """The periods (nm) of the size sweep: ``periods_nm`` if given, else ``period_count`` log-spaced ones."""
    if t["periods_nm"]:
        return [float(p) for p in t["periods_nm"]]
    if t["period_count"] == 0:
        return []
    return np.geomspace(t["period_min_nm"], t["period_max_nm"], t["period_count"]).tolist()


def options(t: dict) -> ConductionOptions:
    """The solver options of the ``fem.thermal`` block ``t``."""
    return ConductionOptions(direction=t["load_direction"], delta_T_K=t["delta_T_K"], linear=t["linear"])


def conduction_settings(s: dict, **changes) -> dict:
    """A copy of the fem settings ``s`` for a thermal sample: no interface band, the thermal mesh size.

    ``changes``: top-level keys to set, and ``stripes``/``islands`` sub-keys
    given as ``{"stripes": {...}}``.
    """
    out = copy.deepcopy(s)
    h = s["thermal"]["mesh_size_nm"] or s["mesh_size_nm"]
    out.update(interface_width_nm=0.0, mesh_size_nm=h, interface_mesh_size_nm=0.0)
    for key, value in changes.items():
        if isinstance(value, dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


class SampleMaterials:
    """The thermal inputs of the two phases of ``s['phases']`` read once from ``properties.json`` data.

    ``kappa[name] = (kappa_x, kappa_y)`` (W/(m K)) per unit reference
    thickness: with phases of different effective thickness t_i (Å,
    ``phases.*.thickness_A``) each conductivity is scaled by ``t_i / t_ref``,
    ``t_ref`` their mean, and the interface (and ``kappa_eff``) refer to
    ``t_ref``; with one common thickness nothing is scaled (it cancels).
    ``G``: W/(m^2 K), ``inf`` for perfect contact; ``sources``: where each
    number came from; ``notes``: named assumptions.
    """

    def __init__(self, s: dict, props: dict, log=None):
        t = s["thermal"]
        self.phases = list(s["phases"])
        self.measured = {p: thermal_inputs.phase_conductivity(props, p) for p in self.phases}
        thick = [mat.sheet_thickness_A(props, p) for p in self.phases]
        self.t_ref = float(np.mean(thick)) if all(thick) else None
        differ = self.t_ref is not None and thick[0] != thick[1]
        scale = [ti / self.t_ref for ti in thick] if differ else [1.0, 1.0]
        self.kappa = {p: (k[0] * c, k[1] * c) for (p, k), c in zip(self.measured.items(), scale)}
        self.notes = []
        if any(c != 1.0 for c in scale):
            self.notes.append(f"phase thicknesses {thick} A differ: conductivities scaled to the mean {self.t_ref:g} A")
        if t["interface"] == "perfect":
            self.G, self.G_source = math.inf, "fem.thermal.interface: perfect"
        else:
            self.G, self.G_source = thermal_inputs.interface_conductance(props, *self.phases, fallback=t["interface_fallback"])
            if self.G_source.startswith("fallback"):
                self.notes.append(f"interface conductance: {self.G_source} (perfect thermal contact assumed)")
                if log:
                    log(f"note: {self.G_source}; perfect thermal contact assumed")

    def by_tag(self, layout) -> dict:
        """``{cell tag: (kappa_x, kappa_y)}`` for a built sample's phases."""
        return {tag: self.kappa[p] for tag, p in layout.tagged_phases().items()}

    def along(self, direction: str) -> list[float]:
        """Conductivities (W/(m K)) of the phases along ``direction``, in ``phases`` order."""
        i = DIRECTIONS.index(direction)
        return [self.kappa[p][i] for p in self.phases]

    def as_dict(self) -> dict:
        return {"kappa_W_per_mK": {p: {"x": k[0], "y": k[1]} for p, k in self.kappa.items()},
                "measured_W_per_mK": {p: {"x": k[0], "y": k[1]} for p, k in self.measured.items()},
                "G_W_per_m2K": None if math.isinf(self.G) else self.G, "G_source": self.G_source,
                "reference_thickness_A": self.t_ref}


def _bounds(layout, m: SampleMaterials, direction: str) -> dict:
    """Closed-form values next to an FE number: parallel and series (Wiener) bounds; for stripes, the exact one."""
    kappas = [m.kappa[p][DIRECTIONS.index(direction)] for p in layout.distinct_phases()]
    f = [layout.fractions.get(p, 0.0) for p in layout.distinct_phases()]
    out = {"parallel": limits.parallel(kappas, f), "series": limits.series(kappas, f), "exact": None}
    if layout.info.get("kind") == "stripes":
        n_if = layout.info["n_interfaces"] if not math.isinf(m.G) else 0
        length = layout.length_nm if direction == "x" else layout.height_nm
        along_flow = layout.info["orientation"] == direction
        out["exact"] = out["parallel"] if along_flow else limits.series(kappas, f, length_nm=length,
                                                                        n_interfaces=n_if, G_W_per_m2K=m.G)
    return out


def solve_sample(s: dict, m: SampleMaterials, *, comm=MPI.COMM_WORLD):
    """Mesh and solve one thermal sample of the settings ``s``; returns ``(Conduction, ConductionResult, Layout)``."""
    msh, cell_tags, _, layout = build_sample(s, comm)
    problem = Conduction(msh, cell_tags, m.by_tag(layout), m.G, (layout.length_nm, layout.height_nm),
                         options(s["thermal"]))
    return problem, problem.solve(), layout


def run_conduction(s: dict, m: SampleMaterials, *, comm=MPI.COMM_WORLD, out_dir: Path | None = None,
                   label: str = "thermal", write_fields: bool = True) -> dict:
    """The main sample (``fem`` geometry, no band): kappa_eff with its bounds; ``<label>_fields.xdmf``,
    ``<label>_temperature.png``. Returns a JSON-able dict."""
    start = time.perf_counter()
    t = s["thermal"]
    problem, res, layout = solve_sample(conduction_settings(s), m, comm=comm)
    files = {}
    if out_dir is not None and write_fields:
        files["fields_xdmf"] = f"{label}_fields.xdmf"
        with FieldWriter(Path(out_dir) / files["fields_xdmf"], problem.mesh) as writer:
            writer.write(0.0, problem.temperature, problem.phase)
    gathered = problem.gather_temperature()
    if out_dir is not None and comm.rank == 0:
        from . import plots

        files["temperature_png"] = f"{label}_temperature.png"
        plots.temperature_png(Path(out_dir) / files["temperature_png"], *gathered,
                              title=f"{label}: {layout.info.get('kind')}, dT = {t['delta_T_K']:g} K along "
                                    f"{t['load_direction']}, kappa_eff = {res.kappa_eff:.4g} W/(m K)")
    return {"label": label, "geometry": {**layout.info, "length_nm": layout.length_nm,
                                         "height_nm": layout.height_nm, "phases": layout.phases},
            "fractions": layout.fractions, "load_direction": t["load_direction"], "delta_T_K": t["delta_T_K"],
            "kappa_eff_W_per_mK": res.kappa_eff, **{f"{k}_W_per_mK": v for k, v in
                                                    _bounds(layout, m, t["load_direction"]).items()},
            "heat_flow_W_per_m": res.heat_flow_W_per_m, "flux_imbalance": res.imbalance,
            "n_dofs_temperature": res.n_dofs, "n_interface_facets": problem.n_interface_facets,
            "linear_solver": problem.linear, "n_ranks": comm.size, "files": files,
            "wall_s": time.perf_counter() - start}


def _fraction_sample(s: dict, name: str, fraction: float) -> dict:
    direction = s["thermal"]["load_direction"]
    across = "y" if direction == "x" else "x"
    if name == "islands":
        return conduction_settings(s, geometry="islands", islands={"fraction": fraction})
    orientation = direction if name == "stripes_parallel" else across
    return conduction_settings(s, geometry="stripes", stripes={"fraction": fraction, "orientation": orientation})


def run_fraction_sweeps(s: dict, m: SampleMaterials, *, comm=MPI.COMM_WORLD, log=None) -> dict:
    """kappa_eff versus the area fraction of B for each of ``thermal.fraction_samples``.

    Returns ``{sample: [row]}``, a row per fraction: the meshed fraction of B,
    ``kappa_fe`` and the ``parallel``/``series`` bounds (W/(m K)), and for
    stripes the ``exact`` value (with the sample's interface resistances).
    """
    t, B = s["thermal"], s["phases"][1]
    tables = {}
    for name in t["fraction_samples"]:
        rows = []
        for f in t["fractions"]:
            _, res, layout = solve_sample(_fraction_sample(s, name, float(f)), m, comm=comm)
            rows.append({"value": float(f), "fraction": layout.fractions.get(B, 0.0), "kappa_fe": res.kappa_eff,
                         **_bounds(layout, m, t["load_direction"]), "n_dofs": res.n_dofs})
            if log:
                log(f"thermal {name}: fraction {f:g} -> kappa_eff {res.kappa_eff:.5g} W/(m K)")
        tables[name] = rows
    return tables


def _stripes_across(s: dict, period: float, n_periods: int) -> dict:
    """Settings of ``n_periods`` stripes across the heat flow, meshed with ``elements_per_stripe`` per stripe."""
    t = s["thermal"]
    f = t["size_fraction"]
    h = period * min(f, 1 - f) / t["elements_per_stripe"]
    along, across = n_periods * period, 2 * h
    size = {"length_nm": along, "height_nm": across} if t["load_direction"] == "x" else \
        {"length_nm": across, "height_nm": along}
    out = conduction_settings(s, geometry="stripes", mesh_size_nm=h,
                              stripes={"period_nm": period, "fraction": f,
                                       "orientation": "y" if t["load_direction"] == "x" else "x"}, **size)
    return out


def superlattice_kappa(s: dict, m: SampleMaterials, period: float, *, comm=MPI.COMM_WORLD) -> float:
    """kappa_eff (W/(m K)) of the infinite superlattice of ``period`` (nm) across the flow, from FE.

    A sample of N periods has 2N - 1 interfaces (none at its ends), so its
    resistance per unit width is ``R(N) = N R_period - 1/G``; the difference
    of the 1- and 2-period samples is one period's resistance with both its
    interfaces, and ``kappa = P / (R(2) - R(1))`` is free of end effects
    (the same differential method as length extrapolation in NEMD).
    """
    resistance = []
    for n in (1, 2):
        _, res, _ = solve_sample(_stripes_across(s, period, n), m, comm=comm)
        resistance.append(n * period / res.kappa_eff)
    return period / (resistance[1] - resistance[0])


def run_size_sweep(s: dict, m: SampleMaterials, *, comm=MPI.COMM_WORLD, log=None) -> dict:
    """kappa_eff of stripes in series versus the period, with the exact curve, its limits and Kapitza lengths."""
    t = s["thermal"]
    f = t["size_fraction"]
    kappas, fractions = m.along(t["load_direction"]), [1 - f, f]
    rows = []
    for P in periods_nm(t):
        k = superlattice_kappa(s, m, P, comm=comm)
        exact = limits.superlattice(kappas, fractions, P, m.G)
        rows.append({"period_nm": P, "kappa_fe": k, "kappa_exact": exact, "rel_error": k / exact - 1})
        if log:
            log(f"thermal size: period {P:.4g} nm -> kappa_eff {k:.5g} W/(m K) (exact {exact:.5g})")
    finite = not math.isinf(m.G)
    return {"fraction_B": f, "load_direction": t["load_direction"], "rows": rows,
            "bulk_harmonic_W_per_mK": limits.series(kappas, fractions),
            "kapitza_length_nm": {p: limits.kapitza_length_nm(k, m.G) for p, k in zip(m.phases, kappas)}
            if finite else {},
            "crossover_period_nm": limits.crossover_period_nm(kappas, fractions, m.G) if finite else None}


def _size_png(path: Path, size: dict, m: SampleMaterials) -> None:
    from . import plots

    P = [r["period_nm"] for r in size["rows"]]
    fine = np.geomspace(min(P) / 3, max(P) * 3, 200)
    kappas, f = m.along(size["load_direction"]), [1 - size["fraction_B"], size["fraction_B"]]
    curves = {"period_nm": fine, "bulk": size["bulk_harmonic_W_per_mK"],
              "exact": [limits.superlattice(kappas, f, p, m.G) for p in fine],
              "interface": [limits.interface_limited(p, m.G) for p in fine],
              "kapitza_nm": size["kapitza_length_nm"], "crossover_nm": size["crossover_period_nm"]}
    plots.size_effect_png(path, size["rows"], limits=curves,
                          title=f"stripes in series, fraction of {m.phases[1]} {size['fraction_B']:g}, "
                                f"G = {m.G:.3g} W/(m^2 K)")


def run_thermal(s: dict, m: SampleMaterials, *, comm=MPI.COMM_WORLD, out_dir: Path, log=None) -> dict:
    """The whole heat-conduction part: main sample, fraction sweeps, size sweep; PNGs in ``out_dir``.

    ``m``: the thermal inputs, ``SampleMaterials(s, props)``. Returns the
    ``thermal`` section of ``fem_results.json``.
    """
    start = time.perf_counter()
    t = s["thermal"]
    check_thermal_settings(t)
    main = run_conduction(s, m, comm=comm, out_dir=out_dir, write_fields=s["write_fields"])
    if log:
        log(f"thermal main run: kappa_eff {main['kappa_eff_W_per_mK']:.5g} W/(m K) along {t['load_direction']}")
    fractions = run_fraction_sweeps(s, m, comm=comm, log=log) if t["fractions"] else {}
    size = run_size_sweep(s, m, comm=comm, log=log) if periods_nm(t) and not math.isinf(m.G) else None
    files = {"temperature_png": main["files"].get("temperature_png")}
    if comm.rank == 0:
        from . import plots

        if fractions:
            files["fraction_png"] = "thermal_fraction.png"
            plots.conductivity_fraction_png(Path(out_dir) / files["fraction_png"], fractions,
                                            fraction_label=f"area fraction of {s['phases'][1]}",
                                            title=f"heat flow along {t['load_direction']}")
        if size:
            files["size_png"] = "thermal_size.png"
            _size_png(Path(out_dir) / files["size_png"], size, m)
    notes = list(m.notes)
    if s["geometry"] == "islands" and s["interface_width_nm"] > 0:
        notes.append("islands are placed without the mechanics' interface band, so their positions differ "
                     "slightly from the tensile run")
    if periods_nm(t) and size is None:
        notes.append("no size sweep: perfect contact makes kappa_eff independent of the period")
    return {"units": {"kappa": "W/(m K)", "G": "W/(m^2 K)", "length": "nm", "temperature": "K"},
            "materials": m.as_dict(), "main": main, "fraction_sweeps": fractions, "size_sweep": size,
            "notes": notes, "files": files, "wall_s": time.perf_counter() - start}
