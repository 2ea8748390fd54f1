"""Simulated-user evaluation of conversations (InteRecAgent's protocol, adapted).

A simulated user holds a hidden target item (the user's held-out test item: the toolbox runs on
the "test" split, so the agent's history never contains it) and a profile (their own history).
It talks to the conversation layer for up to N turns; after each answer the turn is a hit if
the target is in the list shown. Reported: hit rate within N turns (`hit@N`), the hit rate by
turn, the average number of turns (a miss counts as N), and the average turns of the hits. As a
no-conversation reference, `backbone_hit@N*k`: whether the backbone alone ranks the target
within the same number of items shown (N pages of k, without listening).

The simulated user (`--user-sim`, `eval.sim_users`): "rules" (deterministic, no LLM) or "llm"
(the model named by `--user-llm` writes each message from clues that grow turn by turn; a draft
naming the target is regenerated, then redacted, and both are counted). Hit rate and average
turns come with bootstrap 95% intervals over the users.

    toolrec eval chat-sim --run runs/ml1m-sasrec --users 200 --turns 5 --user-sim llm --llm local
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import typer
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from agent.chat import Conversation, ConversationConfig, ShownItem
from agent.llm.base import LLM, LLMError
from agent.runtime import PROBE_BONUS, agent_config, build_llm, open_toolbox, shared_agent_factory
from eval.report import bootstrap_ci, paired_test
from eval.sim_users import LLMUser, RuleUser, SimUserCounts
from eval.store import append_lines, complete_lines
from tools.cli import parse_variants
from tools.data.schema import Item
from tools.io import write_json
from tools.registry import call_tool
from tools.schemas import ItemsOutput
from tools.toolbox import Toolbox

SimUserKind = Literal["rules", "llm"]
N_BOOT = 2000

console = Console(stderr=True)


class SimConfig(BaseModel):
    users: int = Field(50, ge=1, le=6040)
    turns: int = Field(5, ge=1, le=20, description="N: turns the simulated user allows")
    k: int = Field(10, ge=1, le=50, description="Items the agent shows per turn")
    seed: int = 0
    user_sim: SimUserKind = Field("rules", description="Who plays the user: the rules, or an LLM")
    user_llm: str = Field("local", description="The LLM that plays the user when user_sim is llm: local | local:1.5b | openai:MODEL")
    llm: str = Field("none", description="The agent's LLM: none | local | openai:MODEL")
    rounds: int | None = None


class SimTurn(BaseModel):
    message: str
    shown: list[str]
    hit: bool
    seconds: float = Field(description="The agent's turn")
    user_seconds: float = Field(0.0, description="Writing the message (the LLM user's calls)")


class SimDialogue(BaseModel):
    user_id: str
    target: str
    target_title: str
    hit_turn: int | None = Field(None, description="1-based turn of the hit; None: a miss")
    backbone_rank: int | None = Field(None, description="The target's rank in the backbone's list (1-based), if within N*k")
    turns: list[SimTurn]
    simulator: SimUserCounts | None = Field(None, description="The LLM user's guard counts")


# --- the evaluation -------------------------------------------------------------------------------


def sample_users(toolbox: Toolbox, count: int, seed: int) -> list[str]:
    users = [u for u in toolbox.dataset.user_ids if len(toolbox.user_history(u)) >= 5]
    rng = random.Random(seed)
    return sorted(rng.sample(users, min(count, len(users))), key=users.index)


def target_of(toolbox: Toolbox, user_id: str) -> Item:
    return toolbox.dataset.item(toolbox.dataset.target(user_id, "test"))


def backbone_rank(toolbox: Toolbox, user_id: str, target: str, depth: int) -> int | None:
    result = call_tool(toolbox, "retrieve", {"user_id": user_id, "k": min(depth, 100)})
    if not isinstance(result.output, ItemsOutput):
        return None
    ids = [i.id for i in result.output.items]
    return ids.index(target) + 1 if target in ids else None


def simulate(
    toolbox: Toolbox,
    conversation: Conversation,
    config: SimConfig,
    user_llm: LLM | None,
    progress: bool = True,
    max_seconds: float | None = None,
    journal: Path | None = None,
) -> dict[str, Any]:
    """The dialogues of `config.users` sampled users (fewer when `max_seconds` runs out: the
    users done so far are reported, and the report says how many). With a `journal`, each
    dialogue is appended to it as it ends, and dialogues it already holds for the same settings
    are reused, so a killed or time-limited run resumes where it stopped."""
    if toolbox.split != "test":
        raise ValueError("the simulation needs a toolbox on the test split (the target is the held-out item)")
    if config.user_sim == "llm" and user_llm is None:
        raise ValueError("an LLM user needs an LLM (user_llm)")
    done = read_journal(journal, config) if journal is not None else {}
    key = _settings_key(config)
    dialogues: list[SimDialogue] = []
    started = time.perf_counter()
    for n, user_id in enumerate(sample_users(toolbox, config.users, config.seed), start=1):
        if user_id in done:
            dialogues.append(done[user_id])
            continue
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
        target = target_of(toolbox, user_id)
        rules = RuleUser(toolbox, user_id)
        simulated = LLMUser(user_llm, toolbox, user_id, rules) if config.user_sim == "llm" and user_llm is not None else rules
        session = f"sim-{config.seed}-{user_id}"
        conversation.reset(session)
        shown: list[ShownItem] = []
        turns: list[SimTurn] = []
        hit_turn = None
        for turn in range(1, config.turns + 1):
            t0 = time.perf_counter()
            message = simulated.message(turn, target, shown)
            t1 = time.perf_counter()
            result = conversation.turn(session, message, user_id=user_id)
            shown = result.items
            hit = any(i.id == target.id for i in shown)
            turns.append(
                SimTurn(
                    message=message,
                    shown=[i.id for i in shown],
                    hit=hit,
                    seconds=round(time.perf_counter() - t1, 3),
                    user_seconds=round(t1 - t0, 3),
                )
            )
            if hit:
                hit_turn = turn
                break
        conversation.reset(session)
        depth = config.turns * config.k
        dialogue = SimDialogue(
            user_id=user_id,
            target=target.id,
            target_title=target.title,
            hit_turn=hit_turn,
            backbone_rank=backbone_rank(toolbox, user_id, target.id, depth),
            turns=turns,
            simulator=simulated.counts if isinstance(simulated, LLMUser) else None,
        )
        dialogues.append(dialogue)
        if journal is not None:
            append_lines(journal, [JournalLine(settings=key, dialogue=dialogue).model_dump_json()])
        if progress and (n % 10 == 0 or n == config.users):
            hits = sum(d.hit_turn is not None for d in dialogues)
            console.log(f"{n} users: {hits} hits ({hits / n:.1%}), {time.perf_counter() - started:.0f} s")
    return report(dialogues, config, time.perf_counter() - started, toolbox, resumed=set(done))


class JournalLine(BaseModel):
    settings: str = Field(description="What the dialogue depends on: the settings, less the number of users")
    dialogue: SimDialogue


def journal_of(out: Path) -> Path:
    return out.with_name(out.name + ".partial.jsonl")


def _settings_key(config: SimConfig) -> str:
    # a dialogue depends on its user and these settings, not on how many users were asked for
    return config.model_dump_json(exclude={"users"})


def read_journal(journal: Path, config: SimConfig) -> dict[str, SimDialogue]:
    """user -> the dialogue the journal holds for it under these settings (lines under other
    settings, and a line cut short by a kill, are left out)."""
    key, done = _settings_key(config), dict[str, SimDialogue]()
    for line in complete_lines(journal)[0]:
        try:
            record = JournalLine.model_validate_json(line)
        except ValueError:
            continue
        if record.settings == key:
            done.setdefault(record.dialogue.user_id, record.dialogue)
    return done


def _estimate(values: np.ndarray, resamples: np.ndarray, digits: int = 4) -> dict[str, Any]:
    low, high = bootstrap_ci(values, resamples)
    return {"mean": round(float(values.mean()), digits), "ci95": [round(low, digits), round(high, digits)]}


def report(
    dialogues: list[SimDialogue], config: SimConfig, seconds: float, toolbox: Toolbox, resumed: Collection[str] = ()
) -> dict[str, Any]:
    """The figures over `dialogues`; `seconds` is this run's wall time, spent on all but the
    `resumed` users' dialogues (read back from a journal)."""
    leaked = [d.user_id for d in dialogues if d.simulator is not None and d.simulator.redacted]
    everyone, dialogues = dialogues, [d for d in dialogues if d.user_id not in leaked]  # a leaked dialogue is left out
    n, turns = len(dialogues), config.turns
    if n == 0:
        raise ValueError("no dialogue finished without a leak: nothing to report")
    hits = [d for d in dialogues if d.hit_turn is not None]
    by_turn = {f"hit@{t}": round(sum(d.hit_turn is not None and d.hit_turn <= t for d in dialogues) / n, 4) for t in range(1, turns + 1)}
    depth = min(turns * config.k, 100)
    resamples = np.random.default_rng(config.seed).integers(0, n, size=(N_BOOT, n))
    hit = _estimate(np.array([d.hit_turn is not None for d in dialogues], dtype=float), resamples)
    taken = _estimate(np.array([d.hit_turn or turns for d in dialogues], dtype=float), resamples, digits=3)
    all_turns = [t for d in dialogues for t in d.turns]
    run_turns = sum(len(d.turns) for d in dialogues if d.user_id not in resumed)
    counts = [d.simulator for d in everyone if d.simulator is not None]
    simulator = None
    if counts:
        simulator = {
            "messages": sum(c.messages for c in counts),
            "regenerated": sum(c.regenerated for c in counts),
            "echoed": sum(c.echoed for c in counts),
            "contradicted": sum(c.contradicted for c in counts),
            "redacted": sum(c.redacted for c in counts),
            "fallbacks": sum(c.fallbacks for c in counts),
            "leaked_dialogues_left_out": len(leaked),
        }
    return {
        "dataset": toolbox.dataset.name,
        "users": n,
        "users_asked": config.users,
        "turns": turns,
        "k": config.k,
        "user_sim": config.user_sim,
        "user_llm": config.user_llm if config.user_sim == "llm" else None,
        "llm": config.llm,
        f"hit@{turns}": hit["mean"],
        f"hit@{turns}_ci95": hit["ci95"],
        "avg_turns": taken["mean"],
        "avg_turns_ci95": taken["ci95"],
        "avg_turns_hits": round(statistics.mean(d.hit_turn for d in hits if d.hit_turn), 3) if hits else None,
        "hit_by_turn": by_turn,
        f"backbone_hit@{depth}": round(sum(d.backbone_rank is not None for d in dialogues) / n, 4),
        "simulator": simulator,
        "resumed_users": sum(d.user_id in resumed for d in dialogues),
        "seconds": round(seconds, 1),
        "seconds_per_turn": round(seconds / max(1, run_turns), 3),
        "agent_seconds_per_turn": round(statistics.mean(t.seconds for t in all_turns), 3) if all_turns else None,
        "user_seconds_per_turn": round(statistics.mean(t.user_seconds for t in all_turns), 3) if all_turns else None,
        "dialogues": [d.model_dump() for d in everyone],
    }


def chat_sim_command(
    run: Annotated[Path, typer.Option(help="Run folder (ML-1M: runs/ml1m-sasrec)")] = Path("runs/ml1m-sasrec"),
    users: Annotated[int, typer.Option(help="Simulated users (sampled with --seed)")] = 50,
    turns: Annotated[int, typer.Option(help="N: turns each simulated user allows")] = 5,
    k: Annotated[int, typer.Option(help="Items the agent shows per turn")] = 10,
    seed: int = 0,
    user_sim: Annotated[SimUserKind, typer.Option(help="Who plays the user: rules | llm")] = "rules",
    user_llm: Annotated[str, typer.Option(help="The LLM playing the user (--user-sim llm): local | local:1.5b | openai:MODEL")] = "local",
    llm: Annotated[str, typer.Option(help="The agent's LLM: none | local | openai:MODEL")] = "none",
    rounds: Annotated[int | None, typer.Option(help="Agent plan steps per turn")] = None,
    probe_bonus: Annotated[float, typer.Option(help="Fused assembly: bonus for what a probe or the request found")] = PROBE_BONUS,
    variant: Annotated[list[str] | None, typer.Option(help="Extra backbone variant NAME=RUN_DIR")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the JSON report (with every dialogue) here; OUT.partial.jsonl keeps each dialogue as it ends, for a rerun to resume"
        ),
    ] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Stop starting new users after this many seconds")] = None,
) -> None:
    """Simulated users with a hidden target talk to the agent for up to N turns: hit rate within
    N turns and average turns (InteRecAgent's protocol), with the backbone alone for reference."""
    config = SimConfig(users=users, turns=turns, k=k, seed=seed, user_sim=user_sim, user_llm=user_llm, llm=llm, rounds=rounds)
    try:
        toolbox = open_toolbox(run, parse_variants(variant), split="test")
        agent_llm = build_llm(llm)
        # a model of its own even when it is the agent's: each keeps its own prompt prefix cached
        simulator_llm = build_llm(user_llm) if user_sim == "llm" else None
    except (FileNotFoundError, ValueError, LLMError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    factory = shared_agent_factory(agent_llm, toolbox, agent_config(agent_llm, k=k, rounds=rounds, probe_bonus=probe_bonus))
    conversation = Conversation(factory, toolbox, config=ConversationConfig())
    result = simulate(toolbox, conversation, config, simulator_llm, max_seconds=max_seconds, journal=journal_of(out) if out else None)
    summary = {key: value for key, value in result.items() if key != "dialogues"}
    table = Table(title=f"conversation simulation on {result['dataset']}: {result['users']} users, up to {turns} turns of {k}")
    hit, backbone = f"hit@{turns}", f"backbone_hit@{min(turns * k, 100)}"
    for column in (hit, "avg_turns", "avg_turns_hits", backbone, "seconds_per_turn"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{summary[hit]} {summary[hit + '_ci95']}",
        f"{summary['avg_turns']} {summary['avg_turns_ci95']}",
        str(summary["avg_turns_hits"]),
        str(summary[backbone]),
        str(summary["seconds_per_turn"]),
    )
    console.print(table)
    print(json.dumps(summary, indent=2))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, result)


def compare(reports: dict[str, list[SimDialogue]], depth: int, n_boot: int = 5000) -> dict[str, Any]:
    """Arms of one simulation compared user by user, on the users every arm holds and none left
    out for a leaked title: each arm's hit rate, the history's own top-`depth` on the same users,
    and each later arm against the first and against that history (paired bootstrap)."""
    by_arm = {label: {d.user_id: d for d in dialogues} for label, dialogues in reports.items()}
    leaked = {d.user_id for dialogues in reports.values() for d in dialogues if d.simulator is not None and d.simulator.redacted}
    shared = sorted(set.intersection(*(set(arm) for arm in by_arm.values())) - leaked)
    if not shared:
        raise ValueError("the reports share no user")
    hits = {label: np.array([arm[u].hit_turn is not None for u in shared], dtype=np.float64) for label, arm in by_arm.items()}
    first = next(iter(by_arm.values()))
    history = np.array([(first[u].backbone_rank or depth + 1) <= depth for u in shared], dtype=np.float64)
    rng = np.random.default_rng(0)
    resamples = rng.integers(0, len(shared), size=(n_boot, len(shared)))
    base = next(iter(hits))
    return {
        "users": len(shared),
        "left_out_leaked": len(leaked),
        "hit": {label: _estimate(v, resamples) for label, v in hits.items()},
        f"history_top{depth}": round(float(history.mean()), 4),
        "paired": {
            **{f"{label} - {base}": paired_test(v, hits[base], rng, n_boot) for label, v in hits.items() if label != base},
            **{f"{label} - history": paired_test(v, history, rng, n_boot) for label, v in hits.items()},
        },
    }


def chat_sim_compare_command(
    reports: Annotated[list[str], typer.Argument(help="LABEL=REPORT.json (a chat-sim --out), the first the baseline")],
) -> None:
    """Arms of `eval chat-sim` compared user by user: hit rates on the users they share, and the
    paired difference of each arm from the first and from the history's own list (JSON)."""
    arms: dict[str, list[SimDialogue]] = {}
    depth = 0
    for spec in reports:
        label, _, path = spec.partition("=")
        if not path:
            raise typer.BadParameter(f"{spec!r}: give LABEL=REPORT.json")
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        arms[label] = [SimDialogue.model_validate(d) for d in report["dialogues"]]
        depth = report["turns"] * report["k"]
    print(json.dumps(compare(arms, depth), indent=2))
