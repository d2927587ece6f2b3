"""Errors raised by the NEP package.

``NEPError``       base class of everything below (a ``ValueError``, as the MTP package's format errors).
``NEPFileError``   a ``nep.txt`` that is malformed, or a model this code does not evaluate; the message
                   names the file and the line.

The MD engine reports them as its own setup error with the same message
(``md_gpu.forcefields.nep.NEPForceField.read`` converts a :class:`NEPError` into an ``MDSetupError``).
"""
from __future__ import annotations


class NEPError(ValueError):
    """Base class of the errors of ``training.nep``."""


class NEPFileError(NEPError):
    """A ``nep.txt`` that is malformed, or a model this code does not evaluate (the message names
    the file and line). Typical causes: a dipole/polarizability/charge model, a truncated or
    hand-edited file, a header that does not match the number of parameters."""
