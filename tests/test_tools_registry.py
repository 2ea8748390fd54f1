"""The registry: function-calling schemas are valid JSON schema and agree with validation, and
every error case comes back as a typed ToolError a caller can act on (never a stack trace,
never a silent empty list)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from tools.models.base import Counted
from tools.models.checkpoint import build_model, new_config
from tools.registry import TOOLS, ToolResult, call_tool, input_schema, openai_tools
from tools.schemas import ItemsOutput
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]

# one valid call per tool (ML-100K: user "196" exists, item "50" is Star Wars)
EXAMPLES: dict[str, dict[str, Any]] = {
    "retrieve": {"user_id": "196", "k": 5, "genres": ["Sci-Fi"], "year_from": 1980, "query": "space battles"},
    "semantic_search": {"query": "a funny film about a dog", "k": 5, "exclude_genres": ["Horror"]},
    "similar_items": {"items": ["50"], "k": 5, "space": "model"},
    "top_items": {"k": 5, "by": "quality", "genres": ["Comedy"], "year_from": 1980, "year_to": 1989},
    "rank": {"candidates": ["50", "172", "181", "1"], "by": "model", "user_id": "196"},
    "lookup": {"title": "star wars"},
    "item_info": {"ids": ["50", "1"]},
    "user_profile": {"user_id": "196", "recent": 5},
}


def test_every_tool_has_an_example_and_models() -> None:
    assert set(EXAMPLES) == set(TOOLS)
    for spec in TOOLS.values():
        assert spec.description and spec.input_model and spec.output_model


@pytest.mark.parametrize("with_toolbox", [False, True])
def test_schemas_are_valid_json_schema(toolbox: Toolbox, with_toolbox: bool) -> None:
    specs = openai_tools(toolbox if with_toolbox else None)
    assert [s["function"]["name"] for s in specs] == list(TOOLS)
    json.dumps(specs)  # serialisable as is
    for spec in specs:
        assert spec["type"] == "function"
        parameters = spec["function"]["parameters"]
        jsonschema.Draft202012Validator.check_schema(parameters)
        assert parameters["type"] == "object" and parameters["additionalProperties"] is False
        assert "title" not in parameters
        # the examples the tools accept also satisfy the schema the LLM sees
        jsonschema.validate(EXAMPLES[spec["function"]["name"]], parameters)
    for spec in TOOLS.values():
        jsonschema.Draft202012Validator.check_schema(spec.output_model.model_json_schema())


def test_toolbox_schema_names_its_values(toolbox: Toolbox) -> None:
    retrieve = next(s for s in openai_tools(toolbox) if s["function"]["name"] == "retrieve")["function"]["parameters"]
    assert "Sci-Fi" in retrieve["properties"]["genres"]["description"]
    assert retrieve["properties"]["variant"]["enum"] == ["plain", "genre"]
    assert (
        "1922" in retrieve["properties"]["year_from"]["description"]
        or "catalogue years" in retrieve["properties"]["year_from"]["description"]
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"user_id": "196", "variant": "year"}, retrieve)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"user_id": "196", "k": 0}, input_schema(TOOLS["retrieve"].input_model))


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_succeed_and_serialise(toolbox: Toolbox, name: str) -> None:
    result = call_tool(toolbox, name, json.dumps(EXAMPLES[name]))  # a JSON string, as in an LLM tool call
    assert result.ok and result.error is None, result.error
    assert isinstance(result.output, TOOLS[name].output_model)
    message = json.loads(result.to_message())
    assert "error" not in message
    again = json.loads(result.model_dump_json())
    assert again["ok"] is True and again["output"]  # the output model's fields survive serialisation
    if isinstance(result.output, ItemsOutput):
        assert result.output.items
        assert all(item.provenance[0].tool == name for item in result.output.items)


def error_of(toolbox: Toolbox, name: str, arguments: Any) -> dict[str, Any]:
    result = call_tool(toolbox, name, arguments)
    assert isinstance(result, ToolResult) and not result.ok and result.output is None
    assert result.error is not None
    message = json.loads(result.to_message())
    assert set(message) == {"error"}
    return result.error.model_dump()


def test_unknown_tool(toolbox: Toolbox) -> None:
    error = error_of(toolbox, "recommend_everything", {})
    assert error["code"] == "unknown_tool" and error["valid"] == list(TOOLS)


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", 42])
def test_malformed_arguments(toolbox: Toolbox, arguments: Any) -> None:
    assert error_of(toolbox, "retrieve", arguments)["code"] == "invalid_arguments"


def test_unknown_argument_lists_valid_ones(toolbox: Toolbox) -> None:
    error = error_of(toolbox, "retrieve", {"user_id": "196", "genre": ["Action"]})
    assert error["code"] == "invalid_arguments" and error["field"] == "genre"
    assert "genres" in error["valid"] and "year_from" in error["valid"]


def test_missing_required_argument(toolbox: Toolbox) -> None:
    error = error_of(toolbox, "semantic_search", {"k": 3})
    assert error["code"] == "invalid_arguments" and error["field"] == "query"
    assert error_of(toolbox, "retrieve", {"k": 3})["field"] == "user_id"
    assert error_of(toolbox, "retrieve", {"user_id": "196", "history": ["50"]})["code"] == "invalid_arguments"


@pytest.mark.parametrize(
    ("name", "arguments", "field", "low", "high"),
    [
        ("retrieve", {"user_id": "196", "k": 0}, "k", 1, 100),
        ("retrieve", {"user_id": "196", "k": 1000}, "k", 1, 100),
        ("semantic_search", {"query": "x", "k": -3}, "k", 1, 100),
        ("rank", {"candidates": ["1"] * 501, "by": "popularity"}, "candidates", 1, 500),
        ("rank", {"candidates": ["1"], "by": "diversity", "relevance_weight": 2}, "relevance_weight", 0, 1),
        ("lookup", {"title": "alien", "k": 51}, "k", 1, 50),
    ],
)
def test_out_of_range_gives_the_range(toolbox: Toolbox, name: str, arguments: dict[str, Any], field: str, low: float, high: float) -> None:
    error = error_of(toolbox, name, arguments)
    assert error["code"] == "out_of_range" and error["field"] == field
    assert (error["minimum"], error["maximum"]) == (low, high)
    assert f"between {low:g} and {high:g}" in error["message"]


def test_unknown_attribute_type_lists_types(toolbox: Toolbox) -> None:
    error = error_of(toolbox, "retrieve", {"user_id": "196", "attributes": {"director": ["Lucas"]}})
    assert error["code"] == "unknown_value" and error["field"] == "attributes.director"
    assert error["valid"] == ["genre", "year"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"genres": ["Sci-Fi", "Space Opera"]}, "genres"),
        ({"exclude_genres": "Cartoon"}, "exclude_genres"),
        ({"attributes": {"year": ["1990"]}}, "attributes.year"),
    ],
)
def test_unknown_value_lists_values(toolbox: Toolbox, arguments: dict[str, Any], field: str) -> None:
    error = error_of(toolbox, "retrieve", {"user_id": "196", **arguments})
    assert error["code"] == "unknown_value" and error["field"] == field
    attribute = "year" if field.endswith("year") else "genre"
    assert error["valid"] == list(toolbox.attribute_items[attribute])


def test_lenient_values_are_canonicalised(toolbox: Toolbox) -> None:
    result = call_tool(toolbox, "retrieve", {"user_id": 196, "genres": "sci fi, ROMANCE", "k": 3})
    assert result.ok, result.error
    assert isinstance(result.output, ItemsOutput)
    assert result.output.items[0].provenance[0].constraints["genres"] == ["Sci-Fi", "Romance"]


def test_unknown_variant_user_and_item(toolbox: Toolbox) -> None:
    error = error_of(toolbox, "retrieve", {"user_id": "196", "variant": "year"})
    assert error["code"] == "unknown_value" and error["field"] == "variant" and error["valid"] == ["plain", "genre"]
    error = error_of(toolbox, "retrieve", {"user_id": "no-such-user"})
    assert error["code"] == "unknown_value" and error["field"] == "user_id" and error["valid"]
    error = error_of(toolbox, "similar_items", {"items": ["Star Wars", "Stra Wars Empire"]})
    assert error["code"] == "unknown_value" and error["field"] == "items"
    assert "172" in error["valid"]  # The Empire Strikes Back, suggested by its id
    error = error_of(toolbox, "rank", {"candidates": ["50", "99999"], "by": "popularity"})
    assert error["code"] == "unknown_value" and error["field"] == "candidates"
    error = error_of(toolbox, "rank", {"candidates": ["50"], "by": "rating"})
    assert error["code"] == "unknown_value" and error["field"] == "by" and "popularity" in error["valid"]


@pytest.mark.parametrize(
    ("name", "arguments", "field"),
    [
        ("retrieve", {"user_id": "196", "genres": ["Documentary"], "exclude_genres": ["Documentary"]}, "exclude_genres"),
        ("retrieve", {"user_id": "196", "year_from": 2005}, "year_from"),
        ("retrieve", {"user_id": "196", "genres": ["Film-Noir"], "year_to": 1920}, "year_to"),
        (
            "semantic_search",
            {"query": "westerns", "genres": ["Western"], "attributes": {"year": ["1990s"]}, "exclude_attributes": {"genre": ["Western"]}},
            "exclude_attributes.genre",
        ),
        ("lookup", {"title": "zzqqxxjj"}, "title"),
    ],
)
def test_no_match_names_the_emptying_constraint(toolbox: Toolbox, name: str, arguments: dict[str, Any], field: str) -> None:
    error = error_of(toolbox, name, arguments)
    assert error["code"] == "no_match" and error["field"] == field
    assert "no item" in error["message"]


def test_excluding_every_genre_is_no_match(toolbox: Toolbox) -> None:
    every = list(toolbox.attribute_items["genre"])
    error = error_of(toolbox, "similar_items", {"items": ["50"], "exclude_genres": every})
    assert error["code"] == "no_match" and error["field"] == "exclude_genres"


def test_year_range_errors_carry_the_catalogue_span(toolbox: Toolbox) -> None:
    error = error_of(toolbox, "retrieve", {"user_id": "196", "year_from": 2005})
    assert toolbox.year_span is not None
    assert (error["minimum"], error["maximum"]) == toolbox.year_span
    error = error_of(toolbox, "retrieve", {"user_id": "196", "year_from": 1995, "year_to": 1990})
    assert error["code"] == "out_of_range" and error["field"] == "year_to"


def test_rank_with_every_candidate_in_history_is_no_match(toolbox: Toolbox) -> None:
    history = [toolbox.dataset.item(int(d)).id for d in toolbox.user_history("196")[:5]]
    error = error_of(toolbox, "rank", {"candidates": history, "user_id": "196"})
    assert error["code"] == "no_match" and error["field"] == "candidates"


ODD_VALUES: list[Any] = [
    None,
    "",
    "   ",
    "x",
    0,
    -1,
    10**9,
    2.5,
    True,
    [],
    ["x"],
    [1, "50"],
    {},
    {"genre": "Action"},
    {"a": [1]},
    [[1]],
    "1990s",
]


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_odd_arguments_never_raise(toolbox: Toolbox, name: str) -> None:
    """Whatever an LLM writes into any one argument, the caller gets a ToolResult."""
    fields = list(TOOLS[name].input_model.model_fields)
    for field in fields:
        for value in ODD_VALUES:
            result = call_tool(toolbox, name, {**EXAMPLES[name], field: value})
            assert isinstance(result, ToolResult)
            json.loads(result.to_message())
            if not result.ok:
                assert result.error is not None and result.error.message
            elif isinstance(result.output, ItemsOutput):
                assert result.output.items, (field, value)  # never a silent empty list


def test_a_counted_variant_ranks_but_has_no_vector_space(toolbox: Toolbox) -> None:
    """The transition model is a variant like the others: `retrieve` ranks with it and the schema
    offers it; it has no item vectors, so `similar_items` is not offered its space and a call
    naming it gets a clear error; its seeds read as what came right after."""
    counted = build_model(new_config("transitions", toolbox.dataset), toolbox.dataset)
    assert isinstance(counted, Counted)
    counted.fit(toolbox.dataset)
    models = {**toolbox.variants, "transitions": counted}
    both = Toolbox(toolbox.dataset, models, run_dir=toolbox.run_dir, indexes=toolbox.indexes)
    specs = {s["function"]["name"]: s["function"]["parameters"] for s in openai_tools(both)}
    assert "transitions" in specs["retrieve"]["properties"]["variant"]["enum"]
    assert "transitions" not in specs["similar_items"]["properties"]["space"]["enum"]
    ranked = call_tool(both, "retrieve", {"user_id": "196", "variant": "transitions", "k": 5})
    assert isinstance(ranked.output, ItemsOutput) and len(ranked.output.items) == 5
    refused = call_tool(both, "similar_items", {"items": [ranked.output.items[0].id], "space": "transitions"})
    assert refused.error is not None and refused.error.field == "space"
    assert both.variant_phrases["transitions"] == "what people watched right after your latest titles"
    assert both.variant_phrases["genre"].startswith("what the genre-aware model")
