"""CLI subcommand ``automl registry register|list|show|promote``."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def _root_default() -> str:
    return os.environ.get("AUTOML_REGISTRY") or "~/.automl/registry"


def add_commands(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        default=None,
        help=f"registry root: a directory or s3:// URI (default: $AUTOML_REGISTRY or {_root_default()})",
    )
    reg = sub.add_parser("registry", help="model registry: register, list, show and promote model versions")
    rsub = reg.add_subparsers(dest="registry_command", required=True)

    r = rsub.add_parser("register", parents=[common], help="add a run or model directory as a new version")
    r.add_argument("dir", help="a run directory or a saved model directory")
    r.add_argument("--name", required=True, help="the model group, e.g. adult-income")
    r.add_argument("--description")
    r.add_argument("--stage", default="none", choices=["none", "staging", "production", "archived"])
    r.add_argument("--actor", help="who registers (default: $AUTOML_ACTOR or the user name)")
    r.add_argument("--reason", help="why (recorded with the initial stage)")
    r.add_argument("--training-data", help="the training table (local file): its sha256 is recorded")
    r.set_defaults(func=cmd_register)

    ls = rsub.add_parser("list", parents=[common], help="list models and versions")
    ls.add_argument("name", nargs="?")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    ls.set_defaults(func=cmd_list)

    sh = rsub.add_parser("show", parents=[common], help="details of NAME[:VERSION|:STAGE] (default: latest)")
    sh.add_argument("ref", help="NAME, NAME:VERSION or NAME:STAGE")
    sh.add_argument("--format", choices=["text", "json"], default="text")
    sh.set_defaults(func=cmd_show)

    p = rsub.add_parser("promote", parents=[common], help="move NAME:VERSION to a stage")
    p.add_argument("ref", help="NAME:VERSION")
    p.add_argument("--stage", required=True, choices=["none", "staging", "production", "archived"])
    p.add_argument("--reason", help="why (recorded with who and when); please give one")
    p.add_argument("--actor", help="who (default: $AUTOML_ACTOR or the user name)")
    p.set_defaults(func=cmd_promote)


def _registry(a: argparse.Namespace) -> Any:
    from automl.registry import Registry

    return Registry(os.path.expanduser(a.root) if a.root else None)


def _score(mv: Any) -> str:
    m = mv.metrics or {}
    val = m.get("score_val")
    return f"{m.get('metric')}={val:.4f}" if isinstance(val, (int, float)) else "-"


def cmd_register(a: argparse.Namespace) -> int:
    mv = _registry(a).register(
        a.dir,
        a.name,
        description=a.description,
        stage=a.stage,
        actor=a.actor,
        reason=a.reason,
        training_data=a.training_data,
    )
    print(f"registered {mv.uri} (stage {mv.stage}, {_score(mv)}, {len(mv.files)} files)")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    versions = _registry(a).list(a.name)
    if a.format == "json":
        print(
            json.dumps(
                [
                    {
                        "name": v.name,
                        "version": v.version,
                        "stage": v.stage,
                        "created_at": v.created_at,
                        "created_by": v.created_by,
                        "metrics": v.metrics,
                        "uri": v.uri,
                    }
                    for v in versions
                ],
                indent=1,
                default=str,
            )
        )
        return 0
    if not versions:
        print("no models registered")
        return 0
    print(f"{'name':<24} {'version':>7}  {'stage':<10} {'created_at':<24} {'created_by':<12} score")
    for v in versions:
        print(f"{v.name:<24} {v.version:>7}  {v.stage:<10} {v.created_at:<24} {v.created_by:<12} {_score(v)}")
    return 0


def cmd_show(a: argparse.Namespace) -> int:
    from automl.registry import parse_ref

    name, version, stage = parse_ref(a.ref)
    mv = _registry(a).get(name, version=version, stage=stage)
    if a.format == "json":
        print(json.dumps(mv.to_dict(), indent=1, default=str))
        return 0
    lin = mv.lineage or {}
    lines = [
        f"{mv.uri}  stage: {mv.stage}",
        f"created {mv.created_at} by {mv.created_by}" + (f": {mv.description}" if mv.description else ""),
        f"problem: {mv.problem_type}, target {mv.target!r}"
        + (f", classes {mv.classes}" if mv.classes else ""),
        "metrics: "
        + json.dumps({k: v for k, v in (mv.metrics or {}).items() if k != "validation"}, default=str),
        "members: "
        + ", ".join(f"{n} ({p['family']}, weight {p['weight']})" for n, p in (mv.params or {}).items()),
        f"training data: {(lin.get('training_data') or {})}",
        f"trained {lin.get('trained_at')}; settings {json.dumps(lin.get('training_settings'), default=str)}",
        f"git: {lin.get('git')}; packages: "
        + ", ".join(f"{k} {v}" for k, v in (lin.get("packages") or {}).items()),
        f"files: {len(mv.files)} (sha256 verified on load)",
        "stage history:",
    ]
    lines += [f"  {c.at}  {c.stage:<10} by {c.actor}: {c.reason}" for c in mv.history]
    print("\n".join(lines))
    return 0


def cmd_promote(a: argparse.Namespace) -> int:
    from automl.exceptions import ConfigError
    from automl.registry import default_actor, parse_ref

    name, version, _ = parse_ref(a.ref)
    if version is None:
        raise ConfigError(f"promote needs NAME:VERSION with a version number; got {a.ref!r}")
    reason = a.reason or "no reason given (pass --reason)"
    mv = _registry(a).promote(name, version, a.stage, actor=a.actor or default_actor(), reason=reason)
    print(f"{mv.uri} is now in stage {mv.stage}")
    return 0
