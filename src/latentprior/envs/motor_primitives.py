"""Reuse of a neural probabilistic motor primitive module (Merel et al. 2019) as a Gymnasium wrapper.

A new high-level policy outputs a latent ``z_t`` each step; the frozen decoder ``pi(a | s, z)``
turns it into the action. The latent is clipped to ``[-latent_limit, latent_limit]`` (MoCapAct
uses 3): the AR(1) prior's stationary distribution is N(0, I), so three standard deviations
cover what the decoder was trained on. Any RL algorithm, ours or stable-baselines3's, trains a
high-level policy through it.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from latentprior.latent.npmp import NPMP


class MotorPrimitivesWrapper(gym.ActionWrapper):
    """Act in the latent space of a frozen NPMP decoder.

    :param env: the task environment; its observation and action spaces must be the module's.
    :param npmp: a fitted :class:`~latentprior.latent.npmp.NPMP`.
    :param latent_limit: bound of the latent action space, in prior standard deviations.
    """

    def __init__(self, env: gym.Env, npmp: NPMP, latent_limit: float = 3.0):
        super().__init__(env)
        npmp.check_env(env, source="motor primitive module")
        self.npmp = npmp
        self.latent_limit = float(latent_limit)
        self.action_space = gym.spaces.Box(-self.latent_limit, self.latent_limit, shape=(npmp.latent_dim,), dtype=np.float32)
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def action(self, z: np.ndarray) -> np.ndarray:
        z = np.clip(np.asarray(z, dtype=np.float32), -self.latent_limit, self.latent_limit)
        action = self.npmp.decoder_action(self._obs, z)
        space = self.env.action_space
        return np.clip(action, space.low, space.high).astype(space.dtype)
