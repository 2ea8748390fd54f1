"""Fitting the agent's learned parts on a run's validation users and saving them with the run,
as `toolrec intents fit-prior` / `fit-assembly` and the evaluation (for a file it lacks) do.

    fit_prior_file(run, variants, users=500)                          # RUN/intent_prior.json
    fit_assembly_file(run, variants, users=6040, menu_choice="prior") # RUN/assembly.json
    fit_missing(run, variants, [run / "assembly.json"], print)        # what an evaluation lacks

Users are drawn from every user with `seed`; histories stop before the validation item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agent.assembly import ASSEMBLY_FILE
from agent.fitting.prior import PriorReport, fit_prior
from agent.llm.base import LLM, NoLLM
from agent.prior import PRIOR_FILE
from agent.request import MenuChoice
from agent.state import AgentConfig
from tools.toolbox import Toolbox

if TYPE_CHECKING:
    from agent.fitting.assembly import AssemblyReport

PRIOR_USERS = 500
ASSEMBLY_USERS = 6040  # every ML-1M user: the ranker has one relevant item per user to learn from
SEED = 2023


def draw_users(ids: Sequence[str], users: int, seed: int = SEED) -> list[str]:
    """`users` of `ids` (all of them if fewer), drawn without replacement with `seed`."""
    return [str(u) for u in np.random.default_rng(seed).choice(ids, size=min(users, len(ids)), replace=False)]


def fit_prior_file(
    run: Path, variants: dict[str, Path] | list[Path], users: int = PRIOR_USERS, seed: int = SEED, data_dir: Path | None = None
) -> PriorReport:
    toolbox = Toolbox.open(run, data_dir, variants=variants, split="valid")
    report = fit_prior(toolbox, draw_users(toolbox.dataset.user_ids, users, seed))
    report.prior.save(run)
    return report


def fit_assembly_file(
    run: Path,
    variants: dict[str, Path] | list[Path],
    users: int = ASSEMBLY_USERS,
    seed: int = SEED,
    llm: LLM | None = None,
    menu_choice: MenuChoice = "prior",
    data_dir: Path | None = None,
) -> AssemblyReport:
    """The menu runs for every user (one round), weighted by `llm` or as `menu_choice` says."""
    toolbox = Toolbox.open(run, data_dir, variants=variants, split="valid")
    config = AgentConfig(k=10, max_rounds=1, menu_choice=menu_choice)
    from agent.fitting.assembly import fit_assembly  # lightgbm and scikit-learn, as above

    report = fit_assembly(toolbox, draw_users(toolbox.dataset.user_ids, users, seed), config, llm or NoLLM())
    report.assembly.save(run)
    return report


def fit_missing(
    run: Path, variants: dict[str, Path] | list[Path], files: Sequence[Path], say: Callable[[str], None], data_dir: Path | None = None
) -> None:
    """Fit each of `files` (the run's prior, its assembly) that does not exist yet: the prior
    first, since the assembly is fit on the menu as the prior weighs it."""
    names = {f.name for f in files}
    assembly = ASSEMBLY_FILE in names and not (run / ASSEMBLY_FILE).is_file()
    if (PRIOR_FILE in names or assembly) and not (run / PRIOR_FILE).is_file():
        say(f"fitting {run / PRIOR_FILE} on {PRIOR_USERS} validation users")
        fit_prior_file(run, variants, PRIOR_USERS, data_dir=data_dir)
    if assembly:
        say(f"fitting {run / ASSEMBLY_FILE} on up to {ASSEMBLY_USERS} validation users (the menu weighed by the prior)")
        report = fit_assembly_file(run, variants, ASSEMBLY_USERS, data_dir=data_dir)
        say(f"fitted {run / ASSEMBLY_FILE}: held-out validation NDCG@10 {report.ndcg_at_10}")
