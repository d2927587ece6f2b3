"""Tensile runs and sweeps from the ``fem:`` settings: what the stage and the CLI both call.

Data flow::

    settings (FEM_SETTINGS, validated) + properties.json data
        -> build_sample(settings, comm)        mesh, tags, Layout      (fem.geometry + fem.mesh_io)
        -> sample_materials(layout, props, s)  {tag: (PhaseMaterial, Gc)}  (fem.materials)
        -> run_tensile(...)                    TensileTest.run, XDMF fields, PNGs -> result dict
        -> run_sweep(...)                      one run_tensile per value -> table (CSV), PNG, rows

All ranks call these functions together (the FE solves are distributed by
PETSc); only rank 0 writes PNG, CSV and JSON files. A finished sweep point is
saved as ``points/<study>_<i>.json`` and reused when a rerun finds it with the
same settings, so an interrupted sweep resumes. Units: nm, N/m, nN.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

from mpi4py import MPI

from common.atomic import write_json, write_text

from . import geometry, laminate, materials as mat, phase_field
from .errors import FemInputError
from .mesh_io import FieldWriter, mesh_from_gmsh, mesh_from_xdmf
from .mechanics import TensileOptions, TensileTest

GEOMETRIES = ("stripes", "islands", "mesh_file")


def options_from_settings(s: dict) -> TensileOptions:
    """The solver options of the ``fem:`` settings ``s``."""
    load, solver = s["loading"], s["solver"]
    return TensileOptions(direction=s["load_direction"], model=s["model"], ell_nm=s["ell_nm"],
                          max_strain=load["max_strain"], n_steps=load["n_steps"],
                          min_step_fraction=load["min_step_fraction"],
                          max_damage_increment=load["max_damage_increment"],
                          stop_fraction=load["stop_fraction"], tol=solver["tol"],
                          max_iterations=solver["max_iterations"], linear=solver["linear"],
                          direct_max_dofs=solver["direct_max_dofs"], rtol=solver["rtol"],
                          damage=s["damage"])


def build_sample(s: dict, comm=MPI.COMM_WORLD):
    """Mesh the sample described by the settings ``s``; returns ``(mesh, cell_tags, facet_tags, Layout)``.

    ``s['phases'] = [A, B]``; the ``fraction`` of a geometry is the area
    fraction of B. Islands are B in A up to a fraction of 1/2 and A in B above.
    """
    kind = s["geometry"]
    phases = s["phases"]
    if not (isinstance(phases, list) and len(phases) == 2 and all(isinstance(p, str) for p in phases)):
        raise FemInputError(f"fem.phases must be a list of two phase names [A, B], got {phases!r}")
    h = s["mesh_size_nm"]
    common = dict(length_nm=s["length_nm"], height_nm=s["height_nm"], mesh_size_nm=h,
                  interface_width_nm=s["interface_width_nm"],
                  interface_mesh_size_nm=s["interface_mesh_size_nm"] or h)
    if kind == "stripes":
        st = s["stripes"]
        return mesh_from_gmsh(geometry.stripes, comm, phases=tuple(phases), period_nm=st["period_nm"],
                              fraction=st["fraction"], orientation=st["orientation"], offset_nm=st["offset_nm"],
                              **common)
    if kind == "islands":
        isl = s["islands"]
        f = isl["fraction"]
        if not 0.0 <= f <= 1.0:
            raise FemInputError(f"fem.islands.fraction must be in [0, 1], got {f}")
        inner, outer, f_islands = (phases[1], phases[0], f) if f <= 0.5 else (phases[0], phases[1], 1.0 - f)
        return mesh_from_gmsh(geometry.islands, comm, island_phase=inner, matrix_phase=outer,
                              radius_nm=isl["radius_nm"], fraction=f_islands, seed=isl["seed"],
                              shape=isl["shape"], n_sides=isl["n_sides"], **common)
    if kind == "mesh_file":
        path = Path(s["mesh_file"])
        if path.suffix == ".xdmf":
            return mesh_from_xdmf(path, phases, comm)
        return mesh_from_gmsh(geometry.user_mesh, comm, path=str(path), phases=phases)
    raise FemInputError(f"fem.geometry: {kind!r} is not one of {', '.join(GEOMETRIES)}")


def sample_materials(layout: geometry.Layout, props: dict, s: dict) -> tuple[dict, dict]:
    """``({cell tag: (PhaseMaterial, Gc_nN)}, {name: table row})`` for the sample's phases and band.

    The band's row has ``strength_source``: the ``properties.json`` interface
    entry it came from, or the named fallback (``fem.interface_fallback``);
    ``compliance_source`` and ``normal_compliance_nm_per_N_per_m``: the interface's
    normal compliance the band carries (:func:`fem.materials.interface_material`).
    """
    direction, model, ell = s["load_direction"], s["model"], s["ell_nm"]
    allow = s.get("allow_unfailed_strength", False)
    phase_mats = {name: mat.phase_material(props, name, elasticity=s["elasticity"], allow_unfailed_strength=allow)
                  for name in layout.phases}
    by_tag = {tag: phase_mats[name] for tag, name in layout.tagged_phases().items()}
    sources = {}
    if layout.band is not None:
        a, b = layout.band
        band, sources[geometry.BAND_TAG] = mat.interface_material(
            props, phase_mats[a], phase_mats[b], fallback=s["interface_fallback"],
            normal=layout.info.get("interface_normal"), width_nm=s["interface_width_nm"], allow_unfailed_strength=allow)
        by_tag[geometry.BAND_TAG] = band
    out, table = {}, {}
    for tag, m in by_tag.items():
        gc = phase_field.fracture_energy(m, direction, model, ell)
        out[tag] = (m, gc)
        table[m.name] = {"cell_tag": tag, "E1_N_per_m": m.E1, "E2_N_per_m": m.E2, "nu12": m.nu12,
                         "G12_N_per_m": m.G12, "strength_x_N_per_m": m.strength_x,
                         "strength_y_N_per_m": m.strength_y, "Gc_nN": gc,
                         "calibrated_strength_N_per_m": phase_field.critical_stress(model, m.modulus(direction), gc, ell),
                         "strength_source": f"{props.get('_source')}: phases.{m.name}"}
        if tag in sources:
            table[m.name].update(strength_source=sources[tag]["strength"],
                                 compliance_source=sources[tag]["compliance"],
                                 normal_compliance_nm_per_N_per_m=sources[tag]["normal_compliance_nm_per_N_per_m"])
    return out, table


BAND_TO_ELL = 4.0


def model_notes(layout: geometry.Layout, s: dict, table: dict) -> list[str]:
    """Caveats of a run that a reader of the results must see (named assumptions, resolution)."""
    notes = []
    if layout.band is not None:
        w, ell = s["interface_width_nm"], s["ell_nm"]
        if w < BAND_TO_ELL * ell:
            notes.append(f"interface band {w:g} nm < {BAND_TO_ELL:g} ell = {BAND_TO_ELL * ell:g} nm: the band fails "
                         f"above its calibrated strength (the damage profile spills into the phases); "
                         f"see docs/fem.md, 'Interface band'")
        for name, row in table.items():
            if row["cell_tag"] == geometry.BAND_TAG and row["strength_source"].startswith("fallback"):
                notes.append(f"interface strength: {row['strength_source']}")
            if row["cell_tag"] == geometry.BAND_TAG and row["compliance_source"].startswith("not applied"):
                notes.append(f"interface compliance: {row['compliance_source']}")
    if s["mesh_size_nm"] > 0.5 * s["ell_nm"] + 1e-12:
        notes.append(f"mesh_size_nm {s['mesh_size_nm']:g} > ell_nm / 2: the crack is under-resolved")
    return notes


class SolvedSamples:
    """The tensile runs solved so far (in one stage), by :meth:`fem.mechanics.TensileTest.fingerprint`.

    A sample whose discrete problem is one already solved (the one-phase end
    points of a stripe and an island sweep mesh the same rectangle; a sweep
    point may be the main run's sample) takes that run's curve and damage
    field instead of being solved again: the same matrices, solved in the same
    order, give the same numbers. Each rank keeps its own copy (the damage
    field only on rank 0, as gathered). ``work``: what every run made with it
    cost, solved or reused, in order (:func:`sample_work`).
    """

    def __init__(self):
        self._runs: dict[str, tuple] = {}
        self.work: list[dict] = []

    def get(self, key: str):
        """``(label, TensileResult, gathered damage)`` of the run with fingerprint ``key``, or None."""
        return self._runs.get(key)

    def add(self, key: str, label: str, res, gathered) -> None:
        self._runs.setdefault(key, (label, res, gathered))


def run_tensile(s: dict, props: dict, *, comm=MPI.COMM_WORLD, out_dir: Path | None = None,
                label: str = "tensile", write_fields: bool = True, log=None,
                solved: SolvedSamples | None = None) -> dict:
    """One tensile test to failure; writes ``<label>_fields.xdmf``, ``<label>_curve.png``, ``<label>_damage.png``.

    Returns a JSON-able dict: effective modulus, strength (N/m), failure
    strain, the curve, materials with their calibrated ``Gc`` and the geometry;
    ``reused_from``: the label of the run whose result it took from ``solved``
    (None when solved here). A run that writes fields is always solved.
    """
    start = time.perf_counter()
    msh, cell_tags, _, layout = build_sample(s, comm)
    materials, table = sample_materials(layout, props, s)
    notes = model_notes(layout, s, table)
    if log:
        for note in notes:
            log(f"note: {note}")
    opts = options_from_settings(s)
    test = TensileTest(msh, cell_tags, materials, (layout.length_nm, layout.height_nm), opts)
    files = {}
    fields = Path(out_dir) / f"{label}_fields.xdmf" if out_dir is not None and write_fields else None
    key = test.fingerprint() if solved is not None else None
    known = solved.get(key) if solved is not None else None
    if known is not None and fields is None:
        source, res, gathered = known
        work = dict.fromkeys(res.work, 0)
    else:
        if fields is not None:
            files["fields_xdmf"] = fields.name
        res = _solve(test, msh, fields, log)
        gathered = test.gather_damage()
        source, work = None, res.work
        if solved is not None:
            solved.add(key, label, res, gathered)
    moduli = [materials[layout.tag(n)][0].modulus(opts.direction) for n in layout.distinct_phases()]
    fractions = [layout.fractions.get(n, 0.0) for n in layout.distinct_phases()]
    voigt, reuss = laminate.voigt_reuss(moduli, fractions) if layout.fractions else (None, None)
    result = {
        "label": label, "geometry": {**layout.info, "length_nm": layout.length_nm, "height_nm": layout.height_nm,
                                     "phases": layout.phases, "band": layout.band},
        "fractions": layout.fractions, "materials": table,
        "options": {k: v for k, v in opts.__dict__.items()}, "linear_solver": test.linear,
        "n_dofs_displacement": res.n_dofs, "n_ranks": comm.size,
        "modulus_N_per_m": res.modulus, "strength_N_per_m": res.strength,
        "failure_strain": res.failure_strain, "failed": res.failed, "stopped": res.stopped, "rejected_steps": res.rejected_steps,
        "voigt_N_per_m": voigt, "reuss_N_per_m": reuss, "notes": notes,
        "curve": {k: res.as_dict()[k] for k in ("strain", "stress", "elastic_energy", "fracture_energy",
                                                 "max_damage", "iterations")},
        "reused_from": source, "wall_s": time.perf_counter() - start,
    }
    if solved is not None:
        solved.work.append(sample_work(result, work))
    if out_dir is not None and comm.rank == 0:
        from . import plots

        title = f"{label}: {layout.info.get('kind')} {opts.model}, load {opts.direction}"
        files["curve_png"] = f"{label}_curve.png"
        plots.curve_png(Path(out_dir) / files["curve_png"], {label: (res.strain, res.stress)}, title=title)
        files["damage_png"] = f"{label}_damage.png"
        plots.damage_png(Path(out_dir) / files["damage_png"], *gathered,
                         title=f"{title}: damage at strain {res.strain[-1]:.4f}")
    result["files"] = files
    return result


def sample_work(r: dict, work: dict) -> dict:
    """What the run ``r`` (a :func:`run_tensile` result) cost: its label, displacement dofs, accepted
    load steps, ``reused_from``, wall seconds and the solver counts ``work`` (:class:`fem.tensile.TensileResult`)."""
    return {"label": r["label"], "n_dofs_displacement": r["n_dofs_displacement"],
            "load_steps": len(r["curve"]["strain"]), "reused_from": r["reused_from"], "wall_s": r["wall_s"], **work}


def _solve(test: TensileTest, msh, fields: Path | None, log):
    """``test.run`` writing the fields of every accepted step to the XDMF file ``fields`` (None: no file)."""
    if fields is None:
        return test.run(log=log)
    writer = FieldWriter(fields, msh)
    writer.write(0.0, test.phase)
    try:
        res = test.run(on_step=lambda t, strain: writer.write(strain, t.u, t.alpha, t.phase), log=log)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return res


STUDY_KEYS = {"name": str, "geometry": str, "variable": str, "values": list}


def _check_study(study, i: int, s: dict) -> str:
    """Check one ``fem.studies[i]`` entry; return the dotted settings key the variable sets."""
    where = f"fem.studies[{i}]"
    if not isinstance(study, dict):
        raise FemInputError(f"{where} must be a mapping with keys {', '.join(STUDY_KEYS)}, got {study!r}")
    for key, kind in STUDY_KEYS.items():
        if not isinstance(study.get(key), kind):
            raise FemInputError(f"{where}.{key} must be a {kind.__name__} (keys: {', '.join(STUDY_KEYS)}), "
                                f"got {study.get(key)!r}")
    unknown = set(study) - set(STUDY_KEYS)
    if unknown:
        raise FemInputError(f"{where}: unknown keys {sorted(unknown)}; allowed: {', '.join(STUDY_KEYS)}")
    if study["geometry"] not in ("stripes", "islands"):
        raise FemInputError(f"{where}.geometry must be 'stripes' or 'islands', got {study['geometry']!r}")
    var = study["variable"]
    if var in s[study["geometry"]]:
        key = f"{study['geometry']}.{var}"
    elif var in s and isinstance(s[var], float):
        key = var
    else:
        options = sorted(list(s[study["geometry"]]) + [k for k, v in s.items() if isinstance(v, float)])
        raise FemInputError(f"{where}.variable: {var!r} is not a numeric setting; choose one of {', '.join(options)}")
    if not study["values"] or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      for v in study["values"]):
        raise FemInputError(f"{where}.values must be a non-empty list of numbers, got {study['values']!r}")
    return key


def study_settings(s: dict, study: dict, key: str, value: float) -> dict:
    """A copy of ``s`` with the study's geometry and ``key`` (dotted) set to ``value``."""
    out = copy.deepcopy(s)
    out["geometry"] = study["geometry"]
    node = out
    *parents, last = key.split(".")
    for p in parents:
        node = node[p]
    node[last] = float(value)
    return out


def run_sweep(s: dict, study: dict, i: int, props: dict, *, comm=MPI.COMM_WORLD, out_dir: Path,
              log=None, solved: SolvedSamples | None = None) -> dict:
    """Run ``fem.studies[i]``; writes ``<name>.json`` (the table), ``<name>.csv``, ``<name>.png``, per-point PNGs.

    Returns the table: ``{name, geometry, variable, units, rows, files}``, one
    row per value with the area fraction of phase B, effective modulus and
    strength (N/m), failure strain, the Voigt/Reuss bounds of the moduli. A
    point whose discrete problem is in ``solved`` takes that result
    (:func:`run_tensile`).
    """
    key = _check_study(study, i, s)
    name = study["name"]
    points_dir = Path(out_dir) / "points"
    if comm.rank == 0:
        points_dir.mkdir(parents=True, exist_ok=True)
    rows, B = [], s["phases"][1]
    for j, value in enumerate(study["values"]):
        sj = study_settings(s, study, key, value)
        digest = hashlib.sha256(json.dumps([sj, props.get("phases"), props.get("interfaces")],
                                           sort_keys=True).encode()).hexdigest()[:16]
        cache = points_dir / f"{name}_{j}.json"
        cached, corrupt = None, None
        if comm.rank == 0 and cache.is_file():
            try:
                data = json.loads(cache.read_text())
                cached = data if data.get("digest") == digest else None
            except (ValueError, UnicodeDecodeError, AttributeError) as exc:
                corrupt = (f"{cache}: a finished sweep point is truncated or corrupt ({exc}); rerun the fem "
                           "stage with --force (`multiscale run CASE --stages fem --force`), which discards "
                           "runs/fem.partial")
        cached, corrupt = comm.bcast((cached, corrupt), root=0)
        if corrupt:
            raise FemInputError(corrupt)
        if cached is None:
            if log:
                log(f"study {name}: {study['variable']} = {value} ({j + 1}/{len(study['values'])})")
            r = run_tensile(sj, props, comm=comm, out_dir=out_dir, label=f"{name}_{j}", write_fields=False,
                            solved=solved)
            if log and r["reused_from"]:
                log(f"study {name}: the same discrete problem as {r['reused_from']}, whose result it takes")
            cached = {"digest": digest, "value": float(value), "result": r}
            if comm.rank == 0:
                write_json(cache, cached)
        r = cached["result"]
        rows.append({"value": float(value), f"fraction_{B}": r["fractions"].get(B, 0.0),
                     "modulus_N_per_m": r["modulus_N_per_m"], "strength_N_per_m": r["strength_N_per_m"],
                     "failure_strain": r["failure_strain"], "failed": r["failed"],
                     "voigt_N_per_m": r["voigt_N_per_m"], "reuss_N_per_m": r["reuss_N_per_m"],
                     "damage_png": r["files"].get("damage_png")})
    files = {"table_json": f"{name}.json", "table_csv": f"{name}.csv", "plot_png": f"{name}.png"}
    out = {"name": name, "geometry": study["geometry"], "variable": study["variable"],
           "units": {"modulus_N_per_m": "N/m", "strength_N_per_m": "N/m", "voigt_N_per_m": "N/m",
                     "reuss_N_per_m": "N/m", "failure_strain": "1", f"fraction_{B}": "area fraction"},
           "rows": rows, "files": files}
    if comm.rank == 0:
        write_json(Path(out_dir) / files["table_json"], out)
        cols = [c for c in rows[0] if c != "damage_png"]
        lines = [",".join(cols)] + [",".join(f"{r[c]}" for c in cols) for r in rows]
        write_text(Path(out_dir) / files["table_csv"], "\n".join(lines) + "\n")
        from . import plots

        label = f"area fraction of {B}" if study["variable"] == "fraction" else study["variable"]
        plots.sweep_png(Path(out_dir) / files["plot_png"], label, rows,
                        title=f"{name}: {study['geometry']}, {s['model']}, load {s['load_direction']}")
    return out
