"""The simulated-user evaluation of conversations on real ML-100K tools: the protocol's numbers
with intervals, the LLM user's clues growing turn by turn, and its title guard (a draft naming
the target is regenerated, then redacted, and counted), with a scripted model and the real one."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.chat import Conversation, TurnResult
from agent.chat.vocabulary import Vocabulary
from agent.llm.base import LLMTimeout, NoLLM
from agent.llm.embedded import load_embedded
from agent.llm.scripted import ScriptedLLM
from agent.prompts import DOMAINS, moods, synonyms, template
from agent.runtime import agent_config, shared_agent_factory
from agent.settings import AgentSettings
from eval.conversation_sim import SimConfig, SimDialogue, SimTurn, compare, report, simulate, target_of
from eval.sim_users import LLMUser, RuleUser, SimUserCounts, TitleGuard, decades
from tools.data.schema import Item
from tools.toolbox import Toolbox, normalize

pytest_plugins = ["fixtures_tools"]

REPO = Path(__file__).resolve().parent.parent


def _conversation(toolbox: Toolbox) -> Conversation:
    llm = NoLLM()
    return Conversation(shared_agent_factory(llm, toolbox, agent_config(llm, k=5)), toolbox)


def _user(toolbox: Toolbox, replies: list) -> tuple[LLMUser, Item, ScriptedLLM]:
    user = toolbox.dataset.user_ids[0]
    target = target_of(toolbox, user)
    llm = ScriptedLLM(replies)
    return LLMUser(llm, toolbox, user, RuleUser(toolbox, user)), target, llm


def _item(toolbox: Toolbox, title: str) -> Item:
    return next(i for i in toolbox.dataset.items if i.title == title)


def test_simulation_reports_hits_and_turns_with_intervals(toolbox: Toolbox) -> None:
    report = simulate(toolbox, _conversation(toolbox), SimConfig(users=6, turns=3, k=5, seed=1), None, progress=False)
    assert report["users"] == 6 and 0.0 <= report["hit@3"] <= 1.0
    low, high = report["hit@3_ci95"]
    assert low <= report["hit@3"] <= high
    assert 1.0 <= report["avg_turns_ci95"][0] <= report["avg_turns"] <= report["avg_turns_ci95"][1] <= 3.0
    assert list(report["hit_by_turn"]) == ["hit@1", "hit@2", "hit@3"]
    assert report["simulator"] is None  # the rule user has no guard to count
    for dialogue in report["dialogues"]:
        turns = dialogue["turns"]
        assert 1 <= len(turns) <= 3 and (dialogue["hit_turn"] is None) == (not turns[-1]["hit"])
        title = normalize(dialogue["target_title"])
        assert all(title not in normalize(t["message"]) for t in turns)  # the target is never named
        shown = [i for t in turns for i in t["shown"]]
        assert len(shown) == len(set(shown))  # no item shown twice in a conversation


def test_a_stopped_simulation_resumes_from_its_journal(toolbox: Toolbox, tmp_path: Path) -> None:
    journal = tmp_path / "sim.json.partial.jsonl"
    config = SimConfig(users=4, turns=2, k=5, seed=1)
    whole = simulate(toolbox, _conversation(toolbox), config, None, progress=False)
    first = simulate(toolbox, _conversation(toolbox), config.model_copy(update={"users": 2}), None, progress=False, journal=journal)
    assert first["users"] == 2 and len(journal.read_text().splitlines()) == 2
    with journal.open("a") as f:
        f.write('{"settings": "cut short by a ki')  # a kill while writing a line
    other = config.model_copy(update={"turns": 3})
    assert simulate(toolbox, _conversation(toolbox), other, None, progress=False, journal=tmp_path / "other.jsonl")["users"] == 4

    talked_to: set[str] = set()

    class Counting(Conversation):
        def turn(self, session_id: str, message: str, user_id: str | None = None) -> TurnResult:
            talked_to.add(str(user_id))
            return super().turn(session_id, message, user_id=user_id)

    llm = NoLLM()
    counting = Counting(shared_agent_factory(llm, toolbox, agent_config(llm, k=5)), toolbox)
    resumed = simulate(toolbox, counting, config, None, progress=False, journal=journal)
    assert not talked_to & {d["user_id"] for d in first["dialogues"]}  # the journal's users are not talked to again

    def lists(report: dict) -> list:
        return [(d["user_id"], d["hit_turn"], [t["shown"] for t in d["turns"]]) for d in report["dialogues"]]

    assert lists(resumed) == lists(whole) and resumed["hit@2"] == whole["hit@2"]
    assert resumed["resumed_users"] == 2 and whole["resumed_users"] == 0  # seconds per turn count only this run's turns
    assert len(journal.read_text().splitlines()) == 4  # the torn line was cut, the two new ones appended


def test_the_llm_user_plays_through_the_simulation(toolbox: Toolbox) -> None:
    config = SimConfig(users=2, turns=2, k=5, seed=1, user_sim="llm")
    llm = ScriptedLLM(["I'd like something cheerful tonight."] * 4)
    report = simulate(toolbox, _conversation(toolbox), config, llm, progress=False)
    messages = [t["message"] for d in report["dialogues"] for t in d["turns"]]
    assert messages and set(messages) == {"I'd like something cheerful tonight."}
    assert report["simulator"]["messages"] == len(messages) and report["simulator"]["regenerated"] == 0
    with pytest.raises(ValueError, match="needs an LLM"):
        simulate(toolbox, _conversation(toolbox), config, None, progress=False)


def test_clues_grow_turn_by_turn_and_the_title_never_comes(toolbox: Toolbox) -> None:
    user, target, llm = _user(toolbox, ["Something with a bit of bite, please."] * 6)
    for turn in range(1, 6):
        user.message(turn, target, [])
    prompts = [call.messages[-1].content for call in llm.calls]
    assert len(prompts) == 5
    decade = f"{target.year // 10 * 10}s"
    assert decade not in prompts[0] and "feels" in prompts[0]  # the first turn is vague: a mood
    assert all(decade in p for p in prompts[2:])
    # leak-free: the simulated user is never told the title (the clues stop growing at the likeness)
    assert all(target.title.split(",")[0].split("(")[0].strip() not in p for p in prompts)
    assert len(set(prompts)) == 4 and prompts[-1] == prompts[-2]


def test_a_draft_naming_the_target_is_regenerated(toolbox: Toolbox) -> None:
    title = target_of(toolbox, toolbox.dataset.user_ids[0]).title
    user, target, llm = _user(toolbox, [f"Just give me {title}!", "I want something gentle and old"])
    assert user.message(1, target, []) == "I want something gentle and old"
    assert user.counts.regenerated == 1 and user.counts.redacted == 0
    assert "title" in llm.calls[1].messages[-1].content  # the second try is told why


def test_a_simulator_that_keeps_naming_it_is_redacted(toolbox: Toolbox) -> None:
    title = target_of(toolbox, toolbox.dataset.user_ids[0]).title
    user, target, _ = _user(toolbox, [f"I want {title} now"] * 3)
    message = user.message(1, target, [])
    assert user.counts.regenerated == 2 and user.counts.redacted == 1
    assert not TitleGuard(toolbox, target).leaks(message) and normalize(target.title) not in normalize(message)


def test_an_echoed_prompt_or_a_failed_call_falls_back_counted(toolbox: Toolbox) -> None:
    user, target, llm = _user(toolbox, ["", LLMTimeout("slow")])
    rules = RuleUser(toolbox, toolbox.dataset.user_ids[0])
    assert user.message(1, target, []) == rules.message(1, target, []) and user.counts.fallbacks == 1
    assert user.message(2, target, []) == rules.message(2, target, []) and user.counts.fallbacks == 2
    echo, target, llm = _user(toolbox, [])
    prompt_line = "Ask the recommender for a movie, vaguely: say only how it should feel."
    copied = "A movie about a world that is being swallowed by nothing."  # a worked example's story
    echo.llm = ScriptedLLM([prompt_line + " What you want: it feels x.", copied, "Something sweet."])
    assert echo.message(1, target, []) == "Something sweet." and echo.counts.echoed == 2 and echo.counts.regenerated == 2


def test_a_draft_naming_a_decade_it_was_not_told_is_written_again(toolbox: Toolbox) -> None:
    assert decades("an eighties comedy, '70s, from the 1990s, set in 1994") == {1970, 1980, 1990}
    assert decades("ten friends, Catch-22") == set()
    user, target, _ = _user(toolbox, ["A daft comedy from the 1950s", "Something daft and light"])
    assert user.message(1, target, []) == "Something daft and light"  # no decade is told on the first turn
    assert user.counts.contradicted == 1 and user.counts.regenerated == 1
    wrong = (target.year // 10 * 10) - 30
    told = f"from the {target.year // 10 * 10}s"
    stubborn, target, _ = _user(toolbox, [f"A comedy from the {wrong}s"] * 3 + [f"Still not it, a comedy {told}"])
    first = stubborn.message(1, target, [])
    assert first == "A comedy" and stubborn.counts.contradicted == 3  # the last try keeps its words, not its decade
    assert stubborn.message(3, target, []) == f"Still not it, a comedy {told}"  # the decade once told may be said


def test_the_guard_knows_a_title_from_a_description(toolbox: Toolbox) -> None:
    guard = TitleGuard(toolbox, _item(toolbox, "Toy Story"))
    assert guard.leaks("Can I see toy story again?") and guard.leaks("ToyStory please")
    assert not guard.leaks("an animated film about toys that come alive when nobody looks")
    twelve = TitleGuard(toolbox, _item(toolbox, "Twelve Monkeys"))
    assert twelve.leaks("the one with the twelve monkeys") and twelve.leaks("something with monkeys in it")
    assert not twelve.leaks("a time-travel story about a virus")
    assert not twelve.leaks(twelve.redact("Twelve Monkeys, that's it: the monkeys one"))


@pytest.mark.llm
def test_the_real_model_describes_a_target_without_naming_it(toolbox: Toolbox) -> None:
    path = AgentSettings().resolved_embedded_model_path()
    path = path if path.is_absolute() else REPO / path
    if not path.is_file():
        pytest.skip(f"embedded model not fetched ({path}); run `toolrec models get`")
    llm = load_embedded(path, n_threads=2, n_ctx=4096)
    user_id = toolbox.dataset.user_ids[0]
    target = target_of(toolbox, user_id)
    user = LLMUser(llm, toolbox, user_id, RuleUser(toolbox, user_id))
    messages = [user.message(turn, target, []) for turn in (1, 3)]
    guard = TitleGuard(toolbox, target)
    assert all(m and not guard.leaks(m) for m in messages)
    assert user.counts.messages == 2 and user.counts.fallbacks == 0  # the model wrote both itself
    assert messages[0] != messages[1]


def test_the_simulated_users_words_are_not_the_readers() -> None:
    """The simulated user's first clue (prompts/<domain>/moods.txt) shares no word or phrase with
    what the rule reader looks up (the genre synonyms and the wish vocabulary) nor with the LLM
    reader's instructions and worked examples: else the simulation would measure the reader
    decoding its own word list."""
    for domain in DOMAINS:
        genres = list(moods(domain))
        vocabulary = Vocabulary.load(domain, genres)
        taught = " ".join(template(domain, name).template for name in ("intent_system", "intent_examples", "intent"))
        taught_words = [normalize(w) for w in taught.replace("-", " ").split()]
        synonyms_of = {tuple(normalize(w) for w in word.replace("-", " ").split()) for words in synonyms().values() for word in words}
        for genre, words in moods(domain).items():
            for phrase in words:
                tokens = [normalize(w) for w in phrase.replace("-", " ").split()]
                spans = {tuple(tokens[i:j]) for i in range(len(tokens)) for j in range(i + 1, len(tokens) + 1)}
                assert not vocabulary.find(tokens), f"{domain} {genre}: {phrase!r} is in the wish vocabulary"
                assert not spans & synonyms_of, f"{domain} {genre}: {phrase!r} is a genre synonym"
                n = len(tokens)
                assert all(taught_words[i : i + n] != tokens for i in range(len(taught_words))), (
                    f"{domain} {genre}: {phrase!r} is in the LLM reader's prompt"
                )


def test_a_dialogue_with_a_leaked_title_is_counted_and_left_out(toolbox: Toolbox) -> None:
    def dialogue(user: str, hit: bool, redacted: int) -> SimDialogue:
        turn = SimTurn(message="x", shown=["1"], hit=hit, seconds=0.1)
        counts = SimUserCounts(messages=1, redacted=redacted)
        return SimDialogue(user_id=user, target="1", target_title="t", hit_turn=1 if hit else None, turns=[turn], simulator=counts)

    dialogues = [dialogue("a", True, 1), dialogue("b", False, 0), dialogue("c", True, 0)]
    figures = report(dialogues, SimConfig(users=3, turns=1, user_sim="llm"), 1.0, toolbox)
    assert figures["users"] == 2 and figures["hit@1"] == 0.5 and figures["simulator"]["leaked_dialogues_left_out"] == 1


def test_arms_are_compared_user_by_user_on_the_users_they_share() -> None:
    def dialogue(user: str, hit: bool, rank: int | None = None, redacted: int = 0) -> SimDialogue:
        turn = SimTurn(message="x", shown=["1"], hit=hit, seconds=0.1)
        counts = SimUserCounts(messages=1, redacted=redacted)
        return SimDialogue(
            user_id=user, target="1", target_title="t", hit_turn=1 if hit else None, backbone_rank=rank, turns=[turn], simulator=counts
        )

    rules = [dialogue("a", True, 3), dialogue("b", False), dialogue("c", False, 60), dialogue("d", True, redacted=1)]
    llm = [dialogue("a", True), dialogue("b", True), dialogue("c", True), dialogue("d", True), dialogue("e", True)]
    figures = compare({"rules": rules, "llm": llm}, depth=50)
    assert figures["users"] == 3 and figures["left_out_leaked"] == 1  # "e" is in one arm only, "d" leaked
    assert figures["hit"]["rules"]["mean"] == round(1 / 3, 4) and figures["hit"]["llm"]["mean"] == 1.0
    assert figures["history_top50"] == round(1 / 3, 4)  # rank 60 is past the 50 items shown
    gain = figures["paired"]["llm - rules"]
    assert gain["better"] == 2 and gain["worse"] == 0 and gain["delta"] == 2 / 3
