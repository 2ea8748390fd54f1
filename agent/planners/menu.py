"""The menu planner: the agent drafts this user's menu of intents (`agent.intents`), runs every
one, and weighs them: by one option-scoring call with the LLM reading the menu as the user, by
the prior learned on validation users, or equally.

    profile -> seed -> menu -> choose -> gather -> assemble -> validate
"""

from __future__ import annotations

from typing import Any, Literal

from agent.intents import IntentWeight, MenuEntry, draft_menu
from agent.llm.base import LLM, ChatMessage, LLMError, LLMTimeout
from agent.llm.scoring import OptionScorer, debias, menu_messages, position_prior
from agent.planners.base import Planner
from agent.prior import PRIOR_FILE, IntentPrior
from agent.probes import call_key
from agent.prompts import render
from agent.state import AgentConfig, AgentState, TraceEvent
from tools.schemas import ItemsOutput
from tools.toolbox import Toolbox

# latest items the menu prompt lists: every token of the user's part is evaluated once per
# recommendation, and the intents name the rest
MENU_RECENT = 5
CONTENT_FREE = "N/A"  # the option text of the menu that measures the LLM's position prior


def choice_event(entries: list[MenuEntry], weights: list[float], code: Literal["uniform_weights"] | None, note: str) -> TraceEvent:
    """How much each intent counted, and why."""
    intents = [IntentWeight(kind=e.intent.kind, text=e.intent.text, probability=round(w, 4)) for e, w in zip(entries, weights, strict=True)]
    return TraceEvent(node="choose", kind="choice", code=code, observation=note, error=note if code else None, intents=intents)


def still_true(own: dict[str, Any], sent: dict[str, Any]) -> bool:
    """Whether an intent's words still hold of what its call, under the request's constraints,
    can return: its genres at most narrowed (a subset of its own, "any of"), its years at most
    narrowed. A constraint that replaced them ("1990s Drama" under "Comedy from the 80s") makes
    the intent another call: its words would claim what its items are not."""
    if own.get("genres") and not set(sent.get("genres") or []) <= set(own["genres"]):
        return False
    low, high = own.get("year_from"), own.get("year_to")
    sent_low, sent_high = sent.get("year_from"), sent.get("year_to")
    if low is not None and (sent_low is None or sent_low < low):
        return False
    return high is None or (sent_high is not None and sent_high <= high)


class MenuPlanner(Planner):
    def __init__(self, llm: LLM, toolbox: Toolbox, config: AgentConfig) -> None:
        super().__init__(llm, toolbox, config)
        # the same for every user, so that an embedded model evaluates it once (prefix reuse)
        self.menu_system = render(self.domain, "menu_system")
        self._position_priors: dict[int, list[float]] = {}  # menu size -> the LLM's log-prior per position
        run = toolbox.run_dir
        # loaded whatever the setting: a request may ask for it (RecommendRequest.menu_choice)
        self.prior = IntentPrior.load(run) if run and (run / PRIOR_FILE).is_file() else None

    def menu(self, state: AgentState) -> dict[str, Any]:
        """This user's intent menu, every intent run at once (a tool call costs about 2 ms), so that
        only intents that found something are weighed: one whose call fails or finds nothing leaves
        the menu, and so does one that the request's rules turn into an earlier one's call."""
        request = state["request"]
        entries: list[MenuEntry] = []
        events: list[TraceEvent] = []
        sent: set[str] = set()
        for intent in draft_menu(state["profile"], self.toolbox, self.config.tools, self.domain):
            arguments = self.probe_arguments(intent.tool, intent.arguments, request)
            key = call_key(intent.tool, arguments)
            claimed = {**intent.arguments, **({"genres": intent.genres} if intent.genres else {})}
            if key in sent or not still_true(claimed, arguments):
                continue
            sent.add(key)
            result, event = self.tool("menu", intent.tool, arguments)
            events.append(event)
            if isinstance(result.output, ItemsOutput) and result.output.items:
                entries.append(MenuEntry(intent=intent, arguments=arguments, items=result.output.items))
        return {"menu": entries, "trace": events}

    def choose(self, state: AgentState) -> dict[str, Any]:
        """How much each intent counts for this user: as the request or the configuration says
        (`menu_choice`): the prior, equal weights, or one option-scoring call, the LLM reading the
        menu as the user (probabilities from the likelihood of each option's number, averaged over
        orderings so that position bias cancels). Uniform weights, traced as `uniform_weights`,
        where the call fails or times out, the LLM cannot score, or there is nothing to choose."""
        entries = state["menu"]
        uniform = [1.0 / len(entries)] * len(entries) if entries else []
        choice = state["request"].menu_choice or self.config.menu_choice
        if choice == "uniform":
            return {"weights": uniform, "trace": [choice_event(entries, uniform, None, "uniform weights by setting: no LLM call")]}
        why = None
        if not entries:
            why = "no intent on the menu found anything"
        elif choice == "prior":
            if self.prior is not None:
                weights = self.prior.weights(state["profile"], entries, self.primary or "")
                return {"weights": weights, "trace": [choice_event(entries, weights, None, f"the prior fit on {self.prior.users} users")]}
            why = f"no intent prior in the run folder ({PRIOR_FILE}: `toolrec intents fit-prior`)"
        elif len(entries) < 2:
            why = f"{len(entries)} intent(s) on the menu: nothing to choose"
        elif not isinstance(self.llm, OptionScorer):
            why = f"{self.llm.name} cannot score options"
        if why is not None:
            return {"weights": uniform, "trace": [choice_event(entries, uniform, "uniform_weights", why)]}
        return self._scored(state, entries, uniform)

    def _scored(self, state: AgentState, entries: list[MenuEntry], uniform: list[float]) -> dict[str, Any]:
        """The LLM's weights from one option-scoring call (uniform where it fails)."""
        assert isinstance(self.llm, OptionScorer)
        profile_part = render(self.domain, "menu", **self.profile_values(state["profile"], state["request"], recent=MENU_RECENT))
        messages = [ChatMessage(role="system", content=self.menu_system), ChatMessage(role="user", content=profile_part)]
        options = [e.intent.label for e in entries]
        try:
            scores = self.llm.score_options(messages, options, orderings=self.config.orderings, timeout=self.config.llm_timeout_s)
            if self.config.debias_positions:
                scores = debias(scores, self._position_prior(len(options)))
        except LLMError as exc:
            failed = TraceEvent(
                node="choose",
                kind="llm",
                code="timeout" if isinstance(exc, LLMTimeout) else "scoring_failed",
                messages=messages,
                error=f"{type(exc).__name__}: {exc}",
                valid_first_try=False,
            )
            return {"weights": uniform, "trace": [failed, choice_event(entries, uniform, "uniform_weights", "option scoring failed")]}
        shown = menu_messages(messages, options, scores.orderings[0].order) if scores.orderings else messages
        call = TraceEvent(
            node="choose",
            kind="llm",
            seconds=scores.seconds,
            messages=shown,
            reply=f"{scores.best + 1}. {options[scores.best]}",
            prompt_tokens=sum(o.prompt_tokens for o in scores.orderings),
            tokens_reused=scores.tokens_reused,
            cached=scores.cached,
            valid_first_try=True,
        )
        weights = scores.probabilities()
        debiased = ", less the position prior" if self.config.debias_positions else ""
        note = f"{scores.method} over {len(scores.orderings)} ordering(s){debiased}"
        return {"weights": weights, "trace": [call, choice_event(entries, weights, None, note)]}

    def _position_prior(self, n: int) -> list[float]:
        """The LLM's log-probability of each of n positions where nothing else can guide it: a
        user with no history and n alike options. Measured once per menu size."""
        assert isinstance(self.llm, OptionScorer)
        if n not in self._position_priors:
            blank = render(self.domain, "menu", recent="(nothing yet)", top_values="-", request="")
            messages = [ChatMessage(role="system", content=self.menu_system), ChatMessage(role="user", content=blank)]
            alike = self.llm.score_options(messages, [CONTENT_FREE] * n, orderings=1, timeout=self.config.llm_timeout_s)
            self._position_priors[n] = position_prior(alike)
        return self._position_priors[n]

    def gather(self, state: AgentState) -> dict[str, Any]:
        """Every intent's items join the pool as probes crediting that intent, each counting its
        probability relative to the most wanted intent's (the fusion's bonus scales with it)."""
        pool, weights = state["pool"], state["weights"]
        top = max(weights, default=0.0)
        for entry, probability in zip(state["menu"], weights, strict=True):
            weight = probability / top if top > 0 else 1.0
            pool = pool.add(
                entry.items, "probe", intent=entry.intent.text, kind=entry.intent.kind, weight=weight, genres=entry.intent.genres
            )
        return {"pool": pool, "round": 1}
