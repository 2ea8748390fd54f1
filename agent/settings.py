"""Agent settings; every field can be set from the environment with the TOOLREC_ prefix
(TOOLREC_LLM=openai:gpt-4o-mini, TOOLREC_N_THREADS=4 ...). The OpenAI endpoint and key
also fall back to the SDK's usual OPENAI_BASE_URL / OPENAI_API_KEY."""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.llm.fetch import EMBEDDED_MODELS, EmbeddedModelName
from tools.settings import PathSettings

EmbeddedRuntime = Literal["auto", "llama_cpp", "transformers"]


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOOLREC_", populate_by_name=True)

    # "local" (the embedded model named by embedded_model), "local:1.5b" (a named one), or
    # "openai:MODEL" (any OpenAI-compatible endpoint).
    llm: str = "local"

    # validation_alias bypasses env_prefix, so both spellings are listed explicitly.
    openai_base_url: str | None = Field(default=None, validation_alias=AliasChoices("TOOLREC_OPENAI_BASE_URL", "OPENAI_BASE_URL"))
    openai_api_key: str | None = Field(default=None, validation_alias=AliasChoices("TOOLREC_OPENAI_API_KEY", "OPENAI_API_KEY"))
    openai_model: str = "gpt-4o-mini"

    # Which pinned GGUF "local" means; embedded_model_path, when set, overrides the file.
    embedded_model: EmbeddedModelName = "0.5b"
    # None: the verified GGUF of embedded_model in PathSettings.models_dir, where
    # fetch_embedded_model (`toolrec models get`) puts it.
    embedded_model_path: Path | None = None
    embedded_runtime: EmbeddedRuntime = "auto"
    n_threads: int = 2
    n_ctx: int = 4096

    llm_timeout_s: float = 60.0
    llm_max_retries: int = 3
    max_rounds: int = 2
    # None disables the reply cache.
    llm_cache_dir: Path | None = None

    def resolved_embedded_model_path(self, paths: PathSettings | None = None, model: EmbeddedModelName | None = None) -> Path:
        """The GGUF for `model` (default: embedded_model). An explicit embedded_model_path
        applies only to the default model, so "local:1.5b" never loads a 0.5B override."""
        if self.embedded_model_path is not None and model in (None, self.embedded_model):
            return self.embedded_model_path
        source = EMBEDDED_MODELS[model or self.embedded_model]
        return (paths or PathSettings()).models_dir / source.filename
