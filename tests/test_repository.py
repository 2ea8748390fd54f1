"""The source tree is what a clone gets: no module may sit under a git-ignored path."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("agent", "tools", "eval", "prompts", "tests", "scripts")


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_no_source_file_is_ignored_by_git() -> None:
    sources = [
        str(p.relative_to(ROOT))
        for d in SOURCE_DIRS
        for p in (ROOT / d).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    # check-ignore exits 1 when none of the paths is ignored; it prints the ignored ones.
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(sources),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.split() == [], f"ignored by .gitignore, so missing from every clone: {result.stdout}"
