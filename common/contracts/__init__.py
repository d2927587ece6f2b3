"""Typed contracts of the files that stages hand each other: ``summary.json`` and ``properties.json``.

Each file is described once, as ``TypedDict`` shapes (:mod:`common.contracts.shapes`), and carries a
``format`` tag ``<name>/<version>``:

- ``runs/md/summary.json``, format ``md_gpu-summary/1`` (:class:`shapes.Summary`): written by the md
  stage, read by the constitutive stage, the cross-scale checks and the report;
- ``runs/constitutive/properties.json``, format ``multiscale-properties/2`` (:class:`shapes.Properties`,
  docs/properties.md): written by the constitutive stage, read by the fem stage, the checks and the report.

API: ``read_summary(path) -> dict``, ``write_summary(path, data) -> Path``, ``validate_summary(data)``
and the same three for properties. A reader gets back the plain ``dict`` that ``json.load`` gives,
checked: every key the contract requires is there with its type. A writer checks the data, then
writes it atomically (:func:`common.atomic.write_json`: the reader never sees half a file). Anything
else raises one :class:`ContractError` (a ``ValueError``) naming the file, the key path (e.g.
``systems.graphene.directions.x.youngs_modulus_N_per_m.mean``), for another ``format`` version the
found and expected versions, and the stage to rerun with ``--force``.

Why ``TypedDict`` and not dataclasses: the stages exchange plain data (DESIGN.md) and their code
indexes dicts; ``TypedDict`` types that same dict, so readers change by one line and a type checker
can follow the keys, while dataclasses would mean converting every reader (and back again for JSON)
and a second description of the nesting. Python does not check a ``TypedDict`` at run time, so
:func:`common.contracts.check.check` walks the annotations themselves: the shape is written once and
is the validator.

Versions: a writer may add a key within a version (readers ignore keys they do not know); removing
or renaming a key, or changing its meaning or unit, takes a new version, and readers of the old one
then ask for the stage to be rerun instead of misreading the file.
"""
from . import shapes
from .check import Contract, ContractError, check

SUMMARY = Contract("md_gpu-summary", 1, shapes.Summary, stage="md", what="MD summary")
# version 2: statistics may have a null sem (one seed) and carry run counts, ``withheld`` and ``single_seed``;
# strength_from_unfailed; an unresolved conductance is withheld in place (no conductance_unresolved_W_per_m2K)
PROPERTIES = Contract("multiscale-properties", 2, shapes.Properties, stage="constitutive",
                      what="properties file")
#: the ``format`` values written today
SUMMARY_FORMAT = SUMMARY.format
PROPERTIES_FORMAT = PROPERTIES.format


# the readers return the plain dict that ``json.load`` gives, checked; the writers check, then write atomically
read_summary, write_summary, validate_summary = SUMMARY.read, SUMMARY.write, SUMMARY.validate
read_properties, write_properties, validate_properties = PROPERTIES.read, PROPERTIES.write, PROPERTIES.validate


__all__ = ["ContractError", "Contract", "check", "shapes", "SUMMARY", "PROPERTIES", "SUMMARY_FORMAT",
           "PROPERTIES_FORMAT", "read_summary", "write_summary", "validate_summary", "read_properties",
           "write_properties", "validate_properties"]
