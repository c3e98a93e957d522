"""CLI subcommand `automl registry`: The model registry (see issue 8)."""
from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers nothing yet: `automl registry` is being built in this module."""
