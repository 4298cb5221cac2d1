"""Progress on stderr for the command line: shown on a terminal, silent in pipes, logs and ``--quiet``."""

from __future__ import annotations

import sys
import time

import click

__all__ = ["Progress"]


class Progress:
    """Whether to show progress, one-line notes of each stage of a long job, and notes that matter.

    Parameters
    ----------
    quiet : bool
        ``--quiet`` was given: show nothing.

    Notes
    -----
    Stage notes (:meth:`note`) and bars (:meth:`bar`, and the samplers' own bars, which
    ``enabled`` switches on) appear only on a terminal. Notes about a choice made for the user
    (:meth:`say`, e.g. leaving out the pointwise log-likelihood) appear unless ``--quiet``.
    """

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.enabled = not quiet and sys.stderr.isatty()
        self.start = time.perf_counter()

    def note(self, message: str) -> None:
        """Say on stderr what is being done now, with the time since the start (terminal only)."""
        if self.enabled:
            click.echo(f"kmeans-limit [{time.perf_counter() - self.start:.1f} s]: {message}", err=True)

    def say(self, message: str) -> None:
        """A note on stderr that the user should see even in a log: ``kmeans-limit: note: ...``."""
        if not self.quiet:
            click.echo(f"kmeans-limit: note: {message}", err=True)

    def bar(self, iterable, *, total: int | None = None, desc: str = ""):
        """``iterable`` wrapped in a tqdm bar on stderr, or unchanged when progress is off."""
        if not self.enabled:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)
