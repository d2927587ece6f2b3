"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and they can fail.

``lint-imports`` (import-linter) checks the layering of docs/architecture.md: ``common`` imports
nothing of the product, no engine imports ``multiscale``, ``fem`` imports neither ``training`` nor
``md_gpu``, ``training`` imports no ``md_gpu``, ``md_gpu`` imports only ``training.mtp`` and
``training.nep`` from ``training``, and these two import nothing else of ``training``. The second test
plants a forbidden import in a copy of the sources and expects the linter to name it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "multiscale", "training", "md_gpu", "fem")
LINTER = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINTER.is_file(), reason="import-linter is not installed (pip install -e '.[dev]')")


def lint(tree: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages below ``tree`` (imported from there, not from the install)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINTER), str(tree / "pyproject.toml"), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


def copy_sources(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.so", "templates"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_import_contracts_hold(tmp_path):
    result = lint(copy_sources(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module, line, contract", [
    ("fem/materials.py", "import md_gpu.units", "fem imports neither training nor md_gpu"),
    ("md_gpu/units.py", "import multiscale.case", "no engine imports the orchestration"),
    ("md_gpu/units.py", "import training.fit", "md_gpu imports only training.mtp and training.nep from training"),
    ("training/nep_fit.py", "import md_gpu.forcefields.nep", "training imports no MD engine"),
    ("training/nep/model.py", "import training.mtp", "training.nep (the model md_gpu runs) imports nothing else "
                                                     "of training"),
    ("common/arrays.py", "import fem.errors", "the shared low layer imports no package of the product"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    tree = copy_sources(tmp_path)
    source = tree / module
    source.write_text(source.read_text() + f"\n{line}  # planted by the test\n")
    result = lint(tree)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout
    planted = module.replace("/", ".").removesuffix(".py")
    assert planted in result.stdout, result.stdout
