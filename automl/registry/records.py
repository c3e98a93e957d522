"""What the registry stores about a model: versions, stage changes, names and references
(``NAME``, ``NAME:VERSION``, ``NAME:STAGE``), and where registries and caches live by default."""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from automl.exceptions import ConfigError

STAGES = ("none", "staging", "production", "archived")
URI_SCHEME = "registry://"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def default_root() -> str:
    return os.environ.get("AUTOML_REGISTRY") or str(Path("~/.automl/registry").expanduser())


def default_cache() -> Path:
    return Path(os.environ.get("AUTOML_REGISTRY_CACHE") or "~/.automl/cache").expanduser()


def default_actor() -> str:
    try:
        return os.environ.get("AUTOML_ACTOR") or getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


@dataclass(frozen=True)
class StageChange:
    version: int
    stage: str
    actor: str
    at: str
    reason: str
    at_ns: int = 0


@dataclass
class ModelVersion:
    name: str
    version: int
    stage: str
    created_at: str
    created_by: str
    description: str | None
    artifact: str
    files: dict[str, str]
    metrics: dict[str, Any]
    params: dict[str, Any]
    profile: dict[str, Any]
    lineage: dict[str, Any]
    problem_type: str | None = None
    target: str | None = None
    classes: list[Any] | None = None
    history: list[StageChange] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "uri": self.uri}


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ConfigError(f"stage must be one of {list(STAGES)}; got {stage!r}")
    return stage


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"model name {name!r} is not allowed: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """``NAME``, ``NAME:VERSION`` or ``NAME:STAGE`` -> (name, version, stage)."""
    name, _, tail = ref.partition(":")
    check_name(name)
    if not tail:
        return name, None, None
    if tail.isdigit():
        return name, int(tail), None
    return name, None, check_stage(tail)
