"""Build the LLM named by a spec string: "local", "local:1.5b" or "openai:MODEL"."""

from typing import get_args

from agent.llm.base import LLM
from agent.llm.cache import CachedLLM
from agent.llm.embedded import load_embedded
from agent.llm.fetch import EmbeddedModelName
from agent.llm.openai_compat import OpenAICompatLLM
from agent.settings import AgentSettings
from tools.settings import PathSettings


class UnknownLLMSpec(ValueError):
    pass


def _embedded_name(spec: str) -> EmbeddedModelName | None:
    name = spec.partition(":")[2]
    if not name:
        return None
    for known in get_args(EmbeddedModelName):
        if name == known:
            return known
    known_names = ", ".join(get_args(EmbeddedModelName))
    raise UnknownLLMSpec(f"unknown embedded model {name!r} in {spec!r}; known: {known_names}")


def make_llm(spec: str, settings: AgentSettings | None = None, paths: PathSettings | None = None) -> LLM:
    """The LLM for `spec`: "local" is the embedded model settings.embedded_model,
    "local:0.5b" / "local:1.5b" a named one (settings.embedded_runtime picks the runtime);
    "openai:MODEL" an OpenAI-compatible endpoint ("openai" alone uses
    settings.openai_model). Wrapped in the reply cache when settings.llm_cache_dir is set."""
    settings = settings or AgentSettings()
    llm: LLM
    if spec == "local" or spec.startswith("local:"):
        llm = load_embedded(
            settings.resolved_embedded_model_path(paths, _embedded_name(spec)),
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
        raise UnknownLLMSpec(f"unknown LLM spec {spec!r}; use 'local', 'local:1.5b' or 'openai:MODEL'")
    if settings.llm_cache_dir is not None:
        return CachedLLM(llm, settings.llm_cache_dir)
    return llm
