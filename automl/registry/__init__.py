"""Model registry: named model groups with numbered, checksummed versions and stages.

Layout under the root (a local directory or ``s3://bucket/prefix``)::

    NAME/artifacts/<id>/...          the model files of one version (uploaded first)
    NAME/versions/000001.json        the version record: files + sha256, metrics, params, profile,
                                     lineage; written once with a conditional create (the commit point)
    NAME/stages/<time>-<ver>-<id>.json   one object per stage change: who, when, why

A version exists once its record exists, and its record is written only after all its files
are in place, so a reader never sees a half-written version. Two registrations racing for the
same number both try to create the same record; one wins, the other takes the next number.

    from automl.registry import Registry
    reg = Registry("s3://models/registry")
    mv = reg.register("runs/adult", "adult-income")
    reg.promote("adult-income", mv.version, "production", actor="ana", reason="beats v1 by 0.4 AUC")
    predictor = reg.load("adult-income")            # the production version, checksums verified
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from automl.exceptions import ConfigError, IntegrityError
from automl.predictor import Predictor
from automl.registry.metadata import describe, verify_files, version_files
from automl.registry.records import (
    _NAME,
    STAGES,
    URI_SCHEME,
    ModelVersion,
    StageChange,
    check_name,
    check_stage,
    default_actor,
    default_cache,
    default_root,
    parse_ref,
)
from automl.registry.store import Store, open_store

logger = logging.getLogger(__name__)


class Registry:
    """A model registry rooted at a local directory or an ``s3://`` URI (default: the
    ``AUTOML_REGISTRY`` environment variable, else ``~/.automl/registry``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = str(root) if root else default_root()
        self.store: Store = open_store(self.root)

    # -- writing ------------------------------------------------------------------------------------
    def register(
        self,
        model_dir: str | Path,
        name: str,
        *,
        description: str | None = None,
        stage: str = "none",
        actor: str | None = None,
        reason: str | None = None,
        training_data: str | None = None,
    ) -> ModelVersion:
        """Add the model in ``model_dir`` (a run or saved-model directory) as the next version of
        ``name``. The model must load (its checksums.json is verified first)."""
        check_name(name)
        check_stage(stage)
        src = Path(model_dir)
        if not src.is_dir():
            raise ConfigError(
                f"model directory {str(src)!r} does not exist; give a run directory "
                "(automl fit --output) or a saved model directory"
            )
        Predictor.load(src)  # refuses a directory that is not an intact saved model
        files = version_files(src)
        actor = actor or default_actor()
        record = {
            "name": name,
            "created_at": _now(),
            "created_by": actor,
            "description": description,
            "artifact": f"{name}/artifacts/{uuid.uuid4().hex}",
            "files": files,
            **describe(src, training_data=training_data),
        }
        try:
            self.store.put_tree(src, list(files), record["artifact"])
            version = self._commit(name, record)
        except BaseException:
            self.store.remove_tree(record["artifact"])
            raise
        logger.info("registered %s as %s:%d in %s (%d files)", src, name, version, self.root, len(files))
        self._change(name, version, stage, actor, reason or "registered")
        return self.get(name, version)

    def _commit(self, name: str, record: dict[str, Any]) -> int:
        for _ in range(1000):
            version = max(self._versions(name), default=0) + 1
            body = json.dumps({**record, "version": version}, indent=1, default=str).encode()
            if self.store.create(_record_key(name, version), body):
                return version
            logger.info(
                "version %d of %r was taken by a concurrent registration; trying the next", version, name
            )
        raise RuntimeError(f"could not claim a version number for {name!r} after 1000 attempts")

    def promote(self, name: str, version: int, stage: str, *, actor: str, reason: str) -> ModelVersion:
        """Move ``name:version`` to ``stage``. Promoting to production archives the version that
        was in production before (recorded as its own change)."""
        check_stage(stage)
        if not reason or not str(reason).strip():
            raise ConfigError("a stage change needs a reason (why this version goes to this stage)")
        self.get(name, version)
        self._change(name, int(version), stage, actor or default_actor(), reason)
        return self.get(name, version)

    def _change(self, name: str, version: int, stage: str, actor: str, reason: str) -> None:
        before = self._stages(name) if stage == "production" else {}
        self._write_change(name, version, stage, actor, reason)  # first: production is never empty
        for other, changes in before.items():
            if other != version and changes[-1].stage == "production":
                self._write_change(
                    name, other, "archived", actor, f"replaced in production by version {version}"
                )

    def _write_change(self, name: str, version: int, stage: str, actor: str, reason: str) -> None:
        ns = time.time_ns()
        change = StageChange(version, stage, actor, _now(), reason, ns)
        key = f"{name}/stages/{ns:020d}-{version:06d}-{uuid.uuid4().hex[:8]}.json"
        self.store.create(key, json.dumps(asdict(change)).encode())
        logger.info("%s:%d -> stage %s by %s: %s", name, version, stage, actor, reason)

    # -- reading ------------------------------------------------------------------------------------
    def _versions(self, name: str) -> list[int]:
        return sorted(
            int(f[:-5])
            for f in self.store.listdir(f"{name}/versions")
            if f.endswith(".json") and f[:-5].isdigit()
        )

    def _stages(self, name: str) -> dict[int, list[StageChange]]:
        out: dict[int, list[StageChange]] = {}
        for key in self.store.listdir(f"{name}/stages"):
            if key.endswith(".json"):
                c = StageChange(**json.loads(self.store.read_bytes(f"{name}/stages/{key}")))
                out.setdefault(c.version, []).append(c)
        for changes in out.values():
            changes.sort(key=lambda c: c.at_ns)
        return out

    def names(self) -> list[str]:
        return [n for n in self.store.listdir("") if _NAME.match(n) and self._versions(n)]

    def list(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of ``name``, or of every model), oldest first."""
        names = [check_name(name)] if name else self.names()
        out = []
        for n in names:
            stages = self._stages(n)
            out += [self._load_version(n, v, stages) for v in self._versions(n)]
        return out

    def get(self, name: str, version: int | None = None, stage: str | None = None) -> ModelVersion:
        """One version: by number, else the one in ``stage``, else the latest."""
        check_name(name)
        versions = self._versions(name)
        if not versions:
            raise ConfigError(
                f"no model named {name!r} in the registry {self.root!r}; registered models: {self.names()}"
            )
        stages = self._stages(name)
        if version is not None:
            if int(version) not in versions:
                raise ConfigError(f"model {name!r} has no version {version}; its versions are {versions}")
            return self._load_version(name, int(version), stages)
        if stage is None:
            return self._load_version(name, versions[-1], stages)
        check_stage(stage)
        in_stage = [(c[-1].at_ns, v) for v, c in stages.items() if c[-1].stage == stage and v in versions]
        if not in_stage:
            now = {v: stages[v][-1].stage if v in stages else "none" for v in versions}
            raise ConfigError(
                f"model {name!r} has no version in stage {stage!r} (stages now: {now}); promote one "
                f"with `automl registry promote {name}:VERSION --stage {stage} --reason ...`"
            )
        return self._load_version(name, max(in_stage)[1], stages)

    def _load_version(self, name: str, version: int, stages: dict[int, list[StageChange]]) -> ModelVersion:
        rec = json.loads(self.store.read_bytes(_record_key(name, version)))
        history = stages.get(version, [])
        keep = {f for f in ModelVersion.__dataclass_fields__ if f not in ("stage", "history")}
        return ModelVersion(
            **{k: rec.get(k) for k in keep}, stage=history[-1].stage if history else "none", history=history
        )

    # -- using a version ----------------------------------------------------------------------------
    def local_dir(self, mv: ModelVersion) -> Path:
        """A local directory with the version's files, verified against the sha256 recorded at
        registration (downloaded to a cache first when the registry is remote)."""
        local = self.store.local_dir(mv.artifact)
        if local is not None:
            _verify(mv, local)
            return local
        cache = default_cache() / hashlib.sha256(self.root.encode()).hexdigest()[:16] / mv.name
        target = cache / f"{mv.version:06d}-{mv.artifact.rsplit('/', 1)[-1]}"
        if target.is_dir():
            try:
                _verify(mv, target)
                return target
            except IntegrityError as exc:
                logger.warning("cached copy of %s is damaged (%s); downloading it again", mv.uri, exc)
                shutil.rmtree(target, ignore_errors=True)
        tmp = cache / f".tmp-{uuid.uuid4().hex}"
        try:
            self.store.get_tree(mv.artifact, list(mv.files), tmp)
            _verify(mv, tmp)
            try:
                os.rename(tmp, target)
            except OSError:  # another process put the same version there first
                _verify(mv, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def load(self, name: str, version: int | None = None, stage: str = "production") -> Predictor:
        """The Predictor of ``name:version``, or of the version in ``stage`` (default production)."""
        mv = self.get(name, version=version, stage=None if version is not None else stage)
        return Predictor.load(self.local_dir(mv))


def _verify(mv: ModelVersion, directory: Path) -> None:
    bad, extra = verify_files(directory, mv.files) if directory.is_dir() else (sorted(mv.files), [])
    if bad or extra:
        detail = "; ".join(
            x
            for x in (
                f"changed or missing: {bad[:10]}" if bad else "",
                f"unexpected: {extra[:10]}" if extra else "",
            )
            if x
        )
        raise IntegrityError(
            f"{mv.uri}: the files in {str(directory)!r} do not match the checksums recorded at "
            f"registration ({detail}); refusing to load or serve it. Re-register the model from "
            "its original directory."
        )


def _record_key(name: str, version: int) -> str:
    return f"{name}/versions/{version:06d}.json"


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def resolve_model_uri(uri: str, *, root: str | None = None) -> str:
    """Turn ``registry://NAME[:VERSION|:STAGE]`` into a verified local model directory (the
    production version when neither is given). Anything else is returned unchanged."""
    if not str(uri).startswith(URI_SCHEME):
        return str(uri)
    ref = str(uri)[len(URI_SCHEME) :].strip("/")
    if not ref:
        raise ConfigError(f"{uri!r} names no model; use registry://NAME[:VERSION]")
    name, version, stage = parse_ref(ref)
    reg = Registry(root)
    mv = reg.get(name, version=version, stage=None if version is not None else (stage or "production"))
    path = reg.local_dir(mv)
    logger.info("%s is %s (stage %s) in %s", uri, mv.uri, mv.stage, path)
    return str(path)


__all__ = [
    "STAGES",
    "URI_SCHEME",
    "ModelVersion",
    "Registry",
    "StageChange",
    "check_stage",
    "default_actor",
    "default_cache",
    "default_root",
    "parse_ref",
    "resolve_model_uri",
]
