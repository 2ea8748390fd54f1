"""The layers as a contract (pyproject.toml's [tool.importlinter]): eval -> agent -> tools, no
import loop among the modules of a package, the runtime never importing the fitting code, and
eval reaching the agent through agent.api. import-linter checks them; a package with a loop
shows that the check can fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), str(config), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_the_project_keeps_its_import_contracts() -> None:
    result = lint(ROOT / "pyproject.toml", ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "BROKEN" not in result.stdout and "Contracts: 4 kept, 0 broken." in result.stdout


def test_an_import_loop_breaks_the_contract(tmp_path: Path) -> None:
    package = tmp_path / "loopy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "state.py").write_text("from loopy import nodes\n")
    (package / "nodes.py").write_text("def run() -> None:\n    from loopy import state  # inside a function: still a loop\n")
    config = tmp_path / "pyproject.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["loopy"]\n\n[[tool.importlinter.contracts]]\n'
        'name = "no loop"\ntype = "acyclic_siblings"\nancestors = ["loopy"]\n'
    )
    result = lint(config, tmp_path)
    assert result.returncode == 1 and "BROKEN" in result.stdout, result.stdout[-2000:]
