"""The simulated users of the conversation evaluation: each knows a hidden target item and
describes it turn by turn, never by name (InteRecAgent's evaluation, adapted).

`RuleUser` (no LLM, deterministic) says it a piece at a time in fixed words: the target's most
distinctive genre, then its decade, then a title it watched that is most like the target (by
the backbone's item embeddings), then "show me more"; on even turns it also rejects the first
item of the list it was shown.

`LLMUser`: an LLM writes the message in its own words.
The clues it may use grow each turn and come from the item's own record: first only a mood
(words for its most distinctive genre, `prompts/<domain>/moods.txt`, kept apart from every word
the reader looks up), then its genres, its decade, and a title the user watched that the backbone
finds most like it. It is never told the title ("How Reliable is Your Simulator?", arXiv
2403.16416), so it cannot describe the item from its own knowledge of it. A draft that still
names the title (the title, its main part, or half of its distinctive words) is regenerated, up
to `retries` times, then redacted; both are counted, and a dialogue with a redacted message is
left out of the score. A failed or empty reply falls back to the rule user's message, counted too.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from functools import cache

import numpy as np
from pydantic import BaseModel

from agent.chat import ShownItem
from agent.llm.base import LLM, ChatMessage, LLMError
from agent.prompts import domain_of, examples, moods, phrase, render
from tools.data.schema import Item
from tools.titles import natural_title
from tools.toolbox import Toolbox, normalize

WORD = re.compile(r"[^\W_]+", re.UNICODE)
# A title word shared by more than this share of catalogue titles ("man", "love", "night") says
# little about which item it is: only rarer words count towards a leak.
COMMON_WORD_SHARE = 0.005
MAX_MESSAGE_CHARS = 300
# A decade or a year a message names: "1980s", "'80s", "eighties", "1994". The 0.5B writes
# "an eighties comedy" for a film of 1992, or a decade before it was told one: a message that
# contradicts its clues measures the simulator's errors, not the recommender.
DECADE_WORDS = {w: 1920 + 10 * n for n, w in enumerate("twenties thirties forties fifties sixties seventies eighties nineties".split())}
DECADE = re.compile(
    r"(?:\b(?:from|in|of)\s+)?(?:\bthe\s+)?(?:\b(1[89]\d0|20\d0)'?s\b|'?\b(\d)0'?s\b|\b("
    + "|".join(DECADE_WORDS)
    + r")\b|\b((?:19|20)\d\d)\b)",
    re.IGNORECASE,
)
ECHO_WORDS = 6  # words in a row copied from the instructions or an example: an echo, not a message
SHOWN_IN_PROMPT = 5  # titles of the last list quoted back to the LLM (a short prompt is a fast one)


class SimUserCounts(BaseModel):
    """What the guard did, per simulated user."""

    messages: int = 0
    regenerated: int = 0  # drafts written again: they named the target or wrote the prompt back
    echoed: int = 0  # drafts that wrote the prompt back, written again (or, the last, left out)
    redacted: int = 0  # messages that still named it after the retries: its words cut out
    contradicted: int = 0  # drafts naming a decade they were not told, written again (the last: that decade cut out)
    fallbacks: int = 0  # failed or empty replies replaced by the rule user's message
    llm_seconds: float = 0.0


def words(text: str) -> list[str]:
    return [w.casefold() for w in WORD.findall(text)]


@cache
def _common_words(toolbox: Toolbox) -> frozenset[str]:
    counts = Counter(w for item in toolbox.dataset.items for w in set(words(natural_title(item.title))))
    limit = max(2, math.ceil(COMMON_WORD_SHARE * len(toolbox.dataset.items)))
    return frozenset(w for w, n in counts.items() if n > limit)


class TitleGuard:
    """Whether a message names one item, and the message with the name cut out."""

    def __init__(self, toolbox: Toolbox, target: Item) -> None:
        natural = natural_title(target.title)
        names = {target.title, natural, re.split(r"[:(]", natural)[0]}
        names |= set(re.findall(r"\(([^)]*)\)", target.title))  # an also-known-as title in brackets
        # a name must be long enough not to be a syllable ("M", "Go") of an ordinary word
        self.names = sorted({n.strip() for n in names if len(normalize(n)) >= 4}, key=len, reverse=True)
        common = _common_words(toolbox)
        self.distinctive = sorted({w for w in words(natural) if len(w) >= 3 and w not in common and not w.isdigit()})

    def leaks(self, message: str) -> bool:
        folded = normalize(message)
        if any(normalize(name) in folded for name in self.names):
            return True
        said = set(words(message))
        hits = sum(w in said for w in self.distinctive)
        return bool(self.distinctive) and hits >= max(1, math.ceil(len(self.distinctive) / 2))

    def redact(self, message: str) -> str:
        for name in self.names:
            message = re.sub(re.escape(name), "that one", message, flags=re.IGNORECASE)
        for word in self.distinctive:
            message = re.sub(rf"\b{re.escape(word)}\b", "...", message, flags=re.IGNORECASE)
        return message


class RuleUser:
    """A person who knows what they want and says it a piece at a time, never the title."""

    def __init__(self, toolbox: Toolbox, user_id: str) -> None:
        self.toolbox = toolbox
        self.user_id = user_id
        self.clues: list[str] | None = None

    def _clues(self, target: Item) -> list[str]:
        tb = self.toolbox
        primary = tb.primary_attribute or ""
        genres = sorted(target.attributes.get(primary, []), key=lambda g: len(tb.attribute_items.get(primary, {}).get(g, [])))
        genres = [g for g in genres if g != "unknown"]
        clues = []
        if genres:
            clues.append(f"I'm in the mood for a {genres[0].lower()} movie")
        else:
            clues.append("I'd like something to watch tonight")
        if target.year is not None:
            clues.append(f"something from the {target.year // 10 * 10}s")
        similar = self.closest_watched(target)
        if similar is not None:
            clues.append(f"more like {similar}")
        clues.append("show me more")
        return clues

    def closest_watched(self, target: Item) -> str | None:
        """The title in the user's own history most like the target (backbone item embeddings)."""
        tb = self.toolbox
        history = tb.user_history(self.user_id)
        if not len(history):
            return None
        try:
            space = tb.space(tb.default_variant)
        except Exception:  # a variant without item embeddings: no such clue
            return None
        dense = tb.dataset.item_index[target.id]
        vectors = space.vectors(np.asarray(list(history[-50:]), dtype=np.int64))
        similarity = vectors @ space.vectors(np.asarray([dense], dtype=np.int64))[0]
        best = int(history[-50:][int(np.argmax(similarity))])
        return tb.spoken_title(tb.dataset.item(best).id)

    def message(self, turn: int, target: Item, shown: list[ShownItem]) -> str:
        if self.clues is None:
            self.clues = self._clues(target)
        text = self.clues[min(turn - 1, len(self.clues) - 1)]
        if shown and turn > 1 and turn % 2 == 0:
            text = "not the first one, " + text
        return text


def decades(text: str) -> set[int]:
    """The decades a message names, as their first year."""
    found = set()
    for full, short, word, year in DECADE.findall(text):
        if full or year:
            found.add(int(full or year) // 10 * 10)
        elif short:
            found.add(1900 + 10 * int(short) if int(short) >= 2 else 2000 + 10 * int(short))
        else:
            found.add(DECADE_WORDS[word.lower()])
    return found


def cut_decades(text: str) -> str:
    return " ".join(DECADE.sub("", text).split())


def clean_reply(text: str) -> str:
    """The message as a person would send it: the first paragraph, no quotes or label."""
    text = text.strip().split("\n\n")[0].strip()
    text = re.sub(r"^(message|me|user|you)\s*:\s*", "", text, flags=re.IGNORECASE).strip()
    return text.strip("\"'` ").replace("\n", " ")[:MAX_MESSAGE_CHARS].strip()


def echoes(reply: str, sources: list[str], span: int = ECHO_WORDS) -> bool:
    """Whether a reply copies `span` words in a row from its instructions or worked examples
    (small models write the prompt back, or an example's story instead of their own)."""
    said = words(reply)
    copied = {tuple(w[i : i + span]) for w in map(words, sources) for i in range(len(w) - span + 1)}
    return any(tuple(said[i : i + span]) in copied for i in range(len(said) - span + 1))


class LLMUser:
    """The simulated user as an LLM writes it; `fallback` (the rule user) speaks when it cannot."""

    def __init__(self, llm: LLM, toolbox: Toolbox, user_id: str, fallback: RuleUser, retries: int = 2) -> None:
        self.llm, self.toolbox, self.user_id, self.fallback, self.retries = llm, toolbox, user_id, fallback, retries
        self.domain = domain_of(toolbox.dataset.name)
        self.counts = SimUserCounts()
        self.clues: list[str] | None = None

    def _say(self, name: str, **values: object) -> str:
        return phrase(self.domain, name, book="sim_user", **values)

    def _clues(self, target: Item) -> list[str]:
        tb = self.toolbox
        primary = tb.primary_attribute or ""
        sizes = tb.attribute_items.get(primary, {})
        values = sorted((v for v in target.attributes.get(primary, []) if v != "unknown"), key=lambda v: len(sizes.get(v, [])))
        felt = [w for v in values[:2] for w in moods(self.domain).get(v, [v.lower()])][:4]
        clues = [self._say("mood", words=", ".join(felt or ["anything good"]))]
        if values:
            clues.append(self._say("kinds", values=", ".join(values)))
        if target.year is not None:
            clues.append(self._say("decade", decade=f"{target.year // 10 * 10}s"))
        similar = self.fallback.closest_watched(target)
        if similar is not None:
            clues.append(self._say("like", title=similar))
        return clues

    def message(self, turn: int, target: Item, shown: list[ShownItem]) -> str:
        if self.clues is None:
            self.clues = self._clues(target)
        self.counts.messages += 1
        guard = TitleGuard(self.toolbox, target)
        told = self.clues[: min(turn, len(self.clues))]
        decade = target.year // 10 * 10 if target.year is not None else None
        allowed = {decade} if decade is not None and self._say("decade", decade=f"{decade}s") in told else set()
        shown_text = self._say("shown", titles="; ".join(i.title for i in shown[:SHOWN_IN_PROMPT])) if shown else self._say("nothing_shown")
        # the worked examples as earlier turns: a small model then answers as the person, not as an assistant
        shots = [
            ChatMessage(role="user" if kind == "ask" else "assistant", content=text)
            for kind, text in examples(self.domain, "sim_user_examples")
        ]
        head = [ChatMessage(role="system", content=render(self.domain, "sim_user_system")), *shots]
        draft = ""
        for attempt in range(self.retries + 1):
            task = self._say("first") if turn == 1 else self._say("later")
            prompt = render(
                self.domain,
                "sim_user",
                clues="; ".join(told),
                shown=shown_text,
                task=task + (" " + self._say("retry") if attempt else ""),
            )
            seed = zlib.crc32(f"{self.user_id}/{turn}/{attempt}".encode())
            try:
                reply = self.llm.chat([*head, ChatMessage(role="user", content=prompt)], max_tokens=48, temperature=0.7, seed=seed)
            except LLMError:
                break
            self.counts.llm_seconds += reply.seconds
            draft = clean_reply(reply.text)
            # the instructions and examples, not the clues: a person may well repeat those
            if echoes(draft, [task, *(text for _, text in examples(self.domain, "sim_user_examples"))]):
                self.counts.echoed += 1
                draft = ""
            elif decades(draft) - allowed:
                self.counts.contradicted += 1
                if attempt == self.retries:
                    draft = cut_decades(draft)
            elif not draft or not guard.leaks(draft):
                break
            if attempt < self.retries:
                self.counts.regenerated += 1
        if draft and guard.leaks(draft):
            self.counts.redacted += 1
            draft = guard.redact(draft)
        if not draft:
            self.counts.fallbacks += 1
            return self.fallback.message(turn, target, shown)
        return draft
