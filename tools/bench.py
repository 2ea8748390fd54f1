"""Latency and throughput of the tools with the models loaded (`toolrec bench tools`).

Single calls go through `call_tool` as the agent makes them (argument validation, the tool,
the pydantic output), one user at a time, on users drawn at random. Also reported: what
ToolRec pays on every tool call instead (loading one checkpoint) and the ratio, batch
throughput of a full-catalogue top-10 for every user, and the item index's build figures.
"""

from __future__ import annotations

import itertools
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tools.constraints import Filters, to_mask
from tools.models.checkpoint import load_model, load_run
from tools.registry import call_tool
from tools.retrieval import top_k
from tools.schemas import Unavailable
from tools.settings import PathSettings
from tools.toolbox import Toolbox

# distinct texts, so that each semantic_search call encodes its query afresh
_TOPICS = [
    "time travel",
    "a heist",
    "first love",
    "a haunted house",
    "space exploration",
    "a road trip",
    "a boxing champion",
    "a small town secret",
    "talking animals",
    "a courtroom battle",
    "war veterans",
    "a serial killer",
    "high school",
]
_MOODS = ["funny", "dark", "gentle", "thrilling", "sad", "strange", "epic"]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    values = np.asarray(samples) * 1000
    return round(float(np.percentile(values, 50)), 3), round(float(np.percentile(values, 99)), 3)


def _timed(calls: list[Callable[[], object]]) -> list[float]:
    samples = []
    for call in calls:
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def _ok(toolbox: Toolbox, name: str, arguments: dict[str, Any]) -> Callable[[], object]:
    def call() -> object:
        result = call_tool(toolbox, name, arguments)
        if not result.ok:
            raise RuntimeError(f"benchmark call {name}({arguments}) failed: {result.error}")
        return result

    return call


def constrained_arguments(toolbox: Toolbox) -> dict[str, Any]:
    """A typical attribute-value probe: two common genres, one excluded, a decade."""
    arguments: dict[str, Any] = {}
    if toolbox.primary_attribute:
        by_size = sorted(toolbox.attribute_items[toolbox.primary_attribute].items(), key=lambda kv: -len(kv[1]))
        arguments["genres"] = [by_size[1][0], by_size[2][0]] if len(by_size) > 2 else [by_size[0][0]]
        if len(by_size) > 3:
            arguments["exclude_genres"] = [by_size[-1][0]]
    if toolbox.year_span:
        top = toolbox.year_span[1]
        arguments["year_from"], arguments["year_to"] = top - top % 10 - 10, top
    return arguments


def _queries(count: int) -> list[str]:
    """`count` distinct free-text wishes (up to 455)."""
    settings = ["", " set in a city", " for a rainy day", " with a twist", " from long ago"]
    return [f"{mood} story about {topic}{where}" for where in settings for mood in _MOODS for topic in _TOPICS][:count]


def bench_tools(
    toolbox: Toolbox,
    run_dir: Path,
    calls: int = 500,
    seed: int = 0,
    data_dir: Path | None = None,
    with_data_reload: bool = True,
) -> dict[str, Any]:
    """Run every measurement; `run_dir` is the main variant's run (for the reload figures).
    Inputs are fresh: no user, item, title or query is asked twice (where the catalogue has
    enough of them), so that no cache answers."""
    rng = np.random.default_rng(seed)
    dataset = toolbox.dataset
    per = max(1, min(calls, (len(dataset.user_ids) - 20) // 6))
    users = iter([dataset.user_ids[i] for i in rng.permutation(len(dataset.user_ids))])
    fresh_users = lambda: [next(users) for _ in range(per)]  # noqa: E731
    # items run out on a small catalogue (rank's candidates): the order then starts afresh
    items = itertools.cycle(rng.permutation(np.arange(1, toolbox.num_items + 1)))
    fresh_items = lambda count: [dataset.item(int(next(items))).id for _ in range(count)]  # noqa: E731
    variant = next((v for v in toolbox.variants if v != toolbox.default_variant), toolbox.default_variant)
    constrained = constrained_arguments(toolbox)
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "items": toolbox.num_items,
        "users": len(dataset.user_ids),
        "variants": list(toolbox.variants),
        "torch_threads": torch.get_num_threads(),
        "calls": per,
        "large": toolbox.large,
    }

    started = time.perf_counter()
    try:
        indexes = toolbox.indexes
    except Unavailable as err:  # a large catalogue without its text index (a million texts take hours)
        report["text_index"] = str(err)
        indexes = None
    report["index_ready_ms"] = round((time.perf_counter() - started) * 1000, 1)
    if indexes is not None:
        report["index_build"] = {k: round(v, 3) for k, v in indexes.build_stats.items()}
        report["index_build_s"] = round(indexes.build_stats.get("total_s", float("nan")), 3)
    started = time.perf_counter()
    for name in toolbox.variants:  # item spaces and the inner-product index, loaded or built
        toolbox.space(name)
    if toolbox.large:
        toolbox.load_mips()
    report["spaces_ready_s"] = round(time.perf_counter() - started, 2)

    # warm-up: first calls allocate and fill caches
    for user in [next(users) for _ in range(20)]:
        call_tool(toolbox, "retrieve", {"user_id": user})
        call_tool(toolbox, "retrieve", {"user_id": user, "variant": variant, **constrained})

    def measure(name: str, tool: str, arguments: list[dict[str, Any]]) -> None:
        report[f"{name}_p50_ms"], report[f"{name}_p99_ms"] = _percentiles(_timed([_ok(toolbox, tool, a) for a in arguments]))

    measure("retrieve", "retrieve", [{"user_id": u, "k": 10} for u in fresh_users()])
    measure("constrained_retrieve", "retrieve", [{"user_id": u, "k": 10, **constrained} for u in fresh_users()])
    report["constrained_example"] = constrained
    if variant != toolbox.default_variant:
        measure(
            f"constrained_retrieve_{variant}",
            "retrieve",
            [{"user_id": u, "k": 10, "variant": variant, **constrained} for u in fresh_users()],
        )
    measure("similar_items", "similar_items", [{"items": [i], "k": 10, "space": "model"} for i in fresh_items(per)])
    measure("rank_100", "rank", [{"candidates": fresh_items(100), "user_id": u} for u in fresh_users()])
    measure("item_info", "item_info", [{"ids": [i]} for i in fresh_items(per)])
    measure("user_profile", "user_profile", [{"user_id": u} for u in fresh_users()])
    measure("top_items", "top_items", [{"k": 10, **constrained}] * min(per, 50))
    titles = [dataset.item(dataset.item_index[i]).title.lower()[:12] for i in fresh_items(min(per, 100))]
    measure("lookup", "lookup", [{"title": t} for t in titles])
    if indexes is not None:
        queries = _queries(min(per, 200))
        measure("semantic_search", "semantic_search", [{"query": q, "k": 10} for q in queries])
        measure(
            "retrieve_with_query",
            "retrieve",
            [{"user_id": u, "k": 10, "query": q} for u, q in zip(fresh_users(), _queries(per)[::-1], strict=False)],
        )
    if toolbox.large:
        report |= _recalls(toolbox, constrained, rng)

    # batch throughput: a sample of users' full-catalogue top-10 with the history masked
    histories = [toolbox.user_history(u) for u in dataset.user_ids[: min(len(dataset.user_ids), 2_000)]]
    started = time.perf_counter()
    for start in range(0, len(histories), 64):
        batch = histories[start : start + 64]
        scores = toolbox.score_batch(None, batch)
        for row, history in enumerate(batch):
            scores[row, history] = -np.inf
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        np.take_along_axis(scores, top, axis=1).argsort(axis=1)
    report["users_per_second"] = round(len(histories) / (time.perf_counter() - started), 1)

    # what ToolRec pays per tool call: reloading a checkpoint. Weights alone (the dataset kept
    # in memory, the cheapest reading), and weights plus the dataset (what RecBole's
    # load_data_and_model per call amounts to; here the run's prepared data)
    loads = _timed([lambda: load_model(run_dir, dataset) for _ in range(7)])
    report["checkpoint_load_ms"] = round(float(np.median(loads)) * 1000, 3)
    report["checkpoint_load_vs_retrieve_ratio"] = round(report["checkpoint_load_ms"] / report["retrieve_p50_ms"], 1)
    if with_data_reload:
        (seconds,) = _timed([lambda: load_run(run_dir, data_dir if data_dir is not None else PathSettings().data_dir)])
        report["checkpoint_and_data_load_ms"] = round(seconds * 1000, 1)
        report["checkpoint_and_data_load_vs_retrieve_ratio"] = round(report["checkpoint_and_data_load_ms"] / report["retrieve_p50_ms"], 1)
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return report


def _recalls(toolbox: Toolbox, constrained: dict[str, Any], rng: np.random.Generator, users: int = 200) -> dict[str, float]:
    """recall@20 of the index-backed tools against exact scoring, on fresh users and items."""
    dataset = toolbox.dataset
    overlaps: dict[str, list[float]] = {"retrieve": [], "constrained_retrieve": [], "similar_items": []}
    for row in rng.choice(len(dataset.user_ids), users, replace=False):
        history = toolbox.user_history(dataset.user_ids[row])
        scores = toolbox.score(None, history)
        for name, filters in (("retrieve", {}), ("constrained_retrieve", constrained)):
            mask = to_mask(toolbox, Filters(**filters), exclude=history).mask
            found = toolbox.approximate_top(None, history, mask, 20)
            approx = found[0] if found is not None else top_k(scores, mask, 20)
            overlaps[name].append(len(np.intersect1d(approx, top_k(scores, mask, 20))) / 20)
        space = toolbox.space(toolbox.default_variant)
        seed = np.array([rng.integers(1, toolbox.num_items + 1)])
        allowed = np.ones(toolbox.num_items + 1, dtype=bool)
        allowed[[0, *seed]] = False
        exact = top_k(space.scores(space.vectors(seed)[0]), allowed, 20)
        overlaps["similar_items"].append(len(np.intersect1d(space.search(space.vectors(seed)[0], 20, allowed=allowed).ids, exact)) / 20)
    return {f"{name}_recall_at_20": round(float(np.mean(values)), 4) for name, values in overlaps.items()}
