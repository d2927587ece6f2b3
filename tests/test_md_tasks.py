"""The registry of md task kinds (md_gpu.tasks) and what the md stage assembles from it."""
import pickle
import types

import numpy as np
import pytest

from md_gpu import md_stage
from md_gpu.tasks import TASKS, Registry, common, tensile


def test_every_task_kind_is_registered_once_and_dispatched_by_kind():
    kinds = [k for m in TASKS.modules.values() for k in m.KINDS]
    assert len(kinds) == len(set(kinds))
    assert {"tensile", "interface", "elastic", "elastic_low_T", "stability", "heterostructure",
            "heterostructure_low_T", "heterostructure_compliance_low_T", "heterostructure_phase_low_T",
            "hnemd", "nemd", "interface_nemd", "shear"} == set(kinds)
    for module in TASKS.modules.values():
        assert all(TASKS.module_of(k) is module for k in module.KINDS)
        assert callable(module.run) and callable(module.summarise)
    with pytest.raises(ValueError, match="no task kind 'bend'"):
        md_stage.run_task({"kind": "bend"})
    assert pickle.loads(pickle.dumps(md_stage.run_task)) is md_stage.run_task  # ctx.map sends it to ranks


def test_a_kind_cannot_be_registered_twice():
    registry = Registry()
    registry.register(tensile)
    twin = types.ModuleType("md_gpu.tasks.twin")
    twin.KINDS = ("interface",)
    with pytest.raises(ValueError, match="'interface' of twin is already registered by md_gpu.tasks.tensile"):
        registry.register(twin)


def test_the_stage_settings_table_is_the_union_of_the_slices():
    slices = [common.SETTINGS] + [m.SETTINGS for m in TASKS.modules.values() if hasattr(m, "SETTINGS")]
    keys = [k for s in slices for k in s]
    assert len(keys) == len(set(keys)) and set(md_stage.MD_SETTINGS) == set(keys)
    assert set(keys) == {"temperature_K", "dt_fs", "directions", "seeds", "strain_rate_per_s", "max_strain",
                         "transverse", "fit_max_strain", "failure_min_strain", "equilibrate_steps", "thermostat",
                         "thermostat_tau_fs", "barostat_tau_fs", "supercell", "short_range_core", "thermo_every",
                         "traj_every", "checkpoint_every", "neighbor_check_every", "elastic", "extrapolation", "stability",
                         "heterostructure", "thermal", "shear"}
    assert md_stage.MD_SETTINGS["shear"]["enabled"][1] is False  # a new protocol is off by default


def test_stress_limits_ignore_what_follows_the_peak_and_outlier_spikes():
    strain = np.linspace(0, 0.2, 41)
    good = 3000 * strain * (strain < 0.12)
    debris = good.copy()
    debris[strain > 0.15] = -4000.0  # a failed sample that ran on
    clipped = [tensile._up_to_peak(strain, curve, 0.115) for curve in (good, debris)]
    low, high = tensile.stress_limits(clipped)
    assert -30 < low < 0 and 345 < high < 380
    spike = strain * 3000.0
    spike[5] = 1e5  # a run whose peak is one absurd row
    low, high = tensile.stress_limits(clipped + [tensile._up_to_peak(strain, spike, None)])
    assert high < 400
    assert tensile.stress_limits([np.array([])]) is None


def test_tensile_summary_counts_fractures_and_yields_and_averages_the_new_keys():
    """summary.json per direction: fit errors, window and transverse stress averaged over seeds; a run without
    yield (NaN) is left out of the yield mean; runs_failed counts fractures, runs_yielded drops without a crack."""
    def run(seed, failed, yield_strain):
        return {"system": "cu", "direction": "x", "name": f"cu_x_seed{seed}", "result": {
            "youngs_modulus_GPa": 45.0 + seed, "youngs_modulus_fit_sem_GPa": 5.0, "fit_window_strain": 0.03,
            "poisson_ratio": 0.4, "poisson_ratio_fit_sem": 0.1, "ultimate_strength_GPa": 6.0, "failure_strain": 0.12,
            "transverse_stress_mean_GPa": 0.01 * seed, "transverse_stress_sem_GPa": 0.05, "failed": failed,
            "failure_mode": "fracture" if failed else "none", "fracture_strain": 0.15 if failed else float("nan"),
            "yield_strain": yield_strain, "yield_stress_GPa": 6.0}}
    out = tensile.summarise([run(0, True, float("nan")), run(1, False, 0.12), run(2, False, 0.11)], {})
    x = out["cu"]["directions"]["x"]
    assert x["runs_failed"] == 1 and x["runs_yielded"] == 2 and x["runs_blown_up"] == 0
    assert x["runs_attempted"] == 3 and x["runs_unfailed"] == 0  # yield is a failure: the peak is a strength
    assert {k: x["yield_strain"][k] for k in ("attempted", "failed", "blown_up")} == \
        {"attempted": 3, "failed": 1, "blown_up": 0}  # the fractured run has no yield: no number
    assert x["youngs_modulus_GPa"]["mean"] == pytest.approx(46.0) and x["youngs_modulus_GPa"]["n"] == 3
    assert x["yield_strain"]["n"] == 2 and x["fracture_strain"]["n"] == 1
    for key in ("youngs_modulus_fit_sem_GPa", "fit_window_strain", "poisson_ratio_fit_sem",
                "transverse_stress_mean_GPa", "transverse_stress_sem_GPa"):
        assert x[key]["n"] == 3, key


def test_tensile_summary_counts_unfailed_and_blown_up_runs_per_statistic():
    """A run that neither failed nor yielded counts as unfailed (its peak is where the loading stopped); a
    blown-up run counts in every statistic of its direction; one finished run: sem null, never 0."""
    def run(seed, failed=False, yield_strain=float("nan")):
        return {"system": "cu", "direction": "x", "name": f"cu_x_seed{seed}", "result": {
            "ultimate_strength_GPa": 6.0 + seed, "failure_strain": 0.3, "failed": failed,
            "yield_strain": yield_strain}}
    lost = {"system": "cu", "direction": "x", "name": "cu_x_seed2", "blew_up": "T > 2 T0", "result": None}
    x = tensile.summarise([run(0), lost], {})["cu"]["directions"]["x"]
    assert (x["runs_attempted"], x["runs_failed"], x["runs_yielded"], x["runs_unfailed"], x["runs_blown_up"]) == \
        (2, 0, 0, 1, 1)
    assert x["ultimate_strength_GPa"] == {"mean": 6.0, "sem": None, "n": 1, "attempted": 2, "failed": 0,
                                          "blown_up": 1}
    x = tensile.summarise([run(0, failed=True), run(1)], {})["cu"]["directions"]["x"]
    assert x["runs_unfailed"] == 1 and x["ultimate_strength_GPa"]["sem"] == pytest.approx(0.5)
    # a run that blew up after its drop failed by collapse: it counts as failed (its peak is a strength), and
    # as collapsed
    collapsed = run(3, failed=True)
    collapsed["result"]["failure_mode"] = "collapse"
    x = tensile.summarise([run(0, failed=True), collapsed, run(1)], {})["cu"]["directions"]["x"]
    assert (x["runs_failed"], x["runs_collapsed"], x["runs_unfailed"]) == (2, 1, 1)
    assert x["ultimate_strength_GPa"]["n"] == 3
    # its file counts among the runs, and provenance names it with the reason
    provenance = {"md_runs": []}
    tensile.note(provenance, {**collapsed, "h5": "cu_x_seed3.h5", "n_atoms": 108, "collapsed": "step 20: hole"})
    assert provenance == {"md_runs": ["cu_x_seed3.h5"], "n_atoms": 108,
                          "collapsed": [{"run": "cu_x_seed3", "reason": "step 20: hole"}]}


def test_a_task_finds_only_its_own_checkpoints_and_trusts_none_without_its_stamp(tmp_path):
    """``<name>.ckpt.npz`` and ``<name>.<part>.ckpt.npz`` are the task's; ``<name>0.ckpt.npz`` (seed 10 beside
    seed 1) and its other files are not. A checkpoint without the task's stamp, or with another task's
    (another structure file content), is deleted, never resumed."""
    names = ["cu_x_seed1.ckpt.npz", "cu_x_seed1.seg1.ckpt.npz", "cu_x_seed1.equilibrate.ckpt.npz",
             "cu_x_seed10.ckpt.npz", "cu_x_seed1.h5", "cu_x_seed1_final.extxyz"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    prefix = tmp_path / "cu_x_seed1"
    assert [p.name for p in common.checkpoints(prefix)] == sorted(names[:3])
    structure = tmp_path / "cu.extxyz"
    structure.write_text("1\n\nCu 0 0 0\n")
    task = {"settings": {"seeds": 1}, "structure": str(structure), "seed": 1, "potential": "morse-cu"}
    assert not common.resumable(task, prefix)  # no stamp: nothing of it is trusted
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:] + ["cu.extxyz", "cu_x_seed1.task.json"])
    (tmp_path / names[0]).write_bytes(b"x")
    assert common.resumable(task, prefix)  # the same task: resumed
    structure.write_text("1\n\nCu 0 0 0.1\n")  # another structure in the same file
    assert not common.resumable(task, prefix) and not (tmp_path / names[0]).exists()
    assert (tmp_path / "cu_x_seed10.ckpt.npz").exists()
