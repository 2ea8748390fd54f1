"""Prompt templates from the `prompts` package (files, so they ship in the wheel), one folder
per domain, rendered with string.Template: a missing variable is an error, not a blank."""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template

DOMAINS = ("movies", "books", "businesses")


def domain_of(dataset: str) -> str:
    """Which template folder suits a dataset: MovieLens -> movies, Amazon -> books, Yelp ->
    businesses; anything else reads as movies-like items."""
    name = dataset.lower()
    if "amazon" in name or "book" in name:
        return "books"
    if "yelp" in name:
        return "businesses"
    return "movies"


@cache
def template(domain: str, name: str) -> Template:
    if domain not in DOMAINS:
        raise ValueError(f"no prompts for domain {domain!r}; known: {', '.join(DOMAINS)}")
    return Template(resources.files("prompts").joinpath(domain, f"{name}.md").read_text(encoding="utf-8"))


def render(domain: str, name: str, **values: object) -> str:
    return template(domain, name).substitute({k: str(v) for k, v in values.items()}).strip()


def _entries(*path: str) -> list[tuple[str, str]]:
    """The "name: text" lines of a prompts file, comments (#) and blank lines left out."""
    text = resources.files("prompts").joinpath(*path).read_text(encoding="utf-8")
    entries = []
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not line.startswith("#") and sep:
            entries.append((name.strip(), rest.strip()))
    return entries


@cache
def synonyms() -> dict[str, list[str]]:
    """Genre -> the words people use for it (`prompts/synonyms.txt`: "Genre: word, word")."""
    return {genre: [w.strip() for w in words.split(",") if w.strip()] for genre, words in _entries("synonyms.txt")}


@cache
def wish_words(domain: str) -> list[tuple[str, str]]:
    """The wish vocabulary's "phrase, phrase: effects" lines (`prompts/<domain>/wishes.txt`; see
    agent.chat.vocabulary); none for a domain without the file."""
    if not resources.files("prompts").joinpath(domain, "wishes.txt").is_file():
        return []
    return _entries(domain, "wishes.txt")


@cache
def examples(domain: str, name: str) -> list[tuple[str, str]]:
    """Worked examples as (kind, text) pairs in file order (`prompts/<domain>/<name>.txt`)."""
    return _entries(domain, f"{name}.txt")


@cache
def moods(domain: str) -> dict[str, list[str]]:
    """Genre -> the moods it puts people in (`prompts/<domain>/moods.txt`), for the simulated user."""
    return {genre: [w.strip() for w in words.split(",") if w.strip()] for genre, words in _entries(domain, "moods.txt")}


@cache
def phrases(domain: str, book: str = "intents") -> dict[str, Template]:
    """The "name: template" phrases of `prompts/<domain>/<book>.txt`: how the intent menu says
    each kind of intent ("intents"), what the simulated user may say ("sim_user")."""
    if domain not in DOMAINS:
        raise ValueError(f"no prompts for domain {domain!r}; known: {', '.join(DOMAINS)}")
    return {name: Template(text) for name, text in _entries(domain, f"{book}.txt")}


def phrase(domain: str, name: str, book: str = "intents", **values: object) -> str:
    return phrases(domain, book)[name].substitute({k: str(v) for k, v in values.items()})


@cache
def intent_examples(domain: str) -> list[tuple[str, str]]:
    """Worked examples for the LLM's reading of a message (`prompts/<domain>/intent_examples.md`:
    blocks of a message line and its JSON reply line, separated by blank lines)."""
    text = template(domain, "intent_examples").template
    blocks = [block.strip().splitlines() for block in text.split("\n\n") if block.strip()]
    return [(lines[0].strip(), lines[1].strip()) for lines in blocks if len(lines) == 2]
