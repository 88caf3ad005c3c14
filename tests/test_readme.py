"""README.md opens with the two commands of a fresh machine, and CI runs the test one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = readme.split("---", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", head, re.DOTALL)


def test_readme_opens_with_the_demo_and_the_test_command() -> None:
    commands = _commands()
    assert len(commands) == 2
    assert commands[0].endswith("hardened demo")
    assert commands[1].endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[-1] == _commands()[1]
