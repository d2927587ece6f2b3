"""Errors of the MD engine: one base class, a setup error and a run error.

* :class:`MDError` - base of everything raised on purpose by ``md_gpu``.
* :class:`MDSetupError` - raised before any step runs: a missing or unreadable
  file, an unknown species, a bad setting (the message names the key/file).
* :class:`MDRunError` - raised while running: the system blew up (non-finite
  energy, a barostat step that would rescale the cell by more than 5 %), collapsed
  into a hole of the potential (energy more than 1 eV/atom below the start), the
  neighbour list could not keep up, or the potential extrapolates beyond the stop
  threshold (the message names the step and what to do). Raised by
  :meth:`md_gpu.simulation.Simulation.run`, it carries the thermo rows of the run that passed its
  guards (``thermo``: column name -> array, as :class:`~md_gpu.simulation.RunResult`; None when
  raised elsewhere).
* :class:`MDExtrapolationError` - the run error of the extrapolation control: the user's stop
  threshold, which protocols never absorb (a refit is asked for).
"""
from __future__ import annotations


class MDError(Exception):
    """Base class of the errors raised by md_gpu."""


class MDSetupError(MDError, ValueError):
    """Bad input found before the run starts (file, species, setting)."""


class MDRunError(MDError, RuntimeError):
    """The run cannot go on (blow-up, extrapolation above the stop threshold)."""

    thermo: dict | None = None


class MDExtrapolationError(MDRunError):
    """The potential extrapolates above ``md.extrapolation.stop``: add the saved frames and refit."""
