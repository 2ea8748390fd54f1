"""Everything the tools need for one dataset, loaded once and kept in memory.

A `Toolbox` holds the catalogue (`SequenceDataset`), one or more backbone *variants* (a plain
sequential model, and attribute-aware ones named by their attribute type, as ToolRec's
retrieval tools), popularity counts, per-attribute value -> item-id arrays (so constraints are
array operations), a title table for lookups, and the item vector indexes (loaded from
`RUN/index` or built on first need). A tool call is then one forward pass plus numpy masks,
never a checkpoint reload.

At the tool boundary items are their dataset ids (`Item.id`) and users their source ids; the
dense integers of the models stay inside.

    toolbox = Toolbox.open(Path("runs/ml1m-sasrec"), variants={"genre": Path("runs/ml1m-sasrec-genre")})
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from rapidfuzz import fuzz, process, utils

from tools.data.schema import Item
from tools.data.sequences import HistorySplit, SequenceDataset
from tools.index.item_index import ItemIndexes
from tools.index.mips import MipsIndex, run_index
from tools.index.vector_index import FLAT_UP_TO, IndexConfig, IndexMismatchError, VectorIndex
from tools.models.attributes import YEAR, year_bucket
from tools.models.base import Embedded, Recommender
from tools.models.checkpoint import CheckpointMeta, load_model, read_meta, run_dataset
from tools.models.scoring import score_histories
from tools.models.transitions import Transitions
from tools.schemas import InvalidArguments, Provenance, ScoredItem, Unavailable, UnknownValue
from tools.settings import PathSettings
from tools.titles import natural_title, titled

log = logging.getLogger(__name__)

INDEX_DIR = "index"
# pseudo-ratings at the catalogue mean that an item's mean rating is shrunk with (its quality signal)
SHRINK_RATINGS = 20.0
PLAIN = "plain"
TEXT_SPACE = "text"
# "like X" in every sense at once: content (text), kind (genre overlap), audience (co-occurrence)
BLEND_SPACE = "blend"
# The attribute `genres` / `exclude_genres` stand for, first one the catalogue has
PRIMARY_ATTRIBUTES = ("genre", "category", "categories")
# a large catalogue's allowed set this small is scored exactly; deeper index searches than
# MAX_SEARCH_DEPTH give way to the exact pass
EXACT_BELOW, MAX_SEARCH_DEPTH = 4096, 20_000


def normalize(text: str) -> str:
    """Case, spaces and punctuation folded away: "sci fi", "Sci-Fi" and "SCIFI" meet."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def value_key(value: str) -> str:
    """How a value is matched: `normalize`d, or as written where that leaves nothing (price
    bands "$" and "$$" must not meet)."""
    return normalize(value) or "".join(value.split()).casefold()


def variant_name(meta: CheckpointMeta) -> str:
    """An attribute-aware model is named by its attribute type ("genre"), any other "plain"."""
    return meta.model.attribute or PLAIN


def variant_phrase(attribute: str | None = None, counted: bool = False) -> str:
    """What a backbone variant's ranking means to a person: a counted transition model says what
    came right after; a sequence model without attributes (SASRec, BERT4Rec) what histories like
    theirs say; an attribute-aware one names its attribute."""
    if counted:
        return "what people watched right after your latest titles"
    if attribute is None:
        return "what people with a history like yours watched next"
    return f"what the {attribute}-aware model ranks next for you"


def _title_keys(item: Item) -> list[str]:
    """Normalised spellings of a title: "Matrix, The" also as "The Matrix", with and without
    "(year)"."""
    titles = list(dict.fromkeys([item.title, natural_title(item.title)]))
    keys = [normalize(t) for t in titles]
    if item.year is not None:
        keys += [normalize(f"{t} ({item.year})") for t in titles]
    return keys


def shrunk_mean_ratings(dataset: SequenceDataset, prior: float = SHRINK_RATINGS) -> np.ndarray:
    """Each item's mean rating pulled towards the catalogue's mean by `prior` pseudo-ratings, so
    that an item rated 5 by two people does not outrank one rated 4.5 by two thousand (NaN:
    unrated, or data without ratings). Indexed by dense id."""
    totals = dataset.rating_totals()
    if totals is None or not totals[1].any():
        return np.full(dataset.num_items + 1, np.nan)
    sums, counts = totals
    mean = sums.sum() / counts.sum()
    return np.where(counts > 0, (sums + prior * mean) / (counts + prior), np.nan)


class Toolbox:
    def __init__(
        self,
        dataset: SequenceDataset,
        variants: Mapping[str, Recommender],
        *,
        run_dir: Path | None = None,
        index_dir: Path | None = None,
        split: HistorySplit = "test",
        indexes: ItemIndexes | None = None,
        index_config: IndexConfig | None = None,
        embedding_cache: Path | None = None,
        one_shot: bool = False,
    ) -> None:
        """Prefer `Toolbox.open`. `variants` maps a name to a model trained on `dataset`; the
        first is the default. `split` decides what a user's history is: "test" (everything but
        the held-out test item, the default, so evaluation never sees its target), "valid", or
        "full" (the whole sequence, for live use).
        `indexes` are the item indexes if already loaded; otherwise they are loaded from
        `index_dir` (default RUN/index) or built there on first need, reusing text embeddings
        stored in `embedding_cache` (keyed by encoder and texts) when given. `one_shot`: a
        command that answers once and exits; a large catalogue's inner-product graph (hundreds
        of MB) is then never read, `retrieve` scoring the catalogue exactly instead."""
        if not variants:
            raise ValueError("a toolbox needs at least one backbone variant")
        for name, model in variants.items():
            if model.config.num_items != dataset.num_items:
                raise ValueError(f"variant {name!r} scores {model.config.num_items} items, the dataset has {dataset.num_items}")
            model.eval()
        self.dataset = dataset
        self.variants: dict[str, Recommender] = dict(variants)
        self.default_variant = next(iter(self.variants))
        self.run_dir = run_dir
        self.index_dir = index_dir if index_dir is not None else (run_dir / INDEX_DIR if run_dir is not None else None)
        self.split: HistorySplit = split
        self.index_config = index_config or IndexConfig()
        self.embedding_cache = embedding_cache
        self._indexes = indexes
        self._index_lock = threading.Lock()
        self._spaces: dict[str, VectorIndex] = {}
        self._audience: sp.csc_matrix | None = None
        self._mips: MipsIndex | None = None
        self.one_shot = one_shot

        n = dataset.num_items
        self.num_items = n
        # past FLAT_UP_TO items a pass over the whole catalogue costs tens of milliseconds: the
        # tools then search indexes and score only the items they return
        self.large = n > FLAT_UP_TO
        self.popularity = dataset.popularity()
        # by dense id, -1 unknown; 32-bit halves the cost of a year filter over a million items
        self.years = np.concatenate([[-1], dataset.items.years()]).astype(np.int32)
        dated = np.flatnonzero(self.years >= 0)
        self.year_span: tuple[int, int] | None = (int(self.years[dated].min()), int(self.years[dated].max())) if dated.size else None

        # attribute type -> value -> dense ids having it (from the catalogue's columns: a loop
        # over a million records took seconds); "year" holds decades ("1990s")
        self.attribute_items: dict[str, dict[str, np.ndarray]] = {
            kind: {value: rows + 1 for value, rows in dataset.items.members(kind).items()}
            for kind in sorted(dataset.items.present_attributes())
        }
        if dated.size:
            decades = self.years[dated] // 10 * 10
            buckets = {str(year_bucket(decade)): dated[decades == decade] for decade in np.unique(decades).tolist()}
            self.attribute_items[YEAR] = dict(sorted(buckets.items()))
        self._value_keys = {attribute: {value_key(v): v for v in values} for attribute, values in self.attribute_items.items()}
        self.primary_attribute = next((a for a in PRIMARY_ATTRIBUTES if a in self.attribute_items), None)

    # the title tables are made on first use: seconds at a million items, and a recommendation
    # for a known user never reads them
    @cached_property
    def _titles(self) -> dict[str, list[int]]:
        titles: dict[str, list[int]] = {}
        for dense, item in enumerate(self.dataset.items, start=1):
            for key in dict.fromkeys(_title_keys(item)):
                titles.setdefault(key, []).append(dense)
        return titles

    @cached_property
    def _choices(self) -> list[str]:
        # fuzzy matching sees "The Matrix (1999)", not "Matrix, The (1999)"
        return [utils.default_process(titled(item.title, item.year, natural=True)) for item in self.dataset.items]

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        run_dir: Path,
        data_dir: Path | None = None,
        variants: Mapping[str, Path] | Sequence[Path] | None = None,
        *,
        split: HistorySplit = "test",
        index_dir: Path | None = None,
        threads: int | None = 1,
        index_config: IndexConfig | None = None,
        embedding_cache: Path | None = None,
        one_shot: bool = False,
    ) -> Toolbox:
        """Load a run's dataset (its prepared data, else rebuilt from `data_dir`, default
        TOOLREC_DATA_DIR) and model, plus further variants trained on the same dataset: a
        mapping name -> run folder, or run folders named by their attribute type. The run's own
        model is named "plain" (or its attribute type if it is attribute-aware) and is the
        default variant.

        `threads` sets torch's intra-op threads for the whole process: a batch-1 forward is
        fastest on one thread (2 threads were 7x slower at p50 on a busy 2-core machine);
        None leaves torch's setting alone."""
        if threads is not None:
            torch.set_num_threads(threads)
        meta = read_meta(run_dir)
        dataset = run_dataset(run_dir, data_dir if data_dir is not None else PathSettings().data_dir)
        models: dict[str, Recommender] = {variant_name(meta): load_model(run_dir, dataset)}
        named = variants.items() if isinstance(variants, Mapping) else ((variant_name(read_meta(p)), p) for p in variants or ())
        for name, path in named:
            if name in models:
                raise ValueError(f"two variants named {name!r}: name them explicitly (name -> run folder)")
            models[name] = load_model(Path(path), dataset)  # refuses a model of another dataset
        return cls(
            dataset,
            models,
            run_dir=run_dir,
            index_dir=index_dir,
            split=split,
            index_config=index_config,
            embedding_cache=embedding_cache,
            one_shot=one_shot,
        )

    # --- users, items, variants -----------------------------------------------------------

    def variant(self, name: str | None) -> str:
        """The variant's canonical name (None: the default); unknown names list the valid ones."""
        if name is None:
            return self.default_variant
        if name in self.variants:
            return name
        match = {normalize(v): v for v in self.variants}.get(normalize(name))
        if match is None:
            raise UnknownValue(
                f"unknown variant {name!r}: this toolbox has {', '.join(self.variants)}", field="variant", valid=list(self.variants)
            )
        return match

    @property
    def attribute_variants(self) -> list[str]:
        """The variants that rank by an attribute (genre, year); the others (plain SASRec, BERT4Rec)
        are sequence models alone."""
        return [name for name, model in self.variants.items() if model.config.attribute]

    @property
    def variant_phrases(self) -> dict[str, str]:
        """Each variant's ranking in words, for the reasons a list gives."""
        return {name: variant_phrase(model.config.attribute, isinstance(model, Transitions)) for name, model in self.variants.items()}

    def model(self, name: str | None) -> Recommender:
        return self.variants[self.variant(name)]

    def user_history(self, user_id: str) -> np.ndarray:
        index = self.dataset.user_index.get(user_id)
        if index is None:
            examples = self.dataset.user_ids[:5]
            raise UnknownValue(
                f"unknown user {user_id!r}: {len(self.dataset.user_ids)} users, ids like {', '.join(map(repr, examples))}",
                field="user_id",
                valid=examples,
            )
        return self.dataset.history(user_id, self.split)

    def history(self, user_id: str | None, items: Sequence[str] | None, required: bool = True) -> np.ndarray | None:
        """Dense history from a user id or a raw history (item ids or titles, oldest first)."""
        if user_id is not None and items is not None:
            raise InvalidArguments("give either user_id or history, not both", field="history")
        if user_id is not None:
            return self.user_history(user_id)
        if items is not None:
            return self.resolve_items(items, "history")
        if required:
            raise InvalidArguments("this tool needs the user: give user_id, or history (item ids, oldest first)", field="user_id")
        return None

    def resolve_item(self, ref: str, field: str) -> int:
        return int(self.resolve_items([ref], field)[0])

    def resolve_items(self, refs: Sequence[str], field: str) -> np.ndarray:
        """Dense ids for item ids or titles ("Alien", "Alien (1979)", "The Matrix"); an unknown
        or ambiguous reference raises UnknownValue with the closest catalogue ids."""
        dense: list[int] = []
        problems: list[str] = []
        suggestions: list[str] = []
        for ref in refs:
            found = self.dataset.item_index.get(ref)
            if found is not None:
                dense.append(found)
                continue
            matches = self._titles.get(normalize(ref), [])
            if len(matches) == 1:
                dense.append(matches[0])
                continue
            if matches:
                problems.append(f"{ref!r} is ambiguous ({'; '.join(self.display(d, with_id=True) for d in matches)})")
                suggestions += [self.dataset.item(d).id for d in matches]
            else:
                close = [d for d, _ in self.fuzzy_titles(ref, limit=3)]
                hint = f" (closest: {'; '.join(self.display(d, with_id=True) for d in close)})" if close else ""
                problems.append(f"{ref!r} is not an item id or title{hint}")
                suggestions += [self.dataset.item(d).id for d in close]
        if problems:
            raise UnknownValue(f"{field}: {', '.join(problems)}", field=field, valid=list(dict.fromkeys(suggestions)))
        return np.asarray(dense, dtype=np.int64)

    def fuzzy_titles(self, query: str, limit: int = 5, cutoff: float = 0.0) -> list[tuple[int, float]]:
        """Dense ids whose "Title (year)" is closest to `query`, best first, scored 0-100: the
        mean of rapidfuzz's WRatio (which shortlists, with `cutoff`) and token-set ratio (which
        separates "Star Wars: Episode V - The Empire Strikes Back" from the other episodes
        for "star wars empire strikes back"). An exact title (any spelling `resolve_items`
        accepts) scores 100; equal scores go to the more popular item."""
        exact = {dense: 100.0 for dense in self._titles.get(normalize(query), [])}
        processed = utils.default_process(query)
        found = process.extract(processed, self._choices, scorer=fuzz.WRatio, processor=None, limit=limit * 4, score_cutoff=cutoff)
        for choice, score, index in found:
            both = (score + fuzz.token_set_ratio(processed, choice)) / 2
            exact.setdefault(index + 1, float(both))
        ranked = sorted(exact.items(), key=lambda hit: (-hit[1], -self.popularity[hit[0]]))
        return ranked[:limit]

    def spoken_title(self, item_id: str) -> str:
        """An item's title as people say it, "Il Postino (1994)"; an unknown id stays as it is."""
        try:
            item = self.dataset.item(self.resolve_item(item_id, "id"))
        except UnknownValue:
            return item_id
        return titled(item.title, item.year, natural=True)

    def display(self, dense: int, with_id: bool = False) -> str:
        item = self.dataset.item(dense)
        name = titled(item.title, item.year)
        return f"{item.id}: {name}" if with_id and item.id != name else name

    # --- attributes -----------------------------------------------------------------------

    def attribute(self, name: str, field: str) -> str:
        """The canonical attribute type for `name` ("genres" finds "genre")."""
        if name in self.attribute_items:
            return name
        key = normalize(name)
        for attribute in self.attribute_items:
            if key in (normalize(attribute), normalize(attribute) + "s"):
                return attribute
        raise UnknownValue(
            f"unknown attribute type {name!r}: this catalogue has {', '.join(self.attribute_items) or 'none'}",
            field=field,
            valid=list(self.attribute_items),
        )

    def values(self, attribute: str, given: Sequence[str], field: str) -> list[str]:
        """Canonical values ("sci fi" -> "Sci-Fi"); a value that is a comma-separated list of
        known values is split. Unknown values raise with the valid ones."""
        keys = self._value_keys[attribute]
        out: list[str] = []
        unknown: list[str] = []
        for value in given:
            canonical = keys.get(value_key(value))
            if canonical is not None:
                out.append(canonical)
                continue
            parts = [keys.get(value_key(p)) for p in value.replace("|", ",").split(",")]
            if len(parts) > 1 and all(parts):
                out += [p for p in parts if p]
            else:
                unknown.append(value)
        if unknown:
            valid = list(self.attribute_items[attribute])
            shown = ", ".join(valid[:40]) + (" ..." if len(valid) > 40 else "")
            raise UnknownValue(f"unknown {attribute} value(s) {unknown}: valid {attribute} values are {shown}", field=field, valid=valid)
        return list(dict.fromkeys(out))

    def items_with(self, attribute: str, values: Sequence[str]) -> np.ndarray:
        """Boolean mask over dense ids 0..n: items with at least one of the (canonical) values."""
        mask = np.zeros(self.num_items + 1, dtype=bool)
        for value in values:
            mask[self.attribute_items[attribute][value]] = True
        return mask

    # --- scores ---------------------------------------------------------------------------

    def score(self, variant: str | None, history: np.ndarray) -> np.ndarray:
        """One forward pass: float32 scores over dense ids 0..n (0 is -inf), history unmasked."""
        model = self.model(variant)
        with torch.inference_mode():
            scores: np.ndarray = model.score([history])[0].float().cpu().numpy()
        return scores

    def score_items(self, variant: str | None, history: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The model's scores of the given items alone (a large catalogue is not scored whole)."""
        model = self.model(variant)
        if not (self.large and isinstance(model, Embedded)):
            return self.score(variant, history)[ids]
        with torch.inference_mode():
            user = model.user_vectors([history])[0].float().numpy()
            vectors = model.output_vectors().detach().float().numpy()  # no copy: the weights themselves
        # numpy's gather of a few thousand rows took a quarter of torch's (0.2 against 0.7 ms)
        scores: np.ndarray = vectors[ids] @ user
        return scores

    def approximate_top(self, variant: str | None, history: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(dense ids, scores) of the model's top k among `mask` from the run's inner-product
        index, or None where the exact full pass applies (a small catalogue, a model without
        vectors, another variant than the run's own, a one-shot toolbox). An allowed set of at
        most EXACT_BELOW items is scored exactly; a larger one is searched deeper and deeper
        until k of the found items pass the mask (the index's recall is measured by `toolrec
        bench tools`)."""
        model = self.model(variant)
        if not (self.large and isinstance(model, Embedded) and self.variant(variant) == self.default_variant and self.run_dir):
            return None
        allowed = int(np.count_nonzero(mask))
        if allowed <= EXACT_BELOW:
            ids = np.flatnonzero(mask)
        else:
            if self._mips is None and self.one_shot:  # one exact pass beats reading the graph
                return None
            index = self.load_mips()
            with torch.inference_mode():
                user = model.user_vectors([history]).float().numpy()
            depth = int((k + len(history)) * 2 * self.num_items / allowed)
            while True:
                if depth > MAX_SEARCH_DEPTH:
                    return None
                found = index.search(user, depth)[0]
                ids = found[mask[found]][:k]
                if len(ids) == min(k, allowed):
                    break
                depth *= 4
        scores = self.score_items(variant, history, ids)
        order = np.lexsort((ids, -scores))[:k]
        return ids[order], scores[order]

    def load_mips(self) -> MipsIndex:
        """The main variant's inner-product index (RUN/index), loaded or built (minutes at a
        million items) on first need, and kept."""
        assert self.run_dir is not None
        model = self.variants[self.default_variant]
        assert isinstance(model, Embedded)
        with self._index_lock:  # a server's first calls build it once
            if self._mips is None:
                self._mips, _ = run_index(self.run_dir, model)
        return self._mips

    def score_batch(self, variant: str | None, histories: list[np.ndarray], batch_size: int = 256) -> np.ndarray:
        return score_histories(self.model(variant), histories, batch_size=batch_size, exclude_history=False)

    @property
    def indexes(self) -> ItemIndexes:
        """The item indexes: loaded from the run's `index/` folder, or built (and saved there)
        the first time a text query needs them."""
        with self._index_lock:  # concurrent first calls (a server) load the encoder once
            if self._indexes is None:
                self._indexes = self._load_or_build_indexes()
        return self._indexes

    def _load_or_build_indexes(self) -> ItemIndexes:
        from tools.index.encoder import TextEncoder  # transformers: only when text is needed

        try:
            encoder = TextEncoder()
        except FileNotFoundError as err:
            raise Unavailable(f"text search is unavailable: {err}", field="query") from err
        if self.index_dir is not None and self.index_dir.is_dir():
            try:
                loaded = ItemIndexes.load(self.index_dir, self.dataset, encoder)
            except (IndexMismatchError, FileNotFoundError) as err:
                log.warning("item index at %s cannot be used (%s); rebuilding it", self.index_dir, err)
            else:
                self._check_model_index(loaded)
                return loaded
        if self.large:
            # embedding a million texts takes hours: never inside a tool call
            raise Unavailable(
                f"text search is unavailable: no text index for these {self.num_items:,} items; build it ahead with "
                "`toolrec index build --run RUN` (resumable)",
                field="query",
            )
        where = f"; saving it to {self.index_dir}" if self.index_dir is not None else ""
        log.warning(
            "no item index for %s: embedding %d item texts now (one-time; `toolrec index build` does it ahead)%s",
            self.dataset.name,
            self.num_items,
            where,
        )
        main = self.variants[self.default_variant].item_vectors()
        indexes = ItemIndexes.build(self.dataset, encoder, item_embeddings=main, config=self.index_config, cache_dir=self.embedding_cache)
        if self.index_dir is not None:
            indexes.save(self.index_dir)
        return indexes

    def _check_model_index(self, indexes: ItemIndexes) -> None:
        """The catalogue fingerprint does not cover model weights: warn when the stored
        model-space index no longer matches the run's embeddings (the tools themselves use
        `space()`, built from the weights in memory, so results stay right either way)."""
        vectors = self.variants[self.default_variant].item_vectors()
        if indexes.model is None or vectors is None or indexes.model.count != self.num_items:
            return
        if not indexes.model.holds(vectors[1:], np.arange(1, self.num_items + 1)):
            log.warning(
                "the model-space index in %s was built from other weights than this run's; "
                "rebuild it with `toolrec index build` (the tools use the weights in memory)",
                self.index_dir,
            )

    def warm(self) -> Toolbox:
        """Load (or build) everything that is otherwise loaded on first use: the item
        indexes with the text encoder, each variant's item-vector space, the title tables and,
        for a large catalogue, the inner-product index.
        Call it before serving calls from several threads."""
        _ = self._titles, self._choices
        try:
            _ = self.indexes
        except Unavailable as err:  # text search stays off; every other tool works
            log.warning("%s", err)
        for name, model in self.variants.items():
            if model.item_vectors() is not None:
                self.space(name)
        if self.large and self.run_dir is not None and isinstance(self.variants[self.default_variant], Embedded):
            self.load_mips()
        return self

    def text_scores(self, query: str) -> np.ndarray:
        """Cosine similarity of a free-text query to every item's text, over dense ids 0..n."""
        if not query.strip():
            raise InvalidArguments("query is empty: describe what to look for", field="query")
        return self.indexes.query_text(query)

    def space(self, name: str) -> VectorIndex:
        """Item vectors to compare items in: "text" (the catalogue text index) or a variant's
        own item embeddings, indexed from the weights in memory (never from a file that an
        older checkpoint could have left)."""
        if name == TEXT_SPACE:
            return self.indexes.text
        variant = self.variant(name)
        if variant not in self._spaces:
            vectors = self.variants[variant].item_vectors()
            if vectors is None:
                raise Unavailable(f"variant {variant!r} has no item embeddings", field="space", valid=[TEXT_SPACE])
            self._spaces[variant] = self._space_index(variant, vectors[1:])
        return self._spaces[variant]

    def _space_index(self, variant: str, vectors: np.ndarray) -> VectorIndex:
        """A variant's item space. A large catalogue's graph takes minutes to build, so it is
        kept in RUN/index/space-VARIANT and reused while it holds these very vectors."""
        folder = None if self.index_dir is None or not self.large else self.index_dir / f"space-{variant}"
        if folder is not None and (folder / "meta.json").exists():
            stored = VectorIndex.load(folder, search=self.index_config)
            sample = np.linspace(1, self.num_items, 64, dtype=np.int64)
            if stored.count == self.num_items and stored.holds(vectors[sample - 1], sample):
                return stored
        index = VectorIndex.build(vectors, config=self.index_config, encoder=f"model:{variant}")
        if folder is not None:
            index.save(folder)
        return index

    def audience_scores(self, seeds: np.ndarray) -> np.ndarray:
        """Who watched them: per dense id 0..n, the cosine co-occurrence of each item with the
        seeds over the training sequences (the popularity's sequences: no held-out item is read),
        summed over the seeds; 0 is padding (-inf)."""
        with self._index_lock:
            if self._audience is None:
                watched = [np.unique(seq) for seq in self.dataset.train_sequences()]
                users = np.concatenate([np.full(len(w), r) for r, w in enumerate(watched)])
                ones = np.ones(len(users), dtype=np.float32)
                shape = (len(watched), self.num_items + 1)
                self._audience = sp.csc_matrix((ones, (users, np.concatenate(watched))), shape=shape)
        matrix = self._audience
        counts = np.asarray(matrix.sum(axis=0)).ravel()
        together = np.asarray((matrix[:, seeds].T @ matrix).todense())  # seeds x items
        scores: np.ndarray = (together / np.sqrt(np.maximum(np.outer(counts[seeds], counts), 1.0))).sum(axis=0)
        scores[0] = -np.inf
        return scores

    def genre_overlap(self, seeds: np.ndarray) -> np.ndarray:
        """Of what kind: per dense id, the mean over the seeds of the Jaccard overlap of the
        primary attribute's values (genres) with the seed's; 0 without such an attribute."""
        values = self.attribute_items.get(self.primary_attribute or "", {})
        member = np.zeros((self.num_items + 1, max(len(values), 1)), dtype=np.float32)
        for column, ids in enumerate(values.values()):
            member[ids, column] = 1.0
        shared = member @ member[seeds].T  # items x seeds
        union = member.sum(axis=1, keepdims=True) + member[seeds].sum(axis=1) - shared
        overlap: np.ndarray = (shared / np.maximum(union, 1.0)).mean(axis=1)
        return overlap

    @cached_property
    def quality(self) -> np.ndarray:
        """Each item's shrunk mean rating (`shrunk_mean_ratings`), computed on first use: only
        the quality order and the wish benchmark read it."""
        return shrunk_mean_ratings(self.dataset)

    def genres_of(self, item_id: str) -> set[str] | None:
        """The item's values of the primary attribute (its genres); None where the catalogue has
        no such attribute or no such item."""
        dense = self.dataset.item_index.get(item_id)
        if self.primary_attribute is None or dense is None:
            return None
        return set(self.dataset.item(dense).attributes.get(self.primary_attribute, []))

    # --- results --------------------------------------------------------------------------

    def scored_item(self, dense: int, scores: dict[str, float], provenance: Provenance) -> ScoredItem:
        item = self.dataset.item(dense)
        return ScoredItem(
            id=item.id,
            title=item.title,
            year=item.year,
            attributes={kind: list(values) for kind, values in item.attributes.items()},
            scores={name: round(float(value), 6) for name, value in scores.items()},
            provenance=[provenance],
        )

    def describe(self) -> dict[str, Any]:
        """What a prompt needs to know about the catalogue: variants, attribute types with
        their values and item counts, the span of release years."""
        return {
            "dataset": self.dataset.name,
            "items": self.num_items,
            "users": len(self.dataset.user_ids),
            "variants": list(self.variants),
            "default_variant": self.default_variant,
            "genre_attribute": self.primary_attribute,
            "attributes": {
                attribute: {value: int(len(ids)) for value, ids in values.items()}
                for attribute, values in self.attribute_items.items()
                if attribute != YEAR
            },
            "years": list(self.year_span) if self.year_span else None,
        }
