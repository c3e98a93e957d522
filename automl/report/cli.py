"""CLI subcommand `automl report`: Write the HTML report of a run (see issue 9)."""
from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers nothing yet: `automl report` is being built in this module."""
