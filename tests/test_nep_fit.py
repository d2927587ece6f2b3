"""NEP fitting (training.nep_fit): the exact loss gradient against finite differences, per loss term and
parameter block; a fit to the labels of a teacher NEP of the same architecture; the fitted nep.txt read
back and evaluated by md_gpu and by GPUMD's NEP_CPU (calorine peer, skipped when absent); resume from a
checkpoint; bad input; the fit stage with ``fit.model: nep`` on a slice of the embedded graphene set.
Small cells and small models: every test takes seconds."""
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ase.build import bulk, graphene
from ase.calculators.singlepoint import SinglePointCalculator

from md_gpu.forcefields.nep import NEPCalculator, NEPForceField
from training import datasets
from training.fit_data import FitError
from training.nep import NEPEvaluator, read_nep, write_nep
from training.nep_fit import (NEPSizes, NEPTrainingSet, fit_nep, initial_model, loss_and_gradient, pack, predict,
                              unpack)

SPECIES = ("B", "C")
SIZES = dict(cutoff_A=(3.6, 3.1), n_max=(3, 2), basis_size=(4, 3), l_max=(4, 2, 1), neurons=5)
BLOCKS = ("w0", "b0", "w1", "b1", "c_radial", "c_angular")


def _cells(seed=0):
    """Two species on a cubic and a sheared diamond cell and a buckled sheet with vacuum (pbc T, T, F)."""
    rng = np.random.default_rng(seed)
    cubic = bulk("C", "diamond", a=3.57, cubic=True)
    sheared = bulk("C", "diamond", a=3.6).repeat((2, 1, 1))
    sheared.set_cell(sheared.cell.array @ np.array([[1.0, 0.05, 0.02], [0.0, 1.0, 0.06], [0.0, 0.0, 1.03]]),
                     scale_atoms=True)
    sheet = graphene(a=2.46, vacuum=5.0).repeat((2, 2, 1))
    sheet.pbc = (True, True, False)
    out = []
    for k, atoms in enumerate((cubic, sheared, sheet, cubic.copy())):
        atoms.symbols = [SPECIES[t] for t in rng.integers(0, 2, len(atoms))]
        atoms.rattle(0.12, seed=seed + k)
        out.append(atoms)
    return out


def _labelled(frames, seed=0):
    """Random reference energies (eV), forces (eV/Å) and stresses (eV/Å³)."""
    rng = np.random.default_rng(seed)
    for atoms in frames:
        atoms.calc = SinglePointCalculator(atoms, energy=-7.0 * len(atoms) + rng.normal(),
                                           stress=0.02 * rng.normal(size=6), forces=rng.normal(size=(len(atoms), 3)))
    return frames


def _taught(teacher, frames):
    """``frames`` with the teacher NEP's energy, forces and stress as reference (copies)."""
    out = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = NEPCalculator(teacher)
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                           stress=atoms.get_stress())
        out.append(atoms)
    return out


def _block_slices(model):
    out, start = {}, 0
    for name in BLOCKS:
        size = int(np.size(getattr(model, name)))
        out[name] = slice(start, start + size)
        start += size
    return out


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("part", ["energy", "forces", "stress"])
def test_gradient_equals_finite_difference_for_every_parameter_block(version, part):
    tset = NEPTrainingSet.build(_labelled(_cells()), SPECIES, 3.6)
    model = initial_model(tset, dict(SIZES, version=version), seed=version)
    model.b1 += 0.3  # initial_model zeroes the summed energy error, and so the energy gradient of b1
    x = pack(model)
    loss, grad = loss_and_gradient(model, tset, parts=(part,), reg=1e-3)
    assert loss > 0
    rng = np.random.default_rng(1)
    eps = 1e-6
    for name, block in _block_slices(model).items():
        idx = np.arange(x.size)[block]
        picked = rng.choice(idx, size=min(6, idx.size), replace=False)
        for k in picked:
            up, down = x.copy(), x.copy()
            up[k] += eps
            down[k] -= eps
            fd = (loss_and_gradient(unpack(model, up), tset, parts=(part,), reg=1e-3)[0]
                  - loss_and_gradient(unpack(model, down), tset, parts=(part,), reg=1e-3)[0]) / (2 * eps)
            assert abs(fd - grad[k]) <= 1e-6 * np.abs(grad).max() + 1e-9, (name, k, fd, grad[k])
        if name == "b1" and part != "energy":  # forces and stress do not depend on the output bias
            assert grad[block] == pytest.approx(2e-3 * x[block], rel=1e-12)
            continue
        # the block takes part in this loss term (a gradient of zeros would pass the check above)
        assert np.abs(grad[block] - 2e-3 * x[block]).max() > 1e-8 * np.abs(grad).max(), name


def test_the_terms_add_up():
    tset = NEPTrainingSet.build(_labelled(_cells()), SPECIES, 3.6)
    model = initial_model(tset, SIZES, seed=2)
    total = loss_and_gradient(model, tset)
    parts = [loss_and_gradient(model, tset, parts=(p,)) for p in ("energy", "forces", "stress")]
    assert total[0] == pytest.approx(sum(p[0] for p in parts), rel=1e-12)
    np.testing.assert_allclose(total[1], sum(p[1] for p in parts), rtol=1e-10, atol=1e-14)


def test_threads_give_the_same_loss_and_gradient():
    tset = NEPTrainingSet.build(_labelled(_cells()), SPECIES, 3.6, batch_pairs=200)
    assert len(tset.batches) >= 3
    model = initial_model(tset, SIZES, seed=4)
    one, three = loss_and_gradient(model, tset, threads=1), loss_and_gradient(model, tset, threads=3)
    assert one[0] == three[0]
    np.testing.assert_array_equal(one[1], three[1])


def test_initial_model_scales_descriptors_and_matches_the_mean_energy():
    frames = _labelled(_cells())
    tset = NEPTrainingSet.build(frames, SPECIES, 3.6)
    model = initial_model(tset, SIZES, seed=0)
    pred = predict(model, tset)
    e_pred, e_ref = pred["energy_per_atom"]
    n = np.array([len(a) for a in frames])
    assert (e_pred * n).sum() / n.sum() == pytest.approx((e_ref * n).sum() / n.sum(), abs=1e-10)
    nep = NEPEvaluator(model)
    q = np.concatenate([nep.descriptors(tset.geometry(nep, b)).q for b in tset.batches]) * model.q_scaler
    np.testing.assert_allclose(q.max(axis=0) - q.min(axis=0), 1.0, rtol=1e-10)


def test_species_offsets_start_a_nep4_near_each_species_energy():
    """Frame energies of -30 eV per B and -55 eV per C atom (plus noise): with the constant offset
    neurons the start is within 0.5 eV/atom of them (0.08 here), without them more than 3 eV/atom away."""
    rng = np.random.default_rng(9)
    frames = _cells(seed=9)
    for atoms in frames:
        n_b = atoms.get_chemical_symbols().count("B")
        energy = -30.0 * n_b - 55.0 * (len(atoms) - n_b) + 0.1 * rng.normal()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((len(atoms), 3)))
    tset = NEPTrainingSet.build(frames, SPECIES, 3.6)

    def start_error(offsets, version=4):
        model = initial_model(tset, dict(SIZES, version=version), seed=1, species_offsets=offsets)
        e_pred, e_ref = predict(model, tset)["energy_per_atom"]
        return np.sqrt(np.mean((e_pred - e_ref) ** 2)), model

    with_offsets, model = start_error(True)
    without, _ = start_error(False)
    assert without > 3.0 and with_offsets < 0.5, (with_offsets, without)
    assert np.all(model.w0[:, 0, :] == 0) and model.w1[0, 0] > 0 > model.w1[1, 0]  # B above C
    nep3, _ = start_error(True, version=3)  # one network: no per-species constant
    assert nep3 > 3.0


@pytest.mark.parametrize("version", [3, 4])
def test_fit_recovers_a_teacher_of_the_same_architecture(version):
    """Labels from a teacher NEP; the student starts from the teacher's parameters with 5 % noise (same
    sizes and scalers) and must bring the loss down 1e4-fold and the force error below 1.5e-3 eV/Å
    (teacher forces ~1 eV/Å): L-BFGS with the exact gradient converges to the zero-loss minimum."""
    frames = _cells(seed=5)
    tset0 = NEPTrainingSet.build(_labelled(frames), SPECIES, 3.6)
    teacher = initial_model(tset0, dict(SIZES, version=version), seed=10 + version)
    data = _taught(teacher, frames)
    assert np.abs(np.concatenate([a.get_forces().ravel() for a in data])).max() > 0.5
    rng = np.random.default_rng(3)
    x = pack(teacher)
    student = unpack(teacher, x * (1 + 0.05 * rng.normal(size=x.size)))
    start = predict(student, NEPTrainingSet.build(data, SPECIES, 3.6))
    f0 = np.sqrt(np.mean((start["forces"][0] - start["forces"][1]) ** 2))
    model, report = fit_nep(data, init=student, max_iter=300, reg=0.0, progress=lambda *a: None)
    m = report["train"]
    assert report["loss_history"][-1] < 1e-4 * report["loss_history"][0]
    assert m["forces"]["rmse"] < min(1.5e-3, f0 / 20), (f0, m)
    assert m["energy_per_atom"]["rmse"] < 1e-4, m
    assert m["stress"]["rmse"] < 0.1, m  # GPa, of 3 Å cells under GPa-scale stresses


def test_fit_from_a_random_start_lowers_the_loss():
    frames = _cells(seed=6)
    teacher = initial_model(NEPTrainingSet.build(_labelled(frames), SPECIES, 3.6), SIZES, seed=20)
    model, report = fit_nep(_taught(teacher, frames), sizes=SIZES, max_iter=40, seed=0, progress=lambda *a: None)
    assert report["loss_history"][-1] < 0.05 * report["loss_history"][0]
    assert report["n_parameters"] == pack(model).size
    assert tuple(model.species) == SPECIES


def _fitted(tmp_path):
    frames = _cells(seed=7)
    teacher = initial_model(NEPTrainingSet.build(_labelled(frames), SPECIES, 3.6), SIZES, seed=30)
    data = _taught(teacher, frames)
    model, _ = fit_nep(data, sizes=SIZES, max_iter=15, seed=1, progress=lambda *a: None)
    return model, data, write_nep(model, tmp_path / "nep.txt")


def test_a_fitted_model_written_and_read_back_evaluates_identically(tmp_path):
    model, data, path = _fitted(tmp_path)
    back = read_nep(path)
    np.testing.assert_array_equal(pack(back), pack(model))
    np.testing.assert_array_equal(back.q_scaler, model.q_scaler)
    tset = NEPTrainingSet.build(data, SPECIES, 3.6)
    ours, read = predict(model, tset), predict(back, tset)
    for key in ours:
        np.testing.assert_array_equal(ours[key][0], read[key][0])
    atoms = data[1].copy()
    atoms.calc = NEPCalculator(str(path))
    np.testing.assert_allclose(atoms.get_forces().ravel(), ours["forces"][0][24:24 + 3 * len(atoms)], atol=1e-12)


def test_the_fitted_nep_txt_evaluates_the_same_in_nep_cpu(tmp_path):
    from test_nep_peer import PEER_PYTHON, _nep_cpu

    if not PEER_PYTHON.exists():
        pytest.skip("GPUMD's NEP_CPU peer is not installed: run `make peer-calorine`")
    model, data, path = _fitted(tmp_path)
    reference = _nep_cpu(path, {str(k): a for k, a in enumerate(data)}, tmp_path)
    ff = NEPForceField.read(path)
    for k, atoms in enumerate(data):
        ref = reference[str(k)]
        atoms = atoms.copy()
        atoms.calc = NEPCalculator(ff)
        assert np.abs(np.array(ref["forces"])).max() > 0.1
        assert abs(atoms.get_potential_energy() - ref["energy"]) < 1e-6
        np.testing.assert_allclose(atoms.get_forces(), ref["forces"], atol=1e-6)
        np.testing.assert_allclose(atoms.get_stress(), ref["stress"], atol=1e-7)


def test_resume_from_a_checkpoint_gives_the_same_model(tmp_path):
    frames = _cells(seed=8)
    teacher = initial_model(NEPTrainingSet.build(_labelled(frames), SPECIES, 3.6), SIZES, seed=40)
    data = _taught(teacher, frames)
    whole, _ = fit_nep(data, sizes=SIZES, max_iter=6, seed=2, progress=lambda *a: None)
    ckpt = tmp_path / "fit.npz"
    fit_nep(data, sizes=SIZES, max_iter=3, seed=2, checkpoint=ckpt, progress=lambda *a: None)
    resumed, report = fit_nep(data, sizes=SIZES, max_iter=6, seed=2, checkpoint=ckpt, resume=True,
                              progress=lambda *a: None)
    assert report["iterations"] == 6
    np.testing.assert_array_equal(pack(resumed), pack(whole))
    with pytest.raises(FitError, match="not a checkpoint of this NEP fit"):
        fit_nep(data, sizes=SIZES, max_iter=6, seed=3, checkpoint=ckpt, resume=True, progress=lambda *a: None)


@pytest.mark.parametrize("sizes, match", [
    (dict(n_max=(4,)), "nep.n_max"),
    (dict(cutoff_A=(3.0, 4.0)), "nep.cutoff_A"),
    (dict(l_max=(1, 2, 0)), "nep.l_max"),
    (dict(neurons=0), "nep.neurons"),
    (dict(version=5), "nep.version"),
    (dict(n_layers=2), "unknown key"),
])
def test_bad_sizes_name_the_key(sizes, match):
    with pytest.raises(FitError, match=match):
        NEPSizes.coerce(sizes)


def test_frames_outside_the_species_or_without_labels_are_named():
    frames = _labelled(_cells())
    with pytest.raises(FitError, match=r"frame 0 holds element\(s\) \['B'\]"):
        NEPTrainingSet.build(frames, ("C",), 3.6)
    frames[2].calc = None
    with pytest.raises(FitError, match="frame 2 has no reference energy and forces"):
        NEPTrainingSet.build(frames, SPECIES, 3.6)


# ----------------------------------------------------------------------------- the fit stage, fit.model: nep
GRAPHENE = Path(__file__).parents[1] / "cases" / "graphene_borophene" / "data" / "graphene.extxyz.gz"
STAGE_NEP = {"cutoff_A": [4.0, 3.5], "n_max": [3, 3], "basis_size": [5, 5], "l_max": [4, 2, 0], "neurons": 8}


class _Ctx(SimpleNamespace):
    def log(self, msg):
        self.lines.append(msg)

    def map(self, fn, items, costs=None):
        return [fn(item) for item in items]

    def stage_dir(self, name):
        return self.case_dir / "runs" / name


def _stage_settings(**over):
    from multiscale.schema import validate
    from training import fit_stage

    return validate(over, fit_stage.FIT_SETTINGS, where="fit", source="case.yaml")


@pytest.fixture
def stage_ctx(tmp_path):
    if not GRAPHENE.is_file():
        pytest.skip(f"{GRAPHENE} not there")
    data = tmp_path / "runs" / "data"
    data.mkdir(parents=True)
    datasets.write(data / "graphene.extxyz.gz", datasets.read(GRAPHENE)[::22])  # 12 frames of all chains
    out = tmp_path / "runs" / "fit.partial"
    out.mkdir()
    return _Ctx(case_dir=tmp_path, out_dir=out, systems={"graphene": {"kind": "phase"}}, is_root=True, lines=[])


def test_fit_stage_fits_a_nep_that_the_md_stage_runs(stage_ctx):
    from md_gpu.forcefields.loading import load_forcefield
    from md_gpu.md_stage import fit_potential
    from training import fit_stage

    settings = _stage_settings(model="nep", nep=STAGE_NEP, max_iter=8, validation_fraction=0.2)
    summary = fit_stage.run_fit(settings, stage_ctx)
    out = stage_ctx.out_dir
    for name in ("graphene.nep.txt", "graphene_fit.json", "graphene_parity.png", "summary.json"):
        assert (out / name).is_file(), name
    assert not (out / "graphene.als").exists()
    report = json.loads((out / "graphene_fit.json").read_text())
    assert report["model"] == "nep" and report["species"] == ["C"]
    assert report["n_train_final"] == 10 and report["n_valid"] == 2
    assert report["sizes"]["n_max"] == [3, 3] and report["steps"][0]["iterations"] == 8
    assert {"train", "valid"} <= set(report["steps"][0]["errors"])
    assert summary["systems"]["graphene"]["model"] == "nep"
    assert any("NEP4" in line and "force RMSE" in line for line in stage_ctx.lines)
    from multiscale.report_tables import fit_table

    assert f"NEP4, {report['n_parameters']} parameters" in fit_table(summary)
    # the md stage finds the NEP by the report, without an active set, and runs it
    path, rep = fit_potential(out, "graphene")
    assert path == out / "graphene.nep.txt" and not (rep.get("files") or {}).get("active_set")
    ff = load_forcefield(path, species=("C",))
    frames = datasets.read(stage_ctx.case_dir / "runs" / "data" / "graphene.extxyz.gz")
    errors = []
    for atoms in frames:
        ref = datasets.reference(atoms, "forces")
        atoms.calc = NEPCalculator(ff)
        errors.append((atoms.get_forces() - ref).ravel())
    rmse = np.sqrt(np.mean(np.concatenate(errors) ** 2))
    assert rmse == pytest.approx(report["errors_all_frames"]["forces"]["rmse"], rel=1e-9)


@pytest.mark.parametrize("over, match", [
    ({"model": "gap"}, "fit.model: 'gap' is not one of mtp, nep"),
    ({"model": "nep", "nep": {"n_max": [4]}}, r"fit.nep.n_max: \[4\] must be 2 integers"),
    ({"model": "nep", "nep": {"l_max": [4, 3, 0]}}, "fit.nep.l_max"),
    ({"model": "nep", "nep": {"cutoff_A": [4.0, 5.0]}}, "fit.nep.cutoff_A"),
])
def test_fit_stage_bad_nep_settings(stage_ctx, over, match):
    from training import fit_stage

    with pytest.raises(ValueError, match=match):
        fit_stage.run_fit(_stage_settings(**over), stage_ctx)


def test_fit_stage_nep_resumes_from_its_checkpoint(stage_ctx, tmp_path):
    """A NEP fit of the stage stopped after 3 iterations (its checkpoint left behind) and run again to 6
    writes the same nep.txt as an uninterrupted 6-iteration fit; a checkpoint of another fit is replaced."""
    from training import fit_stage

    def task(out, **over):
        out.mkdir(exist_ok=True)
        settings = _stage_settings(model="nep", nep=STAGE_NEP, **over)
        return {"system": "graphene", "dataset": str(stage_ctx.case_dir / "runs" / "data" / "graphene.extxyz.gz"),
                "out_dir": str(out), "case_dir": str(stage_ctx.case_dir), "settings": settings}

    fit_stage.fit_system(task(tmp_path / "whole", max_iter=6))
    fit_stage.fit_system(task(tmp_path / "killed", max_iter=3))
    assert (tmp_path / "killed" / "graphene.fit0.npz").is_file()
    report = fit_stage.fit_system(task(tmp_path / "killed", max_iter=6))
    assert report["steps"][0]["iterations"] == 6
    whole, killed = (tmp_path / "whole" / "graphene.nep.txt"), (tmp_path / "killed" / "graphene.nep.txt")
    assert killed.read_text() == whole.read_text()
    other = fit_stage.fit_system(task(tmp_path / "killed", max_iter=2, seed=5))  # another start: afresh
    assert other["steps"][0]["iterations"] == 2
