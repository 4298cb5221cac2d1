"""Helpers for driving the command line: as a real subprocess, or through ``main`` in this process."""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from kmeans_limit.cli import main


def _run_cli(*args, cwd=None, timeout=180) -> subprocess.CompletedProcess:
    """``python -m kmeans_limit.cli ARGS`` in a subprocess (stdout and stderr captured, not a terminal)."""
    env = {k: v for k, v in os.environ.items() if k != "KMEANS_LIMIT_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "kmeans_limit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
        check=False,
    )


def _assert_one_line_error(stderr: str, *fragments: str) -> None:
    """stderr is exactly one line, ``kmeans-limit: error: ...``, holding every fragment and no traceback."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("kmeans-limit: error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def cli_in_process(capsys, monkeypatch):
    """Run ``main(args)`` here (the script's own entry point) and return its exit code and output."""
    monkeypatch.delenv("KMEANS_LIMIT_DEBUG", raising=False)

    def run(*args):
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)

    return run


@pytest.fixture
def run_cli():
    """The subprocess runner: ``run_cli(*args, cwd=None, timeout=180)``."""
    return _run_cli


@pytest.fixture
def one_line_error():
    """The check of an error's stderr: ``one_line_error(stderr, *fragments)``."""
    return _assert_one_line_error
