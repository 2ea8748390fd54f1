"""A synthetic catalogue in the project's own format, for cost benchmarks at 10^5-10^6 items.

It writes `items.parquet` (item_id, title, year, description, category, price, city; several
categories joined with "|"), `interactions.parquet` (user_id, item_id, timestamp, rating) and
`synth.json` (the arguments and counts). It is for cost only: quality claims stay on real data.

The structure is there so that a sequence model has something to learn that popularity and the
counted transitions cannot read alone:
- Items belong to latent topics; each topic has a few home categories, a price level, a home
  city and an era, so attributes carry the topic. Popularity is Zipf over the whole catalogue.
- Each user has a few favourite topics. At every step the user stays in the current topic with
  probability 1 - P_SWITCH, else moves to a favourite (now and then to any topic). Within a
  topic the next item is now and then a few places from the previous one in the topic's own
  order (a series; back in a favourite, from the last item seen there), else drawn by the
  topic's popularity. The favourites are read from the whole history, which a transition model
  over the last few items does not see. The probabilities were set so that on 2,000 items a
  SASRec trained for 6 epochs leads the transition model by 0.03-0.05 NDCG@10 (seeds 0-2): with
  more or longer series steps the counted transitions catch up (tests/test_synth.py).
- A user never repeats an item (a held-out repeat would be masked by every evaluation).

Everything is vectorised over users, and interactions are generated and written in user chunks
(one Parquet row group each), so the 1m shape (20M interactions) runs in bounded memory.
Same arguments, same bytes: each chunk draws from its own generator seeded by (seed, chunk).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.io import atomic_path, write_json

# (items, users, interactions)
SHAPES: dict[str, tuple[int, int, int]] = {"100k": (100_000, 50_000, 2_000_000), "1m": (1_000_000, 1_000_000, 20_000_000)}
ITEMS, INTERACTIONS, MANIFEST = "items.parquet", "interactions.parquet", "synth.json"

MIN_ITEMS, MIN_LENGTH = 20, 3
P_SWITCH = 0.2  # leave the current topic at a step
P_EXPLORE = 0.1  # a switch goes to any topic (by popularity) rather than a favourite
P_SERIES = 0.15  # staying: the next item lies near the previous one in the topic's order
P_RESUME = 0.3  # back in a favourite: the next item lies near the last one seen there
SERIES_STEP = 3  # ... 1 to this many places either way
FAVOURITES = 3  # topics per user
ZIPF = 0.9  # item popularity ~ rank^-ZIPF
LENGTH_SIGMA, LENGTH_CAP = 0.8, 8.0  # lognormal user lengths, capped at this many times the mean
MAX_ROUNDS = 40  # rounds of redrawing a user's repeated items (the chance to explore doubles each round)
CHUNK_ROWS = 1_000_000  # interactions generated and written at once
START, SPAN = 1_420_070_400, 9 * 365 * 86_400  # first interactions in 2015-2023
MEAN_GAP = 2 * 86_400  # seconds between a user's interactions, on average

CATEGORY_QUALIFIERS = (
    "Vintage Modern Classic Indie Kids Outdoor Urban Rustic Nordic Tropical Retro Digital Handmade Gourmet "
    "Family Eco Alpine Coastal Folk Studio Street Garden Royal Wild Sacred Pocket Silent Grand Tiny Bold"
).split()
CATEGORY_NOUNS = (
    "Books Comics Music Films Games Toys Gear Tools Art Crafts Food Wine Fashion Travel Fitness Home Tech Poetry Jazz Decor".split()
)
TITLE_ADJECTIVES = (
    "Silver Golden Hidden Broken Quiet Distant Crimson Velvet Hollow Bright Frozen Burning Lonely Secret Wandering "
    "Electric Paper Iron Glass Midnight Morning Winter Summer Northern Southern Ancient Little Endless Falling Rising "
    "Scarlet Emerald Amber Ivory Copper Salt Stone Cloud Thunder Lucky"
).split()
TITLE_NOUNS = (
    "Harbor River Garden Tower Island Mirror Lantern Orchard Meadow Compass Voyage Letter Kingdom Engine Harvest "
    "Shadow Signal Anchor Bridge Canyon Forest Horizon Journey Machine Market Mountain Ocean Palace Planet Rain "
    "Road Season Station Storm Thread Valley Window Wolf Feather Crown"
).split()
CITIES = (
    "Lyon Porto Seville Bologna Krakow Ghent Utrecht Bergen Tartu Ljubljana Lisbon Madrid Paris Berlin Munich Vienna "
    "Prague Budapest Warsaw Oslo Stockholm Helsinki Copenhagen Dublin Edinburgh Manchester Bristol Amsterdam Brussels "
    "Zurich Geneva Milan Turin Naples Athens Istanbul Cairo Nairobi Lagos Accra Dakar Casablanca Tunis Beirut Dubai "
    "Mumbai Delhi Bangalore Colombo Bangkok Hanoi Manila Jakarta Singapore Seoul Osaka Tokyo Taipei Sydney Auckland "
    "Toronto Montreal Chicago Austin Denver Seattle Lima Bogota Santiago"
).split()
PRICES = ("$", "$$", "$$$", "$$$$", "$$$$$")
PRICE_PHRASES = ("A budget", "An affordable", "A mid-priced", "A premium", "A luxury")


class SynthSpec(BaseModel):
    """The generator's arguments: what `synth.json` records and what decides every byte."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: int = Field(ge=MIN_ITEMS, description="Catalogue size")
    users: int = Field(ge=1)
    interactions: int = Field(ge=MIN_LENGTH, description=f"Total; every user gets {MIN_LENGTH} or more")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _fits(self) -> SynthSpec:
        if self.interactions < MIN_LENGTH * self.users:
            raise ValueError(f"{self.interactions:,} interactions cannot give {self.users:,} users {MIN_LENGTH} each")
        if self.interactions > self.users * (self.items // 4):
            raise ValueError(
                f"{self.interactions:,} interactions over {self.users:,} users need more than a quarter of "
                f"{self.items:,} items each on average (no user repeats an item)"
            )
        return self


class SynthManifest(BaseModel):
    """`synth.json`: the arguments, what the catalogue's latent structure came to, and the cost."""

    spec: SynthSpec
    topics: int
    categories: int
    cities: int
    interactions: int
    max_user_length: int
    seconds: float
    files: dict[str, int] = Field(description="file name -> bytes")


@dataclass(frozen=True)
class _Catalogue:
    """Items in topic order: position p is item `item_of[p]`; topic t holds positions
    start[t] .. start[t] + size[t] - 1."""

    item_of: np.ndarray
    topic_of: np.ndarray  # per position
    start: np.ndarray
    size: np.ndarray
    within_cdf: np.ndarray  # per position: topic + the topic's cumulative popularity share
    topic_cdf: np.ndarray  # cumulative share of each topic in all popularity
    quality: np.ndarray  # per position, a rating offset


def synthesize(spec: SynthSpec, out: Path, progress: Callable[[int, int], None] | None = None) -> SynthManifest:
    """Write the catalogue `spec` describes into `out` and return its manifest; `progress` is
    told (interactions written, total) after each chunk."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([spec.seed, 0])
    topics = int(np.clip(round(np.sqrt(spec.items) / 2), 4, 500))
    categories = min(len(CATEGORY_QUALIFIERS) * len(CATEGORY_NOUNS), max(20, spec.items // 10))
    catalogue = _catalogue(spec.items, topics, rng)
    with atomic_path(out / ITEMS) as tmp:
        pq.write_table(_items_table(catalogue, topics, categories, rng), tmp, compression="zstd")
    lengths = user_lengths(spec.users, spec.interactions, spec.items, rng)
    favourites, favourite_cdf = _favourites(catalogue, spec.users, rng)
    item_ids = pa.array(_ids("i", spec.items))
    per_chunk = max(1, CHUNK_ROWS // max(1, spec.interactions // spec.users))
    written = 0
    with atomic_path(out / INTERACTIONS) as tmp, pq.ParquetWriter(tmp, _INTERACTION_SCHEMA, compression="zstd") as writer:
        for chunk, first in enumerate(range(0, spec.users, per_chunk)):
            users = np.arange(first, min(first + per_chunk, spec.users))
            chunk_rng = np.random.default_rng([spec.seed, 1, chunk])
            walkers = _Walkers.start(catalogue, favourites[users], favourite_cdf[users], chunk_rng)
            positions = _walk(catalogue, lengths[users], walkers, chunk_rng)
            writer.write_table(_interactions_table(catalogue, users, lengths[users], positions, item_ids, spec.users, chunk_rng))
            written += len(positions)
            if progress:
                progress(written, spec.interactions)
    manifest = SynthManifest(
        spec=spec,
        topics=topics,
        categories=categories,
        cities=len(CITIES),
        interactions=written,
        max_user_length=int(lengths.max()),
        seconds=round(time.perf_counter() - started, 2),
        files={name: (out / name).stat().st_size for name in (ITEMS, INTERACTIONS)},
    )
    write_json(out / MANIFEST, manifest.model_dump(mode="json"))
    return manifest


def user_lengths(users: int, interactions: int, items: int, rng: np.random.Generator) -> np.ndarray:
    """Lognormal lengths of at least MIN_LENGTH that sum to exactly `interactions`, none above
    LENGTH_CAP times the mean share or a quarter of the catalogue (largest remainders round)."""
    weights = rng.lognormal(0.0, LENGTH_SIGMA, users)
    extra = interactions - MIN_LENGTH * users
    cap = min(LENGTH_CAP * extra / users, items // 4 - MIN_LENGTH)
    shares = extra * weights / weights.sum()
    # water-filling: users over the cap get it, the rest share what is left, until none is over
    while (over := shares > cap + 1e-9).any():
        shares[over] = cap
        free = ~np.isclose(shares, cap)
        shares[free] = (extra - cap * (~free).sum()) * weights[free] / weights[free].sum()
    floors = np.floor(shares).astype(np.int64)
    remainder = extra - int(floors.sum())
    floors[np.argsort(floors - shares, kind="stable")[:remainder]] += 1
    return floors + MIN_LENGTH


def _catalogue(items: int, topics: int, rng: np.random.Generator) -> _Catalogue:
    sizes = 1 + rng.multinomial(items - topics, rng.dirichlet(np.full(topics, 2.0)))
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    topic_of = np.repeat(np.arange(topics), sizes)
    popularity = (1.0 + rng.permutation(items)) ** -ZIPF
    totals = np.bincount(topic_of, weights=popularity, minlength=topics)
    within = np.cumsum(popularity) - np.repeat(np.cumsum(totals) - totals, sizes)
    return _Catalogue(
        item_of=rng.permutation(items),
        topic_of=topic_of,
        start=start,
        size=sizes,
        within_cdf=topic_of + within / totals[topic_of],
        topic_cdf=np.cumsum(totals) / totals.sum(),
        quality=rng.normal(0.0, 0.6, items),
    )


def _favourites(catalogue: _Catalogue, users: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each user's favourite topics (drawn by topic popularity) and the cumulative weights to
    choose among them."""
    favourites = _draw_topics(catalogue, rng.random((users, FAVOURITES)))
    return favourites, np.cumsum(rng.dirichlet(np.ones(FAVOURITES), users), axis=1)


def _draw_topics(catalogue: _Catalogue, uniforms: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(catalogue.topic_cdf, uniforms, side="right"), len(catalogue.size) - 1)


def _draw_in_topic(catalogue: _Catalogue, topics: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """A position in each topic, by the topic's own popularity."""
    found = np.searchsorted(catalogue.within_cdf, topics + uniforms, side="right")
    return np.clip(found, catalogue.start[topics], catalogue.start[topics] + catalogue.size[topics] - 1)


@dataclass
class _Walkers:
    """Where each user of a chunk is: the current topic and position, which favourite that topic
    is (-1: a topic wandered into), and the last position seen in each favourite."""

    favourites: np.ndarray  # [users, FAVOURITES] topics
    favourite_cdf: np.ndarray  # [users, FAVOURITES]
    topic: np.ndarray
    position: np.ndarray
    slot: np.ndarray
    bookmark: np.ndarray  # [users, FAVOURITES] positions, -1 before the first visit

    @classmethod
    def start(cls, catalogue: _Catalogue, favourites: np.ndarray, favourite_cdf: np.ndarray, rng: np.random.Generator) -> _Walkers:
        users = np.arange(len(favourites))
        slot = _pick(favourite_cdf, rng.random(len(users)))
        topic = favourites[users, slot]
        position = _draw_in_topic(catalogue, topic, rng.random(len(users)))
        bookmark = np.full(favourites.shape, -1, dtype=np.int64)
        bookmark[users, slot] = position
        return cls(favourites, favourite_cdf, topic, position, slot, bookmark)

    def step(self, catalogue: _Catalogue, walkers: np.ndarray, explore: float, rng: np.random.Generator) -> None:
        """One step of every walker: maybe another topic, then the next item. Staying, the next
        item often follows the previous one in the topic's order; back in a favourite, it often
        follows the last one seen there, however long ago (a series resumed)."""
        draws = rng.random((5, len(walkers)))
        switch = draws[0] < P_SWITCH
        wander = switch & (draws[1] < explore)
        back = switch & ~wander
        slot = np.where(back, _pick(self.favourite_cdf[walkers], draws[2]), np.where(wander, -1, self.slot[walkers]))
        topic = np.where(back, self.favourites[walkers, slot], self.topic[walkers])
        topic = np.where(wander, _draw_topics(catalogue, draws[2]), topic)
        resumed = self.bookmark[walkers, np.maximum(slot, 0)]
        previous = np.where(back, resumed, self.position[walkers])
        series = (previous >= 0) & ~wander & (draws[3] < np.where(back, P_RESUME, P_SERIES))
        start, size = catalogue.start[topic], catalogue.size[topic]
        offset = (draws[4] * 2 * SERIES_STEP).astype(np.int64) - SERIES_STEP
        following = start + (previous - start + offset + (offset >= 0)) % size  # 1 to SERIES_STEP places either way
        position = np.where(series, following, _draw_in_topic(catalogue, topic, draws[4]))
        self.topic[walkers], self.position[walkers], self.slot[walkers] = topic, position, slot
        marked = slot >= 0
        self.bookmark[walkers[marked], slot[marked]] = position[marked]


def _pick(cdf: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Per row, the index whose cumulative weight the uniform falls under."""
    return np.minimum((uniforms[:, None] > cdf).sum(axis=1), cdf.shape[1] - 1)


def _walk(catalogue: _Catalogue, lengths: np.ndarray, walkers: _Walkers, rng: np.random.Generator) -> np.ndarray:
    """The positions each user visits, users in order, each user's in visiting order, no
    position twice for a user. A round walks every user short of their length that many steps
    (vectorised over the users still walking), then drops repeats; the rounds go on until every
    user has their length."""
    users = len(lengths)
    items = len(catalogue.item_of)
    first = True  # the first step keeps the starting draw
    need = lengths.astype(np.int64)
    seen = np.empty(0, dtype=np.int64)  # sorted keys user * items + position
    kept_user, kept_position, kept_step = [], [], []
    clock = 0  # a step counter across rounds: the visiting order
    for round_ in range(MAX_ROUNDS):
        explore = min(1.0, P_EXPLORE * 2**round_)
        active = np.flatnonzero(need > 0)
        active = active[np.argsort(-need[active], kind="stable")]  # longest first: a step's walkers are a prefix
        needs = need[active]
        walked_user, walked_position = [], []
        for step in range(int(needs.max())):
            moving = active[: int(np.searchsorted(-needs, -step, side="left"))]
            if not first:
                walkers.step(catalogue, moving, explore, rng)
            first = False
            walked_user.append(moving)
            walked_position.append(walkers.position[moving])
        user = np.concatenate(walked_user)
        pos = np.concatenate(walked_position)
        order = clock + np.arange(len(user))
        clock += len(user)
        keys = user * items + pos
        fresh = ~_contains(seen, keys)
        _, first_seen = np.unique(keys[fresh], return_index=True)  # keys are in visiting order
        keep = np.flatnonzero(fresh)[first_seen]
        kept_user.append(user[keep])
        kept_position.append(pos[keep])
        kept_step.append(order[keep])
        seen = np.sort(np.concatenate([seen, keys[keep]]))
        need -= np.bincount(user[keep], minlength=users)
        if not need.any():
            break
    else:
        raise RuntimeError(f"{int((need > 0).sum())} users still short of distinct items after {MAX_ROUNDS} rounds")
    visited = np.lexsort((np.concatenate(kept_step), np.concatenate(kept_user)))
    return np.concatenate(kept_position)[visited]


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    found = np.searchsorted(sorted_keys, keys)
    return (found < len(sorted_keys)) & (sorted_keys[np.minimum(found, len(sorted_keys) - 1)] == keys)


_INTERACTION_SCHEMA = pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("timestamp", pa.int64()), ("rating", pa.float32())])


def _interactions_table(
    catalogue: _Catalogue,
    users: np.ndarray,
    lengths: np.ndarray,
    positions: np.ndarray,
    item_ids: pa.Array,
    total_users: int,
    rng: np.random.Generator,
) -> pa.Table:
    """One chunk's rows: increasing timestamps within a user, ratings from the user's bias and
    the item's quality."""
    row_user = np.repeat(np.arange(len(users)), lengths)
    gaps = 1 + rng.exponential(MEAN_GAP, len(positions)).astype(np.int64)
    elapsed = np.cumsum(gaps)
    before = np.repeat(elapsed[np.cumsum(lengths) - lengths] - gaps[np.cumsum(lengths) - lengths], lengths)
    starts = START + rng.integers(0, SPAN, len(users))
    bias = rng.normal(0.0, 0.5, len(users))
    noise = rng.normal(0.0, 0.8, len(positions))
    rating = np.clip(np.rint(3.6 + bias[row_user] + catalogue.quality[positions] + noise), 1, 5).astype(np.float32)
    user_ids = pa.array(_ids("u", total_users, users))
    return pa.table(
        {
            "user_id": user_ids.take(pa.array(row_user)),
            "item_id": item_ids.take(pa.array(catalogue.item_of[positions])),
            "timestamp": starts[row_user] + elapsed - before,
            "rating": rating,
        },
        schema=_INTERACTION_SCHEMA,
    )


def _ids(prefix: str, count: int, which: np.ndarray | None = None) -> list[str]:
    """Ids zero-padded to one width, so that their text order is their number's."""
    width = len(str(count - 1))
    return [f"{prefix}{n:0{width}d}" for n in (range(count) if which is None else which.tolist())]


def _items_table(catalogue: _Catalogue, topics: int, categories: int, rng: np.random.Generator) -> pa.Table:
    """One row per item, by item id. A topic's items share its home categories, price level,
    city and era more often than not."""
    items = len(catalogue.item_of)
    by_item = np.empty(items, dtype=np.int64)
    by_item[catalogue.item_of] = np.arange(items)  # item -> position
    topic = catalogue.topic_of[by_item]

    home_categories = rng.integers(0, categories, (topics, 3))
    count = 1 + np.searchsorted([0.5, 0.85], rng.random(items), side="right")
    slots = np.where(
        rng.random((items, 3)) < 0.8,
        home_categories[topic[:, None], rng.integers(0, 3, (items, 3))],
        rng.integers(0, categories, (items, 3)),
    )
    slots[np.arange(3)[None, :] >= count[:, None]] = -1
    slots[:, 1][slots[:, 1] == slots[:, 0]] = -1
    slots[:, 2][(slots[:, 2] == slots[:, 0]) | (slots[:, 2] == slots[:, 1])] = -1
    slots = np.take_along_axis(slots, np.argsort(slots < 0, axis=1, kind="stable"), axis=1)  # the empty ones last
    names = pa.array([f"{q} {n}" for q in CATEGORY_QUALIFIERS for n in CATEGORY_NOUNS][:categories])
    first, second, third = (names.take(pa.array(slots[:, k], mask=slots[:, k] < 0)) for k in range(3))
    category = pc.binary_join_element_wise(first, second, third, "|", null_handling="skip")
    # "A, B and C": the last named category after "and", the others joined by commas
    head = pc.binary_join_element_wise(first, pc.if_else(pc.is_valid(third), second, None), ", ", null_handling="skip")
    last = pc.coalesce(third, second)
    named = pc.binary_join_element_wise(head, last, " and ", null_handling="skip")

    price = np.clip(rng.integers(0, len(PRICES), topics)[topic] + np.rint(rng.normal(0.0, 0.8, items)).astype(np.int64), 0, len(PRICES) - 1)
    city_popularity = 1.0 / np.arange(1, len(CITIES) + 1)
    any_city = np.searchsorted(np.cumsum(city_popularity) / city_popularity.sum(), rng.random(items), side="right")
    city = np.where(rng.random(items) < 0.4, rng.integers(0, len(CITIES), topics)[topic], np.minimum(any_city, len(CITIES) - 1))
    year = np.clip(np.rint(rng.uniform(1960, 2020, topics)[topic] + rng.normal(0.0, 6.0, items)), 1950, 2025).astype(np.int64)

    # unique titles: an adjective-noun pair and a number, in an order unrelated to the ids
    pairs = pa.array([f"{a} {n}" for a in TITLE_ADJECTIVES for n in TITLE_NOUNS])
    draw = rng.permutation(items)
    title = pc.binary_join_element_wise(
        pairs.take(pa.array(draw % len(pairs))), pc.cast(pa.array(draw // len(pairs) + 1), pa.string()), " "
    )
    price_text = pa.array(PRICES).take(pa.array(price))
    city_text = pa.array(CITIES).take(pa.array(city))
    description = pc.binary_join_element_wise(
        pa.array(PRICE_PHRASES).take(pa.array(price)), named, "item from", pc.cast(pa.array(year), pa.string()), "in", city_text, " "
    )
    return pa.table(
        {
            "item_id": pa.array(_ids("i", items)),
            "title": title,
            "year": year,
            "description": description,
            "category": category,
            "price": price_text,
            "city": city_text,
        }
    )
