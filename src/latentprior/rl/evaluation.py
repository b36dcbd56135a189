"""Evaluate a policy on its own environments: N whole episodes, deterministic actions by default."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from latentprior.io import LatentPriorError

__all__ = ["Acts", "EvalResult", "evaluate_policy", "task_rewards"]


@dataclasses.dataclass
class EvalResult:
    """Outcome of :func:`evaluate_policy`: per-episode returns and lengths and their summary."""

    returns: list[float]
    """Undiscounted return of each episode, in the order they finished."""
    lengths: list[int]
    """Length of each episode in steps."""
    task_returns: list[float] | None = None
    """Sum of ``info["task_reward"]`` over each episode, when the environments report one (e.g.
    :class:`~latentprior.envs.style_reward.StyleReward`, whose reward is shaped, or a transfer
    task): the return papers report. ``None`` when they do not."""

    @property
    def return_mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def return_std(self) -> float:
        return float(np.std(self.returns))

    @property
    def length_mean(self) -> float:
        return float(np.mean(self.lengths))

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        metrics = {
            f"{prefix}return_mean": self.return_mean,
            f"{prefix}return_std": self.return_std,
            f"{prefix}length_mean": self.length_mean,
        }
        if self.task_returns is not None:
            metrics[f"{prefix}task_return_mean"] = float(np.mean(self.task_returns))
            metrics[f"{prefix}task_return_std"] = float(np.std(self.task_returns))
        return metrics

    def to_dict(self) -> dict[str, Any]:
        episodes = {"returns": self.returns, "lengths": self.lengths}
        if self.task_returns is not None:
            episodes["task_returns"] = self.task_returns
        return {**self.metrics(prefix=""), "episodes": len(self.returns), **episodes}


def task_rewards(info: dict[str, Any], done: np.ndarray) -> np.ndarray | None:
    """Each sub-environment's ``info["task_reward"]`` of one step, or ``None`` when none reports it.

    With same-step autoreset a finished sub-environment's step info is in ``info["final_info"]``
    (its top-level entries are the next episode's reset info).
    """
    final = info.get("final_info", {})
    if "task_reward" not in info and "task_reward" not in final:
        return None
    rewards = np.zeros(len(done))
    for source, rows in ((info, ~done), (final, done)):
        if "task_reward" in source:
            mask = rows & source.get("_task_reward", np.ones(len(done), dtype=bool))
            rewards[mask] = source["task_reward"][mask]
    return rewards


class Acts(Protocol):
    """Anything with ``act(obs_batch, deterministic) -> actions`` (a :class:`Policy`, an adapter for another library's model)."""

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray: ...


@torch.no_grad()
def evaluate_policy(
    policy: Acts,
    envs: gym.vector.VectorEnv,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int | None = None,
) -> EvalResult:
    """Run ``episodes`` complete episodes of ``policy`` on a same-step-autoreset vector env.

    Sub-environment ``i`` contributes ``(episodes + i) // num_envs`` episodes (as SB3's
    ``evaluate_policy``), so short episodes are not over-represented.

    :param policy: the policy (its observation normaliser is used frozen); check its spaces
        against ``envs`` first with :meth:`Policy.check_env`.
    :param envs: evaluation environments (e.g. from :func:`latentprior.envs.make.make_vec_env`),
        not the ones being trained on.
    :param episodes: number of episodes (>= 1).
    :param deterministic: act with the mean action (the usual evaluation) or sample.
    :param seed: reset the environments with this seed first, so every evaluation starts from
        the same initial states; ``None`` continues their random stream.
    """
    if episodes < 1:
        raise LatentPriorError(f"episodes must be >= 1, got {episodes}")
    n = envs.num_envs
    targets = np.array([(episodes + i) // n for i in range(n)])
    counts = np.zeros(n, dtype=np.int64)
    running_return, running_length, running_task = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n)
    returns: list[float] = []
    lengths: list[int] = []
    task_returns: list[float] = []
    reports_task = False
    obs, _ = envs.reset(seed=seed)
    while (counts < targets).any():
        obs, reward, terminated, truncated, info = envs.step(policy.act(obs, deterministic=deterministic))
        done = terminated | truncated
        task = task_rewards(info, done)
        if task is not None:
            reports_task = True
            running_task += task
        running_return += reward
        running_length += 1
        for i in np.flatnonzero(done):
            if counts[i] < targets[i]:
                returns.append(float(running_return[i]))
                lengths.append(int(running_length[i]))
                task_returns.append(float(running_task[i]))
                counts[i] += 1
            running_return[i], running_length[i], running_task[i] = 0.0, 0, 0.0
    return EvalResult(returns, lengths, task_returns if reports_task else None)
