"""The md stage's task kinds: a registry of small modules, one per protocol.

A *task kind module* is a plain module with these attributes (all optional unless marked):

``KINDS: tuple[str, ...]`` (required)
    the values of ``task["kind"]`` it plans and runs.
``SETTINGS: dict``
    its slice of the ``md`` settings table, ``key -> (type, default, help)`` or a nested block
    (:mod:`multiscale.schema`); the stage's table is the union of the slices.
``check(settings: dict) -> None``
    raises ``ValueError`` naming the dotted key (``md.<block>.<key>``) of a bad value; called on the
    whole validated ``md`` settings before any task is planned.
``plan_seed(settings, system: System, seed: int) -> list[dict]``
    the tasks of one of the ``md.seeds`` seeds of one system; the stage interleaves the seeded kinds
    seed by seed (seed 0 of every such kind is farmed before seed 1).
``plan(settings, system: System) -> list[dict]``
    the other tasks of one system, planned after its seeded ones.
``run(task: dict) -> dict`` (required)
    one task, on whichever MPI rank gets it; returns ``{**task, "result": ..., ...}`` (plain data that
    JSON keeps: it is stored as ``<name>.result.json``, :meth:`Registry.run`) or, for a run that blew up,
    ``{**task, "result": None, "blew_up": reason}``. Its runs checkpoint to ``<out_dir>/<name>[.<part>].ckpt.npz``
    and resume when :func:`~md_gpu.tasks.common.resumable` says so (module docstring of :mod:`.common`).
``note(provenance: dict, result: dict) -> None``
    what one result adds to ``systems.<name>.provenance`` of ``summary.json``, called in plan order;
    default :func:`note_blown_up`.
``summarise(results: list[dict], settings: dict) -> dict``
    ``{system: {key: value}}``: its keys of each system's entry of ``summary.json`` from its own results
    (plan order, blown-up runs included); raises :class:`md_gpu.errors.MDRunError` when a measurement
    lost every seed.
``SUMMARY_ORDER: int``
    where those keys go in a system's entry (small first; default 100, ties in registration order).
``plots(out_dir: Path, system: str, results: list[dict], entry: dict) -> None``
    figures of one system on the root rank: ``results`` are its runs that did not blow up, ``entry``
    the system's entry of ``summary.json``.

A new protocol is one such module plus one ``register`` line below.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from . import common, elastic, shear, stability, stripes, tensile, thermal
from .common import note_blown_up

__all__ = ["System", "TASKS", "Registry", "note_blown_up"]


@dataclass(frozen=True)
class System:
    """One system of the case as the planners see it.

    ``name``: the system's name; ``entry``: its ``systems.<name>`` block of case.yaml (``kind``,
    ``thickness_A`` in Å, ``between``); ``base``: the fields every task of it starts from
    (``system``, ``potential`` (an MTP or a NEP file), ``structure`` (its 0 K cell's file), ``core_radii``,
    ``active_set`` (the fit stage's ``.als`` or None), ``out_dir``, ``settings``, ``thickness_A``);
    ``systems``: every system's block, by name;
    ``structures``: every system's 0 K cell file (the data stage's ``<name>.structure.extxyz``), by name.
    """

    name: str
    entry: dict
    base: dict
    systems: dict
    structures: dict

    @property
    def is_interface(self) -> bool:
        return self.entry["kind"] == "interface"


class Registry:
    """Task kind modules by name, in registration order (the order of planning)."""

    def __init__(self):
        self.modules: dict[str, ModuleType] = {}
        self._by_kind: dict[str, ModuleType] = {}

    def register(self, module: ModuleType) -> None:
        name = module.__name__.rsplit(".", 1)[-1]
        for kind in module.KINDS:
            if kind in self._by_kind:
                raise ValueError(f"task kind {kind!r} of {name} is already registered by "
                                 f"{self._by_kind[kind].__name__}")
            self._by_kind[kind] = module
        self.modules[name] = module

    def module_of(self, kind: str) -> ModuleType:
        """The module that runs tasks of ``kind``."""
        try:
            return self._by_kind[kind]
        except KeyError:
            raise ValueError(f"md: no task kind {kind!r} is registered (md_gpu.tasks)") from None

    def run(self, task: dict) -> dict:
        """Run one task with the module of its kind, once (:func:`md_gpu.tasks.common.run_once`: a task that
        finished before returns its stored result)."""
        return common.run_once(task, self.module_of(task["kind"]).run)

    def settings_table(self) -> dict:
        """The ``md`` settings table: the run-wide keys, then each module's slice."""
        table = dict(common.SETTINGS)
        for module in self.modules.values():
            for key, spec in getattr(module, "SETTINGS", {}).items():
                if key in table:
                    raise ValueError(f"md.{key}: declared twice in md_gpu.tasks")
                table[key] = spec
        return table

    def check(self, settings: dict) -> None:
        common.check(settings)
        for module in self.modules.values():
            if hasattr(module, "check"):
                module.check(settings)

    def plan(self, settings: dict, system: System) -> list[dict]:
        """Every task of one system: the seeded kinds seed by seed, then the others."""
        tasks = []
        for seed in range(settings["seeds"]):
            for module in self.modules.values():
                if hasattr(module, "plan_seed"):
                    tasks += module.plan_seed(settings, system, seed)
        for module in self.modules.values():
            if hasattr(module, "plan"):
                tasks += module.plan(settings, system)
        return tasks

    def summary_order(self) -> list[ModuleType]:
        return sorted(self.modules.values(), key=lambda m: getattr(m, "SUMMARY_ORDER", 100))


TASKS = Registry()
TASKS.register(tensile)
TASKS.register(elastic)
TASKS.register(stability)
TASKS.register(stripes)
TASKS.register(thermal)
TASKS.register(shear)
