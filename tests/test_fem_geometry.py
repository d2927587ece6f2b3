"""fem.geometry: stripe partitions, island placement, gmsh models with the right tags."""
import gmsh
import numpy as np
import pytest
from mpi4py import MPI

from fem import geometry as G, mesh_io
from fem.errors import FemInputError


def test_stripe_segments_cover_the_sample_with_bands_at_interfaces():
    segs, interfaces = G.stripe_segments(20.0, 8.0, 0.25, 1.0)
    assert interfaces == pytest.approx([6.0, 8.0, 14.0, 16.0])
    assert segs[0][0] == 0 and segs[-1][1] == 20.0
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(segs, segs[1:]))
    widths = {lab: sum(hi - lo for lo, hi, l in segs if l == lab) for lab in (0, 1, "band")}
    assert widths == pytest.approx({0: 16.0 - 4 * 0.5, 1: 4.0 - 4 * 0.5, "band": 4.0})
    assert G.stripe_segments(10.0, 5.0, 0.0, 1.0) == ([(0.0, 10.0, 0)], [])
    with pytest.raises(FemInputError, match="interface_width_nm"):
        G.stripe_segments(20.0, 4.0, 0.25, 1.0)
    with pytest.raises(FemInputError, match="stripes.fraction"):
        G.stripe_segments(20.0, 4.0, 1.5, 0.0)


def test_an_offset_pattern_starts_and_ends_mid_stripe_with_two_interfaces_per_period():
    segs, interfaces = G.stripe_segments(16.0, 8.0, 0.25, 0.0, offset_nm=3.0)  # A 6 nm, B 2 nm
    assert interfaces == pytest.approx([3.0, 5.0, 11.0, 13.0])
    assert [s[2] for s in segs] == [0, 1, 0, 1, 0] and segs[0][:2] == (0.0, 3.0) and segs[-1][1] == 16.0
    with pytest.raises(FemInputError, match=r"fem.stripes.offset_nm must be in \[0, period_nm = 8.0\), got 8.0"):
        G.stripe_segments(16.0, 8.0, 0.25, 0.0, offset_nm=8.0)


def test_island_placement_is_seeded_and_non_overlapping():
    kw = dict(n=10, length_nm=40.0, height_nm=20.0, radius_nm=3.5, gap_nm=0.5)
    a, b = G.place_islands(seed=3, **kw), G.place_islands(seed=3, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, G.place_islands(seed=4, **kw))
    d = np.hypot(*(a[:, None] - a[None]).transpose(2, 0, 1)) + np.eye(10) * 1e9
    assert d.min() >= 2 * 3.5 + 0.5
    assert a.min() >= 4.0 - 1e-12 and a[:, 0].max() <= 36.0 + 1e-12 and a[:, 1].max() <= 16.0 + 1e-12
    with pytest.raises(FemInputError, match="cannot fit 30 islands"):
        G.place_islands(seed=0, **{**kw, "n": 30})


def _areas_by_tag():
    out = {}
    for dim, tag in gmsh.model.getPhysicalGroups(2):
        out[tag] = sum(gmsh.model.occ.getMass(2, e) for e in gmsh.model.getEntitiesForPhysicalGroup(2, tag))
    return out


def test_stripes_model_tags_and_areas():
    lay = G.stripes(phases=("a", "b"), length_nm=20, height_nm=10, period_nm=10, fraction=0.4,
                    orientation="y", interface_width_nm=1.0, mesh_size_nm=1.0)
    try:
        areas = _areas_by_tag()
        # a: [0,6] and [10,16], b: [6,10] and [16,20]; half a band (0.5 nm) off each side of 3 interfaces
        assert areas[1] == pytest.approx(10 * (5.5 + 5.0))
        assert areas[2] == pytest.approx(10 * (3.0 + 3.5))
        assert areas[G.BAND_TAG] == pytest.approx(3 * 1.0 * 10)
        assert sum(areas.values()) == pytest.approx(200.0)
        assert lay.fractions["b"] == pytest.approx(0.4)
        curves = gmsh.model.getEntitiesForPhysicalGroup(1, G.INTERFACE_TAG)
        assert len(curves) == 3 and lay.band == ("a", "b")
    finally:
        gmsh.model.remove()


def test_islands_model_tags_and_areas():
    lay = G.islands(island_phase="b", matrix_phase="a", length_nm=30, height_nm=20, radius_nm=3.0,
                    fraction=0.2, seed=1, interface_width_nm=1.0, mesh_size_nm=1.0)
    try:
        n = lay.info["n_islands"]
        assert n == round(0.2 * 600 / (np.pi * 9))
        areas = _areas_by_tag()
        assert areas[1] == pytest.approx(n * np.pi * 2.5 ** 2, rel=1e-6)
        assert areas[G.BAND_TAG] == pytest.approx(n * np.pi * (3.5 ** 2 - 2.5 ** 2), rel=1e-6)
        assert sum(areas.values()) == pytest.approx(600.0, rel=1e-9)
        curves = gmsh.model.getEntitiesForPhysicalGroup(1, G.INTERFACE_TAG)
        length = sum(gmsh.model.occ.getMass(1, c) for c in curves)
        assert length == pytest.approx(n * 2 * np.pi * 3.0, rel=1e-6)
    finally:
        gmsh.model.remove()


def test_user_mesh_round_trip_and_errors(tmp_path):
    G.stripes(phases=("graphene", "borophene"), length_nm=10, height_nm=5, period_nm=5, fraction=0.5,
              orientation="y", mesh_size_nm=1.0)
    gmsh.model.setPhysicalName(2, 1, "graphene")
    gmsh.model.setPhysicalName(2, 2, "borophene")
    path = tmp_path / "sample.msh"
    gmsh.write(str(path))
    gmsh.model.remove()
    lay = G.user_mesh(str(path), phases=["graphene", "borophene"])
    try:
        assert (lay.length_nm, lay.height_nm) == (10.0, 5.0)
        assert sorted(t for _, t in gmsh.model.getPhysicalGroups(2)) == [1, 2]
    finally:
        gmsh.model.remove()
    with pytest.raises(FemInputError, match="not phases of the model"):
        try:
            G.user_mesh(str(path), phases=["graphene", "silicene"])
        finally:
            gmsh.model.remove()
    with pytest.raises(FemInputError, match="not found"):
        G.user_mesh(str(tmp_path / "none.msh"))


def test_interface_refinement_survives_a_previous_sample_without_interfaces():
    # gmsh options are global: a homogeneous sample (no interfaces) must not cap the next one's refinement
    def n_triangles(**kwargs):
        msh, _, _, _ = mesh_io.mesh_from_gmsh(G.stripes, MPI.COMM_WORLD, phases=("a", "b"), length_nm=10.0,
                                              height_nm=10.0, period_nm=5.0, orientation="y", mesh_size_nm=1.0,
                                              **kwargs)
        return msh.topology.index_map(2).size_global

    coarse = n_triangles(fraction=0.5)
    n_triangles(fraction=0.0)
    assert n_triangles(fraction=0.5, interface_mesh_size_nm=0.25) > 2 * coarse
