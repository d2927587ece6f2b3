"""On-the-fly extrapolation control: grade the neighbourhoods every N steps, warn, stop.

The hook is a callable ``grade(positions, cell, types, i, j, d) -> gamma [n]``:
positions [n, 3] Å, cell [3, 3] Å, types [n], and the current pair list within
the potential's cut-off (``i, j [p]``, ``d [p, 3]`` Å, as in the force contract);
it returns the per-atom extrapolation grade (MaxVol gamma; <= 1 interpolation,
> 1 extrapolation). :func:`mtp_grader` builds it for an MTP from the fit stage's
``.als`` active set (``training.mtp.maxvol.ActiveSet``).

:class:`ExtrapolationControl` calls it every ``every`` steps: above ``warn`` the
frame is appended to ``frames_path`` (extxyz, per-atom ``gamma`` array) for a
later refit and a warning is logged once; above ``stop`` the frame is saved and
:class:`md_gpu.errors.MDExtrapolationError` (an ``MDRunError``) stops the run with a message naming the step. Its state (frames
saved, warning logged) travels with the run's checkpoints, so a resumed run saves no frame twice.
A check reads the device twice (the number of pairs inside ``cutoff``, when given, and the grades;
:func:`md_gpu.backend.to_host`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .backend import to_host
from .errors import MDExtrapolationError, MDSetupError
from .neighbors import compact_indices


class ExtrapolationControl:
    """grade: the hook above; every: steps between checks; warn, stop: thresholds on max gamma;
    frames_path: extxyz file for the extrapolative frames; log: callable taking a line."""

    def __init__(self, grade, *, every: int = 100, warn: float = 2.0, stop: float = 10.0, frames_path=None,
                 cutoff: float | None = None, log=print):
        if every < 1 or not (0 < warn <= stop):
            raise MDSetupError(f"extrapolation control: every={every} must be >= 1 and 0 < warn={warn} <= "
                               f"stop={stop}")
        self.grade = grade
        self.every = int(every)
        self.warn = float(warn)
        self.stop = float(stop)
        self.frames_path = Path(frames_path) if frames_path else None
        self.cutoff = cutoff
        self.log = log
        self.warned = False
        self.n_saved = 0

    def _save(self, md, gamma) -> None:
        if self.frames_path is None:
            return
        from ase.io import write

        from .state import to_atoms

        atoms = to_atoms(md.state)
        atoms.arrays["gamma"] = np.asarray(gamma, dtype=float)
        atoms.info.update(step=md.step, time_fs=md.time_fs, max_gamma=float(np.max(gamma)))
        self.frames_path.parent.mkdir(parents=True, exist_ok=True)
        write(self.frames_path, atoms, format="extxyz", append=True)
        self.n_saved += 1

    def checkpoint_arrays(self) -> dict:
        """What a :class:`~md_gpu.simulation.Simulation` checkpoint keeps of this control: the length (bytes)
        of the frames file, the number of frames saved and whether the warning was logged."""
        size = self.frames_path.stat().st_size if self.frames_path and self.frames_path.is_file() else 0
        return {"frames_bytes": np.array(size), "n_saved": np.array(self.n_saved), "warned": np.array(self.warned)}

    def restore_arrays(self, arrays: dict) -> None:
        """Back to a checkpoint's :meth:`checkpoint_arrays` (the counters)."""
        self.n_saved, self.warned = int(arrays["n_saved"]), bool(arrays["warned"])

    def cut_files(self, arrays: dict) -> None:
        """The frames saved after the checkpoint of :meth:`checkpoint_arrays` are cut from the file."""
        if self.frames_path is not None and self.frames_path.is_file():
            with open(self.frames_path, "r+b") as handle:
                handle.truncate(int(arrays["frames_bytes"]))

    def check(self, md, nlist) -> float:
        """Grade the configuration of ``md``; return max gamma (raise above ``stop``)."""
        s = md.state
        nlist.settle(s.positions, s.cell)
        d = nlist.pair_vectors(s.positions, s.cell)
        i, j = nlist.i, nlist.j
        if self.cutoff is not None:
            inside = (d * d).sum(1) < self.cutoff ** 2
            keep = compact_indices(inside, int(to_host(inside.sum())))
            i, j, d = i[keep], j[keep], d[keep]
        gamma = to_host(self.grade(s.positions, s.cell, s.types, i, j, d))
        top = float(gamma.max()) if gamma.size else 0.0
        if top > self.warn:
            self._save(md, gamma)
            if top > self.stop:
                where = f"; the extrapolative frames are in {self.frames_path}" if self.frames_path else ""
                raise MDExtrapolationError(f"step {md.step}: the potential extrapolates (max grade {top:.3g} > stop "
                                 f"{self.stop:g} at atom {int(gamma.argmax())}){where}. Add these frames to "
                                 "the training set and refit (multiscale mtp select-add / passive)")
            if not self.warned:
                self.log(f"warning: step {md.step}: max extrapolation grade {top:.3g} > {self.warn:g}; "
                         "frames saved for a refit")
                self.warned = True
        return top


def mtp_grader(mtp, active_set_path):
    """The grade hook of an MTP with its active set (``training.mtp.maxvol.ActiveSet``, the fit stage's ``.als``).

    Returns ``grade(positions, cell, types, i, j, d) -> gamma [n]``, the MaxVol
    extrapolation grade of every atom's neighbourhood.
    """
    from training.mtp.maxvol import ActiveSet

    active = ActiveSet.read(active_set_path)

    def grade(positions, cell, types, i, j, d):
        return active.grades(mtp, types, i, j, d, int(positions.shape[0]))

    return grade
