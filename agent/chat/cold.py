"""A list for a wish with no history yet: what the wish admits, the titles it names (more like
them) or the catalogue's own best under it (by its ratings and how widely it is watched), from
the tools alone, so that a new person gets an answer at once and is then asked for a few
titles to make it personal."""

from __future__ import annotations

import time

from agent.planners.base import traced_call
from agent.pool import Pool
from agent.probes import probe_arguments
from agent.recommend import recommended_items
from agent.request import PlannedCall, RecommendRequest
from agent.state import Recommendation, TraceEvent
from tools.schemas import ItemsOutput
from tools.toolbox import Toolbox

PROBE_K = 50  # items each call may bring: enough for k after what was shown is left out


def cold_recommendation(toolbox: Toolbox, request: RecommendRequest, calls: list[PlannedCall], k: int) -> Recommendation:
    """The calls' items in call order (each call's own order within), the request's constraints
    and exclusions imposed, each with its reason; the first k."""
    started = time.perf_counter()
    pool, order, trace = Pool(), list[str](), list[TraceEvent]()
    for call in calls:
        result, event = traced_call(toolbox, "cold", call.name, probe_arguments(call.name, call.arguments, request, PROBE_K))
        trace.append(event)
        if isinstance(result.output, ItemsOutput):
            found = [item for item in result.output.items if item.id not in request.exclude]  # rank takes no exclusions
            pool = pool.add(found, "asked")
            order += [item.id for item in found if item.id not in order]
    chosen = order[:k]
    scores = {item_id: 1.0 - n / max(len(chosen), 1) for n, item_id in enumerate(chosen)}
    return Recommendation(
        user_id=None,
        k=k,
        items=recommended_items(toolbox, pool, chosen, scores),
        backfilled=0,
        rounds=0,
        trace=trace,
        seconds=round(time.perf_counter() - started, 3),
    )
