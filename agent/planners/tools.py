"""The free-form tool planner: the LLM, as the user, chooses tools and their attribute arguments
round by round (for strong remote models); a probe that cannot change the list is corrected or
dropped under the rules of `agent.probes`.

    profile -> seed -> plan -> act -> plan ... (until finish or max_rounds) -> assemble -> validate
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from agent.llm.base import LLM, ChatMessage
from agent.planners.base import Planner, llm_events
from agent.probes import call_key, trim_broad
from agent.prompts import render
from agent.request import UNSHOWN, PlannedCall
from agent.state import AgentConfig, AgentState, TraceEvent
from tools.registry import TOOLS
from tools.schemas import ItemsOutput
from tools.toolbox import Toolbox

FINISH = "finish"
# Arguments the LLM is not offered in the tool catalogue: the agent sets them.
HIDDEN_FROM_LLM = {*UNSHOWN, "attributes", "exclude_attributes", "space"}


@cache
def plan_step_model(names: tuple[str, ...]) -> type[BaseModel]:
    """A plan step whose `name` must be one of the allowed tools (or finish)."""
    return create_model(
        "PlanStep",
        # a Literal built at run time: valid for pydantic, beyond what a static checker can see
        name=(Literal[(*names, FINISH)], Field(description="Tool to call")),  # type: ignore[arg-type]
        arguments=(dict[str, Any], Field(default_factory=dict)),
    )


def tool_lines(names: list[str]) -> str:
    """The tool catalogue for the prompt, from the tools' own schemas: name(arguments): what it does."""
    lines = []
    for name in names:
        spec = TOOLS[name]
        fields = [f for f in spec.input_model.model_fields if f not in HIDDEN_FROM_LLM]
        lines.append(f"- {name}({', '.join(fields)}): {spec.description.split('. ')[0].rstrip('.')}.")
    return "\n".join(lines)


class ToolPlanner(Planner):
    def __init__(self, llm: LLM, toolbox: Toolbox, config: AgentConfig) -> None:
        super().__init__(llm, toolbox, config)
        values = list(toolbox.attribute_items.get(self.primary, {})) if self.primary else []
        self.example_value = values[0] if values else ""
        self.system = render(self.domain, "system", tools=tool_lines(config.tools), values=", ".join(values) or "(none)")
        self.plan_model = plan_step_model(tuple(config.tools))

    def profile(self, state: AgentState) -> dict[str, Any]:
        """Who the user is, and the plan prompt built from it."""
        update = super().profile(state)
        out, primary = update["profile"], self.primary or ""
        plan = render(
            self.domain,
            "plan",
            **self.profile_values(out, state["request"]),
            recent_values=", ".join(v.value for v in out.recent_attributes.get(primary, [])) or "-",
            round=1,
            max_rounds=self.config.max_rounds,
            example_value=self.example_value,
        )
        return {**update, "messages": [ChatMessage(role="system", content=self.system), ChatMessage(role="user", content=plan)]}

    def plan(self, state: AgentState) -> dict[str, Any]:
        """The LLM's next step: a tool call, or finish (also on an unusable reply or a repeat)."""
        result = self.ask(state["messages"], self.plan_model)
        events = llm_events("plan", result)
        if result.value is None:
            timed_out = bool(result.attempts) and result.attempts[-1].timed_out
            fallback = TraceEvent(
                node="plan",
                kind="fallback",
                code="timeout" if timed_out else "unusable_reply",
                error="no usable plan step: assembling from the pool so far",
            )
            return {"step": None, "finished": True, "trace": [*events, fallback]}
        step = PlannedCall.model_validate(result.value.model_dump())
        reply = ChatMessage(role="assistant", content=json.dumps(step.model_dump(), ensure_ascii=False))
        if reply.content in {m.content for m in state["messages"] if m.role == "assistant"}:
            # a repeated call would only return the same items again: the search has converged
            repeat = TraceEvent(node="plan", kind="fallback", code="repeated_call", error="the same tool call again: finishing")
            return {"step": None, "finished": True, "trace": [*events, repeat]}
        return {"step": step, "finished": step.name == FINISH, "messages": [reply], "trace": events}

    def act(self, state: AgentState) -> dict[str, Any]:
        """The plan step's call under the rules of agent.probes: a constraint admitting most of the
        catalogue is narrowed to the user's top values before it is sent (`broad_call`; the LLM is
        told); a call sent before is not sent again and ends the search, which has converged
        (`repeated_call`); a call whose items are all in the pool already adds none of them
        (`known_items`): it could not change the list, and the LLM is told it found nothing new."""
        step = state["step"]
        assert step is not None
        request, pool, calls = state["request"], state["pool"], state.get("calls", [])
        done = state["round"] + 1
        arguments, notes = trim_broad(self.toolbox, state["profile"], self.probe_arguments(step.name, step.arguments, request))
        key = call_key(step.name, arguments)
        if key in calls:
            repeat = TraceEvent(
                node="act",
                kind="guard",
                code="repeated_call",
                tool=step.name,
                arguments=arguments,
                error="a call sent before: not sent again, finishing",
            )
            return {"round": done, "finished": True, "trace": [repeat]}
        result, event = self.tool("act", step.name, arguments)
        found = result.output.items if isinstance(result.output, ItemsOutput) else []
        # one code per probe, so that each refused probe counts once: dropped outranks corrected
        if found and all(item.id in pool for item in found):
            event.code, event.observation = "known_items", f"nothing new: all {len(found)} items are among the candidates already"
        else:
            pool = pool.add(found, "probe")
            event.code = "broad_call" if notes and event.code is None else event.code
        if notes:
            event.observation = f"{'; '.join(notes)}\n{event.observation}"
        observation = render(
            self.domain,
            "observe",
            tool=step.name,
            result=event.observation,
            round=min(done + 1, self.config.max_rounds),
            max_rounds=self.config.max_rounds,
        )
        return {
            "pool": pool,
            "round": done,
            "calls": [*calls, key],
            "finished": done >= self.config.max_rounds,
            "messages": [ChatMessage(role="user", content=observation)],
            "trace": [event],
        }
