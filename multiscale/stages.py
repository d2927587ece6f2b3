"""The stage graph: which stages exist, in which order, and where their code lives.

Each stage's settings schema and run function live in the engine that owns the
behaviour (docs/architecture.md); this table only names them. A stage whose
module is not importable yet is reported as *not available*, never faked.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Mapping


class StageUnavailable(Exception):
    """The engine module that implements a stage is not part of this installation yet."""


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    ``module`` holds ``settings_attr`` (the schema of the case.yaml section named
    ``name``) and ``run_attr`` (``run(settings, ctx) -> dict``). ``after`` are the
    stages whose outputs this one reads; ``case_inputs`` are glob patterns,
    relative to the case directory, whose file contents feed the input hash.
    """

    name: str
    module: str
    settings_attr: str
    run_attr: str
    after: tuple[str, ...] = ()
    case_inputs: tuple[str, ...] = ()
    description: str = ""

    def load(self) -> tuple[Mapping, Callable]:
        """Return ``(schema, run)``; raise :class:`StageUnavailable` if the module is missing."""
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name and (self.module == exc.name or self.module.startswith(exc.name + ".")):
                raise StageUnavailable(f"module {self.module} is not implemented yet") from None
            raise
        try:
            return getattr(module, self.settings_attr), getattr(module, self.run_attr)
        except AttributeError as exc:
            raise StageUnavailable(f"{self.module} does not provide {exc.name} yet") from None


@dataclass(frozen=True)
class Pipeline:
    """An ordered list of stages (a chain, each after its predecessors)."""

    stages: tuple[Stage, ...]
    by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "by_name", {s.name: s for s in self.stages})

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def __getitem__(self, name: str) -> Stage:
        return self.by_name[name]


PRODUCT = Pipeline((
    Stage("data", "training.data_stage", "DATA_SETTINGS", "run_data",
          case_inputs=("data/**/*",), description="AIMD datasets: read or generate"),
    Stage("fit", "training.fit_stage", "FIT_SETTINGS", "run_fit", after=("data",),
          description="two-step passive training of one MTP per system"),
    Stage("md", "md_gpu.md_stage", "MD_SETTINGS", "run_md", after=("fit",),
          description="MD tensile and elastic tests at temperature"),
    Stage("constitutive", "multiscale.constitutive", "CONSTITUTIVE_SETTINGS", "run_constitutive",
          after=("md",), description="MD results -> properties.json"),
    Stage("fem", "fem.fem_stage", "FEM_SETTINGS", "run_fem", after=("constitutive",),
          description="FEniCSx heterostructure tension to failure"),
    Stage("report", "multiscale.report", "REPORT_SETTINGS", "run_report",
          after=("data", "fit", "md", "constitutive", "fem"), description="report/index.html"),
))
