"""Start-up and demo times of the command line, as a user meets them (issue 18).

Runs each command as a fresh subprocess (the installed ``kmeans-limit`` next to this interpreter, or
``python -m kmeans_limit.cli``), a few times, and prints the wall-clock time (``time.perf_counter``
around the subprocess) and the CPU time of the child (``resource.getrusage``), best and median, with
the machine's load. Goals: ``--help``/``--version`` under 0.5 s, ``sample -n 5 -k 3`` under 3 s,
the demo under 10 s wall.

    python benchmarks/bench_cli.py              # every case, 3 runs each (the demo once)
    python benchmarks/bench_cli.py --repeat 5 --birch1 /work/shared/data/sipu/birch1.data.gz

``--birch1 PATH`` also times the README's mini-batch run, ``posterior PATH -k 100 --method svi
--batch-size 1000`` (once; minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"--version": 0.5, "--help": 0.5, "sample -n 5 -k 3": 3.0, "demo": 10.0}


def command() -> list[str]:
    script = Path(sys.executable).with_name("kmeans-limit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kmeans_limit.cli"]


def timed(args: list[str], cwd: str) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``kmeans-limit ARGS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([*command(), *args], cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"kmeans-limit {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def machine() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each quick case (default 3)")
    parser.add_argument("--demo-repeat", type=int, default=1, help="runs of the demo (default 1)")
    parser.add_argument("--birch1", type=Path, help="also time the birch1 mini-batch SVI run on this file")
    options = parser.parse_args()
    cases = [
        ("--version", ["--version"], options.repeat),
        ("--help", ["--help"], options.repeat),
        ("sample -n 5 -k 3", ["sample", "-n", "5", "-k", "3"], options.repeat),
        ("demo", None, options.demo_repeat),
    ]
    print(f"machine: {machine()}; python {platform.python_version()}; {' '.join(command())}")
    print(f"{'case':<22} {'runs':>4} {'wall best':>10} {'wall median':>12} {'cpu median':>11} {'goal':>7}")
    with tempfile.TemporaryDirectory() as folder:
        for name, args, runs in cases:
            walls, cpus = [], []
            for i in range(runs):
                run_args = args or ["demo", "--out", str(Path(folder) / f"demo{i}"), "--quiet"]
                wall, cpu = timed(run_args, folder)
                walls.append(wall)
                cpus.append(cpu)
            goal = GOALS.get(name)
            verdict = "" if goal is None else ("ok" if min(walls) < goal else "MISSED")
            print(
                f"{name:<22} {runs:>4} {min(walls):>9.2f}s {statistics.median(walls):>11.2f}s "
                f"{statistics.median(cpus):>10.2f}s {goal:>6}s {verdict}"
            )
        if options.birch1 is not None:
            args = ["posterior", str(options.birch1), "-k", "100", "--method", "svi", "--batch-size", "1000"]
            wall, cpu = timed([*args, "--out", str(Path(folder) / "b"), "--quiet"], folder)
            print(f"{'birch1 svi K=100':<22} {1:>4} {wall:>9.1f}s {wall:>11.1f}s {cpu:>10.1f}s {300:>6}s")
    print(f"after: {machine()}")


if __name__ == "__main__":
    main()
