"""What a run's LLM tokens would cost at a hosted LLM's prices, from the settings
(TOOLREC_LLM_INPUT_USD_PER_MTOK=0.15 TOOLREC_LLM_OUTPUT_USD_PER_MTOK=0.60: US dollars per
million prompt and completion tokens). Unset, a run has no estimate."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MILLION = 1_000_000


class TokenPrices(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOOLREC_")

    llm_input_usd_per_mtok: float | None = Field(None, ge=0, description="US dollars per million prompt tokens")
    llm_output_usd_per_mtok: float | None = Field(None, ge=0, description="US dollars per million completion tokens")

    @property
    def known(self) -> bool:
        return self.llm_input_usd_per_mtok is not None and self.llm_output_usd_per_mtok is not None

    def estimate(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """US dollars for these tokens, or None without both prices."""
        if self.llm_input_usd_per_mtok is None or self.llm_output_usd_per_mtok is None:
            return None
        return (prompt_tokens * self.llm_input_usd_per_mtok + completion_tokens * self.llm_output_usd_per_mtok) / MILLION
