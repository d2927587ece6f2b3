"""Figures: matplotlib on the Agg backend, and one atomic PNG writer.

Every stage draws its plots off-screen (on MPI ranks and CI machines there is no display) and
writes them like any other artefact: to a temporary file that is renamed into place, so a report
never links a half-written PNG.
"""
from __future__ import annotations

from pathlib import Path

from .atomic import atomic_path


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend selected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, *, dpi: int = 110, tight: bool = False) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix, ``dpi`` dots per inch) and close
    it, also when writing fails; ``tight``: call ``fig.tight_layout()`` first. Returns the path."""
    path = Path(path)
    try:
        if tight:
            fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        pyplot().close(fig)
    return path
