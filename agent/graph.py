"""The LangGraph wiring: typed state, small nodes, readable edges.

    profile -> plan -> act -> plan ... (until finish or max_rounds) -> assemble -> validate
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agent.nodes import Nodes
from agent.state import AgentState


def after_plan(state: AgentState) -> Literal["act", "assemble"]:
    return "assemble" if state["finished"] else "act"


def after_act(state: AgentState, max_rounds: int) -> Literal["plan", "assemble"]:
    return "assemble" if state["round"] >= max_rounds else "plan"


def build_graph(nodes: Nodes) -> CompiledStateGraph:
    graph = StateGraph(AgentState)
    graph.add_node("profile", nodes.profile)
    graph.add_node("plan", nodes.plan)
    graph.add_node("act", nodes.act)
    graph.add_node("assemble", nodes.assemble)
    graph.add_node("validate", nodes.validate)

    graph.add_edge(START, "profile")
    graph.add_conditional_edges("profile", after_plan, {"act": "plan", "assemble": "assemble"})
    graph.add_conditional_edges("plan", after_plan)
    graph.add_conditional_edges("act", lambda state: after_act(state, nodes.config.max_rounds))
    graph.add_edge("assemble", "validate")
    graph.add_edge("validate", END)
    return graph.compile()
