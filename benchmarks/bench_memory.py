"""Peak resident memory of ``anneal`` (or ``lloyd``, ``em``) on large data, against the data's size.

Run from the repository root::

    .venv/bin/python benchmarks/bench_memory.py                      # N = 2,000,000, D = 32, K = 256, float32
    .venv/bin/python benchmarks/bench_memory.py --n-samples 200000 2000000 --n-clusters 16 256
    .venv/bin/python benchmarks/bench_memory.py --function lloyd --max-iter 10 --trace /tmp/rss.tsv
    .venv/bin/python benchmarks/bench_memory.py --n-clusters 16 --shift 10 --mmap-threshold 131072
    .venv/bin/python benchmarks/bench_memory.py --timeout 2400                 # stop after 40 minutes

Each (N, K) runs in a fresh child process, which imports torch and the package, draws the data
(``K`` random Gaussian centres in ``D`` dimensions, ``N`` rows around them with ``--noise`` spread,
made in chunks into one preallocated tensor, so drawing them costs the data's size and no more),
then resets the kernel's peak-RSS mark (``/proc/self/clear_refs`` ← 5) and fits. The table says:

- ``data MB``: ``N·D`` times the item size; ``import MB``: RSS after importing torch, the package and
  the function fitted (whose modules load numba and SciPy; the package loads them only then);
  ``pre-fit MB``: RSS with the data made (about import + data);
- ``peak MB``: the peak RSS during the fit (``VmHWM`` after the reset; without the reset, the whole
  life's peak) and ``fit adds``: peak minus pre-fit, the memory the fit itself needs;
- ``target MB``: import + data + ``--budget-mb`` (issue 7: the data's size plus 300 MB, that is no
  N×K matrix), and whether the peak stays within it; ``maxrss MB``: the child's ``ru_maxrss`` as
  the parent's ``wait4`` reports it (a cross-check that includes drawing the data);
- the fit's wall time and its objective (the inertia; minus the log-likelihood for ``em``).

A thread samples the child's RSS every ``--trace-interval`` seconds during the fit; ``--trace FILE``
writes the samples as ``seconds  rss_mb  heap_free_mb`` lines (one block per run), to see when the
peaks happen. ``--timeout S``
kills a child after S seconds; its row then gives the ``ru_maxrss`` reached so far (a lower bound
on the peak) and its trace is kept.

RSS counts what the allocator keeps as well as what is live: glibc serves blocks below its mmap
threshold (which grows, up to 32 MB, as large blocks are freed) from heaps that it seldom hands
back, so freed chunk-sized buffers stay resident. ``--mmap-threshold 131072`` fixes the threshold
(and the trim threshold) for the child, so that the peak is closer to the live tensors; the
difference between the two runs is the allocator's cache. Under each row a comment gives the
largest sampled RSS and how much of it glibc held free (``mallinfo2().fordblks``, read at most once a
second). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import itertools
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

FUNCTIONS = ("anneal", "lloyd", "em")
MB = 1 << 20


def _status_mb() -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of this process, in MB (Linux ``/proc/self/status``)."""
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0]) / 1024
    return values


def _trim_heap() -> None:
    """Hand freed heap memory back to the kernel (glibc ``malloc_trim``), so that RSS is what is live."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux >= 4.0); whether that worked."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc >= 2.33): byte counts summed over all its arenas."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
        + ("fordblks", "keepcost")
    ]


def _heap_free_mb() -> float:
    """Bytes glibc holds free in its heaps (``fordblks``), in MB: resident but not live (nan without glibc)."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return float("nan")
    mallinfo2.restype = _MallInfo2
    return mallinfo2().fordblks / MB


class _Sampler(threading.Thread):
    """RSS every ``interval`` seconds while the fit runs, and glibc's free heap bytes once a second.

    ``mallinfo2`` locks every arena while it walks the free lists: called 20 times a second it
    slowed a fit ten-fold, so it runs at most once a second (the free bytes given with a sample
    are the latest such reading). Keeps the sample of largest RSS; with a ``path``, appends
    ``seconds  rss_mb  heap_free_mb`` lines to it as it goes (torch releases the GIL in its
    kernels), so that a run killed by ``--timeout`` leaves its trace behind.
    """

    HEAP_INTERVAL = 1.0

    def __init__(self, path: str | None, interval: float):
        super().__init__(daemon=True)
        self.path, self.interval, self.stop = path, interval, threading.Event()
        self.top = (0.0, 0.0, float("nan"))  # (seconds, rss, heap free) at the largest RSS seen

    def run(self) -> None:
        start = time.perf_counter()
        free, last_heap = float("nan"), -math.inf
        with open(self.path, "a") if self.path else contextlib.nullcontext() as handle:
            while not self.stop.is_set():
                now, rss = time.perf_counter() - start, _status_mb()["VmRSS"]
                if now - last_heap >= self.HEAP_INTERVAL:
                    free, last_heap = _heap_free_mb(), now
                if rss > self.top[1]:
                    self.top = (now, rss, free)
                if handle is not None:
                    handle.write(f"{now:.3f}\t{rss:.1f}\t{free:.1f}\n")
                    handle.flush()
                self.stop.wait(self.interval)


def make_data(n: int, d: int, k: int, dtype, noise: float, seed: int, shift: float = 0.0):
    """``n`` rows around ``k`` centres drawn from ``Normal(shift, I_d)``, spread ``noise``; chunked, reproducible.

    In 32 dimensions centres sit about ``sqrt(2d) = 8`` apart and a row at ``noise = 0.5`` about
    ``0.5·sqrt(d) = 2.8`` from its own: well separated, but every cluster is a real Gaussian blob.
    With ``shift = 0`` the data mean is near the origin; a large ``shift`` gives data far from it
    (as raw, unstandardized features often are), which the fits may centre first.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=generator, dtype=torch.float64) + shift
    X = torch.empty(n, d, dtype=dtype)
    chunk = 1 << 13  # 2 MB float64 blocks: small enough to leave no freed heap behind
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        labels = torch.randint(k, (stop - start,), generator=generator)
        noise_rows = torch.randn(stop - start, d, generator=generator, dtype=torch.float64)
        X[start:stop] = centres[labels] + noise * noise_rows
    return X


def _prepare(function: str, X, k: int, seed: int, max_iter: int | None):
    """The fit to measure, as a function of no arguments returning its objective.

    The objective is the inertia (minus the log-likelihood for ``em``). Lloyd and EM start from
    k distinct random rows, drawn here, before the peak-RSS reset, so that drawing them is not counted.
    """
    import torch

    from kmeans_limit import inference

    if function == "anneal":
        return lambda: inference.anneal(X, k, seed=seed).inertia
    generator = torch.Generator().manual_seed(seed)
    init = X[torch.randperm(X.shape[0], generator=generator)[:k]].clone()
    options = {} if max_iter is None else {"max_iter": max_iter}
    if function == "lloyd":
        return lambda: inference.lloyd(X, init, **options).inertia
    return lambda: -inference.em(X, init, **options).log_likelihood


def child(config: dict) -> dict:
    """The measurement, in a fresh process: baseline, data, then the fit after a peak-RSS reset."""
    import warnings

    import torch

    from kmeans_limit import inference

    # Importing the fitted function (its modules load numba and SciPy: ~67 MB) is part of the
    # baseline; the first call's loading of its compiled kernels (~90 MB) is not: the fit pays it.
    getattr(inference, config["function"])

    if config["threads"] is not None:
        torch.set_num_threads(config["threads"])
    gc.collect()
    _trim_heap()
    imported = _status_mb()["VmRSS"]
    dtype = getattr(torch, config["dtype"])
    X = make_data(
        config["n"], config["d"], config["k"], dtype, config["noise"], config["seed"], config["shift"]
    )
    fit = _prepare(config["function"], X, config["k"], config["seed"], config["max_iter"])
    gc.collect()
    _trim_heap()
    before = _status_mb()
    data_mb = X.numel() * X.element_size() / MB
    print(json.dumps({"data": data_mb, "imported": imported, "before": before["VmRSS"]}), flush=True)
    reset = _reset_peak()
    sampler = _Sampler(config["trace"], config["trace_interval"])
    sampler.start()
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        objective = fit()
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    after = _status_mb()
    return {
        "data_peak": before["VmHWM"],
        "peak": after["VmHWM"],
        "after": after["VmRSS"],
        "reset": reset,
        "sampled_peak": sampler.top,
        "wall": wall,
        "objective": objective,
        "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:80]}" for w in caught}),
        "threads": torch.get_num_threads(),
    }


def run_child(config: dict, timeout: float | None, mmap_threshold: int | None = None) -> dict:
    """:func:`child` in a fresh interpreter; adds its ``ru_maxrss`` (from ``wait4``) in MB.

    A child killed after ``timeout`` seconds still gives its ``ru_maxrss``: the peak so far.
    """
    command = [sys.executable, __file__, "--child", json.dumps(config)]
    env = dict(os.environ)
    if mmap_threshold is not None:  # glibc: blocks from this size on are mmapped and unmapped when freed
        env.update(MALLOC_MMAP_THRESHOLD_=str(mmap_threshold), MALLOC_TRIM_THRESHOLD_=str(mmap_threshold))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        process.kill()

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer is not None:
        timer.start()
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if timer is not None:
        timer.cancel()
    maxrss = usage.ru_maxrss / 1024  # kilobytes on Linux
    reports = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    row = {"maxrss": maxrss}
    for report in reports:
        row.update(report)
    if process.returncode != 0:
        why = (
            f"killed after --timeout {timeout:g} s" if fired.is_set() else f"exit status {process.returncode}"
        )
        row["failed"] = why
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, nargs="+", default=[2_000_000])
    parser.add_argument("--n-features", type=int, default=32)
    parser.add_argument("--n-clusters", type=int, nargs="+", default=[256])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--function", choices=FUNCTIONS, default="anneal")
    parser.add_argument("--max-iter", type=int, default=None, help="lloyd/em only (default theirs)")
    parser.add_argument("--noise", type=float, default=0.5, help="spread of each cluster (centres ~ N(0, I))")
    parser.add_argument("--shift", type=float, default=0.0, help="added to every coordinate of the data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the child")
    parser.add_argument("--budget-mb", type=float, default=300.0, help="allowed above the data (issue 7)")
    parser.add_argument("--timeout", type=float, default=None, help="kill a child after this many seconds")
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=None,
        help="glibc MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ for the child, in bytes",
    )
    parser.add_argument("--trace", type=Path, default=None, help="write the RSS over time to this file")
    parser.add_argument("--trace-interval", type=float, default=0.05)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _data import machine

    print(f"# {machine()}")
    print(
        f"# {args.function}, D = {args.n_features}, {args.dtype}, noise {args.noise}, shift {args.shift:g}, seed {args.seed}; MB = 2**20 bytes"
    )
    header = (
        f"{'N':>9} {'K':>4} {'data MB':>8} {'import MB':>9} {'pre-fit MB':>10} {'peak MB':>8} "
        f"{'fit adds':>8} {'target MB':>9} {'met':>4} {'maxrss MB':>9} {'wall s':>8} {'objective':>14}"
    )
    print(header)
    traced = False
    for n, k in itertools.product(args.n_samples, args.n_clusters):
        config = {
            "n": n,
            "d": args.n_features,
            "k": k,
            "dtype": args.dtype,
            "function": args.function,
            "max_iter": args.max_iter,
            "noise": args.noise,
            "shift": args.shift,
            "seed": args.seed,
            "threads": args.threads,
            "trace": None if args.trace is None else str(args.trace),
            "trace_interval": args.trace_interval,
        }
        if args.trace is not None:
            with open(args.trace, "a" if traced else "w") as handle:
                handle.write(f"{'' if not traced else chr(10)}# N={n} K={k} {args.function}\n")
            traced = True
        row = run_child(config, args.timeout, args.mmap_threshold)
        if "failed" in row:
            line = f"{n:>9} {k:>4}  {row['failed']}; ru_maxrss so far {row['maxrss']:.0f} MB"
            if "before" in row:
                target = row["imported"] + row["data"] + args.budget_mb
                line += (
                    f" (data {row['data']:.0f}, import {row['imported']:.0f}, pre-fit {row['before']:.0f},"
                    f" so far adds {row['maxrss'] - row['before']:.0f}, target {target:.0f})"
                )
            print(line, flush=True)
            continue
        target = row["imported"] + row["data"] + args.budget_mb
        met = "yes" if row["peak"] <= target else "NO"
        print(
            f"{n:>9} {k:>4} {row['data']:>8.0f} {row['imported']:>9.0f} {row['before']:>10.0f} "
            f"{row['peak']:>8.0f} {row['peak'] - row['before']:>8.0f} {target:>9.0f} {met:>4} "
            f"{row['maxrss']:>9.0f} {row['wall']:>8.1f} {row['objective']:>14.6g}",
            flush=True,
        )
        when, rss, free = row["sampled_peak"]
        print(
            f"#   largest sampled RSS {rss:.0f} MB at {when:.1f} s; glibc held {free:.0f} MB of it free "
            "(its reading up to 1 s before)"
        )
        if not row["reset"]:
            print("#   (peak-RSS reset refused: 'peak' is the whole child's, data drawing included)")
        for warning in row["warnings"]:
            print(f"#   warned {warning}")


if __name__ == "__main__":
    main()
