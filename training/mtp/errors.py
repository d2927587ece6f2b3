"""Errors raised by the MTP package.

``MTPError``            base class of everything below.
``MTPFormatError``      a ``.mtp`` or ``.cfg`` file (or a value given for one) is malformed: an unknown
                        or missing field, a wrong count, a number that does not parse.  The message names
                        the file, the configuration (for ``.cfg``) and the line.
``MTPSpeciesError``     the atoms contain an element or type the potential does not know, or a potential
                        tagged with species is applied to atoms of other elements.
"""
from __future__ import annotations


class MTPError(Exception):
    """Base class of the errors of ``training.mtp``."""


class MTPFormatError(MTPError, ValueError):
    """A malformed ``.mtp``/``.cfg`` file or field; the message names file, configuration and line."""


class MTPSpeciesError(MTPError, ValueError):
    """Atoms and potential disagree about the species (unknown element, type index out of range)."""
