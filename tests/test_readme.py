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


def _repository_text_files() -> list[Path]:
    skip = {".venv", ".git", "artifacts", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}
    suffixes = {".py", ".toml", ".md", ".json", ".html", ".txt", ".cfg", ".ini"}
    found = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if (
            path.is_file()
            and path.suffix in suffixes
            and not parts & skip
            and not path.name.endswith(".egg-info")
        ):
            found.append(path)
    return found


def test_nothing_refers_to_documents_that_are_not_in_the_repository() -> None:
    # The design notes and briefs the project was built from live outside the repository: a
    # "see DESIGN.md" in a comment sends a reader to a file they do not have.
    outside = ("DESIGN.md", "STYLE.md", "BRIEF.md")
    offenders = [
        f"{path.relative_to(ROOT)} mentions {name}"
        for path in _repository_text_files()
        if path != Path(__file__).resolve()
        for name in outside
        if name in path.read_text(encoding="utf-8", errors="replace") and not (ROOT / name).exists()
    ]
    assert not offenders, offenders


def test_relative_links_in_the_docs_point_at_files_that_exist() -> None:
    for doc in [ROOT / "README.md", *ROOT.glob("hardened/**/*.md")]:
        for target in re.findall(r"\]\((?!https?://|#|mailto:)([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target.split("#")[0]).exists(), f"{doc.relative_to(ROOT)} links to {target}"
