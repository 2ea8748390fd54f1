"""The web page's side of the server on real ML-100K tools: a turn streamed as typed events (the
agent's steps as they finish, the reply's words, one event per item, then the standing
preferences as chips), and a typed removal of one preference that the next turn obeys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.chat import SessionConstraints
from agent.llm.base import NoLLM
from agent.runtime import agent_config, shared_agent_factory
from agent.serve.app import ServerSettings, create_app
from agent.serve.preferences import NotAPreference, Removal, chips, removed
from agent.serve.progress import STEP_WORDS
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]


@pytest.fixture(scope="module")
def client(toolbox: Toolbox) -> Iterator[TestClient]:
    llm = NoLLM()
    app = create_app(ServerSettings(rate_burst=10_000, rate_per_minute=1e6), shared_agent_factory(llm, toolbox, agent_config(llm, k=5)))
    with TestClient(app) as test:
        yield test


def turn(client: TestClient, session: str, message: str, **extra: Any) -> list[tuple[str, dict[str, Any]]]:
    events = []
    with client.stream("POST", "/v1/chat/stream", json={"session_id": session, "message": message, **extra}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name or "message", json.loads(line[6:])))
    return events


def test_a_turn_streams_steps_then_words_then_each_item(client: TestClient, toolbox: Toolbox) -> None:
    events = turn(client, "stream-1", "I like Toy Story and Heat, no horror")
    names = [name for name, _ in events]
    assert names[-1] == "done" and "error" not in names
    first_item = names.index("item")
    steps = {data["node"]: data["text"] for name, data in events[:first_item] if name == "step"}
    # the agent's steps came before the answer, in words
    assert steps["seed"] == STEP_WORDS["seed"] and steps["validate"] == STEP_WORDS["validate"]
    assert names[first_item:-1] == ["item"] * 5  # the list once, item by item
    items = [data for name, data in events if name == "item"]
    assert all(i["reason"] and i["title"] for i in items) and not any("Horror" in i["genres"] for i in items)
    text = " ".join(data["text"] for name, data in events if name == "text")
    assert "no Horror" in text  # what was understood, said before the list
    done = events[-1][1]
    labels = [c["label"] for c in done["preferences"]["chips"]]
    assert "no Horror" in labels and done["turn"] == 1


def test_removing_a_chip_changes_the_next_turn(client: TestClient) -> None:
    first = [data for name, data in turn(client, "stream-2", "I like Toy Story and Heat") if name == "item"]
    genres = [g for item in first for g in item["genres"]]
    usual = max(sorted(set(genres)), key=genres.count)  # the genre this person's lists are full of
    events = turn(client, "stream-2", f"no {usual.lower()}, only from 1990 to 1999")
    assert not any(usual in data["genres"] for name, data in events if name == "item")
    chips_now = {c["label"]: c["removal"] for c in events[-1][1]["preferences"]["chips"]}
    assert set(chips_now) == {f"no {usual}", "1990-1999"}
    response = client.post("/v1/sessions/stream-2/preferences/remove", json=chips_now[f"no {usual}"])
    assert response.status_code == 200
    assert [c["label"] for c in response.json()["chips"]] == ["1990-1999"]
    assert client.get("/v1/sessions/stream-2").json()["constraints"]["exclude_genres"] == []
    after = [data for name, data in turn(client, "stream-2", "show me more") if name == "item"]
    assert any(usual in i["genres"] for i in after)  # the removed preference no longer holds
    assert all(1990 <= i["year"] <= 1999 for i in after)  # the one kept still does
    # a removal of what the session does not hold, or for no session, is a clear 404
    again = client.post("/v1/sessions/stream-2/preferences/remove", json=chips_now[f"no {usual}"])
    assert again.status_code == 404 and again.json()["error"]["code"] == "unknown_preference"
    assert client.post("/v1/sessions/nobody/preferences/remove", json={"kind": "years"}).status_code == 404
    assert client.post("/v1/sessions/stream-2/preferences/remove", json={"kind": "actor"}).status_code == 422


def test_a_cold_start_streams_a_list_and_asks_for_titles_and_an_unknown_user_is_refused(client: TestClient) -> None:
    events = turn(client, "stream-3", "hello")  # no history, no titles: the catalogue's best at once, and an invitation
    assert len([n for n, _ in events if n == "item"]) > 0 and events[-1][0] == "done"
    assert "titles you like" in " ".join(d["text"] for n, d in events if n == "text")
    unknown = client.post("/v1/chat/stream", json={"session_id": "stream-4", "message": "hi", "user_id": "no-such-user"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_user"


def test_chips_and_removals_of_every_kind() -> None:
    c = SessionConstraints(
        genres=["Drama"], exclude_genres=["Horror"], prefer_genres=["Crime"], quality=True, year_from=1990, query="heist", like=["50"]
    )
    shown = chips(c, lambda item: f"item {item}")
    labels = ["Drama", "no Horror", "preferably Crime", "the best-rated first", "from 1990", '"heist"', "more like item 50"]
    assert [chip.label for chip in shown] == labels
    for chip in shown:
        left = removed(c, chip.removal)
        assert chip.label not in [other.label for other in chips(left, lambda item: f"item {item}")]
    with pytest.raises(NotAPreference):
        removed(SessionConstraints(), Removal(kind="query"))
