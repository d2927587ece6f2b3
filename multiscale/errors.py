"""The runner's error hierarchy (kept small, like ASE's calculator errors).

* :class:`CaseError` – the case directory or ``case.yaml`` is wrong (a missing
  file, an unknown key, a value of the wrong type). Raised before any stage runs.
* :class:`StageError` – a stage failed while running (an engine raised, a
  rank failed under MPI). The message names the stage and, under MPI, the rank.
"""


class MultiscaleError(Exception):
    """Base class of the errors the runner reports to the user as one clear line."""


class CaseError(MultiscaleError, ValueError):
    """Bad case input: typical causes are a typo in a key of case.yaml, a value of the
    wrong type, a missing dataset file, or an unknown stage or preset name."""


class StageError(MultiscaleError, RuntimeError):
    """A stage failed while running; nothing that earlier stages wrote is touched."""
