"""Orchestration of the multiscale chain: case directories, the stage graph, CLI, MPI, report.

Python staging API::

    from multiscale import Case
    case = Case.load("cases/graphene_borophene", preset="quick")
    case.run(stages=["data", "fit"])
    for row in case.status():
        print(row.name, row.state)
"""
from .case import Case
from .errors import CaseError, MultiscaleError, StageError

__all__ = ["Case", "CaseError", "MultiscaleError", "StageError"]
__version__ = "0.1.0"
