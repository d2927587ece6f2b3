"""Run the stage graph of a case: skip what is unchanged, rerun what changed.

For each selected stage, in order:

1. rank 0 builds the stage's *input record*: its validated settings, the
   case's systems, the output hash of each upstream stage, and the content hash
   of the case files it reads (``Stage.case_inputs``, ``Stage.case_files``);
2. if ``runs/<stage>/stage.json`` holds the same record (and no ``--force``),
   the stage is skipped; otherwise the list of what changed is logged; ``--force``
   also discards the files an interrupted run left in ``runs/<stage>.partial/``
   (checkpoints included), so the stage starts afresh;
3. every rank runs the stage into ``runs/<stage>.partial/``; a failure on any
   rank fails the stage on all ranks (``Farm.finish``), keeping the scratch
   folder for a resume and the previous finished output untouched;
4. rank 0 hashes the outputs, writes ``stage.json`` and moves the folder into
   place atomically.

Each run appends to a log file ``runs/logs/run-<time>.log``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from common import atomic
from .context import StageContext
from .errors import CaseError, StageError
from .parallel import Farm
from .progress import format_seconds
from .schema import changed_keys
from .stages import from_import_error

RECORD = "stage.json"
logger = logging.getLogger("multiscale")


# -- hashing ----------------------------------------------------------------
def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_hash(folder: Path, *, exclude: Iterable[str] = (RECORD,)) -> str:
    """Content hash of every file under ``folder`` (names and bytes), ``exclude`` left out."""
    digest = hashlib.sha256()
    exclude = set(exclude)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in exclude:
            continue
        digest.update(rel.encode() + b"\0" + file_hash(path).encode() + b"\0")
    return digest.hexdigest()


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def input_record(case, name: str) -> dict:
    """What stage ``name`` depends on: settings, systems, upstream outputs, case files."""
    stage = case.pipeline[name]
    upstream = {}
    for up in stage.after:
        record = read_record(case, up)
        upstream[up] = record["output_hash"] if record else None
    files = {}
    for pattern in stage.case_inputs:
        for path in sorted(case.path.glob(pattern)):
            # hidden files and Markdown notes (data/README.md) describe the inputs; editing them reruns nothing
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".md":
                files[path.relative_to(case.path).as_posix()] = file_hash(path)
    for path in (stage.case_files(case) if stage.case_files else ()):
        path = Path(path)
        rel = path.relative_to(case.path).as_posix() if path.is_relative_to(case.path) else str(path)
        files[rel] = file_hash(path)
    return {"settings": case.settings.get(name, {}), "systems": case.systems,
            "upstream": upstream, "files": files}


def record_hash(inputs: dict) -> str:
    return hashlib.sha256(_canonical(inputs).encode()).hexdigest()


def what_changed(old: dict, new: dict) -> list[str]:
    """Names of the inputs that differ, e.g. ``settings.seeds``, ``upstream:fit``, ``file:data/x``."""
    names = [f"settings.{k}" for k in changed_keys(old.get("settings", {}), new["settings"])]
    names += [f"systems.{k}" for k in changed_keys(old.get("systems", {}), new["systems"])]
    for kind, prefix in (("upstream", "upstream:"), ("files", "file:")):
        a, b = old.get(kind, {}), new[kind]
        names += [prefix + k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return names


def read_record(case, name: str) -> dict | None:
    path = case.runs_dir / name / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# -- status -------------------------------------------------------------------
@dataclass
class StageStatus:
    """One row of ``multiscale status``."""

    name: str
    state: str          # done | stale | missing | unavailable
    detail: str = ""
    finished: str = ""
    elapsed_s: float | None = None
    interrupted: bool = False

    def row(self) -> str:
        when = self.finished[:19].replace("T", " ") if self.finished else "-"
        took = format_seconds(self.elapsed_s) if self.elapsed_s is not None else "-"
        note = self.detail + ("  (an interrupted run left files to resume from)" if self.interrupted else "")
        return f"{self.name:<13} {self.state:<12} {when:<20} {took:>8}  {note}"


def case_status(case) -> list[StageStatus]:
    """The state of every stage: done (inputs unchanged), stale (what changed), missing (and, if so,
    blocked by which stage that cannot run here), unavailable (why: the package that is missing)."""
    rows = []
    for stage in case.pipeline.stages:
        name = stage.name
        atomic.recover_dir(case.runs_dir / name)
        interrupted = (case.runs_dir / f"{name}.partial").exists()
        if name in case.unavailable:
            rows.append(StageStatus(name, "unavailable", case.unavailable[name], interrupted=interrupted))
            continue
        record = read_record(case, name)
        if record is None:
            blocked_by = unavailable_upstream(case, name, reason=False)
            detail = f"never run; blocked: needs the output of {blocked_by}" if blocked_by else "never run"
            rows.append(StageStatus(name, "missing", detail, interrupted=interrupted))
            continue
        new = input_record(case, name)
        changed = what_changed(record["inputs"], new)
        state = "stale" if changed else "done"
        detail = ("changed: " + ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else "")) if changed else ""
        rows.append(StageStatus(name, state, detail, record.get("finished", ""),
                                record.get("elapsed_s"), interrupted))
    return rows


def format_status(case) -> str:
    head = f"{'stage':<13} {'state':<12} {'finished':<20} {'took':>8}  detail"
    lines = [f"case {case.path} (preset: {case.preset or 'none'})", head, "-" * len(head)]
    return "\n".join(lines + [row.row() for row in case_status(case)])


# -- running ------------------------------------------------------------------
@dataclass
class RunResult:
    """What a run did, per stage: ``ran``, ``skipped``, ``unavailable`` or ``blocked``."""

    outcome: dict

    @property
    def ran(self) -> list[str]:
        return [n for n, o in self.outcome.items() if o == "ran"]

    @property
    def skipped(self) -> list[str]:
        return [n for n, o in self.outcome.items() if o == "skipped"]

    @property
    def not_available(self) -> list[str]:
        return [n for n, o in self.outcome.items() if o in ("unavailable", "blocked")]


def _versions() -> dict:
    import numpy

    return {"python": sys.version.split()[0], "numpy": numpy.__version__, "platform": platform.platform()}


def _start_log(case, farm: Farm) -> Path | None:
    logger.setLevel(logging.INFO)
    if not farm.is_root:
        return None
    logs = case.runs_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"run-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}.log"
    for handler in list(logger.handlers):
        if getattr(handler, "_multiscale", False):
            logger.removeHandler(handler)
            handler.close()
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    screen = logging.StreamHandler(sys.stdout)
    screen.setFormatter(logging.Formatter("%(message)s"))
    for handler in (file_handler, screen):
        handler._multiscale = True
        logger.addHandler(handler)
    logger.propagate = False
    return path


def run_case(case, stages: Iterable[str] | None = None, *, force: bool = False,
             farm: Farm | None = None) -> RunResult:
    """Run ``stages`` of ``case`` (all by default) in pipeline order.

    A stage that cannot run here (``case.unavailable``: an engine package is not
    installed) is reported as unavailable and the stages that need its output as
    blocked, each with the package named; the other stages run and nothing is
    faked. Asking for such a stage by name (``stages``) is a :class:`CaseError`
    before anything runs. Raises :class:`StageError` when a stage fails,
    :class:`CaseError` when a needed upstream output is missing.
    """
    selected = case.select(stages)
    if stages is not None:
        _check_requested(case, selected)
    farm = farm or Farm.from_environment()
    log_path = _start_log(case, farm)
    say = logger.info if farm.is_root else (lambda *_: None)
    say(f"case {case.path} preset={case.preset or 'none'} stages={','.join(selected)} "
        f"ranks={farm.size}" + (f" log={log_path}" if log_path else ""))
    outcome: dict[str, str] = {}
    for name in selected:
        stage = case.pipeline[name]
        if name in case.unavailable:
            outcome[name] = "unavailable"
            say(f"[{name}] not available: {case.unavailable[name]}")
            continue
        blocked_by = unavailable_upstream(case, name)
        if blocked_by:
            outcome[name] = "blocked"
            say(f"[{name}] blocked: needs the output of {blocked_by}")
            continue
        missing_up = [u for u in stage.after if outcome.get(u) is None and read_record(case, u) is None]
        if missing_up:
            raise CaseError(f"stage '{name}' needs the output of {', '.join(missing_up)}; run "
                            f"`multiscale run {case.path} --stages {missing_up[0]}` first")
        decision = None
        if farm.is_root:
            decision = _decide(case, name, force, say)
        decision = farm.bcast(decision)
        if decision["skip"]:
            outcome[name] = "skipped"
            continue
        _run_one(case, name, decision["inputs"], farm, say)
        outcome[name] = "ran"
    result = RunResult(outcome)
    if result.not_available:
        say("not available here: " + ", ".join(result.not_available) + " (no output was faked for them)")
    return result


def unavailable_upstream(case, name: str, *, reason: bool = True) -> str | None:
    """Why stage ``name`` cannot get its inputs, or None: the first upstream stage without a finished
    output that cannot run here, directly or through its own upstream stages, e.g.
    ``"fem, which is not available: dolfinx is not installed: ..."`` (``reason=False``: without the
    part after ``not available``)."""
    for up in case.pipeline[name].after:
        if read_record(case, up) is not None:
            continue
        if up in case.unavailable:
            return f"{up}, which is not available" + (f": {case.unavailable[up]}" if reason else "")
        further = unavailable_upstream(case, up, reason=reason)
        if further:
            return f"{up}, which needs the output of {further}"
    return None


def _check_requested(case, selected: list[str]) -> None:
    """A stage asked for by name must be able to run: one CaseError naming each one and the package."""
    problems = []
    for name in selected:
        if name in case.unavailable:
            problems.append(f"stage '{name}' is not available: {case.unavailable[name]}")
        else:
            blocked_by = unavailable_upstream(case, name)
            if blocked_by:
                problems.append(f"stage '{name}' needs the output of {blocked_by}")
    if problems:
        raise CaseError("; ".join(problems))


def _decide(case, name: str, force: bool, say) -> dict:
    atomic.recover_dir(case.runs_dir / name)
    inputs = input_record(case, name)
    record = read_record(case, name)
    if record is not None and not force:
        changed = what_changed(record["inputs"], inputs)
        if not changed:
            say(f"[{name}] unchanged since {record.get('finished', '?')[:19]}: skipped")
            return {"skip": True, "inputs": inputs}
        say(f"[{name}] rerun: changed {', '.join(changed)}")
    elif record is not None:
        say(f"[{name}] rerun: --force")
    partial = case.runs_dir / f"{name}.partial"
    if partial.exists() and force:  # --force starts afresh: a corrupt checkpoint there is never read again
        say(f"[{name}] --force: the files of an interrupted run in {partial} are discarded")
        shutil.rmtree(partial)
    elif partial.exists():
        say(f"[{name}] resuming from the files of an interrupted run in {partial}")
    partial.mkdir(parents=True, exist_ok=True)
    return {"skip": False, "inputs": inputs}


def _run_one(case, name: str, inputs: dict, farm: Farm, say) -> None:
    partial = case.runs_dir / f"{name}.partial"
    ctx = StageContext(name=name, case_dir=case.path, runs_dir=case.runs_dir, out_dir=partial,
                       systems=case.systems, farm=farm, preset=case.preset)
    say(f"[{name}] running")
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    error: BaseException | None = None
    summary = None
    try:
        summary = case.runners[name](case.settings[name], ctx)
    except ImportError as exc:  # an engine imported inside the run (h5py, tblite, ...) is missing
        unavailable = from_import_error(exc, case.pipeline[name].module)
        error = StageError(f"not available: {unavailable}") if unavailable else exc
    except Exception as exc:  # reported on every rank by farm.finish below
        error = exc
    try:
        farm.finish(error)
    except StageError as exc:
        raise StageError(f"stage '{name}' failed: {exc}; finished outputs of earlier runs are "
                         f"untouched, files written so far are kept in {partial}") from None
    elapsed = time.perf_counter() - t0
    if farm.is_root:
        record = {"stage": name, "inputs": inputs, "input_hash": record_hash(inputs),
                  "output_hash": tree_hash(partial), "summary": summary or {},
                  "started": started.isoformat(), "finished": datetime.now(timezone.utc).isoformat(),
                  "elapsed_s": round(elapsed, 3), "ranks": farm.size, "preset": case.preset,
                  "versions": _versions()}
        atomic.write_json(partial / RECORD, record)
        atomic.replace_dir(partial, case.runs_dir / name)
        say(f"[{name}] done in {format_seconds(elapsed)}")
    farm.bcast(None)  # other ranks wait until rank 0 has moved the output into place
