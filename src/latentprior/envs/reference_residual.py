"""Residual RL on the reference action: the ``PPO+resRL+style`` baseline of Hausdörfer et al. (2024).

The demonstration's action at the current phase of the gait cycle is replayed open loop and the
policy adds a residual to it (residual RL, Silver et al. 2018; Johannink et al. 2019). With the
environment's bounds ``[low, high]`` and actions normalised to [-1, 1] per dimension
(``n(a) = 2 (a - low) / (high - low) - 1``), the policy acts in ``[-1, 1]^d`` and the environment
receives

    a = n^-1( clip( n(a_ref[phase]) + residual_scale * a_policy, -1, 1 ) )

where ``phase`` is the phase of the :class:`~latentprior.envs.style_reward.StyleReward` wrapper
inside this one, read *before* the step: the phase whose ``(sin, cos)`` the policy sees in its
observation. ``a_ref[p]`` is the demonstration's action taken at frame ``p`` of the reference
cycle, the one that leads to the reference pose ``q_ref[p + 1]`` the style reward compares with
after the step. ``residual_scale = 1`` lets the residual reach every action from any reference,
so the baseline is not handicapped by a smaller action set than PPO's.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from latentprior.envs.style_reward import StyleError, StyleReward


def find_style_reward(env: gym.Env) -> StyleReward:
    """The :class:`StyleReward` wrapper in ``env``'s wrapper chain (raises :class:`StyleError` if none)."""
    layer = env
    while not isinstance(layer, StyleReward):
        if not isinstance(layer, gym.Wrapper):
            raise StyleError(
                "ReferenceResidual needs a StyleReward wrapper inside it: the style reward's phase indexes the "
                "reference actions"
            )
        layer = layer.env
    return layer


class ReferenceResidual(gym.ActionWrapper):
    """Replay the reference cycle's actions by phase and let the policy add a residual.

    :param env: an environment with a bounded ``Box`` action space of size ``d`` and a
        :class:`~latentprior.envs.style_reward.StyleReward` wrapper somewhere inside it.
    :param reference_actions: the demonstration's actions over one gait cycle, shape
        ``(cycle_length, d)``, in the environment's units; row ``p`` belongs to phase ``p``, so
        it must be the same cycle as the style wrapper's ``reference_q``.
    :param residual_scale: multiplies the policy's residual in normalised units (see the module
        docstring); 1 by default.
    """

    def __init__(self, env: gym.Env, reference_actions: np.ndarray, residual_scale: float = 1.0):
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            raise StyleError(f"ReferenceResidual needs a bounded Box action space, the environment has {space}")
        self.style = find_style_reward(env)
        reference_actions = np.asarray(reference_actions, dtype=np.float64)
        if reference_actions.ndim != 2 or reference_actions.shape[1] != space.shape[0]:
            raise StyleError(
                f"reference_actions must have shape (cycle_length, {space.shape[0]}), got {reference_actions.shape}"
            )
        if len(reference_actions) != self.style.cycle_length:
            raise StyleError(
                f"{len(reference_actions)} reference actions for a gait cycle of {self.style.cycle_length} steps: "
                "they must be the style reference's cycle, one action per phase"
            )
        if not np.isfinite(reference_actions).all():
            raise StyleError("reference_actions contain NaN or inf")
        if residual_scale <= 0:
            raise ValueError(f"residual_scale must be > 0, got {residual_scale}")
        self.residual_scale = float(residual_scale)
        self._low = space.low.astype(np.float64)
        self._half_range = (space.high.astype(np.float64) - self._low) / 2.0
        self.reference_actions = np.clip(reference_actions, space.low, space.high)
        self._normalised_reference = (self.reference_actions - self._low) / self._half_range - 1.0
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=space.shape, dtype=np.float32)

    def reference_action(self) -> np.ndarray:
        """The demonstration's action at the current phase, in the environment's units."""
        return self.reference_actions[self.style.phase]

    def action(self, action: np.ndarray) -> np.ndarray:
        residual = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        normalised = np.clip(self._normalised_reference[self.style.phase] + self.residual_scale * residual, -1.0, 1.0)
        return (self._low + (normalised + 1.0) * self._half_range).astype(self.env.action_space.dtype)
