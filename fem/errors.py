"""Errors raised by the continuum stage (kept small, like ASE's calculator errors).

* :class:`FemInputError` – bad input found before any solve: a missing or
  malformed ``properties.json`` key, an unknown phase name, a geometry that
  cannot be built (area fraction too high for the islands to fit), a bad
  setting value. The message names the file or key and what to do.
* :class:`UnusableInputError` – a ``FemInputError`` for a measured input that is there but must not be
  used (``withheld`` by the constitutive stage, or failing the same rule, common.uncertainty); a
  fallback the case asks for (``fem.interface_fallback``, ``fem.thermal.interface_fallback``,
  ``fem.thermal.on_bad_input: skip``) may take its place.
* :class:`FemSolveError` – a solve failed while running: a linear solver that
  diverged, a staggered loop that did not converge at the smallest load step.
"""


class FemError(Exception):
    """Base class of the errors of ``fem/``."""


class FemInputError(FemError, ValueError):
    """Bad input (properties file, settings, mesh file): raised before the solve starts."""


class UnusableInputError(FemInputError):
    """A measured input of properties.json that the continuum model must not use; the message says why."""


class FemSolveError(FemError, RuntimeError):
    """A solver failed during the run; the message names the load step and the solver."""
