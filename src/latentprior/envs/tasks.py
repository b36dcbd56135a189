"""Transfer tasks for locomotion robots: track a commanded velocity instead of running forward.

Used by the latent action priors transfer experiments (Hausdörfer et al. 2024: 2x, 3x, 4x the
demonstration's speed, any direction) and by command-conditioned experts (one fixed command is
one skill expert, Merel et al. 2019).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

#: Robots that move in the plane (x, y); the others move along x only.
PLANAR = ("Ant", "Humanoid", "Go1", "UnitreeA1")


class TargetVelocity(gym.Wrapper):
    """Replace the task reward by tracking a commanded velocity: ``exp(-sharpness * ||v - v_cmd||)``.

    :param env: a Gymnasium MuJoCo locomotion env whose ``info`` holds ``x_velocity`` (and
        ``y_velocity`` for planar robots), as all v5 environments do.
    :param target_speed: commanded speed in m/s; a ``(low, high)`` pair samples one per episode.
    :param direction: commanded heading in radians (0 = +x); a ``(low, high)`` pair samples one per
        episode. Only planar robots (Ant, Humanoid) can follow a heading other than 0 or pi.
    :param sharpness: the 5 in ``exp(-5 |v - v_des|)``.
    :param observe_command: append ``(speed, cos heading, sin heading)`` to the observation; needed
        whenever the command varies between episodes.
    :param keep_ctrl_cost: subtract the environment's control cost, as its own reward does.

    ``info`` carries ``task_reward`` (the tracking reward) and ``velocity``.
    """

    def __init__(
        self,
        env: gym.Env,
        target_speed: float | tuple[float, float],
        direction: float | tuple[float, float] = 0.0,
        sharpness: float = 5.0,
        observe_command: bool = False,
        keep_ctrl_cost: bool = True,
    ):
        super().__init__(env)
        self.planar = env.spec is not None and env.spec.id.split("-")[0] in PLANAR
        fixed_heading = np.isscalar(direction)
        if not self.planar and not (fixed_heading and np.isclose(np.sin(direction), 0.0)):
            raise ValueError(f"{env.spec.id if env.spec else 'this robot'} moves along x only: direction must be 0 or pi")
        self.target_speed = target_speed
        self.direction = direction
        self.sharpness = sharpness
        self.observe_command = observe_command
        self.keep_ctrl_cost = keep_ctrl_cost
        self.command = np.zeros(2)
        if observe_command:
            space = env.observation_space
            low = np.concatenate([space.low, [-np.inf, -1.0, -1.0]]).astype(space.dtype)
            high = np.concatenate([space.high, [np.inf, 1.0, 1.0]]).astype(space.dtype)
            self.observation_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def _sample(self, value, rng: np.random.Generator) -> float:
        return float(rng.uniform(*value)) if isinstance(value, tuple) else float(value)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if not self.observe_command:
            return obs
        speed = np.linalg.norm(self.command)
        heading = np.arctan2(self.command[1], self.command[0])
        return np.concatenate([obs, [speed, np.cos(heading), np.sin(heading)]]).astype(self.observation_space.dtype)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        speed = self._sample(self.target_speed, self.np_random)
        heading = self._sample(self.direction, self.np_random)
        self.command = speed * np.array([np.cos(heading), np.sin(heading)])
        return self._observe(obs), info

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        velocity = np.array([info["x_velocity"], info.get("y_velocity", 0.0) if self.planar else 0.0])
        task_reward = float(np.exp(-self.sharpness * np.linalg.norm(velocity - self.command)))
        # Gymnasium v5 reports the control cost as a negative "reward_ctrl".
        reward = task_reward + (info.get("reward_ctrl", 0.0) if self.keep_ctrl_cost else 0.0)
        info = {**info, "task_reward": task_reward, "velocity": velocity}
        return self._observe(obs), reward, terminated, truncated, info
