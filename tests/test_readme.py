"""README.md opens with the two commands of a fresh machine, CI runs the test one verbatim, and
every ``python`` example in it runs as written, against the simulator.

A block whose first line is ``# not run: <why>`` is skipped (the live-exchange example); such
exclusions are counted and kept to a couple. Each block runs in a fresh namespace in a temporary
working directory, with ``HARDENED_SIM_URL`` pointing at a simulator started for the test (what
``hardened sim`` would be in another terminal).
"""

from __future__ import annotations

import io
import os
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardened.sim import Simulator

ROOT = Path(__file__).resolve().parent.parent


NOT_RUN = "# not run:"


def python_blocks() -> list[str]:
    """Every fenced ``python`` block of README.md, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", readme, re.DOTALL | re.MULTILINE)


def _block_id(block: str) -> str:
    code = [
        line for line in block.splitlines() if line.strip() and not line.startswith(("#", "import", "from"))
    ]
    return (code[0] if code else block.splitlines()[0])[:50]


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
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]  # prune, not walk
        found += [Path(folder, name) for name in files if Path(name).suffix in suffixes]
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


@pytest.fixture(scope="module")
def separate_sim() -> Iterator[Simulator]:
    """What ``hardened sim`` would be in another terminal: a simulator the README's blocks reach by URL."""
    with Simulator(exchanges=["binance", "kucoin"], seed=5) as sim:
        yield sim


RUNNABLE = [b for b in python_blocks() if not b.startswith(NOT_RUN)]


@pytest.mark.parametrize("block", RUNNABLE, ids=[_block_id(b) for b in RUNNABLE])
def test_readme_python_examples_run_as_written(
    block: str, separate_sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write files (errors.json)
    monkeypatch.setenv("HARDENED_SIM_URL", separate_sim.url)
    code = compile(block, "README.md python block", "exec")
    exec(code, {"__name__": "__readme__"})


def test_readme_examples_are_mostly_runnable_and_exclusions_say_why() -> None:
    blocks = python_blocks()
    skipped = [b for b in blocks if b.startswith(NOT_RUN)]
    assert len(blocks) >= 5 and len(skipped) <= 2
    for block in skipped:
        reason = block.splitlines()[0][len(NOT_RUN) :].strip()
        assert len(reason) > 10, f"say why a README block is not run: {block.splitlines()[0]!r}"
    for block in blocks:  # placeholders that would not run: a set of Ellipsis, or ... for a value
        code = _without_comments(block)
        assert "{...}" not in code and ": ...," not in code and ": ...}" not in code, block


def _without_comments(block: str) -> str:
    """The block's code with its comments left out (a comment may well show ``{...}``)."""
    tokens = tokenize.generate_tokens(io.StringIO(block).readline)
    return tokenize.untokenize(t for t in tokens if t.type != tokenize.COMMENT)
