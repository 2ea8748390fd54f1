"""The source tree is what a clone gets: no module may sit under a git-ignored path."""

import re
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


def test_the_readme_and_docs_link_only_to_files_that_exist_and_stay_short() -> None:
    """Every relative link of the README and docs/ names a file of the repository (and, with an
    anchor, a heading of it); the README stays a five-minute read."""
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # an address, not a file
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name} links to a missing {target}"
            if anchor and linked.suffix == ".md":
                headings = {_anchor(h) for h in re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)}
                assert anchor in headings, f"{page.name} links to a missing heading {target}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
