"""A case directory: ``case.yaml`` loaded, validated and resolved with its preset.

Layout (DESIGN.md)::

    cases/NAME/case.yaml   the only file a user writes
    cases/NAME/data/       datasets (input or generated)
    cases/NAME/runs/       what the stages write, one folder per stage (safe to delete)

``case.yaml`` has the top-level keys of :data:`TOP_SCHEMA`, a ``systems``
mapping (each entry checked against :data:`SYSTEM_SCHEMA`), ``presets`` (named
overrides merged into the stage sections) and one section per stage, whose
schema belongs to the engine that runs the stage; so do its value checks (``Stage.check_attr``:
a time step > 0, a level MLIP has), which run here, so that a bad value stops the case before any
stage runs. Every error names the file and the dotted key. Each system's structure (a file or a built-in builder) is
read and checked at load (:mod:`training.systems`), once the stage sections are
validated, so that a bad structure stops the case before any stage runs. Each potential a system
brings (``systems.<name>.potential``, :mod:`multiscale.potentials`) is read at load too: it must
parse and cover the elements of its system.

A stage that cannot run here (an engine package such as dolfinx or ase is not
installed, see :mod:`multiscale.stages`) is recorded in ``Case.unavailable``
with the package named; loading the case still succeeds, without importing
that stage's module, and its section is kept as written (not validated).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from .errors import CaseError
from .potentials import PotentialError, check_path, check_potential
from .schema import deep_merge, suggest, validate
from .stages import PRODUCT, Pipeline, StageUnavailable, find_missing

CASE_FILE = "case.yaml"

TOP_SCHEMA = {
    "name": (str, "", "a short name of the case"),
    "description": (str, "", "what the case models"),
    "default_preset": (str, "", "preset used when --preset is not given"),
}

SYSTEM_KINDS = ("phase", "interface")
SYSTEM_SCHEMA = {
    "kind": (str, "phase", "phase | interface"),
    "structure": (str, "", "structure file relative to the case folder (any format ASE reads: POSCAR, CIF, "
                           "extxyz, ...) or a built-in builder (graphene, borophene_chi3, "
                           "graphene_borophene_interface); phases: default the system name; "
                           "interfaces: empty = generated from `between`"),
    "thickness_A": (float, 3.35, "effective thickness used to quote 2D stresses in GPa (Å)"),
    "between": (list, [], "for an interface: the two phases it joins"),
    "dataset": (str, "", "dataset file relative to the case directory (empty: data/<system>.extxyz.gz)"),
    "potential": (str, "", "a potential the system brings instead of a fitted MTP: a GPUMD NEP file (nep.txt) "
                           "or an MLIP .mtp naming its elements, relative to the case folder; the fit stage "
                           "copies it, the md stage runs it (empty: fit an MTP)"),
}


@dataclass
class Case:
    """A loaded, validated case. Build it with :meth:`Case.load`."""

    path: Path
    source: Path
    raw: dict
    preset: str | None
    pipeline: Pipeline
    meta: dict
    systems: dict
    settings: dict = field(default_factory=dict)       # stage name -> validated settings
    unavailable: dict = field(default_factory=dict)    # stage name -> why it cannot run here (names the package)
    runners: dict = field(default_factory=dict, repr=False)  # stage name -> run function

    @classmethod
    def load(cls, path: str | Path, *, preset: str | None = None, pipeline: Pipeline = PRODUCT) -> "Case":
        """Read ``path/case.yaml`` (or a path to the yaml file itself) and validate it."""
        path = Path(path)
        source = path if path.suffix in (".yaml", ".yml") else path / CASE_FILE
        if not source.is_file():
            raise CaseError(f"{source}: no case file here; a case directory must contain {CASE_FILE}")
        try:
            raw = yaml.safe_load(source.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CaseError(f"{source}: not valid YAML: {exc}") from None
        if not isinstance(raw, Mapping):
            raise CaseError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
        case = cls(path=source.parent, source=source, raw=dict(raw), preset=None,
                   pipeline=pipeline, meta={}, systems={})
        case._validate(preset)
        return case

    # -- validation ---------------------------------------------------------
    def _validate(self, preset: str | None) -> None:
        src = str(self.source)
        stage_names = self.pipeline.names
        allowed = set(TOP_SCHEMA) | {"systems", "presets"} | set(stage_names)
        for key in self.raw:
            if key not in allowed:
                raise CaseError(f"{src}: unknown key '{key}'{suggest(key, allowed)}; "
                                f"allowed top-level keys: {', '.join(sorted(allowed))}")
        self.meta = validate({k: self.raw[k] for k in TOP_SCHEMA if k in self.raw}, TOP_SCHEMA,
                             where="case", source=src)
        self.systems = self._validate_systems(src)
        presets = self.raw.get("presets") or {}
        if not isinstance(presets, Mapping):
            raise CaseError(f"{src}: 'presets' must be a mapping of preset names to overrides")
        self.preset = preset or self.meta["default_preset"] or None
        overrides: Mapping = {}
        if self.preset is not None:
            if self.preset not in presets:
                raise CaseError(f"{src}: preset '{self.preset}' is not defined; "
                                f"defined presets: {', '.join(presets) or 'none'}")
            overrides = presets[self.preset] or {}
            if not isinstance(overrides, Mapping):
                raise CaseError(f"{src}: 'presets.{self.preset}' must be a mapping of stage sections")
            for key in overrides:
                if key not in stage_names:
                    raise CaseError(f"{src}: unknown key 'presets.{self.preset}.{key}'; a preset "
                                    f"overrides stage sections: {', '.join(stage_names)}")
        for stage in self.pipeline.stages:
            section = self.raw.get(stage.name) or {}
            if not isinstance(section, Mapping):
                raise CaseError(f"{src}: '{stage.name}' must be a mapping of settings")
            if stage.name in overrides:
                section = deep_merge(section, overrides[stage.name] or {})
            try:
                schema, run = stage.load()  # checks the stage's engine packages before importing it
            except StageUnavailable as exc:
                self.unavailable[stage.name] = str(exc)
                self.settings[stage.name] = dict(section)  # kept unvalidated, for the record
                continue
            where = stage.name if self.preset is None else f"{stage.name} (with preset '{self.preset}')"
            self.settings[stage.name] = validate(section, schema, where=where, source=src)
            check = stage.value_check()
            if check is not None:
                try:
                    check(self.settings[stage.name])
                except ValueError as exc:  # names the key; here before any stage runs, with the file
                    within = f" (with preset '{self.preset}')" if self.preset else ""
                    raise CaseError(f"{src}{within}: {exc}") from None
            try:
                stage.check_settings_engines(self.settings[stage.name], self)
            except StageUnavailable as exc:
                self.unavailable[stage.name] = str(exc)
                continue
            self.runners[stage.name] = run
        self._check_structures(src)
        self._check_potentials(src)

    def _validate_systems(self, src: str) -> dict:
        systems = self.raw.get("systems") or {}
        if not isinstance(systems, Mapping) or not systems:
            raise CaseError(f"{src}: 'systems' must map each system name (a phase or an interface) "
                            f"to its settings, e.g. 'systems: {{A: {{kind: phase, structure: A.vasp}}}}'")
        out = {}
        for name, values in systems.items():
            entry = validate(values, SYSTEM_SCHEMA, where=f"systems.{name}", source=src)
            if entry["kind"] not in SYSTEM_KINDS:
                raise CaseError(f"{src}: 'systems.{name}.kind' must be one of {', '.join(SYSTEM_KINDS)}, "
                                f"got {entry['kind']!r}")
            if not entry["thickness_A"] > 0:
                raise CaseError(f"{src}: 'systems.{name}.thickness_A' must be > 0 (Å), got {entry['thickness_A']}")
            if entry["kind"] == "phase":  # an interface's empty structure: generated from `between`
                entry["structure"] = entry["structure"] or str(name)
            if entry["dataset"]:
                dataset = self.path / entry["dataset"]
                if not dataset.is_file():
                    raise CaseError(f"{src}: 'systems.{name}.dataset' names {dataset}, which does not "
                                    f"exist; fix the path (relative to {self.path}) or remove the key")
            if entry["potential"]:
                try:
                    check_path(str(name), entry["potential"], self.path)
                except PotentialError as exc:
                    raise CaseError(f"{src}: {exc}") from None
            else:  # kept out of the stages' input records unless given: records of earlier runs stay valid
                del entry["potential"]
            out[str(name)] = entry
        for name, entry in out.items():
            if entry["kind"] == "interface":
                between = entry["between"]
                if len(between) != 2 or any(p not in out or out[p]["kind"] != "phase" for p in between):
                    raise CaseError(f"{src}: 'systems.{name}.between' must name the two phases the "
                                    f"interface joins (phases here: "
                                    f"{', '.join(n for n, e in out.items() if e['kind'] == 'phase')})")
        return out

    def _check_structures(self, src: str) -> None:
        """Read and check each system's structure (:func:`training.systems.validate_system`) for the
        data stage's engine. Skipped when the pipeline has no data stage or ase is not installed (the
        data stage then says so itself)."""
        if "data" not in self.pipeline.names or find_missing(["ase"]):
            return
        from training.engines import DEFAULT_ENGINE
        from training.systems import StructureError, check_interface_match, validate_system

        data = self.settings.get("data") or {}
        engine = str(data.get("engine") or DEFAULT_ENGINE)
        for name, entry in self.systems.items():
            try:
                validate_system(name, entry, self.path, engine=engine)
                check_interface_match(name, entry, self.systems, self.path,
                                      tolerance=float(data.get("interface_tolerance", 0.04)))
            except StructureError as exc:
                raise CaseError(f"{src}: {exc}") from None

    def _check_potentials(self, src: str) -> None:
        """Read each brought potential (``systems.<name>.potential``, :mod:`multiscale.potentials`) and,
        when the structures were checked (a data stage, ase installed), check that it covers the system's
        elements. Skipped when ase is not installed (the NEP reader needs it; so do the stages)."""
        if not any(e.get("potential") for e in self.systems.values()) or find_missing(["ase"]):
            return
        from training.systems import StructureError

        for name, entry in self.systems.items():
            try:
                check_potential(name, entry, self.systems, self.path, structures="data" in self.pipeline.names)
            except (PotentialError, StructureError) as exc:
                raise CaseError(f"{src}: {exc}") from None

    # -- convenience ----------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    def select(self, stages: Iterable[str] | None) -> list[str]:
        """Stage names in pipeline order; ``None`` means all. Unknown names are a CaseError."""
        if stages is None:
            return self.pipeline.names
        stages = list(stages)
        for name in stages:
            if name not in self.pipeline.names:
                raise CaseError(f"unknown stage '{name}'; stages are {', '.join(self.pipeline.names)}")
        return [n for n in self.pipeline.names if n in stages]

    def run(self, stages: Iterable[str] | None = None, *, force: bool = False, farm=None):
        """Run the selected stages (all by default); see :func:`multiscale.runner.run_case`."""
        from .runner import run_case

        return run_case(self, stages, force=force, farm=farm)

    def status(self):
        """Each stage's state: see :func:`multiscale.runner.case_status`."""
        from .runner import case_status

        return case_status(self)
