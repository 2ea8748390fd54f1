"""The LangGraph wiring: typed state, small nodes, named edges.

    profile -> seed -> plan -> act -> plan ... (until finish or max_rounds) -> assemble -> validate

`plan` and `act` set `finished` (the LLM said finish, gave no usable step or repeated itself;
the rounds are spent); the two edge functions below only read it.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agent.nodes import Nodes
from agent.state import AgentState


def plan_or_assemble(state: AgentState) -> Literal["plan", "assemble"]:
    """After seeding the pool and after each tool call: another plan step, or assembly."""
    return "assemble" if state["finished"] else "plan"


def act_or_assemble(state: AgentState) -> Literal["act", "assemble"]:
    """After a plan step: make the chosen tool call, or assemble."""
    return "assemble" if state["finished"] else "act"


def build_graph(nodes: Nodes) -> CompiledStateGraph:
    graph = StateGraph(AgentState)
    graph.add_node("profile", nodes.profile)
    graph.add_node("seed", nodes.seed)
    graph.add_node("plan", nodes.plan)
    graph.add_node("act", nodes.act)
    graph.add_node("assemble", nodes.assemble)
    graph.add_node("validate", nodes.validate)

    graph.add_edge(START, "profile")
    graph.add_edge("profile", "seed")
    graph.add_conditional_edges("seed", plan_or_assemble)
    graph.add_conditional_edges("plan", act_or_assemble)
    graph.add_conditional_edges("act", plan_or_assemble)
    graph.add_edge("assemble", "validate")
    graph.add_edge("validate", END)
    return graph.compile()
