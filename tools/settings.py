"""Where the project keeps fetched data and weights; every field can be set from the
environment with the TOOLREC_ prefix (TOOLREC_DATA_DIR=/mnt/data ...)."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class PathSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOOLREC_")

    data_dir: Path = Path("data")
    models_dir: Path = Path("models")
    runs_dir: Path = Path("runs")
