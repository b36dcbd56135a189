"""Running normalisation of observations and rewards, as stable-baselines3's ``VecNormalize`` does it.

The statistics are torch buffers, so they travel inside a module's state dict: a saved policy
carries the observation statistics it was trained with, and ``Policy.mean_action`` normalises
differentiably. They are *updated* in NumPy, from the environments' NumPy arrays: at one
observation per step a dozen NumPy operations on a 17-vector cost about half of the same
operations dispatched through torch, and a PPO step has only ~100 us to spend.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["RunningMeanStd", "ObservationNormalizer", "RewardScaler"]


class RunningMeanStd(nn.Module):
    """Mean and variance of a stream of vectors, merged batch by batch (Chan et al. 1979).

    Kept in float64: after millions of samples a float32 count and mean lose the small updates.

    :param shape: shape of one sample.
    :param epsilon: initial pseudo-count, which keeps the first variance finite (SB3: 1e-4).
    """

    def __init__(self, shape: tuple[int, ...], epsilon: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    def update(self, x: np.ndarray) -> None:
        """Merge a batch ``x`` of shape ``(batch, *shape)`` into the statistics."""
        n = x.shape[0]
        # np.mean/np.var cost microseconds of Python each; a batch of one needs neither.
        batch_mean, batch_var = (x[0], 0.0) if n == 1 else (x.mean(0), x.var(0))
        on_cpu = self.mean.is_cpu
        mean, var, count = (t.numpy() if on_cpu else t.cpu().numpy() for t in (self.mean, self.var, self.count))
        delta = batch_mean - mean
        w = n / (count + n)  # weight of the new batch in the merged statistics
        mean += delta * w
        var *= 1 - w
        var += w * (batch_var + delta * delta * (1 - w))
        count += n
        if not on_cpu:  # the arrays were copies
            for t, a in zip((self.mean, self.var, self.count), (mean, var, count)):
                t.copy_(torch.from_numpy(a))


class ObservationNormalizer(nn.Module):
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` with running statistics.

    :param shape: observation shape.
    :param clip: bound on the normalised values (SB3: 10).
    :param epsilon: added to the variance before the square root (SB3: 1e-8).
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8) -> None:
        super().__init__()
        self.rms = RunningMeanStd(shape)
        self.clip, self.epsilon = clip, epsilon

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalise with the current statistics (differentiable in ``obs``); returns float32."""
        scaled = (obs - self.rms.mean) * torch.rsqrt(self.rms.var + self.epsilon)
        return scaled.clamp(-self.clip, self.clip).to(torch.float32)

    def update(self, obs: np.ndarray) -> None:
        """Merge a batch of observations into the statistics."""
        self.rms.update(obs)


class RewardScaler(nn.Module):
    """Divides rewards by the running std of the discounted return (SB3 ``VecNormalize(norm_reward)``).

    :param num_envs: number of sub-environments whose returns are tracked.
    :param gamma: discount of the tracked return; use the learner's.
    :param clip: bound on the scaled reward (SB3: 10).
    :param epsilon: added to the variance before the square root.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8) -> None:
        super().__init__()
        self.rms = RunningMeanStd(())
        self.gamma, self.clip, self.epsilon = gamma, clip, epsilon
        # Episode-local, so not a buffer: a resumed run starts new episodes.
        self.returns = np.zeros(num_envs)

    def forward(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Scale one step's ``rewards`` (shape ``(num_envs,)``); ``dones`` ends the tracked returns."""
        self.returns = self.returns * self.gamma + rewards
        self.rms.update(self.returns)
        self.returns[dones] = 0.0
        return np.clip(rewards / np.sqrt(self.rms.var.item() + self.epsilon), -self.clip, self.clip)
