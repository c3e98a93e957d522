"""CLI subcommand `automl serve`: Start a Ray Serve REST endpoint for a saved model (see issue 7)."""
from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers nothing yet: `automl serve` is being built in this module."""
