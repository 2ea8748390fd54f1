"""`lookup` (fuzzy title search -> item ids) and `item_info` (attributes of given items)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools.schemas import NoMatch, StrList, ToolInput
from tools.toolbox import Toolbox

# rapidfuzz WRatio below this is noise (unrelated titles score 30-55)
MIN_MATCH = 60.0


class LookupInput(ToolInput):
    """Find items by (part of) their title, spelling errors allowed."""

    title: str = Field(min_length=1, description='A title, exact or approximate: "star wars", "The Matrix (1999)"')
    k: int = Field(5, ge=1, le=50, description="How many matches to return")


class LookupMatch(BaseModel):
    id: str
    title: str
    year: int | None = None
    attributes: dict[str, list[str]] = Field(default_factory=dict)
    match: float = Field(description="Title similarity, 0-100")


class LookupOutput(BaseModel):
    matches: list[LookupMatch]


def lookup(toolbox: Toolbox, args: LookupInput) -> LookupOutput:
    hits = toolbox.fuzzy_titles(args.title, limit=args.k, cutoff=MIN_MATCH)
    if not hits:
        raise NoMatch(f"no item title resembles {args.title!r}; try fewer or other words", field="title")
    matches = []
    for dense, score in hits:
        item = toolbox.dataset.item(dense)
        attributes = {kind: list(values) for kind, values in item.attributes.items()}
        matches.append(LookupMatch(id=item.id, title=item.title, year=item.year, attributes=attributes, match=round(score, 1)))
    return LookupOutput(matches=matches)


class ItemInfoInput(ToolInput):
    """Title, year, attributes and popularity of given items."""

    ids: StrList = Field(min_length=1, max_length=50, description="Item ids (titles also work)")


class ItemInfo(BaseModel):
    id: str
    title: str
    year: int | None = None
    attributes: dict[str, list[str]] = Field(default_factory=dict)
    description: str | None = None
    popularity: int = Field(description="Interactions in the training data")


class ItemInfoOutput(BaseModel):
    items: list[ItemInfo]


def item_info(toolbox: Toolbox, args: ItemInfoInput) -> ItemInfoOutput:
    items = []
    for dense in toolbox.resolve_items(args.ids, "ids"):
        item = toolbox.dataset.item(int(dense))
        items.append(
            ItemInfo(
                id=item.id,
                title=item.title,
                year=item.year,
                attributes={kind: list(values) for kind, values in item.attributes.items()},
                description=item.description,
                popularity=int(toolbox.popularity[dense]),
            )
        )
    return ItemInfoOutput(items=items)
