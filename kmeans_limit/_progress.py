"""Progress on stderr for the command line: shown on a terminal, silent in pipes, logs and ``--quiet``."""

from __future__ import annotations

import sys

import click

__all__ = ["Progress"]


class Progress:
    """Whether to show progress, and one-line notes of each stage of a long job.

    Parameters
    ----------
    quiet : bool
        ``--quiet`` was given: show nothing.
    """

    def __init__(self, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()

    def note(self, message: str) -> None:
        """Say on stderr what is being done now (only when progress is shown)."""
        if self.enabled:
            click.echo(f"kmeans-limit: {message}", err=True)

    def bar(self, iterable, *, total: int | None = None, desc: str = ""):
        """``iterable`` wrapped in a tqdm bar on stderr, or unchanged when progress is off."""
        if not self.enabled:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)
