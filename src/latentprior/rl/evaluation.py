"""Evaluate a policy on its own environments: N whole episodes, deterministic actions by default."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from latentprior.io import LatentPriorError

__all__ = ["Acts", "EvalResult", "evaluate_policy"]


@dataclasses.dataclass
class EvalResult:
    """Outcome of :func:`evaluate_policy`: per-episode returns and lengths and their summary."""

    returns: list[float]
    """Undiscounted return of each episode, in the order they finished."""
    lengths: list[int]
    """Length of each episode in steps."""

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
        return {
            f"{prefix}return_mean": self.return_mean,
            f"{prefix}return_std": self.return_std,
            f"{prefix}length_mean": self.length_mean,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.metrics(prefix=""), "episodes": len(self.returns), "returns": self.returns, "lengths": self.lengths}


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
    running_return, running_length = np.zeros(n), np.zeros(n, dtype=np.int64)
    returns: list[float] = []
    lengths: list[int] = []
    obs, _ = envs.reset(seed=seed)
    while (counts < targets).any():
        obs, reward, terminated, truncated, _ = envs.step(policy.act(obs, deterministic=deterministic))
        running_return += reward
        running_length += 1
        for i in np.flatnonzero(terminated | truncated):
            if counts[i] < targets[i]:
                returns.append(float(running_return[i]))
                lengths.append(int(running_length[i]))
                counts[i] += 1
            running_return[i], running_length[i] = 0.0, 0
    return EvalResult(returns, lengths)
