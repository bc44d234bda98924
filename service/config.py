"""Settings: one class, built once, the only reader of the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", protected_namespaces=())

    model_store: Path = Path("model_store")
    model_name: str = "strip-defects"
    model_alias: str = "production"
    data_root: Path = Path("../shared/data")

    # Serving (issue 3).
    database_url: str = Field(
        default="sqlite:///var/inspections.db",
        description="SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://USER:PASS@HOST/DB",
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="largest request body accepted, in bytes"
    )
    onnx_providers: tuple[str, ...] = Field(
        default=("CPUExecutionProvider",),
        description="ONNX Runtime providers in order of preference (JSON list); CPU is always "
        "appended, providers this onnxruntime build lacks are skipped",
    )
    onnx_threads: int = Field(
        default=0, ge=0, description="intra-op threads of the session; 0 = one per core"
    )
    warmup_runs: int = Field(
        default=2, ge=1, description="full-size runs through the model before it is ready"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
