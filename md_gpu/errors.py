"""Errors of the MD engine: one base class, a setup error and a run error.

* :class:`MDError` - base of everything raised on purpose by ``md_gpu``.
* :class:`MDSetupError` - raised before any step runs: a missing or unreadable
  file, an unknown species, a bad setting (the message names the key/file).
* :class:`MDRunError` - raised while running: the system blew up (non-finite
  energy, a barostat step that would rescale the cell by more than 5 %), collapsed
  into a hole of the potential (energy more than 1 eV/atom below the start), the
  neighbour list could not keep up, or the potential extrapolates beyond the stop
  threshold (the message names the step and what to do).
"""
from __future__ import annotations


class MDError(Exception):
    """Base class of the errors raised by md_gpu."""


class MDSetupError(MDError, ValueError):
    """Bad input found before the run starts (file, species, setting)."""


class MDRunError(MDError, RuntimeError):
    """The run cannot go on (blow-up, extrapolation above the stop threshold)."""
