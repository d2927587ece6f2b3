"""The elastic protocol's finite-difference scheme: a sheet that the compressed cell would buckle is
measured without a compressed cell (md_gpu.protocols.elastic.choose_scheme, md.elastic.scheme).

* A pair-potential sheet is a membrane without bending stiffness: the energy curvature of a ripple
  ``a sin(q x)`` is ``q^2 V sigma_xx / 2`` (the ripple's extra length times the stress), negative under
  any compression; checked against the stress of the same cell.
* Graphene (the tests' level-8 MTP) resists bending: its 60-atom cell stays flat under a compression of
  0.5 %, its 540-atom cell (3.7 nm) buckles (Euler strain ~ bending rigidity x q^2 / C).
* The task records the scheme it took; a bulk cell keeps central differences.
"""
from pathlib import Path

import numpy as np
import pytest

from md_gpu.calculator import MDCalculator
from md_gpu.forcefields.mtp import MTPForceField
from md_gpu.protocols.elastic import _relaxed, choose_scheme, ripple_curvatures
from md_gpu.structures import as_sheet
from tests.morse_cells import FF, cu, triangular_sheet

POT = Path(__file__).parent / "data" / "md" / "graphene_l08.mtp"


def test_a_membrane_ripple_costs_the_stress_times_its_extra_length():
    strain = 0.005
    sheet = triangular_sheet(a=2.6, nx=48, ny=2)  # q d << 1 for the pairs within the 5.5 Å cut-off
    curvature = ripple_curvatures(FF, sheet, strain)["x"]
    relaxed = _relaxed(FF, sheet, fmax=1e-3)
    compressed = relaxed.copy()
    compressed.set_cell(relaxed.cell.array @ np.diag([1 - strain, 1, 1]), scale_atoms=True)
    compressed.calc = MDCalculator(FF)
    q = 2 * np.pi / compressed.cell[0, 0]
    sigma_xx = compressed.get_stress(voigt=False)[0, 0]  # eV/Å^3, ASE: negative = compressed
    expected = 0.5 * q * q * compressed.get_volume() * sigma_xx / len(compressed) * 1000.0
    assert sigma_xx < 0 and curvature == pytest.approx(expected, rel=0.02)


def test_a_sheet_that_buckles_is_measured_one_sided(monkeypatch):
    import md_gpu.protocols.elastic as elastic

    sheet = triangular_sheet()
    monkeypatch.setattr(elastic, "ripple_curvatures", lambda ff, atoms, strain: {"x": 5.0, "y": -0.1})
    assert choose_scheme(FF, sheet, 0.005, low_temperature=False)[0] == "tension"
    assert choose_scheme(FF, sheet, 0.005, low_temperature=True)[0] == "tension2"
    monkeypatch.setattr(elastic, "ripple_curvatures", lambda ff, atoms, strain: {"x": 5.0, "y": 0.1})
    assert choose_scheme(FF, sheet, 0.005, low_temperature=True) == (
        "central", {"ripple_curvature_meV_per_A2_per_atom": {"x": 5.0, "y": 0.1}})


@pytest.fixture(scope="module")
def graphene_ff():
    return MTPForceField.read(POT)


def test_graphene_buckles_under_the_compressed_cell_only_when_long(graphene_ff):
    from training.structures import graphene

    short = as_sheet(graphene(a=2.45716))  # 60 atoms, 1.2 nm
    scheme, why = choose_scheme(graphene_ff, short, 0.005, low_temperature=False)
    assert scheme == "central" and min(why["ripple_curvature_meV_per_A2_per_atom"].values()) > 10.0
    long = short.repeat((3, 3, 1))  # 540 atoms, 3.7 nm
    scheme, why = choose_scheme(graphene_ff, long, 0.005, low_temperature=True)
    assert scheme == "tension2" and max(why["ripple_curvature_meV_per_A2_per_atom"].values()) < 0.0
    # the same long sheet without compression resists the ripple: it is the compression that buckles it
    assert min(ripple_curvatures(graphene_ff, long, 0.0).values()) > 0.0


def test_a_bulk_cell_keeps_central_differences():
    assert choose_scheme(FF, cu(2), 0.005, low_temperature=True) == ("central", {})


def test_the_scheme_setting_is_checked():
    from md_gpu.tasks.elastic import check

    settings = {"elastic": {"scheme": "forward"}}
    with pytest.raises(ValueError, match="md.elastic.scheme: 'forward' is not one of auto, central, tension, tension2"):
        check(settings)
