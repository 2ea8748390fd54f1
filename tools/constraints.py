"""Attribute-value constraints over the catalogue, as one boolean mask.

`Filters` are the hard constraints every item-returning tool shares; `Constraints` adds the
free-text `query`, which is not a filter but a score (through the text index) that `retrieve`
fuses with the backbone's. Field names are short and plain for small LLMs: `genres` and
`exclude_genres` stand for the catalogue's genre-like attribute ("genre" for MovieLens,
"category" for Amazon and Yelp); `attributes` / `exclude_attributes` reach any attribute type
the dataset has (including "year" as decades, "1990s").

`to_mask` applies the constraints in a fixed order and stops at the first one that leaves no
item, raising `NoMatch` naming that constraint and what each earlier step left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from tools.schemas import NoMatch, OutOfRange, StrList, ToolInput

if TYPE_CHECKING:
    from tools.toolbox import Toolbox


class Filters(ToolInput):
    genres: StrList | None = Field(None, description="Keep only items with at least one of these genres")
    exclude_genres: StrList | None = Field(None, description="Drop items with any of these genres")
    year_from: int | None = Field(None, description="Earliest release year, inclusive (e.g. 1990)")
    year_to: int | None = Field(None, description="Latest release year, inclusive (e.g. 1999)")
    attributes: dict[str, StrList] | None = Field(
        None, description='Other attribute types -> values; keep items with at least one value of each type, e.g. {"year": ["1990s"]}'
    )
    exclude_attributes: dict[str, StrList] | None = Field(None, description="Attribute type -> values to drop")
    exclude_ids: StrList | None = Field(None, description="Item ids never to return (already shown, rejected)")

    def filters(self) -> Filters:
        """Just the filter fields of a tool input that extends this model."""
        return Filters.model_construct(**{name: getattr(self, name) for name in Filters.model_fields})


class Constraints(Filters):
    query: str | None = Field(None, description='Free-text description, e.g. "time travel", "dark comedy about a heist"')


@dataclass
class CandidateMask:
    """Dense ids 0..n that pass (index 0, padding, never does), the constraints as resolved to
    canonical names and values (for provenance), and how many items each step left."""

    mask: np.ndarray
    applied: dict[str, Any] = field(default_factory=dict)
    steps: list[tuple[str, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.steps[-1][1]) if self.steps else int(np.count_nonzero(self.mask))


def to_mask(toolbox: Toolbox, filters: Filters, exclude: np.ndarray | None = None, exclude_name: str = "history") -> CandidateMask:
    """The catalogue minus `exclude` (a user's history: always excluded by the tools) and
    minus everything the filters rule out."""
    mask = np.ones(toolbox.num_items + 1, dtype=bool)
    mask[0] = False
    result = CandidateMask(mask)

    def step(name: str, keep: np.ndarray | None, value: Any, record: bool = True) -> None:
        if keep is not None:
            np.logical_and(mask, keep, out=mask)
        left = int(np.count_nonzero(mask))  # several times faster than sum() on a million booleans
        if record:
            result.applied[name] = value
        if left == 0:
            before = " -> ".join(f"{n} {c}" if n == "catalogue" else f"after {n} {c}" for n, c in result.steps)
            raise NoMatch(f"no item matches: {name}={value!r} leaves no item (items: {before} -> after {name} 0)", field=name)
        result.steps.append((name, left))

    result.steps.append(("catalogue", toolbox.num_items))
    if exclude is not None and len(exclude):
        mask[exclude] = False
        step(exclude_name, None, int(len(np.unique(exclude))), record=False)
    if filters.exclude_ids:
        ids = toolbox.resolve_items(filters.exclude_ids, "exclude_ids")
        mask[ids] = False
        step("exclude_ids", None, [toolbox.dataset.item(int(d)).id for d in ids])

    primary = toolbox.primary_attribute
    for name, include in (("genres", True), ("exclude_genres", False)):
        given = getattr(filters, name)
        if not given:
            continue
        if primary is None:
            toolbox.attribute("genre", name)  # raises with the attribute types there are
            continue
        values = toolbox.values(primary, given, name)
        hit = toolbox.items_with(primary, values)
        step(name, hit if include else ~hit, values)

    for name, include in (("attributes", True), ("exclude_attributes", False)):
        for kind, given in (getattr(filters, name) or {}).items():
            if not given:  # an empty list constrains nothing, as an absent one
                continue
            attribute = toolbox.attribute(kind, f"{name}.{kind}")
            values = toolbox.values(attribute, given, f"{name}.{kind}")
            hit = toolbox.items_with(attribute, values)
            label = f"{name}.{attribute}"
            step(label, hit if include else ~hit, values)

    if filters.year_from is not None and filters.year_to is not None and filters.year_from > filters.year_to:
        raise OutOfRange(
            f"year_from ({filters.year_from}) is after year_to ({filters.year_to})", field="year_to", minimum=filters.year_from
        )
    span = toolbox.year_span
    span_text = f"catalogue years span {span[0]}-{span[1]}" if span else "no item has a year"
    for name, bound, keep in (
        ("year_from", filters.year_from, lambda y: toolbox.years >= y),
        ("year_to", filters.year_to, lambda y: (toolbox.years <= y) & (toolbox.years >= 0)),
    ):
        if bound is None:
            continue
        try:
            step(name, keep(bound), bound)
        except NoMatch as err:
            err.error.message += f"; {span_text}"
            if span:
                err.error.minimum, err.error.maximum = span
            raise
    return result
