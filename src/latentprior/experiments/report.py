"""Reports of what happened: learning-curve plots, markdown tables and the report file itself."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from latentprior.io import atomic_path, atomic_write_text


@dataclass
class Curve:
    """One learning curve: evaluation or training returns against environment steps."""

    steps: np.ndarray
    returns: np.ndarray
    returns_std: np.ndarray | None = None


def read_curve(metrics_csv: str | os.PathLike, x: str = "step", y: str = "eval/return_mean") -> Curve:
    """Read one ``y`` against ``x`` from a run's ``metrics.csv``, skipping rows without ``y``.

    The logger writes one row per logging event with every key seen so far as a column, so a
    row may hold training metrics but no evaluation; those rows are skipped.
    """
    steps, values, stds = [], [], []
    std_key = y.replace("_mean", "_std") if y.endswith("_mean") else None
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row.get(y) not in (None, "") and row.get(x) not in (None, ""):
                steps.append(float(row[x]))
                values.append(float(row[y]))
                if std_key and row.get(std_key) not in (None, ""):
                    stds.append(float(row[std_key]))
    return Curve(
        np.asarray(steps),
        np.asarray(values),
        np.asarray(stds) if std_key and len(stds) == len(values) and stds else None,
    )


def plot_curves(
    curves: Mapping[str, Curve],
    path: str | os.PathLike,
    title: str = "",
    xlabel: str = "environment steps",
    ylabel: str = "return",
    reference: Mapping[str, float] | None = None,
) -> Path:
    """Plot labelled learning curves (with a ±std band where known) to a PNG, atomically.

    ``reference`` draws horizontal lines, e.g. ``{"expert": 2150.0}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, c in curves.items():
        (line,) = ax.plot(c.steps, c.returns, label=label, linewidth=1.8)
        if c.returns_std is not None:
            ax.fill_between(c.steps, c.returns - c.returns_std, c.returns + c.returns_std, color=line.get_color(), alpha=0.2)
    for label, value in (reference or {}).items():
        ax.axhline(value, linestyle="--", color="gray", linewidth=1.0)
        ax.annotate(label, (ax.get_xlim()[0], value), textcoords="offset points", xytext=(4, 3), fontsize=8, color="gray")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; floats are printed with 1 decimal."""

    def fmt(v: object) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: str | os.PathLike, title: str, sections: Sequence[tuple[str, str]]) -> Path:
    """Write ``# title`` followed by ``## heading`` + body for each section, atomically."""
    parts = [f"# {title}\n"]
    parts += [f"## {heading}\n\n{body.strip()}\n" for heading, body in sections]
    path = Path(path)
    atomic_write_text(path, "\n".join(parts))
    return path
