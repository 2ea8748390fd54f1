"""Build the LLM named by a spec string: "local" or "openai:MODEL"."""

from agent.llm.base import LLM
from agent.llm.cache import CachedLLM
from agent.llm.embedded import load_embedded
from agent.llm.openai_compat import OpenAICompatLLM
from agent.settings import AgentSettings
from tools.settings import PathSettings


class UnknownLLMSpec(ValueError):
    pass


def make_llm(spec: str, settings: AgentSettings | None = None, paths: PathSettings | None = None) -> LLM:
    """The LLM for `spec`: "local" is the embedded model (settings.embedded_runtime picks
    the runtime); "openai:MODEL" an OpenAI-compatible endpoint ("openai" alone uses
    settings.openai_model). Wrapped in the reply cache when settings.llm_cache_dir is set."""
    settings = settings or AgentSettings()
    llm: LLM
    if spec == "local":
        llm = load_embedded(
            settings.resolved_embedded_model_path(paths),
            runtime=settings.embedded_runtime,
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            default_timeout=settings.llm_timeout_s,
        )
    elif spec == "openai" or spec.startswith("openai:"):
        model = spec.partition(":")[2] or settings.openai_model
        llm = OpenAICompatLLM(
            model,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            request_timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )
    else:
        raise UnknownLLMSpec(f"unknown LLM spec {spec!r}; use 'local' or 'openai:MODEL'")
    if settings.llm_cache_dir is not None:
        return CachedLLM(llm, settings.llm_cache_dir)
    return llm
