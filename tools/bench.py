"""Latency and throughput of the tools with the models loaded (`toolrec bench tools`).

Single calls go through `call_tool` as the agent makes them (argument validation, the tool,
the pydantic output), one user at a time, on users drawn at random. Also reported: what
ToolRec pays on every tool call instead (loading one checkpoint) and the ratio, batch
throughput of a full-catalogue top-10 for every user, and the item index's build figures.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tools.models.checkpoint import load_model, load_run
from tools.registry import call_tool
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


def bench_tools(
    toolbox: Toolbox,
    run_dir: Path,
    calls: int = 500,
    seed: int = 0,
    data_dir: Path | None = None,
    with_data_reload: bool = True,
) -> dict[str, Any]:
    """Run every measurement; `run_dir` is the main variant's run (for the reload figures)."""
    rng = np.random.default_rng(seed)
    users = [toolbox.dataset.user_ids[i] for i in rng.integers(0, len(toolbox.dataset.user_ids), size=calls)]
    variant = next((v for v in toolbox.variants if v != toolbox.default_variant), toolbox.default_variant)
    constrained = constrained_arguments(toolbox)
    report: dict[str, Any] = {
        "dataset": toolbox.dataset.name,
        "items": toolbox.num_items,
        "users": len(toolbox.dataset.user_ids),
        "variants": list(toolbox.variants),
        "torch_threads": torch.get_num_threads(),
        "calls": calls,
    }

    started = time.perf_counter()
    indexes = toolbox.indexes
    report["index_ready_ms"] = round((time.perf_counter() - started) * 1000, 1)
    report["index_build"] = {k: round(v, 3) for k, v in indexes.build_stats.items()}
    report["index_build_s"] = round(indexes.build_stats.get("total_s", float("nan")), 3)

    # warm-up: first calls allocate and fill caches
    for user in users[:20]:
        call_tool(toolbox, "retrieve", {"user_id": user})
        call_tool(toolbox, "retrieve", {"user_id": user, "variant": variant, **constrained})

    samples = _timed([_ok(toolbox, "retrieve", {"user_id": u, "k": 10}) for u in users])
    report["retrieve_p50_ms"], report["retrieve_p99_ms"] = _percentiles(samples)
    samples = _timed([_ok(toolbox, "retrieve", {"user_id": u, "k": 10, **constrained}) for u in users])
    report["constrained_retrieve_p50_ms"], report["constrained_retrieve_p99_ms"] = _percentiles(samples)
    report["constrained_example"] = constrained
    samples = _timed([_ok(toolbox, "retrieve", {"user_id": u, "k": 10, "variant": variant, **constrained}) for u in users])
    report[f"constrained_retrieve_{variant}_p50_ms"], report[f"constrained_retrieve_{variant}_p99_ms"] = _percentiles(samples)

    queries = [f"{mood} movie about {topic}" for mood in _MOODS for topic in _TOPICS]
    fresh = queries[:60]  # not seen before in this process: each call encodes its query
    samples = _timed([_ok(toolbox, "semantic_search", {"query": q, "k": 10}) for q in fresh])
    report["semantic_search_p50_ms"], report["semantic_search_p99_ms"] = _percentiles(samples)
    samples = _timed([_ok(toolbox, "semantic_search", {"query": fresh[i % len(fresh)], "k": 10, **constrained}) for i in range(calls)])
    report["semantic_search_cached_query_p50_ms"], _ = _percentiles(samples)
    samples = _timed(
        [_ok(toolbox, "retrieve", {"user_id": u, "k": 10, "query": fresh[i % len(fresh)], **constrained}) for i, u in enumerate(users)]
    )
    report["retrieve_with_query_p50_ms"], report["retrieve_with_query_p99_ms"] = _percentiles(samples)

    popular = [toolbox.dataset.item(int(d)).id for d in np.argsort(-toolbox.popularity)[:300]]
    samples = _timed([_ok(toolbox, "similar_items", {"items": [popular[i % 300]], "k": 10}) for i in range(200)])
    report["similar_items_p50_ms"], _ = _percentiles(samples)
    samples = _timed([_ok(toolbox, "rank", {"candidates": popular[:100], "user_id": u, "variant": variant}) for u in users[:200]])
    report["rank_100_p50_ms"], _ = _percentiles(samples)
    samples = _timed([_ok(toolbox, "rank", {"candidates": popular[:50], "user_id": u, "by": "diversity"}) for u in users[:100]])
    report["rank_diversity_50_p50_ms"], _ = _percentiles(samples)
    titles = [toolbox.dataset.item(int(d)).title.lower()[:12] for d in np.argsort(-toolbox.popularity)[:100]]
    samples = _timed([_ok(toolbox, "lookup", {"title": t}) for t in titles])
    report["lookup_p50_ms"], _ = _percentiles(samples)
    samples = _timed([_ok(toolbox, "user_profile", {"user_id": u}) for u in users[:200]])
    report["user_profile_p50_ms"], _ = _percentiles(samples)

    # batch throughput: every user's full-catalogue top-10 with the history masked
    histories = [toolbox.user_history(u) for u in toolbox.dataset.user_ids]
    started = time.perf_counter()
    for start in range(0, len(histories), 256):
        batch = histories[start : start + 256]
        scores = toolbox.score_batch(None, batch)
        for row, history in enumerate(batch):
            scores[row, history] = -np.inf
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        np.take_along_axis(scores, top, axis=1).argsort(axis=1)
    seconds = time.perf_counter() - started
    report["users_per_second"] = round(len(histories) / seconds, 1)
    report["batch_all_users_s"] = round(seconds, 3)

    # what ToolRec pays per tool call: reloading a checkpoint. Weights alone (the dataset kept
    # in memory, the cheapest reading), and weights plus the dataset rebuilt from its files
    # (what RecBole's load_data_and_model per call amounts to)
    loads = _timed([lambda: load_model(run_dir, toolbox.dataset) for _ in range(7)])
    report["checkpoint_load_ms"] = round(float(np.median(loads)) * 1000, 3)
    report["checkpoint_load_vs_retrieve_ratio"] = round(report["checkpoint_load_ms"] / report["retrieve_p50_ms"], 1)
    if with_data_reload:
        (seconds,) = _timed([lambda: load_run(run_dir, data_dir if data_dir is not None else PathSettings().data_dir)])
        report["checkpoint_and_data_load_ms"] = round(seconds * 1000, 1)
        report["checkpoint_and_data_load_vs_retrieve_ratio"] = round(report["checkpoint_and_data_load_ms"] / report["retrieve_p50_ms"], 1)
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return report
