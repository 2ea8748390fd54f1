"""Settings from the environment and the spec -> backend factory."""

from pathlib import Path

import pytest

from agent.llm.base import LLMError
from agent.llm.cache import CachedLLM
from agent.llm.embedded import resolve_runtime
from agent.llm.fetch import QWEN_05B_Q4KM
from agent.llm.openai_compat import OpenAICompatLLM
from agent.runtime import UnknownLLMSpec, make_llm
from agent.settings import AgentSettings
from tools.settings import PathSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    names = "OPENAI_BASE_URL OPENAI_API_KEY TOOLREC_OPENAI_BASE_URL TOOLREC_OPENAI_API_KEY"
    for var in [*names.split(), "TOOLREC_LLM", "TOOLREC_LLM_CACHE_DIR", "TOOLREC_MODELS_DIR"]:
        monkeypatch.delenv(var, raising=False)


def test_defaults() -> None:
    settings = AgentSettings()
    assert settings.llm == "local"
    assert settings.embedded_runtime == "auto" and settings.llm_cache_dir is None
    assert settings.resolved_embedded_model_path() == Path("models") / QWEN_05B_Q4KM.filename


def test_env_prefix_and_openai_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLREC_LLM", "openai:qwen2.5")
    monkeypatch.setenv("TOOLREC_MAX_ROUNDS", "5")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sdk")
    settings = AgentSettings()
    assert settings.llm == "openai:qwen2.5" and settings.max_rounds == 5
    assert settings.openai_base_url == "http://127.0.0.1:8000/v1"
    assert settings.openai_api_key == "sk-sdk"
    monkeypatch.setenv("TOOLREC_OPENAI_API_KEY", "sk-toolrec")
    assert AgentSettings().openai_api_key == "sk-toolrec"  # the project's own name wins


def test_models_dir_comes_from_path_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLREC_MODELS_DIR", "/mnt/models")
    assert AgentSettings().resolved_embedded_model_path() == Path("/mnt/models", QWEN_05B_Q4KM.filename)
    explicit = AgentSettings(embedded_model_path=Path("/x.gguf"))
    assert explicit.resolved_embedded_model_path(PathSettings()) == Path("/x.gguf")


def test_make_openai() -> None:
    settings = AgentSettings(openai_base_url="http://127.0.0.1:9/v1", openai_model="default-m")
    llm = make_llm("openai:my-model", settings)
    assert isinstance(llm, OpenAICompatLLM) and llm.name == "openai:my-model"
    assert make_llm("openai", settings).name == "openai:default-m"


def test_make_with_cache(tmp_path: Path) -> None:
    llm = make_llm("openai:m", AgentSettings(llm_cache_dir=tmp_path))
    assert isinstance(llm, CachedLLM) and llm.name == "openai:m"


def test_unknown_spec() -> None:
    with pytest.raises(UnknownLLMSpec, match="scripted"):
        make_llm("scripted", AgentSettings())


def test_local_without_model_says_how_to_get_it(tmp_path: Path) -> None:
    settings = AgentSettings(embedded_model_path=tmp_path / "missing.gguf")
    with pytest.raises(LLMError, match="toolrec models get"):
        make_llm("local", settings)


def test_runtime_resolution() -> None:
    assert resolve_runtime("transformers") == "transformers"
    assert resolve_runtime("auto") in ("llama_cpp", "transformers")
