"""The intent menu drafted from real ML-100K profiles, and the probe rules (agent.probes): every
menu entry is a valid tool call that finds items, none admits most of the catalogue, no two are
the same call; a too-broad constraint is trimmed to the user's own top values."""

from __future__ import annotations

import pytest

from agent.intents import MAX_INTENTS, draft_menu
from agent.probes import call_key, too_broad, trim_broad
from agent.state import AGENT_TOOLS
from tools.profile import UserProfileOutput
from tools.registry import call_tool
from tools.schemas import ItemsOutput
from tools.titles import natural_title
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]

USERS = ["1", "2", "13", "99", "276", "450", "655", "916"]


def profile_of(toolbox: Toolbox, user: str) -> UserProfileOutput:
    result = call_tool(toolbox, "user_profile", {"user_id": user, "recent": 8, "top_values": 5})
    assert isinstance(result.output, UserProfileOutput)
    return result.output


@pytest.mark.parametrize("user", USERS)
def test_every_menu_entry_is_a_valid_distinct_narrow_call_that_finds_items(toolbox: Toolbox, user: str) -> None:
    menu = draft_menu(profile_of(toolbox, user), toolbox, AGENT_TOOLS)
    assert 5 <= len(menu) <= MAX_INTENTS
    assert len({intent.key() for intent in menu}) == len(menu)
    genres = toolbox.attribute_items["genre"]
    history = {toolbox.dataset.item(int(d)).id for d in toolbox.user_history(user)}
    for intent in menu:
        assert intent.text and "$" not in intent.text and "{" not in intent.text, intent
        # the LLM's menu label is the text less its example titles ("..., like your A and B")
        assert intent.label and intent.text.startswith(intent.label) and ", like your" not in intent.label, intent
        assert len(intent.arguments.get("genres", [])) <= 2 and not too_broad(toolbox, "genre", intent.arguments.get("genres", []))
        assert set(intent.arguments.get("genres", [])) <= set(genres)
        result = call_tool(toolbox, intent.tool, {**intent.arguments, "user_id": user, "k": 20})
        assert result.ok and isinstance(result.output, ItemsOutput) and result.output.items, (intent, result.error)
        assert not history & {item.id for item in result.output.items}


def test_the_menu_speaks_of_this_users_own_history(toolbox: Toolbox) -> None:
    profile = profile_of(toolbox, "1")
    menu = {intent.kind: intent for intent in draft_menu(profile, toolbox, AGENT_TOOLS)}
    assert {"recent_genres", "more_like", "rediscover", "variant", "theme", "favourite"} <= set(menu)
    latest = profile.recent_items[0]
    assert menu["more_like"].arguments == {"items": [latest.id], "space": "model"}
    assert menu["more_like"].text == f"more like {natural_title(latest.title)}, your latest"
    recent = menu["recent_genres"]
    assert recent.text.startswith("more ") and ", like your recent " in recent.text
    assert recent.label == f"more {' or '.join(recent.arguments['genres'])}"
    recent_genres = {g for h in profile.recent_items[:5] for g in h.attributes["genre"]}
    assert set(recent.arguments["genres"]) <= recent_genres
    assert menu["rediscover"].arguments["genres"][0] not in recent_genres  # rated highly, but not lately
    assert "rated it highly but not lately" in menu["rediscover"].text
    assert menu["variant"].arguments["variant"] == "genre" and "genre-aware model" in menu["variant"].text
    assert menu["favourite"].arguments["genres"] == [profile.attributes["genre"][0].value]
    if "decade" in menu:
        decade = menu["decade"].arguments
        assert decade["year_to"] - decade["year_from"] == 9 and menu["decade"].text.startswith(f"more {decade['year_from']}s ")


def test_the_menu_uses_only_the_allowed_tools(toolbox: Toolbox) -> None:
    menu = draft_menu(profile_of(toolbox, "1"), toolbox, ["retrieve"])
    assert menu and {intent.tool for intent in menu} == {"retrieve"}


def test_a_constraint_naming_most_genres_is_trimmed_to_the_users_top_ones(toolbox: Toolbox) -> None:
    profile = profile_of(toolbox, "1")
    genres = list(toolbox.attribute_items["genre"])
    assert too_broad(toolbox, "genre", genres[:10]) and not too_broad(toolbox, "genre", genres[:9])
    favourites = [v.value for v in profile.attributes["genre"]]
    trimmed, notes = trim_broad(toolbox, profile, {"genres": genres[:12], "year_from": 1990})
    assert trimmed["year_from"] == 1990 and len(notes) == 1 and "trimmed" in notes[0]
    assert trimmed["genres"] == [g for g in favourites if g in genres[:12]][:2]
    kept, none = trim_broad(toolbox, profile, {"genres": ["Drama", "Comedy"]})
    assert kept == {"genres": ["Drama", "Comedy"]} and none == []


def test_the_same_call_has_one_key_whatever_the_argument_order() -> None:
    assert call_key("retrieve", {"genres": ["Drama"], "k": 20}) == call_key("retrieve", {"k": 20, "genres": ["Drama"]})
    assert call_key("retrieve", {"genres": ["Drama"]}) != call_key("retrieve", {"genres": ["Comedy"]})
