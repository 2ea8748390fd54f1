"""`toolrec eval report RUN_DIR`: the paper-style table and its evidence, in the run folder.

    report.md          methods x metrics (means), 95% bootstrap intervals, a paired test of
                       each method against the backbone on per-user NDCG@10 (paired bootstrap
                       and Wilcoxon signed-rank), cost, the agents' diagnostics, the config
                       and the versions
    report.json        the same figures, machine-readable
    metrics.png        Recall/NDCG @10 and @20 per method with their intervals
    cost_quality.png   NDCG@10 (with interval) against seconds per user

Intervals resample users with replacement (percentile bootstrap, seeded); a user whose output
was invalid counts with zero on every metric, as in results.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.api import ASSEMBLY_FILE, LearnedAssembly
from eval.methods import is_repeat
from eval.metrics import MISSING, per_user
from eval.runner import CONFIG, RESULTS, VERSIONS, latest_session_seconds
from eval.store import USERS_FILE, UserResult
from tools.io import write_json, write_text

if TYPE_CHECKING:
    from types import ModuleType

REPORT_MD, REPORT_JSON, METRICS_PNG, COST_PNG = "report.md", "report.json", "metrics.png", "cost_quality.png"
PAIRED_METRIC = "ndcg@10"


def _records(run_dir: Path) -> list[UserResult]:
    out = []
    path = run_dir / USERS_FILE
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(UserResult.model_validate_json(line))
            except ValueError:
                continue  # a torn last line
    return out


def table_metrics(ks: Sequence[int]) -> list[str]:
    """Recall/HR, NDCG and MRR at each k; at k = 1 the three coincide, so HR@1 stands for all."""
    names = []
    for k in ks:
        names += [f"recall@{k}"] if k == 1 else [f"recall@{k}", f"ndcg@{k}", f"mrr@{k}"]
    return names


def bootstrap_ci(values: np.ndarray, resamples: np.ndarray) -> tuple[float, float]:
    if len(values) == 0:
        return (math.nan, math.nan)
    means = values[resamples].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def paired_test(method: np.ndarray, base: np.ndarray, rng: np.random.Generator, n_boot: int) -> dict[str, Any]:
    """Mean difference, its paired-bootstrap 95% interval and two-sided p-value, and the
    Wilcoxon signed-rank p-value (1.0 when every difference is zero)."""
    diff = method - base
    n = len(diff)
    if n == 0:
        return {}
    means = diff[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    p_boot = float(min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean())))
    nonzero = diff[diff != 0]
    from scipy import stats  # seconds to import: only where a report is written

    p_wilcoxon = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) else 1.0
    return {
        "users": int(n),
        "delta": float(diff.mean()),
        "delta_ci": [float(lo), float(hi)],
        "p_bootstrap": p_boot,
        "p_wilcoxon": p_wilcoxon,
        "better": int((diff > 0).sum()),
        "worse": int((diff < 0).sum()),
        "tied": int((diff == 0).sum()),
    }


def _diagnostics(records: Sequence[UserResult]) -> dict[str, Any] | None:
    with_llm = [r for r in records if r.llm_calls or r.diagnostics]
    if not with_llm:
        return None
    n = len(records)
    out: dict[str, Any] = {
        "fallback_share": sum(r.fallback for r in records) / n,
        "backfilled_per_user": sum(r.backfilled for r in records) / n,
        "cached_share": sum(r.cached_calls for r in records) / max(sum(r.llm_calls for r in records), 1),
    }
    diags = [r.diagnostics for r in records if r.diagnostics]
    if diags and "tools" in diags[0]:
        # recomputed from the notes: a repeated tool call ends the search by design, not a failure
        out["fallback_share"] = sum(any(not is_repeat(f) for f in d.get("fallbacks", [])) for d in diags) / n
        out["repeat_share"] = sum(any(is_repeat(f) for f in d.get("fallbacks", [])) for d in diags) / n
        tool_calls = sum(len(d.get("tools", [])) for d in diags)
        plans = sum(d.get("plans", 0) for d in diags)
        names: dict[str, int] = {}
        for d in diags:
            for name in d.get("tools", []):
                names[name] = names.get(name, 0) + 1
        out.update(
            {
                "tool_calls_per_user": tool_calls / n,
                "tool_error_share": sum(d.get("tool_errors", 0) for d in diags) / max(tool_calls, 1),
                "plan_valid_first_share": sum(d.get("plans_valid_first", 0) for d in diags) / plans if plans else None,
                "new_in_top10_per_user": sum(d.get("new_in_top10", 0) for d in diags) / n,
                "tools": names,
            }
        )
    if diags and "picked" in diags[0]:
        out.update(
            {
                "picked_per_user": sum(d.get("picked", 0) for d in diags) / n,
                "identity_share": sum(bool(d.get("identity")) for d in diags) / n,
            }
        )
    return out


def _view(
    results: dict[str, Any],
    mine: dict[str, dict[str, UserResult]],
    methods: Sequence[str],
    users: Sequence[str],
    rng: np.random.Generator,
    n_boot: int,
) -> dict[str, dict[str, Any]]:
    """Figures of `methods` on exactly `users` (each must have a result for each), with the
    paired test against the backbone when it is among them."""
    ks: list[int] = results["ks"]
    names = table_metrics(ks)
    view: dict[str, dict[str, Any]] = {}
    values_of: dict[str, dict[str, np.ndarray]] = {}
    if not users:
        return view
    resamples = rng.integers(0, len(users), size=(n_boot, len(users)))
    for name in methods:
        summary = results["methods"][name]
        chosen = [mine[name][u] for u in users]
        ranks = np.array([r.rank if r.rank is not None else MISSING for r in chosen], dtype=np.int64)
        values = per_user(ranks, ks)
        view[name] = {
            "label": summary["label"],
            "kind": summary["kind"],
            "scored": len(users),
            "users": len(results["user_ids"]),
            "invalid": sum(1 for r in chosen if not r.valid),
            "errors": sum(1 for r in chosen if not r.valid and r.error and not r.error.startswith("invalid list")),
            "complete": summary["complete"],
            "means": {m: float(values[m].mean()) for m in names},
            "ci": {m: bootstrap_ci(values[m], resamples) for m in names},
            "cost": summary["cost"],
            "code_versions": summary.get("code_versions", []),
            "diagnostics": _diagnostics(chosen),
        }
        values_of[name] = values
    backbone = results.get("backbone")
    if backbone in view:
        for name in view:
            if name != backbone:
                view[name]["paired"] = paired_test(values_of[name][PAIRED_METRIC], values_of[backbone][PAIRED_METRIC], rng, n_boot)
    for name in view:
        others = [other for other in results["methods"][name].get("versus", []) if other in view]
        view[name]["versus"] = [
            {
                "method": other,
                "label": view[other]["label"],
                **paired_test(values_of[name][PAIRED_METRIC], values_of[other][PAIRED_METRIC], rng, n_boot),
            }
            for other in others
        ]
    return view


def compute(run_dir: Path, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The figures of a run. A finished method is reported on all users. While some methods
    are unfinished, they are reported apart, with every started method, on the users all of
    them have finished (waves keep that set large), so that each table compares like with like."""
    results = json.loads((run_dir / RESULTS).read_text(encoding="utf-8"))
    users: list[str] = results["user_ids"]
    records = _records(run_dir)
    rng = np.random.default_rng(seed)
    mine: dict[str, dict[str, UserResult]] = {}
    for name, summary in results["methods"].items():
        found: dict[str, UserResult] = {}
        for r in records:
            if r.method == name and r.fp == summary["fingerprint"] and r.user not in found:
                found[r.user] = r
        if found:
            mine[name] = found
    finished = [n for n in mine if all(u in mine[n] for u in users)]
    unfinished = [n for n in mine if n not in finished]
    common = [u for u in users if mine and all(u in found for found in mine.values())]
    partial = None
    if finished:
        main, main_users = _view(results, mine, finished, users, rng, n_boot), len(users)
        if unfinished:
            partial = {"users": len(common), "unfinished": unfinished, "methods": _view(results, mine, list(mine), common, rng, n_boot)}
    else:
        main, main_users = _view(results, mine, list(mine), common, rng, n_boot), len(common)
    return {
        "run": str(run_dir),
        "name": results["name"],
        "dataset": results["dataset"],
        "split": results["split"],
        "seed": results["seed"],
        "users": len(users),
        "reported_users": main_users,
        "not_started": [n for n in results["methods"] if n not in mine],
        "llm": results["llm"],
        "backbone": results.get("backbone"),
        "complete": results["complete"],
        "wall_seconds": results["wall_seconds"],
        "session_seconds": results.get("session_seconds", {}),
        "code_versions": results.get("code_versions", []),
        "prices": results.get("prices"),
        "usd": results.get("usd"),
        "metrics": table_metrics(results["ks"]),
        "paired_metric": PAIRED_METRIC,
        "bootstrap": {"resamples": n_boot, "seed": seed, "interval": "95% percentile"},
        "methods": main,
        "partial": partial,
    }


# --- rendering ---------------------------------------------------------------------------


def _label(metric: str) -> str:
    name, _, k = metric.partition("@")
    return {"recall": "HR@1" if k == "1" else "Recall", "ndcg": "NDCG", "mrr": "MRR"}[name] + ("" if k == "1" else f"@{k}")


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.1f} s"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _price_note(prices: dict[str, float] | None, usd: float | None) -> list[str]:
    """The estimate's basis: the prices set, and the run's total (each method's tokens as if
    it ran alone: replies two methods share through the cache count for both)."""
    if not prices:
        return []
    return [
        "",
        f"Estimated cost at ${prices['llm_input_usd_per_mtok']:g} per million prompt tokens and "
        f"${prices['llm_output_usd_per_mtok']:g} per million completion tokens (TOOLREC_LLM_INPUT_USD_PER_MTOK, "
        f"TOOLREC_LLM_OUTPUT_USD_PER_MTOK): **{_usd(usd)}** for the run, every method's tokens counted as if it ran alone "
        "(replies it took from the cache at the tokens they cost when first made).",
    ]


def _means_table(methods: dict[str, dict[str, Any]], names: Sequence[str]) -> list[str]:
    lines = ["| Method | Users | Invalid | " + " | ".join(_label(m) for m in names) + " |", "|---|---:|---:|" + "---:|" * len(names)]
    best = {m: max(v["means"][m] for v in methods.values()) for m in names}
    for v in methods.values():
        cells = [f"**{v['means'][m]:.4f}**" if v["means"][m] == best[m] and best[m] > 0 else f"{v['means'][m]:.4f}" for m in names]
        lines.append(f"| {v['label']} | {v['scored']} | {v['invalid']} | " + " | ".join(cells) + " |")
    return lines


def _ci_table(methods: dict[str, dict[str, Any]], names: Sequence[str]) -> list[str]:
    lines = ["| Method | " + " | ".join(_label(m) for m in names) + " |", "|---|" + "---:|" * len(names)]
    for v in methods.values():
        lines.append(f"| {v['label']} | " + " | ".join(f"{v['ci'][m][0]:.3f}-{v['ci'][m][1]:.3f}" for m in names) + " |")
    return lines


def _paired_table(methods: dict[str, dict[str, Any]], backbone: str | None, metric: str) -> list[str]:
    paired = {n: v for n, v in methods.items() if v.get("paired")}
    if not paired or backbone not in methods:
        return []
    base = methods[backbone]
    lines = [
        f"Δ is the method's mean {metric.upper()} minus {base['label']}'s ({base['means'][metric]:.4f}) on the same users; "
        "better / worse / tied count users.",
        "",
        "| Method | Δ NDCG@10 | 95% CI of Δ | p (paired bootstrap) | p (Wilcoxon) | better / worse / tied |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    return lines + [_paired_row(v["label"], v["paired"]) for v in paired.values()]


def _paired_row(label: str, t: dict[str, Any]) -> str:
    return (
        f"| {label} | {t['delta']:+.4f} | {t['delta_ci'][0]:+.4f} to {t['delta_ci'][1]:+.4f} | "
        f"{_p(t['p_bootstrap'])} | {_p(t['p_wilcoxon'])} | {t['better']} / {t['worse']} / {t['tied']} |"
    )


def _versus_table(methods: dict[str, dict[str, Any]], metric: str) -> list[str]:
    """Each method against the others its config pairs it with (`versus`): e.g. the LLM's own gain."""
    pairs = {n: v for n, v in methods.items() if v.get("versus")}
    if not pairs:
        return []
    lines = [
        f"Δ is the method's mean {metric.upper()} minus the other's on the same users; with the other the same agent "
        "without the LLM's preference, Δ is the LLM's own gain.",
        "",
        f"| Method | minus | Δ {_label(metric)} | 95% CI of Δ | p (paired bootstrap) | p (Wilcoxon) | better / worse / tied |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    return lines + [_paired_row(f"{v['label']} | {t['label']}", t) for v in pairs.values() for t in v["versus"]]


def assembly_lines(config: dict[str, Any]) -> list[str]:
    """What each learned assembly the methods use was fit on and what it weighs most (RUN/assembly.json)."""
    runs = sorted({m["run"] for m in config.get("methods", []) if m.get("kind") == "agent" and m.get("assembly") == "learned"})
    lines = []
    for run in runs:
        path = Path(run) / ASSEMBLY_FILE
        if not path.is_file():
            lines.append(f"- `{path}`: missing")
            continue
        fitted = LearnedAssembly.model_validate_json(path.read_text(encoding="utf-8"))
        held = ", ".join(f"{k.removeprefix('held_out_')} {v:.4f}" for k, v in fitted.validation.items())
        top = sorted(fitted.importance.items(), key=lambda kv: -kv[1])[:6]
        lines.append(
            f"- `{path}`: {fitted.learner} over {len(fitted.signals)} signals, "
            f"fit on the {fitted.users} validation users whose item was in the pool"
            + (f"; held-out validation NDCG@10 {held}" if held else "")
            + "; share of gain: "
            + ", ".join(f"{name} {share:.0%}" for name, share in top)
        )
    return lines


def _code_note(report: dict[str, Any]) -> str:
    """Which code computed the figures (a hash of agent/, tools/, prompts/ and the eval code
    that scores, per session in sessions.jsonl): a method whose users came from two versions is
    flagged loudly, methods computed by different versions quietly."""
    versions = report.get("code_versions", [])
    if len(versions) <= 1:
        return ""
    mixed = [v["label"] for v in report["methods"].values() if len(v.get("code_versions", [])) > 1]
    if mixed:
        return f" **Warning: the users of {', '.join(mixed)} were computed by different versions of the code (see sessions.jsonl).**"
    by_version: dict[str, list[str]] = {}
    for v in report["methods"].values():
        for version in v.get("code_versions", []):
            by_version.setdefault(version, []).append(v["label"])
    detail = "; ".join(f"{version}: {', '.join(labels)}" for version, labels in by_version.items())
    return (
        f" Methods were computed in sessions with different code versions ({detail or ', '.join(versions)}); each method's users share one."
    )


def _sessions_note(report: dict[str, Any]) -> str:
    """How the wall time splits when the run took more than one session (resumed, or extended
    with more methods later): their count and the latest one's own time."""
    latest = latest_session_seconds(report)
    return "" if latest is None else f" over {len(report['session_seconds'])} sessions (the latest {latest / 60:.1f} min)"


def markdown(report: dict[str, Any], config: dict[str, Any], versions: dict[str, Any]) -> str:
    methods = report["methods"]
    names = report["metrics"]
    wall = report["wall_seconds"]
    partial = report.get("partial")
    status = ""
    if not report["complete"]:
        status = f"**The run is not complete.** The main tables cover the {report['reported_users']} users that their methods have finished"
        if partial:
            status += (
                f"; the methods still running ({', '.join(partial['unfinished'])}) are reported apart, "
                f"on the {partial['users']} users every started method has finished"
            )
        if report["not_started"]:
            status += f"; not started: {', '.join(report['not_started'])}"
        status += ". Cost figures count all users done so far. "
    lines = [
        f"# Evaluation: {report['name']}",
        "",
        f"{report['dataset']}, {report['split']} split (leave-one-out), full ranking over the catalogue; "
        f"{report['users']} test users (seed {report['seed']}); LLM: `{versions.get('llm') or report['llm']}`. "
        f"Wall time {wall / 60:.1f} min on {versions.get('cpus', '?')} CPUs{_sessions_note(report)}. "
        + status
        + "An invalid or failed output scores zero for that user and is counted under *invalid*; no user is dropped."
        + _code_note(report),
        "",
        "## Results",
        "",
        "Means over users; 95% bootstrap intervals in the next table.",
        "",
        *_means_table(methods, names),
        "",
        "### 95% bootstrap intervals",
        "",
        *_ci_table(methods, names),
    ]
    paired = _paired_table(methods, report["backbone"], report["paired_metric"])
    if paired:
        lines += [
            "",
            f"## Paired test against {methods[report['backbone']]['label']} (per-user {report['paired_metric'].upper()})",
            "",
            *paired,
        ]
    versus = _versus_table(methods, report["paired_metric"])
    if versus:
        lines += ["", "## Paired against another method", "", *versus]
    assemblies = assembly_lines(config)
    if assemblies:
        lines += ["", "## Learned assemblies", "", *assemblies]
    if partial and partial["methods"]:
        lines += [
            "",
            f"## Unfinished methods, on the {partial['users']} users every started method has finished",
            "",
            "Every started method on the same users (the first waves of the sample), so the unfinished rows compare with the others.",
            "",
            *_means_table(partial["methods"], names),
            "",
            *_paired_table(partial["methods"], report["backbone"], report["paired_metric"]),
        ]

    prices = report.get("prices")
    lines += [
        "",
        "## Cost",
        "",
        "Latency is per user (cached LLM replies counted at the latency they had when first made).",
        *_price_note(prices, report.get("usd")),
        "",
        "| Method | LLM calls | calls / user | tokens / user | latency p50 | latency p95 | LLM call p50 | LLM call p95 | fallbacks |"
        + (" est. USD |" if prices else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if prices else ""),
    ]
    for v in methods.values():
        c = v["cost"]
        d = v["diagnostics"] or {}
        fallbacks = f"{d['fallback_share']:.0%}" if d else "-"
        lines.append(
            f"| {v['label']} | {c['llm_calls']} | {c['llm_calls_per_user']:.2f} | {c['tokens_per_user']:.0f} | "
            f"{_seconds(c['latency_p50'])} | {_seconds(c['latency_p95'])} | {_seconds(c['llm_call_p50'])} | "
            f"{_seconds(c['llm_call_p95'])} | {fallbacks} |" + (f" {_usd(c.get('usd'))} |" if prices else "")
        )

    agents = {n: v for n, v in methods.items() if v["diagnostics"] and "tool_calls_per_user" in v["diagnostics"]}
    if agents:
        lines += [
            "",
            "## What the agents did",
            "",
            "Tool calls the LLM chose per user, the share of them that failed (bad arguments), the share of plan "
            "steps valid at the first try, users where an unusable reply (no valid JSON after the corrective retry, "
            "or a timeout) made the agent assemble early, users whose search ended because the LLM repeated a call, "
            "and how many items of the top-10 are not in the backbone's (SASRec's) own top-10.",
            "",
            "| Method | tool calls / user | tool errors | plans valid first try | unusable-reply fallbacks | ended by a repeated call "
            "| new items in top-10 | tools used |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for v in agents.values():
            d = v["diagnostics"]
            used = ", ".join(f"{k} {n}" for k, n in sorted(d["tools"].items(), key=lambda kv: -kv[1])) or "-"
            valid = "-" if d["plan_valid_first_share"] is None else f"{d['plan_valid_first_share']:.0%}"
            lines.append(
                f"| {v['label']} | {d['tool_calls_per_user']:.2f} | {d['tool_error_share']:.0%} | {valid} | "
                f"{d['fallback_share']:.0%} | {d['repeat_share']:.0%} | {d['new_in_top10_per_user']:.2f} | {used} |"
            )
    rerankers = {n: v for n, v in methods.items() if v["diagnostics"] and "picked_per_user" in v["diagnostics"]}
    if rerankers:
        lines += [
            "",
            "## What the LLM reranker did",
            "",
            "| Method | candidates ordered by the LLM / user | order unchanged | fallbacks |",
            "|---|---:|---:|---:|",
        ]
        for v in rerankers.values():
            d = v["diagnostics"]
            lines.append(f"| {v['label']} | {d['picked_per_user']:.1f} | {d['identity_share']:.0%} | {d['fallback_share']:.0%} |")

    lines += [
        "",
        "## Plots",
        "",
        f"![metrics]({METRICS_PNG})",
        "",
        f"![cost vs quality]({COST_PNG})",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(config, indent=2),
        "```",
        "",
        "## Versions",
        "",
        "```json",
        json.dumps(versions, indent=2),
        "```",
        "",
        f"Report generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; bootstrap: {report['bootstrap']['resamples']} "
        f"resamples, seed {report['bootstrap']['seed']}.",
        "",
    ]
    return "\n".join(lines)


def plot_metrics(report: dict[str, Any], path: Path) -> None:
    methods = list(report["methods"].values())
    wanted = [m for m in ("recall@10", "ndcg@10", "recall@20", "ndcg@20") if m in report["metrics"]] or report["metrics"][:4]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(wanted), figsize=(4.2 * len(wanted), 0.45 * len(methods) + 1.8), sharey=True, squeeze=False)
    labels = [v["label"] for v in methods]
    y = np.arange(len(methods))
    for ax, metric in zip(axes[0], wanted, strict=False):
        means = np.array([v["means"][metric] for v in methods])
        lo = np.array([v["ci"][metric][0] for v in methods])
        hi = np.array([v["ci"][metric][1] for v in methods])
        colors = ["tab:gray" if v["kind"] in ("popularity", "backbone") else "tab:blue" for v in methods]
        ax.barh(y, means, xerr=[means - lo, hi - means], color=colors, capsize=3)
        ax.set_title(_label(metric))
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, labels)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"{report['name']}: {report['reported_users']} users, 95% bootstrap intervals")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cost(report: dict[str, Any], path: Path) -> None:
    """NDCG@10 with its interval against seconds per user; one marker per method, named in the
    legend (methods sharing a cost would hide each other's labels)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.2))
    markers = "osD^vP*Xhp<>"
    for n, v in enumerate(report["methods"].values()):
        seconds = max(v["cost"]["seconds_per_user"] or 1e-4, 1e-4)
        mean = v["means"].get("ndcg@10", 0.0)
        lo, hi = v["ci"].get("ndcg@10", (mean, mean))
        ax.errorbar(
            seconds,
            mean,
            yerr=[[mean - lo], [hi - mean]],
            fmt=markers[n % len(markers)],
            color=plt.cm.tab20(n % 20),
            capsize=3,
            markersize=7,
            alpha=0.9,
            label=f"{v['label']} ({v['cost']['llm_calls_per_user']:.1f} LLM calls/user)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("seconds per user (log scale)")
    ax.set_ylabel("NDCG@10 (95% bootstrap interval)")
    ax.set_title(f"{report['name']}: quality vs cost, {report['reported_users']} users")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(run_dir: Path, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Write report.md, report.json and the two PNGs into `run_dir`; returns report.json's data."""
    report = compute(run_dir, n_boot=n_boot, seed=seed)
    config = json.loads((run_dir / CONFIG).read_text(encoding="utf-8")) if (run_dir / CONFIG).exists() else {}
    found = json.loads((run_dir / VERSIONS).read_text(encoding="utf-8")) if (run_dir / VERSIONS).exists() else {}
    write_json(run_dir / REPORT_JSON, report)
    write_text(run_dir / REPORT_MD, markdown(report, config, found))
    if report["methods"]:
        plot_metrics(report, run_dir / METRICS_PNG)
        plot_cost(report, run_dir / COST_PNG)
    return report


def plot_training_curves(curves: dict[str, list[dict[str, float]]], path: Path, threshold: float | None = 0.18) -> None:
    """Validation NDCG@10 against elapsed training seconds, one line per labelled run (the
    `curve` of each run's metrics.json)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.6))
    for label, curve in curves.items():
        ax.plot([p["seconds"] / 60 for p in curve], [p["ndcg@10"] for p in curve], marker=".", label=label)
    if threshold is not None:
        ax.axhline(threshold, color="tab:gray", linestyle="--", linewidth=1, label=f"NDCG@10 = {threshold}")
    ax.set_xlabel("minutes of training (validation included)")
    ax.set_ylabel("validation NDCG@10 (full ranking)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pyplot() -> ModuleType:
    """matplotlib's pyplot, drawing to files (imported here: a second, and most commands plot nothing)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot
