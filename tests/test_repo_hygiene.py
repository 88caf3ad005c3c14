"""The repository keeps its own rules: ruff clean, and no `adapters` import package at top level."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    result = subprocess.run(
        [ruff, "check", "hardened", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_adapters_folder_is_data_only() -> None:
    # A PyPI package owns the import name `adapters`: the profiles must stay data, never Python.
    assert not list((ROOT / "adapters").glob("*.py"))


def test_every_subpackage_ships() -> None:
    # pyproject lists packages explicitly (for hardened._adapters); a new subpackage must be added.
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "hardened").rglob("__init__.py")
    }
    assert found <= listed, f"add to pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"
    assert "hardened._adapters" in listed


def test_tests_cannot_reach_the_internet() -> None:
    import socket

    with pytest.raises(ConnectionRefusedError, match="loopback"), socket.socket() as s:
        s.connect(("192.0.2.1", 443))  # TEST-NET-1: refused by the conftest guard before any packet
