"""Simulated-user evaluation of conversations (InteRecAgent's protocol, adapted).

A simulated user holds a hidden target item (the user's held-out test item: the toolbox runs on
the "test" split, so the agent's history never contains it) and a profile (their own history).
It talks to the conversation layer for up to N turns; after each answer the turn is a hit if
the target is in the list shown. Reported: hit rate within N turns (`hit@N`), the hit rate by
turn, the average number of turns (a miss counts as N), and the average turns of the hits. As a
no-conversation reference, `backbone_hit@N*k`: whether the backbone alone ranks the target
within the same number of items shown (N pages of k, without listening).

Simulated users:
- "rules" (default, deterministic, no LLM): reveals what it wants step by step as a person
  would, never the title: the target's most distinctive genre, then its decade, then a film it
  watched that is most like the target (by the backbone's item embeddings), then "show me more";
  on even turns it also rejects the first item of the list it was shown.
- an LLM ("local", "openai:MODEL"): prompted with the target and its recent history, told never
  to name the target; a reply that names it anyway is replaced by the rule user's message (so a
  leaking simulator cannot inflate the hit rate).

    toolrec eval chat-sim --run runs/ml1m-sasrec --users 50 --turns 5
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path
from typing import Annotated, Any, Protocol

import numpy as np
import typer
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from agent.chat import Conversation, ConversationConfig, ShownItem
from agent.cli.runtime import PROBE_BONUS, agent_config, build_llm, open_toolbox, shared_agent_factory
from agent.llm.base import LLM, ChatMessage, LLMError
from tools.cli import parse_variants
from tools.data.schema import Item
from tools.registry import call_tool
from tools.schemas import ItemsOutput
from tools.titles import natural_title
from tools.toolbox import Toolbox, normalize

console = Console(stderr=True)


class SimConfig(BaseModel):
    users: int = Field(50, ge=1, le=6040)
    turns: int = Field(5, ge=1, le=20, description="N: turns the simulated user allows")
    k: int = Field(10, ge=1, le=50, description="Items the agent shows per turn")
    seed: int = 0
    user_sim: str = Field("rules", description="rules | local | openai:MODEL")
    llm: str = Field("none", description="The agent's LLM: none | local | openai:MODEL")
    rounds: int | None = None


class SimTurn(BaseModel):
    message: str
    shown: list[str]
    hit: bool
    seconds: float


class SimDialogue(BaseModel):
    user_id: str
    target: str
    target_title: str
    hit_turn: int | None = Field(None, description="1-based turn of the hit; None: a miss")
    backbone_rank: int | None = Field(None, description="The target's rank in the backbone's list (1-based), if within N*k")
    turns: list[SimTurn]


# --- simulated users ------------------------------------------------------------------------------


class SimUser(Protocol):
    def message(self, turn: int, target: Item, shown: list[ShownItem]) -> str: ...


class RuleUser:
    """A person who knows what they want and says it a piece at a time, never the title."""

    def __init__(self, toolbox: Toolbox, user_id: str) -> None:
        self.toolbox = toolbox
        self.user_id = user_id
        self.clues: list[str] | None = None

    def _clues(self, target: Item) -> list[str]:
        tb = self.toolbox
        primary = tb.primary_attribute or ""
        genres = sorted(target.attributes.get(primary, []), key=lambda g: len(tb.attribute_items.get(primary, {}).get(g, [])))
        genres = [g for g in genres if g != "unknown"]
        clues = []
        if genres:
            clues.append(f"I'm in the mood for a {genres[0].lower()} movie")
        else:
            clues.append("I'd like something to watch tonight")
        if target.year is not None:
            clues.append(f"something from the {target.year // 10 * 10}s")
        similar = self._closest_watched(target)
        if similar is not None:
            clues.append(f"more like {similar}")
        clues.append("show me more")
        return clues

    def _closest_watched(self, target: Item) -> str | None:
        """The film in the user's own history most like the target (backbone item embeddings)."""
        tb = self.toolbox
        history = tb.user_history(self.user_id)
        if not len(history):
            return None
        try:
            space = tb.space(tb.default_variant)
        except Exception:  # a variant without item embeddings: no such clue
            return None
        dense = tb.dataset.item_index[target.id]
        vectors = space.vectors(np.asarray(list(history[-50:]), dtype=np.int64))
        similarity = vectors @ space.vectors(np.asarray([dense], dtype=np.int64))[0]
        best = int(history[-50:][int(np.argmax(similarity))])
        return tb.spoken_title(tb.dataset.item(best).id)

    def message(self, turn: int, target: Item, shown: list[ShownItem]) -> str:
        if self.clues is None:
            self.clues = self._clues(target)
        text = self.clues[min(turn - 1, len(self.clues) - 1)]
        if shown and turn > 1 and turn % 2 == 0:
            text = "not the first one, " + text
        return text


SIM_PROMPT = """You are a person chatting with a movie recommender. You secretly want one movie:
{target} ({year}); genres: {genres}.
Movies you watched recently: {recent}.
{shown}
Write your next message to the recommender, one or two short sentences. Describe what you want
(genre, era, mood, a movie you watched that is similar), but NEVER say the title of the movie you want."""


class LLMUser:
    """An LLM playing the user; a message that names the target falls back to the rule user's."""

    def __init__(self, llm: LLM, toolbox: Toolbox, user_id: str) -> None:
        self.llm, self.toolbox, self.user_id = llm, toolbox, user_id
        self.rules = RuleUser(toolbox, user_id)
        self.leaks = 0

    def message(self, turn: int, target: Item, shown: list[ShownItem]) -> str:
        tb = self.toolbox
        recent = [tb.dataset.item(int(d)) for d in tb.user_history(self.user_id)[-5:]]
        shown_text = (
            ("The recommender just showed: " + "; ".join(i.title for i in shown) + ". Your movie is not among them.")
            if shown
            else "This is your first message."
        )
        prompt = SIM_PROMPT.format(
            target=natural_title(target.title), year=target.year or "?",
            genres=", ".join(target.attributes.get(tb.primary_attribute or "", [])),
            recent="; ".join(natural_title(i.title) for i in recent) or "-", shown=shown_text,
        )  # fmt: skip
        try:
            reply = self.llm.chat([ChatMessage(role="user", content=prompt)], max_tokens=60, temperature=0.7, seed=turn).text.strip()
        except LLMError:
            reply = ""
        name = normalize(natural_title(target.title))
        if not reply or (len(name) >= 3 and name in normalize(reply)) or normalize(target.title) in normalize(reply):
            self.leaks += bool(reply)
            return self.rules.message(turn, target, shown)
        return reply[:500]


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
    toolbox: Toolbox, conversation: Conversation, config: SimConfig, user_llm: LLM | None, progress: bool = True
) -> dict[str, Any]:
    if toolbox.split != "test":
        raise ValueError("the simulation needs a toolbox on the test split (the target is the held-out item)")
    dialogues: list[SimDialogue] = []
    started = time.perf_counter()
    leaks = 0
    for n, user_id in enumerate(sample_users(toolbox, config.users, config.seed), start=1):
        target = target_of(toolbox, user_id)
        simulated: RuleUser | LLMUser = LLMUser(user_llm, toolbox, user_id) if user_llm is not None else RuleUser(toolbox, user_id)
        session = f"sim-{config.seed}-{user_id}"
        conversation.reset(session)
        shown: list[ShownItem] = []
        turns: list[SimTurn] = []
        hit_turn = None
        for turn in range(1, config.turns + 1):
            message = simulated.message(turn, target, shown)
            t0 = time.perf_counter()
            result = conversation.turn(session, message, user_id=user_id)
            shown = result.items
            hit = any(i.id == target.id for i in shown)
            turns.append(SimTurn(message=message, shown=[i.id for i in shown], hit=hit, seconds=round(time.perf_counter() - t0, 3)))
            if hit:
                hit_turn = turn
                break
        conversation.reset(session)
        if isinstance(simulated, LLMUser):
            leaks += simulated.leaks
        depth = config.turns * config.k
        dialogues.append(SimDialogue(
            user_id=user_id, target=target.id, target_title=target.title, hit_turn=hit_turn,
            backbone_rank=backbone_rank(toolbox, user_id, target.id, depth), turns=turns,
        ))  # fmt: skip
        if progress and (n % 10 == 0 or n == config.users):
            hits = sum(d.hit_turn is not None for d in dialogues)
            console.log(f"{n} users: {hits} hits ({hits / n:.1%})")
    return report(dialogues, config, time.perf_counter() - started, toolbox, leaks)


def report(dialogues: list[SimDialogue], config: SimConfig, seconds: float, toolbox: Toolbox, leaks: int = 0) -> dict[str, Any]:
    n, turns = len(dialogues), config.turns
    hits = [d for d in dialogues if d.hit_turn is not None]
    by_turn = {f"hit@{t}": round(sum(d.hit_turn is not None and d.hit_turn <= t for d in dialogues) / n, 4) for t in range(1, turns + 1)}
    depth = min(turns * config.k, 100)
    return {
        "dataset": toolbox.dataset.name,
        "users": n,
        "turns": turns,
        "k": config.k,
        "user_sim": config.user_sim,
        "llm": config.llm,
        f"hit@{turns}": round(len(hits) / n, 4),
        "avg_turns": round(statistics.mean(d.hit_turn or turns for d in dialogues), 3),
        "avg_turns_hits": round(statistics.mean(d.hit_turn for d in hits if d.hit_turn), 3) if hits else None,
        "hit_by_turn": by_turn,
        f"backbone_hit@{depth}": round(sum(d.backbone_rank is not None for d in dialogues) / n, 4),
        "simulator_leaks_replaced": leaks,
        "seconds": round(seconds, 1),
        "seconds_per_turn": round(seconds / max(1, sum(len(d.turns) for d in dialogues)), 3),
        "dialogues": [d.model_dump() for d in dialogues],
    }


def chat_sim_command(
    run: Annotated[Path, typer.Option(help="Run folder (ML-1M: runs/ml1m-sasrec)")] = Path("runs/ml1m-sasrec"),
    users: Annotated[int, typer.Option(help="Simulated users (sampled with --seed)")] = 50,
    turns: Annotated[int, typer.Option(help="N: turns each simulated user allows")] = 5,
    k: Annotated[int, typer.Option(help="Items the agent shows per turn")] = 10,
    seed: int = 0,
    user_sim: Annotated[str, typer.Option(help="The simulated user: rules | local | openai:MODEL")] = "rules",
    llm: Annotated[str, typer.Option(help="The agent's LLM: none | local | openai:MODEL")] = "none",
    rounds: Annotated[int | None, typer.Option(help="Agent plan steps per turn")] = None,
    probe_bonus: Annotated[float, typer.Option(help="Fused assembly: bonus for what a probe or the request found")] = PROBE_BONUS,
    variant: Annotated[list[str] | None, typer.Option(help="Extra backbone variant NAME=RUN_DIR")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the JSON report (with every dialogue) here")] = None,
) -> None:
    """Simulated users with a hidden target talk to the agent for up to N turns: hit rate within
    N turns and average turns (InteRecAgent's protocol), with the backbone alone for reference."""
    config = SimConfig(users=users, turns=turns, k=k, seed=seed, user_sim=user_sim, llm=llm, rounds=rounds)
    try:
        toolbox = open_toolbox(run, parse_variants(variant), split="test")
        agent_llm = build_llm(llm)
        user_llm = None if user_sim == "rules" else build_llm(user_sim)
    except (FileNotFoundError, ValueError, LLMError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    factory = shared_agent_factory(agent_llm, toolbox, agent_config(agent_llm, k=k, rounds=rounds, probe_bonus=probe_bonus))
    conversation = Conversation(factory, toolbox, config=ConversationConfig())
    result = simulate(toolbox, conversation, config, user_llm)
    summary = {key: value for key, value in result.items() if key != "dialogues"}
    table = Table(title=f"conversation simulation on {result['dataset']}: {result['users']} users, up to {turns} turns of {k}")
    for key in ("hit@" + str(turns), "avg_turns", "avg_turns_hits", f"backbone_hit@{min(turns * k, 100)}", "seconds_per_turn"):
        table.add_column(key, justify="right")
    table.add_row(
        *(
            str(summary.get(key))
            for key in ("hit@" + str(turns), "avg_turns", "avg_turns_hits", f"backbone_hit@{min(turns * k, 100)}", "seconds_per_turn")
        )
    )
    console.print(table)
    print(json.dumps(summary, indent=2))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
