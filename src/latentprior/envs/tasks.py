"""Transfer tasks for locomotion robots: track a commanded velocity instead of running forward.

Used by the latent action priors transfer experiments (Hausdörfer et al. 2024: 2x, 3x, 4x the
demonstration's speed, any direction) and by command-conditioned experts (one fixed command is
one skill expert, Merel et al. 2019).

The reuse tasks of neural probabilistic motor primitives (Merel et al. 2019, Sec. 4), on which a
high-level policy learns through a frozen motor primitive module: :class:`GoToTarget` (sparse
reward, the target jumps elsewhere once reached) and :class:`ChangingTargetSpeed`.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

#: Robots that move in the plane (x, y); the others move along x only.
PLANAR = ("Ant", "Humanoid", "Go1", "UnitreeA1")

#: Size of the command features :func:`command_observation` appends to an observation.
COMMAND_DIM = 3


def command_observation(command: np.ndarray) -> np.ndarray:
    """The features a policy sees of a commanded planar velocity: ``(speed, cos heading, sin heading)``.

    :param command: the commanded velocity ``(v_x, v_y)`` in m/s.
    :return: float64 array of shape ``(COMMAND_DIM,)``; heading 0 for a zero command.
    """
    command = np.asarray(command, dtype=np.float64)
    heading = np.arctan2(command[1], command[0])
    return np.array([np.linalg.norm(command), np.cos(heading), np.sin(heading)])


class TargetVelocity(gym.Wrapper):
    """Replace the task reward by tracking a commanded velocity: ``exp(-sharpness * ||v - v_cmd||)``.

    :param env: a Gymnasium MuJoCo locomotion env whose ``info`` holds ``x_velocity`` (and
        ``y_velocity`` for planar robots), as all v5 environments do.
    :param target_speed: commanded speed in m/s; a ``(low, high)`` pair samples one per episode.
        A negative speed commands the opposite of ``direction`` (backward, for a robot that moves
        along x only).
    :param direction: commanded heading in radians (0 = +x); a ``(low, high)`` pair samples one per
        episode. Only planar robots (Ant, Humanoid) can follow a heading other than 0 or pi.
    :param sharpness: the 5 in ``exp(-5 |v - v_des|)``.
    :param observe_command: append ``(speed, cos heading, sin heading)`` to the observation; needed
        whenever the command varies between episodes.
    :param keep_ctrl_cost: subtract the environment's control cost, as its own reward does.
    :param keep_healthy_reward: add the environment's reward for staying healthy (``info
        ["reward_survive"]``, Ant and Humanoid), so that a policy that is still far from the
        command is not paid to end its episode early by falling.

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
        keep_healthy_reward: bool = False,
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
        self.keep_healthy_reward = keep_healthy_reward
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
        return np.concatenate([obs, command_observation(self.command)]).astype(self.observation_space.dtype)

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
        reward += info.get("reward_survive", 0.0) if self.keep_healthy_reward else 0.0
        info = {**info, "task_reward": task_reward, "velocity": velocity}
        return self._observe(obs), reward, terminated, truncated, info


def _planar_robot(env: gym.Env, task: str) -> None:
    """Raise unless ``env`` is a planar robot whose free root joint gives its position and heading."""
    name = env.spec.id.split("-")[0] if env.spec is not None else type(env.unwrapped).__name__
    qpos = getattr(getattr(env.unwrapped, "data", None), "qpos", None)
    if name not in PLANAR or qpos is None or len(qpos) < 7:
        raise ValueError(
            f"{task} needs a robot that moves in the plane with a free root joint ({', '.join(PLANAR)}), got {name}"
        )


def _torso_yaw(qpos: np.ndarray) -> float:
    """Heading of the root body about z from its quaternion ``qpos[3:7] = (w, x, y, z)``."""
    w, x, y, z = qpos[3:7]
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def _append_features(space: gym.spaces.Box, count: int) -> gym.spaces.Box:
    low = np.concatenate([space.low, np.full(count, -np.inf)]).astype(space.dtype)
    high = np.concatenate([space.high, np.full(count, np.inf)]).astype(space.dtype)
    return gym.spaces.Box(low, high, dtype=space.dtype)


class GoToTarget(gym.Wrapper):
    """Reach a target that jumps elsewhere once reached; sparse reward (Merel et al. 2019, Sec. 4).

    The reuse task of neural probabilistic motor primitives: "a target that is constant until the
    humanoid is near it for a few timesteps at which point it randomly moves to another nearby
    location", with a sparse task reward. Here, as in dm_control's locomotion ``GoToTarget``: the
    reward is 1 for every step the robot's root is within ``radius`` of the target, else 0; after
    ``hold_steps`` such steps (not necessarily consecutive) the target moves to a new point at a
    distance drawn from ``distance_range`` in a uniformly random direction from the robot. The
    environment's own reward is dropped; its termination (an Ant that flips over) is kept.

    :param env: a planar robot with a free root joint (Ant, Humanoid).
    :param distance_range: ``(low, high)`` metres from the robot to each new target.
    :param radius: metres; within it the target counts as reached.
    :param hold_steps: steps within ``radius`` before the target moves.
    :param egocentric: observe the target in the torso's heading frame (x ahead, y to the left),
        as body-centric policies do; ``False`` observes the world-frame offset.

    The observation gets the target's offset ``(dx, dy)`` from the robot appended. ``info`` holds
    ``task_reward`` (the reward), ``target`` (world x, y), ``distance`` and ``targets_reached``.
    """

    def __init__(
        self,
        env: gym.Env,
        distance_range: tuple[float, float] = (1.0, 3.0),
        radius: float = 0.5,
        hold_steps: int = 10,
        egocentric: bool = True,
    ):
        super().__init__(env)
        _planar_robot(env, "GoToTarget")
        low, high = (float(d) for d in distance_range)
        if not 0.0 <= low <= high or radius <= 0 or hold_steps < 1:
            raise ValueError(
                f"GoToTarget needs 0 <= distance low <= high, radius > 0 and hold_steps >= 1; got distance_range "
                f"{distance_range}, radius {radius}, hold_steps {hold_steps}"
            )
        self.distance_range, self.radius, self.hold_steps = (low, high), float(radius), int(hold_steps)
        self.egocentric = egocentric
        self.observation_space = _append_features(env.observation_space, 2)
        self.target = np.zeros(2)
        self._steps_at_target = self._reached = 0

    def _position(self) -> np.ndarray:
        return np.array(self.env.unwrapped.data.qpos[:2], dtype=np.float64)

    def _move_target(self) -> None:
        distance = self.np_random.uniform(*self.distance_range)
        angle = self.np_random.uniform(-np.pi, np.pi)
        self.target = self._position() + distance * np.array([np.cos(angle), np.sin(angle)])
        self._steps_at_target = 0

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        offset = self.target - self._position()
        if self.egocentric:
            yaw = _torso_yaw(self.env.unwrapped.data.qpos)
            c, s = np.cos(yaw), np.sin(yaw)
            offset = np.array([c * offset[0] + s * offset[1], -s * offset[0] + c * offset[1]])
        return np.concatenate([obs, offset]).astype(self.observation_space.dtype)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._reached = 0
        self._move_target()
        return self._observe(obs), {**info, "target": self.target.copy()}

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        distance = float(np.linalg.norm(self.target - self._position()))
        reward = 1.0 if distance < self.radius else 0.0
        target = self.target.copy()
        if reward:
            self._steps_at_target += 1
            if self._steps_at_target >= self.hold_steps:
                self._reached += 1
                self._move_target()
        info = {**info, "task_reward": reward, "target": target, "distance": distance, "targets_reached": self._reached}
        return self._observe(obs), reward, terminated, truncated, info


class ChangingTargetSpeed(gym.Wrapper):
    """Move at a target speed that changes during the episode (Merel et al. 2019, Sec. 4, Fig. 6b).

    At reset and then every ``change_every`` steps (an integer drawn uniformly from the range
    each time) a new target speed is drawn uniformly from ``speed_range``. The reward is a
    Gaussian of the speed along ``direction`` around the target,
    ``exp(-(v - v_target)^2 / (2 reward_std^2))`` in (0, 1]; the environment's own reward is
    dropped and its termination kept. Merel et al. measure the speed along the body's forward
    direction; here it is a fixed world direction, so that robots that move along x only and
    planar ones are scored alike (a planar robot starts facing +x).

    :param env: a Gymnasium MuJoCo locomotion env whose ``info`` holds ``x_velocity`` (and
        ``y_velocity`` for planar robots), as all v5 environments do.
    :param speed_range: ``(low, high)`` m/s.
    :param change_every: ``(low, high)`` steps between changes of the target.
    :param direction: heading in radians along which the speed counts (0 = +x; robots that move
        along x only: 0 or pi).
    :param reward_std: m/s, width of the Gaussian reward (not given by the paper).

    The observation gets the current target speed appended. ``info`` holds ``task_reward`` (the
    reward), ``target_speed`` and ``speed``.
    """

    def __init__(
        self,
        env: gym.Env,
        speed_range: tuple[float, float] = (1.0, 4.0),
        change_every: tuple[int, int] = (100, 300),
        direction: float = 0.0,
        reward_std: float = 0.5,
    ):
        super().__init__(env)
        planar = env.spec is not None and env.spec.id.split("-")[0] in PLANAR
        low, high = (float(v) for v in speed_range)
        every_low, every_high = (int(n) for n in change_every)
        if not (low <= high and 1 <= every_low <= every_high and reward_std > 0):
            raise ValueError(
                f"ChangingTargetSpeed needs speed low <= high, 1 <= change_every low <= high and reward_std > 0; got "
                f"speed_range {speed_range}, change_every {change_every}, reward_std {reward_std}"
            )
        if not planar and abs(np.sin(direction)) > 1e-9:
            name = env.spec.id if env.spec is not None else env
            raise ValueError(f"{name} moves along x only: direction must be 0 or pi, got {direction}")
        self.speed_range, self.change_every, self.reward_std = (low, high), (every_low, every_high), float(reward_std)
        self.axis = np.array([np.cos(direction), np.sin(direction)])
        self.observation_space = _append_features(env.observation_space, 1)
        self.target_speed = low
        self._steps_left = every_low

    def _change(self) -> None:
        self.target_speed = float(self.np_random.uniform(*self.speed_range))
        self._steps_left = int(self.np_random.integers(self.change_every[0], self.change_every[1] + 1))

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, [self.target_speed]]).astype(self.observation_space.dtype)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._change()
        return self._observe(obs), {**info, "target_speed": self.target_speed}

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        velocity = np.array([info["x_velocity"], info.get("y_velocity", 0.0)])
        speed = float(velocity @ self.axis)
        reward = float(np.exp(-0.5 * ((speed - self.target_speed) / self.reward_std) ** 2))
        info = {**info, "task_reward": reward, "target_speed": self.target_speed, "speed": speed}
        self._steps_left -= 1
        if self._steps_left <= 0:
            self._change()
        return self._observe(obs), reward, terminated, truncated, info
