"""The stage graph: which stages exist, in which order, where their code lives, what they need installed.

Each stage's settings schema and run function live in the engine that owns the
behaviour (docs/architecture.md); this table only names them, together with the
*engine packages* each stage needs (dolfinx for ``fem``, ase for ``data``, ...).
A stage is *not available* when one of those packages cannot be found, or when
its module does not import: it is reported with the package named and how to
install it, never faked, and the other stages still run.

Loading a case never tries to import a missing engine: the packages of a stage
are looked up with :func:`importlib.util.find_spec` (which finds a package
without importing it) *before* the stage's module is imported, so a missing
dolfinx stops at the ``fem`` entry of this table instead of deep in an import
chain (``fem.fem_stage`` -> ``fem.consistency`` -> ``fem.study`` ->
``fem.mechanics`` -> ``dolfinx``). When the packages are there, the stage's
module is imported for its settings schema, and with it whatever that module
imports at its top (``fem.fem_stage``: mpi4py and dolfinx).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from .potentials import brought_files

#: The packages of this project; an import error naming one of them is a bug, not a missing engine.
OWN_PACKAGES = ("common", "multiscale", "training", "md_gpu", "fem")

#: How to install each engine package on Debian 12 (scripts/bootstrap.sh, README "Other systems").
INSTALL = {
    "dolfinx": "apt-get install python3-dolfinx",
    "petsc4py": "apt-get install python3-petsc4py",
    "mpi4py": "apt-get install python3-mpi4py",
    "h5py": "apt-get install python3-h5py",
    "ufl": "apt-get install python3-dolfinx",
    "basix": "apt-get install python3-dolfinx",
    "ase": "pip install ase",
    "gmsh": "pip install gmsh",
    "tblite": "pip install tblite",
    "gpaw": "apt-get install gpaw gpaw-data",
    "cupy": "pip install cupy-cuda12x",
}


class StageUnavailable(Exception):
    """A stage cannot run here. Typical causes: an engine package it needs is not installed, an
    installed one fails to import, or the stage's module is not part of this installation. The
    message names the package and says how to install it."""


def install_hint(packages: Iterable[str]) -> str:
    """``apt-get install python3-dolfinx, see README``: how to install ``packages`` (merged per tool)."""
    commands: list[str] = []
    for package in packages:
        command = INSTALL.get(package, f"pip install {package}")
        if command not in commands:
            commands.append(command)
    merged: dict[str, list[str]] = {}
    for command in commands:
        tool, _, args = command.partition(" install ")
        merged.setdefault(tool, []).append(args)
    return "; ".join(f"{tool} install {' '.join(args)}" for tool, args in merged.items()) + ", see README"


def not_installed(packages: Iterable[str], *, why: str = "") -> StageUnavailable:
    """The error for ``packages`` that cannot be found: ``dolfinx is not installed: apt-get ..., see README``."""
    packages = list(packages)
    verb = "is" if len(packages) == 1 else "are"
    because = f" ({why})" if why else ""
    return StageUnavailable(f"{', '.join(packages)} {verb} not installed{because}: {install_hint(packages)}")


def find_missing(packages: Iterable[str]) -> list[str]:
    """The names in ``packages`` (top-level package names) that cannot be found; imports none of them."""
    missing = []
    for package in packages:
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):  # a finder refused it, or a half-imported module without a spec
            found = False
        if not found:
            missing.append(package)
    return missing


def from_import_error(exc: ImportError, module: str = "") -> StageUnavailable | None:
    """A :class:`StageUnavailable` for an import error of a third-party package met while importing
    (or running) ``module``; None when the error is in this project's own code (a bug: re-raise it)."""
    name = exc.name or ""
    top = name.split(".")[0]
    if not top:
        return None
    if isinstance(exc, ModuleNotFoundError) and module and (module == name or module.startswith(name + ".")):
        return StageUnavailable(f"module {module} is not part of this installation")
    if top in OWN_PACKAGES:
        return None
    if isinstance(exc, ModuleNotFoundError) and (name == top or find_missing([top])):
        return not_installed([top], why=f"needed by {module}" if module else "")
    return StageUnavailable(f"{top} is installed but does not import ({exc}): reinstall it "
                            f"({install_hint([top])})")


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    ``module`` holds ``settings_attr`` (the schema of the case.yaml section named
    ``name``) and ``run_attr`` (``run(settings, ctx) -> dict``). ``after`` are the
    stages whose outputs this one reads; ``case_inputs`` are glob patterns,
    relative to the case directory, whose file contents feed the input hash, and
    ``case_files(case)``, when given, names further files (paths) that do (e.g.
    the potentials the systems bring).
    ``engines`` are the packages (top-level import names) the stage always needs,
    checked before ``module`` is imported; ``settings_engines(settings, case)``,
    when given, returns ``(package, why)`` pairs for the further packages that the
    validated settings ask for (e.g. tblite when the data stage is to generate a
    dataset with it). ``check_attr``, when given, names ``check(settings)`` in ``module``: the value checks
    the schema's types cannot express (a time step > 0, a level MLIP has), raising ``ValueError`` that
    names the key; :class:`multiscale.case.Case` runs it at load, before any stage runs.
    """

    name: str
    module: str
    settings_attr: str
    run_attr: str
    after: tuple[str, ...] = ()
    case_inputs: tuple[str, ...] = ()
    description: str = ""
    engines: tuple[str, ...] = ()
    settings_engines: Callable[[Mapping, object], Iterable[tuple[str, str]]] | None = None
    case_files: Callable[[object], Iterable] | None = None
    check_attr: str = ""

    def check_engines(self) -> None:
        """Raise :class:`StageUnavailable` naming every package of ``engines`` that cannot be found."""
        missing = find_missing(self.engines)
        if missing:
            raise not_installed(missing)

    def check_settings_engines(self, settings: Mapping, case) -> None:
        """Raise :class:`StageUnavailable` naming the packages that ``settings`` ask for and that are missing."""
        if self.settings_engines is None:
            return
        wanted = list(self.settings_engines(settings, case))
        missing = find_missing(p for p, _ in wanted)
        if missing:
            why = "; ".join(reason for p, reason in wanted if p in missing)
            raise not_installed(missing, why=why)

    def value_check(self) -> Callable[[Mapping], None] | None:
        """The module's ``check_attr`` function (after :meth:`load`), or None when the stage has none."""
        return getattr(importlib.import_module(self.module), self.check_attr) if self.check_attr else None

    def load(self) -> tuple[Mapping, Callable]:
        """Return ``(schema, run)``; raise :class:`StageUnavailable` if an engine or the module is missing."""
        self.check_engines()
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            unavailable = from_import_error(exc, self.module)
            if unavailable is None:
                raise
            raise unavailable from None
        try:
            return getattr(module, self.settings_attr), getattr(module, self.run_attr)
        except AttributeError as exc:
            raise StageUnavailable(f"{self.module} does not provide {exc.name}") from None


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


def _data_engines(settings: Mapping, case) -> list[tuple[str, str]]:
    """The reference engine's package, when the data stage is to generate a missing dataset."""
    if not settings.get("generate"):
        return []
    from training.data_stage import dataset_path

    missing = [n for n, s in case.systems.items() if not dataset_path(case.path, n, s).is_file()]
    if not missing:
        return []
    engine = str(settings.get("engine", ""))
    if engine.startswith("tblite"):
        package = "tblite"
    elif engine == "gpaw":
        package = "gpaw"
    elif engine.startswith("python:"):
        package = engine[len("python:"):].split(".")[0]
    else:
        return []  # an unknown engine name: the stage's own check names data.engine
    return [(package, f"data.engine: {engine} generates the missing dataset of {', '.join(missing)}")]


def _md_engines(settings: Mapping, case) -> list[tuple[str, str]]:
    """CuPy, when MULTISCALE_BACKEND=cupy asks for the GPU (md_gpu.backend); otherwise NumPy will do."""
    from_env = os.environ.get("MULTISCALE_BACKEND", "").strip().lower()
    return [("cupy", "MULTISCALE_BACKEND=cupy")] if from_env == "cupy" else []


PRODUCT = Pipeline((
    Stage("data", "training.data_stage", "DATA_SETTINGS", "run_data",
          case_inputs=("data/**/*",), description="AIMD datasets: read or generate",
          engines=("ase",), settings_engines=_data_engines, check_attr="check_settings"),
    Stage("fit", "training.fit_stage", "FIT_SETTINGS", "run_fit", after=("data",),
          description="two-step passive training of one MTP per system (or the potential it brings)",
          engines=("ase", "h5py"), case_files=brought_files, check_attr="check_settings"),
    Stage("md", "md_gpu.md_stage", "MD_SETTINGS", "run_md", after=("data", "fit"),
          description="MD tensile and elastic tests at temperature", engines=("ase", "h5py"),
          settings_engines=_md_engines, check_attr="check_settings"),
    Stage("constitutive", "multiscale.constitutive", "CONSTITUTIVE_SETTINGS", "run_constitutive",
          after=("md",), description="MD results -> properties.json"),
    Stage("fem", "fem.fem_stage", "FEM_SETTINGS", "run_fem", after=("constitutive",),
          description="FEniCSx heterostructure tension to failure",
          engines=("dolfinx", "petsc4py", "mpi4py", "ufl", "basix", "gmsh"), check_attr="check_settings"),
    Stage("report", "multiscale.report", "REPORT_SETTINGS", "run_report",
          after=("data", "fit", "md", "constitutive", "fem"), description="report/index.html"),
))
