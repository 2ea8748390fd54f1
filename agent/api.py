"""The agent's public API: what the evaluation, the command line and other programs use.

    from agent.api import Agent, AgentConfig, RecommendRequest, recommend
    config = AgentConfig(menu_choice="prior", assembly="learned")
    config.calls_llm, config.fitted_files(run)     # what a configuration needs before it runs
    Agent(llm, toolbox, config).recommend(RecommendRequest(user_id="1"))

`MenuPlanner` is here for studies of how the menu is weighed (`toolrec eval intents`).
"""

from agent.assembly import ASSEMBLY_FILE, LearnedAssembly
from agent.planners import MenuPlanner
from agent.prior import PRIOR_FILE, IntentPrior
from agent.recommend import Agent, AgentFactory, as_request, recommend
from agent.request import MenuChoice, PlannedCall, RecommendError, RecommendRequest, shown_arguments
from agent.rerank import RerankReply, picked
from agent.state import AgentConfig, Assembly, Planner, Recommendation, RecommendedItem, TraceCode, TraceEvent

__all__ = [
    "ASSEMBLY_FILE",
    "PRIOR_FILE",
    "Agent",
    "AgentConfig",
    "AgentFactory",
    "Assembly",
    "IntentPrior",
    "LearnedAssembly",
    "MenuChoice",
    "MenuPlanner",
    "PlannedCall",
    "Planner",
    "RecommendError",
    "RecommendRequest",
    "Recommendation",
    "RecommendedItem",
    "RerankReply",
    "TraceCode",
    "TraceEvent",
    "as_request",
    "picked",
    "recommend",
    "shown_arguments",
]
