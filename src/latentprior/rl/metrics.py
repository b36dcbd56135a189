"""What a run reports while it learns: metric rows (CSV + TensorBoard), episode returns, a progress bar."""

from __future__ import annotations

import collections
import csv
import io
import math
import os
import time
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from latentprior.io import atomic_write_text

__all__ = ["MetricsLogger", "EpisodeStats", "ProgressDisplay"]


class MetricsLogger:
    """Rows of ``step`` + named scalars, appended to ``metrics.csv`` and to TensorBoard.

    The CSV gains a column the first time a name appears (the file is rewritten then). Resuming
    from a checkpoint at step ``s`` drops the rows written after ``s`` by the interrupted process,
    in the CSV and (through ``purge_step``) in TensorBoard, so the record reads as one run.

    :param run_dir: directory of ``metrics.csv`` and ``tensorboard/``.
    :param resume_step: step of the checkpoint being resumed, or ``None`` for a fresh run (which
        replaces any earlier ``metrics.csv``).
    :param tensorboard: also write TensorBoard event files.
    """

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        self._rows: list[dict[str, str]] = []
        self._columns: list[str] = ["step"]
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self._columns = list(reader.fieldnames or ["step"])
                self._rows = [r for r in reader if int(float(r["step"])) <= resume_step]
        self._rewrite()
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge)

    def _format(self, row: Mapping[str, str]) -> str:
        buffer = io.StringIO()
        csv.DictWriter(buffer, self._columns, lineterminator="\n").writerow(row)
        return buffer.getvalue()

    def _rewrite(self) -> None:
        header = ",".join(self._columns) + "\n"
        atomic_write_text(self.path, header + "".join(self._format(r) for r in self._rows))

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record ``metrics`` at environment step ``step``."""
        row = {"step": str(step), **{k: repr(float(v)) for k, v in metrics.items()}}
        self._rows.append(row)
        new = [k for k in row if k not in self._columns]
        if new:
            self._columns += new
            self._rewrite()
        else:
            with open(self.path, "a") as f:
                f.write(self._format(row))
        if self._writer is not None:
            for key, value in metrics.items():
                self._writer.add_scalar(key, float(value), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class EpisodeStats:
    """Returns and lengths of finished episodes, from the per-step rewards of a vector env.

    :param num_envs: number of sub-environments.
    :param window: how many recent episodes the means cover (SB3: 100).
    """

    def __init__(self, num_envs: int, window: int = 100) -> None:
        self._return = np.zeros(num_envs)
        self._length = np.zeros(num_envs, dtype=np.int64)
        self.returns: collections.deque[float] = collections.deque(maxlen=window)
        self.lengths: collections.deque[int] = collections.deque(maxlen=window)
        self.episodes = 0

    def update(self, rewards: np.ndarray, dones: np.ndarray) -> None:
        """Add one vector step; ``dones`` marks sub-environments whose episode ended in it."""
        self._return += rewards
        self._length += 1
        if dones.any():
            self.returns.extend(self._return[dones].tolist())
            self.lengths.extend(self._length[dones].tolist())
            self.episodes += int(dones.sum())
            self._return[dones] = 0.0
            self._length[dones] = 0

    def restore(self, returns: Iterable[float], lengths: Iterable[int], episodes: int) -> None:
        """Reload the recent-episode window saved in a checkpoint."""
        self.returns.extend(returns)
        self.lengths.extend(lengths)
        self.episodes = episodes

    def metrics(self) -> dict[str, float]:
        """``rollout/ep_return_mean``, ``rollout/ep_length_mean`` and the episode count, once any ended."""
        if not self.returns:
            return {}
        return {
            "rollout/ep_return_mean": float(np.mean(self.returns)),
            "rollout/ep_length_mean": float(np.mean(self.lengths)),
            "rollout/episodes": float(self.episodes),
        }


class ProgressDisplay:
    """A one-line live display: steps done, steps/s, recent episode return, ETA (``rich``).

    :param total: step count at which the run ends.
    :param start: step the run (re)starts from.
    :param enabled: ``False`` shows nothing.
    :param description: label in front of the bar.
    """

    def __init__(self, total: int, start: int, enabled: bool, description: str) -> None:
        self._progress = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} steps/s  return {task.fields[ret]}"),
            TimeRemainingColumn(),
            refresh_per_second=2,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, completed=start, rate="-", ret="-")
        self._t0, self._start = time.perf_counter(), start

    def update(self, step: int, episode_return: float | None) -> None:
        if self._progress is None:
            return
        rate = (step - self._start) / max(time.perf_counter() - self._t0, 1e-9)
        ret = "-" if episode_return is None or math.isnan(episode_return) else f"{episode_return:.1f}"
        self._progress.update(self._task, completed=step, rate=f"{rate:,.0f}", ret=ret)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
