"""Several values of ``--batch-size``, ``--model`` or ``--executor`` in one command: every combination
runs in turn, then a table, ``sweep.csv`` and ``sweep.png`` (throughput against p50 latency) sum it up."""
from __future__ import annotations

import csv
import itertools
import os
import re
import secrets
from typing import Any, Callable, Dict, List, Sequence, Tuple

from .atomic import atomic_file

SWEEP_FLAGS = ("--batch-size", "--model", "--executor")
COLUMNS = ("model", "executor", "batch_size", "throughput_mean", "throughput_std", "latency_p50_ms",
           "latency_p99_ms", "compile_s", "peak_host_rss_mb", "peak_device_mb", "log_folder")
_VALUE = re.compile(r"^(?!-)|^-\d")


def split_sweep(argv: Sequence[str]) -> Tuple[List[str], Dict[str, List[str]]]:
    """argv without the sweep flags, and each sweep flag's values in the order given."""
    base: List[str] = []
    values: Dict[str, List[str]] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        flag, eq, inline = word.partition("=")
        if flag in SWEEP_FLAGS:
            found = [inline] if eq else []
            i += 1
            while not eq and i < len(argv) and _VALUE.match(argv[i]):
                found.append(argv[i])
                i += 1
            values[flag] = values.get(flag, []) + (found or [""])
            continue
        base.append(word)
        i += 1
    return base, values


def combinations(argv: Sequence[str]) -> List[List[str]]:
    """One argv per combination of the sweep flags' values (one argv when nothing is swept)."""
    base, values = split_sweep(argv)
    flags = list(values)
    return [base + [w for flag, v in zip(flags, combo) for w in (flag, v)]
            for combo in itertools.product(*(values[f] for f in flags))]


def row(results: Dict[str, Any], folder: str) -> Dict[str, Any]:
    metrics = results.get("metrics", {})
    p50 = results.get("latency_p50_ms")
    if p50 is None and metrics.get("throughput_mean"):
        per_call = results["batch_size"] * results["device_iterations"] * results["replicas"]
        p50 = 1e3 * per_call / metrics["throughput_mean"] / max(1, results["device_iterations"])
    return {"model": results["model"], "executor": results.get("executor"), "batch_size": results["batch_size"],
            "throughput_mean": round(metrics.get("throughput_mean", 0.0), 2),
            "throughput_std": round(metrics.get("throughput_std", 0.0), 2),
            "latency_p50_ms": None if p50 is None else round(p50, 3),
            "latency_p99_ms": results.get("latency_p99_ms"), "compile_s": results.get("compile_s"),
            "peak_host_rss_mb": results.get("peak_host_rss_mb"), "peak_device_mb": results.get("peak_device_mb"),
            "log_folder": folder}


def table(rows: List[Dict[str, Any]]) -> List[str]:
    head = f"{'model':<20} {'executor':<12} {'batch':>5} {'imgs/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'peak RSS MB':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        fmt = lambda v, spec: format(v, spec) if isinstance(v, (int, float)) else "N/A"  # noqa: E731
        lines.append(f"{r['model']:<20} {str(r['executor']):<12} {r['batch_size']:>5} {fmt(r['throughput_mean'], '10.2f')} "
                     f"{fmt(r['latency_p50_ms'], '9.3f'):>9} {fmt(r['latency_p99_ms'], '9.3f'):>9} "
                     f"{fmt(r['peak_host_rss_mb'], '11.1f'):>11}")
    return lines


def sweep_folder(log_path: str) -> str:
    path = os.path.join(log_path, f"sweep_{secrets.token_hex(3)}")
    os.makedirs(path, exist_ok=True)
    return path


def write_csv(rows: List[Dict[str, Any]], path: str) -> None:
    with atomic_file(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def write_plot(rows: List[Dict[str, Any]], path: str) -> None:
    """Throughput against p50 latency, one line per model/executor, each point labelled with its batch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], str(r["executor"])), []).append(r)
    for (model, executor), points in groups.items():
        points = sorted((p for p in points if p["latency_p50_ms"] is not None), key=lambda p: p["batch_size"])
        xs = [p["latency_p50_ms"] for p in points]
        ys = [p["throughput_mean"] for p in points]
        ax.plot(xs, ys, marker="o", label=f"{model} / {executor}")
        for p, x, y in zip(points, xs, ys):
            ax.annotate(f"bs={p['batch_size']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("p50 latency per micro-batch (ms)")
    ax.set_ylabel("throughput (images/s)")
    ax.set_title("Throughput against latency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_file(path) as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)


def summarise(rows: List[Dict[str, Any]], log_path: str, log: Callable[[str], None]) -> Dict[str, str]:
    folder = sweep_folder(log_path)
    csv_path, png_path = os.path.join(folder, "sweep.csv"), os.path.join(folder, "sweep.png")
    for line in table(rows):
        log(line)
    write_csv(rows, csv_path)
    write_plot(rows, png_path)
    log(f"Sweep of {len(rows)} runs written to {csv_path} and {png_path}.")
    return {"folder": folder, "csv": csv_path, "png": png_path}
