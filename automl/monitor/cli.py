"""CLI subcommand `automl monitor`: Drift monitoring against the training baseline (see issue 8)."""
from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers nothing yet: `automl monitor` is being built in this module."""
