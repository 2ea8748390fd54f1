"""The LangGraph wiring: typed state, small nodes, named edges. The planner (`agent.planners`)
gives one of two middles:

    tools: profile -> seed -> plan -> act -> plan ... (until finish or max_rounds) -> assemble -> validate
    menu:  profile -> seed -> menu -> choose -> gather -> assemble -> validate

`profile`, `plan` and `act` set `finished` (no rounds configured; the LLM said finish, gave no
usable step or repeated itself; the rounds are spent); the edge functions below only read it.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agent.planners import MenuPlanner, Planner, ToolPlanner
from agent.state import AgentState


def plan_or_assemble(state: AgentState) -> Literal["plan", "assemble"]:
    """After seeding the pool and after each tool call: another plan step, or assembly."""
    return "assemble" if state["finished"] else "plan"


def act_or_assemble(state: AgentState) -> Literal["act", "assemble"]:
    """After a plan step: make the chosen tool call, or assemble."""
    return "assemble" if state["finished"] else "act"


def menu_or_assemble(state: AgentState) -> Literal["menu", "assemble"]:
    """After seeding the pool (menu mode): the intent menu, or straight to assembly (no rounds)."""
    return "assemble" if state["finished"] else "menu"


def build_graph(planner: Planner) -> CompiledStateGraph:
    graph = StateGraph(AgentState)
    graph.add_node("profile", planner.profile)
    graph.add_node("seed", planner.seed)
    graph.add_node("assemble", planner.assemble)
    graph.add_node("validate", planner.validate)
    graph.add_edge(START, "profile")
    graph.add_edge("profile", "seed")
    if isinstance(planner, MenuPlanner):
        graph.add_node("menu", planner.menu)
        graph.add_node("choose", planner.choose)
        graph.add_node("gather", planner.gather)
        graph.add_conditional_edges("seed", menu_or_assemble)
        graph.add_edge("menu", "choose")
        graph.add_edge("choose", "gather")
        graph.add_edge("gather", "assemble")
    else:
        assert isinstance(planner, ToolPlanner)
        graph.add_node("plan", planner.plan)
        graph.add_node("act", planner.act)
        graph.add_conditional_edges("seed", plan_or_assemble)
        graph.add_conditional_edges("plan", act_or_assemble)
        graph.add_conditional_edges("act", plan_or_assemble)
    graph.add_edge("assemble", "validate")
    graph.add_edge("validate", END)
    return graph.compile()
