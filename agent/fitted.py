"""What the learned parts of the agent share: a model fit on validation users and kept as one
JSON file in the run folder, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import BaseModel

from tools.io import write_text


class FittedFile(BaseModel):
    FILE: ClassVar[str]

    def save(self, run_dir: Path) -> Path:
        path = run_dir / self.FILE
        write_text(path, self.model_dump_json(indent=1))
        return path

    @classmethod
    def load(cls, run_dir: Path) -> Self:
        return cls.model_validate_json((run_dir / cls.FILE).read_text(encoding="utf-8"))
