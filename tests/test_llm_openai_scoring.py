"""Option scoring and JSON-schema replies through the OpenAI backend, against the fake server
of test_llm_openai_compat (real SDK, real HTTP): top_logprobs, the constrained-reply fallback
for servers without log-probabilities, and the response_format dialect fallback."""

from typing import Any

import pytest
from test_llm_openai_compat import MESSAGES, FakeServer, completion, error, make, ok, server

from agent.llm.openai_compat import TOP_LOGPROBS

__all__ = ["server"]  # the fixture, imported to be used here

OPTIONS = ["Sci-Fi", "Drama", "Comedy"]


def with_logprobs(top: dict[str, float]) -> dict[str, Any]:
    body = completion("1")
    first = next(iter(top))
    body["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": first,
                "logprob": top[first],
                "bytes": None,
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()],
            }
        ]
    }
    return body


def test_scores_from_top_logprobs_mapped_back_through_the_orderings(server: FakeServer) -> None:
    # Given order: position 2 ("Drama") favoured; reversed: position 2 is "Drama" again;
    # " 1" and "1" both count for position 1; "Hello" is not an option number.
    server.responses += [
        ok(with_logprobs({"2": -0.2, "1": -2.5, " 1": -4.0, "Hello": -3.0})),
        ok(with_logprobs({"2": -0.3, "3": -2.0})),
    ]
    scores = make(server).score_options(MESSAGES, OPTIONS, orderings=2)
    assert scores.method == "logprobs" and scores.best == 1
    assert sum(scores.probabilities()) == pytest.approx(1.0)
    sent = server.requests[0]
    assert sent["logprobs"] is True and sent["top_logprobs"] == TOP_LOGPROBS
    assert sent["max_tokens"] == 1
    assert "1. Sci-Fi" in sent["messages"][-1]["content"]
    assert "1. Comedy" in server.requests[1]["messages"][-1]["content"]
    # In the second ordering "1" (Comedy) had no figure: it shares the mass left over.
    assert scores.orderings[1].label_mass < 1.0


def test_without_logprobs_each_ordering_votes_through_a_constrained_reply(
    server: FakeServer,
) -> None:
    server.responses += [
        ok(completion("2")),  # no logprobs: the server does not give them
        ok(completion('{"option": 2}')),
        ok(completion('{"option": 2}')),  # logprobs no longer asked for
    ]
    llm = make(server)
    scores = llm.score_options(MESSAGES, OPTIONS, orderings=2)
    assert scores.method == "constrained_reply"
    assert scores.best == 1 and scores.options[1].probability > 0.99
    assert len(server.requests) == 3 and "logprobs" not in server.requests[2]
    schema = server.requests[1]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["option"]["enum"] == [1, 2, 3]


def test_response_format_falls_back_to_the_json_object_dialect(server: FakeServer) -> None:
    server.responses += [error(400), ok(completion('{"a": 1}')), ok(completion('{"a": 2}'))]
    llm = make(server)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert llm.chat(MESSAGES, json_schema=schema).text == '{"a": 1}'
    assert llm.chat(MESSAGES, json_schema=schema).text == '{"a": 2}'
    formats = [r["response_format"] for r in server.requests]
    assert formats[0]["type"] == "json_schema"
    assert formats[1] == formats[2] == {"type": "json_object", "schema": schema}
