"""The graph's nodes, one module per planner over a shared base:

base.py   profile -> seed -> ... -> assemble -> validate   (every planner)
menu.py   ... menu -> choose -> gather ...                  (the intent menu, weighed by the LLM or the prior)
tools.py  ... plan -> act -> plan ...                        (the LLM calls tools freely, round by round)
"""

from agent.llm.base import LLM
from agent.planners.base import Planner
from agent.planners.menu import MenuPlanner
from agent.planners.tools import ToolPlanner
from agent.state import AgentConfig
from tools.toolbox import Toolbox


def make_planner(llm: LLM, toolbox: Toolbox, config: AgentConfig) -> Planner:
    """The planner `config.planner` names."""
    return (MenuPlanner if config.planner == "menu" else ToolPlanner)(llm, toolbox, config)


__all__ = ["MenuPlanner", "Planner", "ToolPlanner", "make_planner"]
