"""The configuration of an evaluation run: which data, which users, which methods, which LLM.

Loaded from TOML (tomllib) or YAML (pyyaml). Methods are a list of named entries whose `kind`
picks what they are:

    [[methods]]
    name = "sasrec"
    kind = "backbone"            # full-catalogue ranking by a trained run
    run = "runs/ml1m-sasrec"

    [[methods]]
    name = "llm-rerank"
    kind = "llm_rerank"          # the LLM reorders the backbone's top-N (Chat-REC / LLMRank)
    run = "runs/ml1m-sasrec"
    top_n = 20

    [[methods]]
    name = "agent"
    kind = "agent"               # the surrogate-user agent; any AgentConfig field may be set
    run = "runs/ml1m-sasrec"
    variants = {genre = "runs/ml1m-sasrec-genre"}
    max_rounds = 2
    tools = ["retrieve", "semantic_search", "similar_items"]
    assembly = "fused"

A run folder that does not exist yet is trained first when `runs` says how (any setting of
`toolrec train`; an existing run is reused only if it was trained with those settings):

    [runs."runs/ml1m-sasrec-genre"]
    model = "sasrec-attr"
    attribute = "genre"

Relative paths are resolved against the current directory (the repository root, as every
other command). A method's fingerprint is a hash of its definition and of the protocol, so a
resumed run never mixes results of two different definitions under one name.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.api import AgentConfig
from eval.metrics import KS
from eval.training import TrainSpec


class _Method(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    label: str | None = Field(None, description="How the report names it (default: name)")
    versus: list[str] = Field(
        default_factory=list,
        description="Other methods the report pairs it with, besides the backbone: e.g. the same agent without the LLM's "
        "preference, whose difference is the LLM's own gain",
    )

    @property
    def uses_llm(self) -> bool:
        return False

    @property
    def reads(self) -> set[Path]:
        """The run folders the method needs (trained first if the config says how)."""
        return set()


class PopularityMethod(_Method):
    """Training-split interaction counts, the same ranking for everyone (history masked)."""

    kind: Literal["popularity"]


class BackboneMethod(_Method):
    """A trained run (SASRec, BERT4Rec, attribute-aware SASRec) ranking the full catalogue."""

    kind: Literal["backbone"]
    run: Path

    @property
    def reads(self) -> set[Path]:
        return {self.run}


class LLMRerankMethod(_Method):
    """The backbone's top-N shown to the LLM as titles; its order, validated, is the list
    (items outside the top-N are dropped, what is missing comes from the backbone order)."""

    kind: Literal["llm_rerank"]
    run: Path
    top_n: int = Field(20, ge=2, le=50)
    history: int = Field(10, ge=1, le=50, description="Recent history items shown")
    prompt: str = Field("llm_rerank", description="Template name in prompts/<domain>/")
    max_tokens: int = Field(160, ge=16)
    temperature: float = 0.0
    seed: int = 0
    retries: int = Field(1, ge=0, le=3)
    llm_timeout_s: float | None = Field(None, description="Default: the run's llm_timeout_s")

    @property
    def uses_llm(self) -> bool:
        return True

    @property
    def reads(self) -> set[Path]:
        return {self.run}


class AgentMethod(_Method):
    """The agent over a toolbox (the run, plus attribute-aware variants by name). Any field of
    AgentConfig except k may be set here (max_rounds, tools, assembly, probe_bonus, ensemble,
    ...); k is the protocol's largest cut-off, and llm_timeout_s defaults to the run's."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["agent"]
    run: Path
    variants: dict[str, Path] = Field(default_factory=dict)

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def reads(self) -> set[Path]:
        return {self.run, *self.variants.values()}

    @property
    def fitted(self) -> list[Path]:
        """The files fit on validation users that its figures depend on (refitting one starts the method afresh)."""
        return self.agent_config(10).fitted_files(self.run)

    @property
    def uses_llm(self) -> bool:
        return self.agent_config(10).calls_llm

    def agent_config(self, k: int, llm_timeout_s: float | None = None) -> AgentConfig:
        overrides = self.overrides
        if overrides.get("llm_timeout_s") is None and llm_timeout_s is not None:
            overrides["llm_timeout_s"] = llm_timeout_s
        return AgentConfig(**overrides, k=k)

    @model_validator(mode="after")
    def _valid_agent_config(self) -> AgentMethod:
        unknown = sorted(set(self.overrides) - (set(AgentConfig.model_fields) - {"k"}))
        if unknown:
            settable = ", ".join(f for f in AgentConfig.model_fields if f != "k")
            raise ValueError(f"agent method {self.name!r}: unknown setting(s) {unknown}; settable: {settable}")
        self.agent_config(10)  # raises a ValidationError naming the bad field
        return self


Method = Annotated[PopularityMethod | BackboneMethod | LLMRerankMethod | AgentMethod, Field(discriminator="kind")]


class EvalConfig(BaseModel):
    """The protocol (default: ToolRec's) and the methods compared on the same users."""

    model_config = ConfigDict(extra="forbid")

    name: str = "eval"
    dataset: str = Field("ml-1m", description="Dataset name; every run must have been trained on it")
    split: Literal["test", "valid"] = "test"
    seed: int = Field(2023, description="Seed of the test-user sample")
    users: int | None = Field(200, ge=1, description="Sampled test users (None: all users)")
    user_ids: list[str] | None = Field(None, description="Explicit users instead of a sample")
    ks: list[int] = Field(default_factory=lambda: list(KS))
    wave: int | None = Field(
        None,
        ge=1,
        description="Users per wave: every method finishes a wave before the next wave starts, so a run stopped early still has all "
        "its methods on the same users (None: one wave)",
    )
    llm: str = Field("local", description='"local" (embedded) or "openai:MODEL"')
    llm_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Per LLM call, for methods that set none. Generous: a timed-out call is a fallback, so a busy machine would change "
        "the figures",
    )
    concurrency: int = Field(4, ge=1, le=64, description="Parallel users for a remote LLM (the embedded model runs one at a time)")
    backbone: str | None = Field(None, description="Method the paired tests compare against (default: the first backbone method)")
    data_dir: Path | None = Field(None, description="Default: TOOLREC_DATA_DIR")
    variants: dict[str, Path] = Field(
        default_factory=dict, description="Backbone variants for every agent method that names none (name -> run folder)"
    )
    methods: list[Method] = Field(min_length=1)
    runs: dict[Path, TrainSpec] = Field(
        default_factory=dict,
        description="How to train each run folder the methods name, if it is missing (any `toolrec train` setting; dataset: the config's)",
    )

    @model_validator(mode="before")
    @classmethod
    def _agents_share_variants(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("variants") and isinstance(data.get("methods"), list):
            shared = data["variants"]
            methods = [{"variants": shared, **m} if isinstance(m, dict) and m.get("kind") == "agent" else m for m in data["methods"]]
            data = {**data, "methods": methods}
        return data

    @model_validator(mode="before")
    @classmethod
    def _runs_on_the_dataset(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("runs"), dict):
            dataset = data.get("dataset", cls.model_fields["dataset"].default)
            runs = {path: {"dataset": dataset, **spec} if isinstance(spec, dict) else spec for path, spec in data["runs"].items()}
            data = {**data, "runs": runs}
        return data

    @field_validator("ks")
    @classmethod
    def _ks(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 1 for k in ks):
            raise ValueError("ks must be positive cut-offs")
        return sorted(set(ks))

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        names = [m.name for m in self.methods]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"method names must be unique: {duplicated}")
        foreign = sorted(str(path) for path, spec in self.runs.items() if spec.dataset != self.dataset)
        if foreign:
            raise ValueError(f"runs {foreign} are not trained on the config's dataset {self.dataset!r}")
        if self.backbone is None:
            self.backbone = next((m.name for m in self.methods if m.kind == "backbone"), None)
        elif self.backbone not in names:
            raise ValueError(f"backbone {self.backbone!r} is not one of the methods {names}")
        strangers = sorted(f"{m.name} -> {other}" for m in self.methods for other in m.versus if other not in names)
        if strangers:
            raise ValueError(f"versus names no method of this config: {strangers}")
        return self

    @property
    def k(self) -> int:
        """The length of every list a list-producing method must return."""
        return max(self.ks)

    def timeout(self, method: LLMRerankMethod) -> float:
        return method.llm_timeout_s if method.llm_timeout_s is not None else self.llm_timeout_s

    def method(self, name: str) -> Method:
        return next(m for m in self.methods if m.name == name)

    def protocol(self) -> dict[str, Any]:
        """What a user's figure depends on besides the method itself."""
        return {"dataset": self.dataset, "split": self.split, "k": self.k}

    def fingerprint(self, method: _Method) -> str:
        payload: dict[str, Any] = {"protocol": self.protocol(), "method": method.model_dump(mode="json", exclude={"label", "versus"})}
        if isinstance(method, AgentMethod):
            # the resolved configuration: a changed default changes the fingerprint too
            payload["agent"] = method.agent_config(self.k, self.llm_timeout_s).model_dump(mode="json")
            payload["fitted"] = {str(path): _file_hash(path) for path in method.fitted}
        if isinstance(method, LLMRerankMethod):
            payload["timeout"] = self.timeout(method)
        if method.uses_llm:
            payload["llm"] = self.llm
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _file_hash(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else None


def load_config(path: Path, **overrides: Any) -> EvalConfig:
    """A config from a .toml, .yaml or .yml file; `overrides` (e.g. users=20) replace fields."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"{path}: a config is a .toml or .yaml file")
    data.setdefault("name", path.stem)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return EvalConfig.model_validate(data)
