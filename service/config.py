"""Settings: one class, built once, the only reader of the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", protected_namespaces=())

    model_store: Path = Path("model_store")
    model_name: str = "strip-defects"
    model_alias: str = "production"
    data_root: Path = Path("../shared/data")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
