"""Samples of a heterostructure as gmsh models: stripes, islands, or a user mesh.

Data flow::

    stripes(...) | islands(...) | user_mesh(path, ...)
        -> a 2D gmsh model (gmsh.model, on the calling rank) with physical groups
        -> Layout: which cell tag is which phase, which facet tag is the interface

A builder only talks to gmsh; :func:`fem.mesh_io.mesh_from_gmsh` calls it on
rank 0 and turns the model into a distributed dolfinx mesh. Lengths are in nm.

Tags (physical groups of the gmsh model):

* cells: phase ``i`` of ``Layout.phases`` has tag ``i + 1``; the interface
  band (a strip of width ``interface_width_nm`` centred on each interface line,
  see docs/fem.md) has tag :data:`BAND_TAG`;
* facets: the interface lines between two phases have tag :data:`INTERFACE_TAG`.

The sample is the rectangle ``[0, length] x [0, height]``; loads are applied
on its left/right (or bottom/top) edges, found geometrically by the solver.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import FemInputError

BAND_TAG = 100
INTERFACE_TAG = 10
SHAPES = ("circle", "polygon")


@dataclass
class Layout:
    """What the tags of a built mesh mean.

    ``phases``: phase names, phase ``i`` has cell tag ``i + 1``;
    ``band``: ``(a, b)`` the phases the interface band joins, or None when
    there is no band; ``length_nm``/``height_nm``: sample size (nm);
    ``fractions``: area fraction of each phase name (band counted half to
    each side), from the geometry; a name given for both phases (a
    one-material sample) gets the sum; ``info``: geometry facts for the
    results (island count, stripe count, ...).
    """

    phases: list[str]
    band: tuple[str, str] | None
    length_nm: float
    height_nm: float
    fractions: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def tag(self, phase: str) -> int:
        return self.phases.index(phase) + 1

    def tagged_phases(self) -> dict[int, str]:
        """``{cell tag: phase name}``: tag ``i + 1`` is phase ``i`` (a name given twice gets both tags)."""
        return {i + 1: name for i, name in enumerate(self.phases)}

    def distinct_phases(self) -> list[str]:
        """The phase names, each once (``phases`` may name one material twice)."""
        return list(dict.fromkeys(self.phases))


def _fractions(parts) -> dict:
    """``{name: fraction}`` from ``(name, fraction)`` parts; a name met twice gets the sum."""
    out = {}
    for name, fraction in parts:
        out[name] = out.get(name, 0.0) + fraction
    return out


def _gmsh():
    import gmsh

    if not gmsh.isInitialized():
        gmsh.initialize()
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.model.add("sample")
    return gmsh


def _check_size(length_nm: float, height_nm: float, mesh_size_nm: float) -> None:
    if not (length_nm > 0 and height_nm > 0):
        raise FemInputError(f"fem.length_nm/height_nm must be > 0, got {length_nm} x {height_nm}")
    if not 0 < mesh_size_nm <= min(length_nm, height_nm):
        raise FemInputError(f"fem.mesh_size_nm must be in (0, {min(length_nm, height_nm)}] nm, got {mesh_size_nm}")


def _size_field(gmsh, curves: list[int], mesh_size_nm: float, fine_nm: float, reach_nm: float) -> None:
    """Element size ``fine_nm`` within ``reach_nm`` of ``curves`` (the interfaces), ``mesh_size_nm`` far away."""
    gmsh.option.setNumber("Mesh.MeshSizeMax", mesh_size_nm)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    if not curves or fine_nm >= mesh_size_nm:
        gmsh.option.setNumber("Mesh.MeshSizeMin", mesh_size_nm)
        return
    # options are global to the gmsh session: clear the floor a previous sample (no interfaces) may have set
    gmsh.option.setNumber("Mesh.MeshSizeMin", 0.0)
    dist = gmsh.model.mesh.field.add("Distance")
    gmsh.model.mesh.field.setNumbers(dist, "CurvesList", curves)
    gmsh.model.mesh.field.setNumber(dist, "Sampling", 200)
    thr = gmsh.model.mesh.field.add("Threshold")
    gmsh.model.mesh.field.setNumber(thr, "InField", dist)
    gmsh.model.mesh.field.setNumber(thr, "SizeMin", fine_nm)
    gmsh.model.mesh.field.setNumber(thr, "SizeMax", mesh_size_nm)
    gmsh.model.mesh.field.setNumber(thr, "DistMin", reach_nm)
    gmsh.model.mesh.field.setNumber(thr, "DistMax", reach_nm + 4 * mesh_size_nm)
    gmsh.model.mesh.field.setAsBackgroundMesh(thr)


def _finish(gmsh, groups: dict[int, list[int]], interface_curves: list[int], mesh_size_nm: float,
            fine_nm: float, reach_nm: float) -> None:
    for tag, surfaces in groups.items():
        if surfaces:
            gmsh.model.addPhysicalGroup(2, surfaces, tag)
    if interface_curves:
        gmsh.model.addPhysicalGroup(1, interface_curves, INTERFACE_TAG)
    _size_field(gmsh, interface_curves, mesh_size_nm, fine_nm, reach_nm)
    gmsh.model.mesh.generate(2)


# -- (a) stripes ----------------------------------------------------------------------------
def stripe_segments(extent_nm: float, period_nm: float, fraction: float, width_nm: float, offset_nm: float = 0.0):
    """Partition ``[0, extent_nm]`` across the stripes into labelled segments.

    A period is ``(1 - fraction) * period_nm`` of phase 0 then ``fraction *
    period_nm`` of phase 1, repeated from ``-offset_nm`` (the first and last
    periods may be cut; ``offset_nm`` in ``[0, period_nm)``).
    Returns ``(segments, interfaces)``: a list of ``(start, end, label)`` with
    label 0, 1 or ``"band"`` (half a band of width ``width_nm`` on each side of
    every interface), and the interface positions [n] (nm).
    """
    if not 0.0 <= fraction <= 1.0:
        raise FemInputError(f"fem.stripes.fraction must be in [0, 1], got {fraction}")
    if not period_nm > 0:
        raise FemInputError(f"fem.stripes.period_nm must be > 0, got {period_nm}")
    if not 0.0 <= offset_nm < period_nm:
        raise FemInputError(f"fem.stripes.offset_nm must be in [0, period_nm = {period_nm}), got {offset_nm}")
    cuts, labels = [0.0], []
    x = -offset_nm
    while x < extent_nm - 1e-9:
        for label, w in ((0, (1 - fraction) * period_nm), (1, fraction * period_nm)):
            if w > 1e-9 and x < extent_nm - 1e-9:
                x = min(x + w, extent_nm)
                if x <= 1e-9:  # before the sample starts
                    continue
                if labels and labels[-1] == label:
                    cuts[-1] = x
                else:
                    labels.append(label)
                    cuts.append(x)
    interfaces = cuts[1:-1]
    half = 0.5 * width_nm
    if interfaces and half > 0:
        widths = np.diff(cuts)
        if half * 2 >= widths.min() - 1e-9:
            raise FemInputError(f"fem.interface_width_nm={width_nm} is not smaller than the narrowest stripe "
                                f"({widths.min():.4g} nm): use wider stripes or a thinner band")
    segments = []
    for i, label in enumerate(labels):
        lo = cuts[i] + (half if i > 0 else 0.0)
        hi = cuts[i + 1] - (half if i < len(labels) - 1 else 0.0)
        if i > 0 and half > 0:
            segments.append((cuts[i], lo, "band"))
        segments.append((lo, hi, label))
        if i < len(labels) - 1 and half > 0:
            segments.append((hi, cuts[i + 1], "band"))
    return segments, interfaces


def stripes(*, phases: tuple[str, str], length_nm: float, height_nm: float, period_nm: float,
            fraction: float, orientation: str = "x", offset_nm: float = 0.0, interface_width_nm: float = 0.0,
            mesh_size_nm: float = 1.0, interface_mesh_size_nm: float | None = None) -> Layout:
    """Alternating stripes of ``phases[0]`` and ``phases[1]`` (a lateral superlattice).

    ``orientation='x'``: the stripes run along x (interfaces are lines y =
    const; tension along x loads them in parallel); ``'y'``: they run along y
    (tension along x loads them in series). ``fraction`` is the area fraction
    of ``phases[1]``; ``period_nm`` the width of one pair of stripes; ``offset_nm``
    how far into a period the sample starts (:func:`stripe_segments`).
    """
    _check_size(length_nm, height_nm, mesh_size_nm)
    if orientation not in ("x", "y"):
        raise FemInputError(f"fem.stripes.orientation must be 'x' or 'y', got {orientation!r}")
    across = height_nm if orientation == "x" else length_nm
    segments, interfaces = stripe_segments(across, period_nm, fraction, interface_width_nm, offset_nm)
    gmsh = _gmsh()
    occ = gmsh.model.occ
    surfaces = []
    for lo, hi, label in segments:
        if orientation == "x":
            surfaces.append((occ.addRectangle(0, lo, 0, length_nm, hi - lo), label))
        else:
            surfaces.append((occ.addRectangle(lo, 0, 0, hi - lo, height_nm), label))
    groups = {1: [], 2: [], BAND_TAG: []}
    if len(surfaces) > 1:
        _, children = occ.fragment([(2, s) for s, _ in surfaces[:1]], [(2, s) for s, _ in surfaces[1:]])
    else:
        children = [[(2, surfaces[0][0])]]
    occ.synchronize()
    for (_, label), kids in zip(surfaces, children):
        groups[BAND_TAG if label == "band" else label + 1] += [t for _, t in kids]
    curves = _lines_at(gmsh, interfaces, axis=1 if orientation == "x" else 0)
    fine = interface_mesh_size_nm or mesh_size_nm
    _finish(gmsh, groups, curves, mesh_size_nm, fine, max(interface_width_nm, fine))
    f1 = sum(hi - lo for lo, hi, lab in segments if lab == 1) + 0.5 * sum(hi - lo for lo, hi, lab in segments if lab == "band")
    return Layout(phases=list(phases), band=tuple(phases) if interfaces and interface_width_nm > 0 else None,
                  length_nm=length_nm, height_nm=height_nm,
                  fractions=_fractions([(phases[0], 1 - f1 / across), (phases[1], f1 / across)]),
                  info={"kind": "stripes", "orientation": orientation, "n_interfaces": len(interfaces),
                        "period_nm": period_nm, "interface_normal": "y" if orientation == "x" else "x"})


def _lines_at(gmsh, positions, axis: int) -> list[int]:
    """Tags of the straight curves lying on ``coordinate[axis] == p`` for some ``p`` of ``positions``."""
    found = []
    for _, c in gmsh.model.getEntities(1):
        box = gmsh.model.getBoundingBox(1, c)
        lo, hi = box[axis], box[axis + 3]
        # OCC pads bounding boxes by ~1e-7
        if hi - lo < 1e-5 and any(abs(0.5 * (lo + hi) - p) < 1e-5 for p in positions):
            found.append(c)
    return found


# -- (b) islands ----------------------------------------------------------------------------------
def shape_area(radius_nm: float, shape: str, n_sides: int) -> float:
    """Area (nm^2) of a circle, or of a regular polygon of circumradius ``radius_nm``."""
    if shape == "circle":
        return math.pi * radius_nm ** 2
    return 0.5 * n_sides * radius_nm ** 2 * math.sin(2 * math.pi / n_sides)


def place_islands(*, n: int, length_nm: float, height_nm: float, radius_nm: float, gap_nm: float,
                  seed: int, rsa_attempts: int = 20000, relax_iterations: int = 20000) -> np.ndarray:
    """Centres ``[n, 2]`` (nm) of ``n`` non-overlapping discs of radius ``radius_nm``, seeded.

    Every pair of centres ends at least ``2 radius_nm + gap_nm`` apart and
    every centre at least ``radius_nm + gap_nm`` from the sample edges.
    Random sequential addition (``numpy.random.default_rng(seed)``) places
    what it can; above its jamming limit the remaining discs are dropped at
    random and the overlaps relaxed away by pushing each overlapping pair
    apart (a soft-disc relaxation). Raises :class:`FemInputError` when the
    discs cannot be made to fit.
    """
    reach = radius_nm + gap_nm
    dmin = 2 * radius_nm + gap_nm
    lo, hi = np.array([reach, reach]), np.array([length_nm - reach, height_nm - reach])
    if n and np.any(hi < lo):
        raise FemInputError(f"fem.islands.radius_nm={radius_nm} (+ gap {gap_nm}) does not fit in the "
                            f"{length_nm} x {height_nm} nm sample")
    rng = np.random.default_rng(seed)
    centres = np.empty((0, 2))
    for _ in range(rsa_attempts):
        if len(centres) == n:
            return centres
        c = rng.uniform(lo, hi)
        if len(centres) == 0 or np.min(np.hypot(*(centres - c).T)) >= dmin:
            centres = np.vstack([centres, c])
    x = np.vstack([centres, rng.uniform(lo, hi, size=(n - len(centres), 2))])
    target = dmin * (1 + 1e-6)
    for _ in range(relax_iterations):
        diff = x[:, None, :] - x[None, :, :]
        dist = np.hypot(diff[..., 0], diff[..., 1]) + np.eye(n) * 1e9
        overlap = np.clip(target * (1 + 1e-3) - dist, 0.0, None)
        if not np.any(dist < target):
            return x
        push = (overlap / np.maximum(dist, 1e-12))[..., None] * diff
        x = np.clip(x + 0.5 * push.sum(axis=1) + 1e-3 * dmin * rng.normal(size=x.shape) * (overlap.max() > 0),
                    lo, hi)
    raise FemInputError(f"fem.islands: cannot fit {n} islands of radius {radius_nm} nm (gap {gap_nm} nm) in the "
                        f"{length_nm} x {height_nm} nm sample (seed {seed}); lower the fraction, the radius or "
                        f"interface_width_nm, or enlarge the sample")


def _island(occ, centre, radius: float, shape: str, n_sides: int) -> int:
    if shape == "circle":
        return occ.addDisk(centre[0], centre[1], 0, radius, radius)
    angles = 2 * math.pi * np.arange(n_sides) / n_sides
    points = [occ.addPoint(centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a), 0) for a in angles]
    lines = [occ.addLine(points[i], points[(i + 1) % n_sides]) for i in range(n_sides)]
    return occ.addPlaneSurface([occ.addCurveLoop(lines)])


def islands(*, island_phase: str, matrix_phase: str, length_nm: float, height_nm: float,
            radius_nm: float, fraction: float, seed: int = 0, shape: str = "circle", n_sides: int = 6,
            gap_nm: float | None = None, interface_width_nm: float = 0.0, mesh_size_nm: float = 1.0,
            interface_mesh_size_nm: float | None = None) -> Layout:
    """Islands of ``island_phase`` (circles or regular polygons) in a matrix of ``matrix_phase``.

    ``fraction`` is the target area fraction of the islands: ``round(fraction
    * area / island area)`` islands placed by :func:`place_islands` (seeded);
    ``gap_nm`` (default: one element) keeps the islands' bands apart and off
    the edges. With a band, each
    island's rim ``radius ± interface_width_nm/2`` is the band.
    """
    _check_size(length_nm, height_nm, mesh_size_nm)
    half = 0.5 * interface_width_nm
    if half >= radius_nm:
        raise FemInputError(f"fem.interface_width_nm={interface_width_nm} must be below the island diameter "
                            f"({2 * radius_nm} nm)")
    if not 0.0 <= fraction < 1.0:
        raise FemInputError(f"fem.islands.fraction must be in [0, 1), got {fraction}")
    if shape not in SHAPES:
        raise FemInputError(f"fem.islands.shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    n = int(round(fraction * length_nm * height_nm / shape_area(radius_nm, shape, n_sides)))
    centres = place_islands(n=n, length_nm=length_nm, height_nm=height_nm, radius_nm=radius_nm + half,
                            gap_nm=mesh_size_nm if gap_nm is None else gap_nm, seed=seed)
    gmsh = _gmsh()
    occ = gmsh.model.occ
    rect = occ.addRectangle(0, 0, 0, length_nm, height_nm)
    cores, rims, outers = [], [], []
    for c in centres:
        cores.append(_island(occ, c, radius_nm - half, shape, n_sides))
        if half > 0:
            rims.append(_island(occ, c, radius_nm, shape, n_sides))
            outers.append(_island(occ, c, radius_nm + half, shape, n_sides))
    tools = [(2, s) for s in cores + rims + outers]
    groups = {1: [], 2: [], BAND_TAG: []}
    if tools:
        _, parent_map = occ.fragment([(2, rect)], tools)
        occ.synchronize()
        inputs = [rect] + cores + rims + outers
        parents: dict[int, set] = {}
        for inp, children in zip(inputs, parent_map):
            for _, child in children:
                parents.setdefault(child, set()).add(inp)
        core_set, outer_set = set(cores), set(rims + outers)
        for child, ps in parents.items():
            if ps & core_set:
                groups[1].append(child)
            elif ps & outer_set:
                groups[BAND_TAG].append(child)
            else:
                groups[2].append(child)
    else:
        occ.synchronize()
        groups[2].append(rect)
    interface_curves = [c for _, c in gmsh.model.getBoundary([(2, s) for s in groups[1] + groups[BAND_TAG]],
                                                             combined=False, oriented=False)]
    interface_curves = sorted(set(interface_curves) - set(
        c for _, c in gmsh.model.getBoundary([(2, s) for s in groups[BAND_TAG]], combined=True, oriented=False)
    )) if groups[BAND_TAG] else sorted(set(interface_curves))
    fine = interface_mesh_size_nm or mesh_size_nm
    _finish(gmsh, groups, interface_curves, mesh_size_nm, fine, max(interface_width_nm, fine))
    area = length_nm * height_nm
    f_island = len(centres) * shape_area(radius_nm, shape, n_sides) / area
    return Layout(phases=[island_phase, matrix_phase],
                  band=(island_phase, matrix_phase) if len(centres) and half > 0 else None,
                  length_nm=length_nm, height_nm=height_nm,
                  fractions=_fractions([(island_phase, f_island), (matrix_phase, 1 - f_island)]),
                  info={"kind": "islands", "n_islands": len(centres), "radius_nm": radius_nm, "shape": shape,
                        "seed": seed, "centres_nm": centres.tolist()})


# -- (c) a user mesh --------------------------------------------------------------------------------
def user_mesh(path: str, *, phases: list[str] | None = None) -> Layout:
    """Load a gmsh ``.msh`` file with 2D physical groups named after the phases (and ``interface``).

    Surfaces in a physical group named ``interface`` (or ``a|b``) form the band;
    1D groups named ``interface`` are the interface facets. The groups are
    renumbered to this module's tags. ``phases`` (optional) fixes the order.
    """
    from pathlib import Path

    if not Path(path).is_file():
        raise FemInputError(f"fem.mesh_file: {path} not found")
    gmsh = _gmsh()
    try:
        gmsh.merge(str(path))
    except Exception as exc:
        raise FemInputError(f"fem.mesh_file: gmsh cannot read {path} ({exc})") from None
    named2 = {gmsh.model.getPhysicalName(2, t): t for _, t in gmsh.model.getPhysicalGroups(2)}
    named1 = {gmsh.model.getPhysicalName(1, t): t for _, t in gmsh.model.getPhysicalGroups(1)}
    band_names = [n for n in named2 if n == "interface" or "|" in n]
    found = [n for n in named2 if n not in band_names]
    if not found:
        raise FemInputError(f"fem.mesh_file: {path} has no named 2D physical groups; name one per phase "
                            "(the phase names of properties.json)")
    phases = list(phases or sorted(found))
    missing = set(found) - set(phases)
    if missing:
        raise FemInputError(f"fem.mesh_file: {path} has physical groups {sorted(missing)} that are not "
                            f"phases of the model ({phases})")
    xs = gmsh.model.mesh.getNodes()[1].reshape(-1, 3)
    mins, maxs = xs.min(axis=0), xs.max(axis=0)
    if abs(mins[0]) > 1e-9 or abs(mins[1]) > 1e-9:
        raise FemInputError(f"fem.mesh_file: {path} must have its lower-left corner at (0, 0), "
                            f"got ({mins[0]}, {mins[1]})")
    entities = {name: list(gmsh.model.getEntitiesForPhysicalGroup(2, t)) for name, t in named2.items()}
    curves = [list(gmsh.model.getEntitiesForPhysicalGroup(1, t)) for n, t in named1.items() if n == "interface"]
    gmsh.model.removePhysicalGroups()
    for name in found:
        gmsh.model.addPhysicalGroup(2, entities[name], phases.index(name) + 1)
    band = [e for n in band_names for e in entities[n]]
    if band:
        gmsh.model.addPhysicalGroup(2, band, BAND_TAG)
    if curves:
        gmsh.model.addPhysicalGroup(1, curves[0], INTERFACE_TAG)
    return Layout(phases=phases, band=tuple(phases[:2]) if band else None,
                  length_nm=float(maxs[0]), height_nm=float(maxs[1]),
                  info={"kind": "mesh_file", "path": str(path)})
