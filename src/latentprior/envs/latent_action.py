"""The latent action space of Hausdörfer et al. (2024) as a Gymnasium wrapper.

The agent acts in ``[a_latent (k), a_full (d)]``, each in [-1, 1]; the environment receives

    a = (1 - w) * dec(a_latent) + w * a_full

with the frozen decoder of a fitted :class:`~latentprior.latent.action_prior.ActionPrior`. ``w``
(``residual_weight``) is 0.1 by default (the paper uses 0.5 for Humanoid and Unitree H1). With
``latent_only=True`` the agent acts in the latent alone (``w = 0`` and no residual in the action
space), a mode the authors' code cannot run.

The decoder works in normalised actions ([-1, 1] per dimension); the wrapper maps the result to
the environment's bounds, so it works unchanged for environments whose actions are not in
[-1, 1] (Humanoid: [-0.4, 0.4]). Any RL library that takes a Gymnasium env, stable-baselines3
included, trains through it.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from latentprior.io import ArtifactError
from latentprior.latent.action_prior import ActionPrior


class LatentActionWrapper(gym.ActionWrapper):
    """Act through a frozen action decoder plus a full-action residual.

    :param env: environment with a bounded ``Box`` action space of size ``d``.
    :param prior: fitted action prior whose ``action_dim`` equals ``d``.
    :param residual_weight: ``w`` in ``a = (1 - w) dec(a_latent) + w a_full``, in [0, 1].
    :param latent_only: act in the latent alone (action space of size ``k``, ``w`` ignored).
    """

    def __init__(self, env: gym.Env, prior: ActionPrior, residual_weight: float = 0.1, latent_only: bool = False):
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            raise ArtifactError(f"LatentActionWrapper needs a bounded Box action space, the environment has {space}")
        if prior.action_dim != space.shape[0]:
            raise ArtifactError(
                f"the action prior decodes {prior.action_dim}-d actions"
                f"{' for ' + prior.env_id if prior.env_id else ''}, but the environment's action space is "
                f"{space.shape[0]}-d"
            )
        if not 0.0 <= residual_weight <= 1.0:
            raise ValueError(f"residual_weight must lie in [0, 1], got {residual_weight}")
        self.prior = prior
        self.residual_weight = 0.0 if latent_only else float(residual_weight)
        self.latent_only = latent_only
        k, d = prior.latent_dim, prior.action_dim
        size = k if latent_only else k + d
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(size,), dtype=np.float32)
        self._low = space.low.astype(np.float64)
        self._half_range = (space.high.astype(np.float64) - self._low) / 2.0

    def action(self, action: np.ndarray) -> np.ndarray:
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        k = self.prior.latent_dim
        with torch.no_grad():
            decoded = self.prior.autoencoder.decode(torch.from_numpy(action[..., :k])).numpy()
        normalised = decoded if self.latent_only else (1.0 - self.residual_weight) * decoded + self.residual_weight * action[..., k:]
        normalised = np.clip(normalised, -1.0, 1.0)
        return (self._low + (normalised + 1.0) * self._half_range).astype(self.env.action_space.dtype)
