"""Style reward from one demonstration (DeepMimic-style, Peng et al. 2018), as used by
Hausdörfer et al. (2024) beside latent action priors.

    r = task_weight * r_task / task_reward_normaliser + style_weight * exp(-|| q_ref(phase) - q ||)

``q`` are the robot's joint positions, ``q_ref`` the demonstration's at the current phase of the
gait cycle, and ``phase = t mod cycle_length`` advances by one every step and is appended to the
observation as ``(sin, cos)`` of its angle, so the policy knows where in the cycle it is. (The
authors' environments never advance the phase; this wrapper does.)

The cycle length comes from the demonstration: given, or detected by :func:`detect_cycle_length`
as the lag of the strongest autocorrelation peak of the joint trajectory.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from latentprior.io import LatentPriorError

#: Paper defaults: task-reward normalisers (HalfCheetah uses none).
TASK_REWARD_NORMALISERS = {"Ant": 2.0, "Humanoid": 25.0}

#: Where each MuJoCo locomotion robot's actuated joints sit in ``data.qpos`` (after the free or
#: planar root joint). Other robots pass ``joint_qpos`` explicitly.
JOINT_QPOS = {
    "HalfCheetah": slice(3, 9),
    "Hopper": slice(3, 6),
    "Walker2d": slice(3, 9),
    "Ant": slice(7, 15),
    "Humanoid": slice(7, 24),
}


class StyleError(LatentPriorError, ValueError):
    """A style reference that cannot be used (too short, wrong size, NaNs)."""


def robot_name(env_id: str) -> str:
    return env_id.split("-")[0]


def detect_cycle_length(q: np.ndarray, min_length: int = 4) -> int:
    """Gait-cycle length in steps: the lag of the highest autocorrelation peak of ``q`` (T, n).

    Peaks are searched at lags ``min_length .. T // 2`` so that at least two cycles support the
    estimate. Raises :class:`StyleError` when the demonstration is too short or not periodic.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim == 1:
        q = q[:, None]
    T = len(q)
    if T < 2 * min_length:
        raise StyleError(f"a demonstration of {T} steps is too short to detect a gait cycle (need >= {2 * min_length})")
    x = q - q.mean(0)
    denom = (x**2).sum()
    if denom <= 0:
        raise StyleError("the demonstration's joint positions are constant: no gait cycle to detect")
    lags = np.arange(min_length, T // 2 + 1)
    # Normalise by the overlap length so long lags are not penalised for having fewer terms.
    acf = np.array([(x[:-lag] * x[lag:]).sum() / (T - lag) for lag in lags]) / (denom / T)
    peaks = [i for i in range(1, len(acf) - 1) if acf[i] >= acf[i - 1] and acf[i] >= acf[i + 1]]
    if not peaks or acf[max(peaks, key=lambda i: acf[i])] < 0.3:
        raise StyleError("no periodic gait found in the demonstration (autocorrelation has no clear peak); pass cycle_length")
    best = max(acf[i] for i in peaks)
    # The first peak close to the best one is the fundamental period, not a multiple of it.
    first = next(i for i in peaks if acf[i] >= 0.9 * best)
    return int(lags[first])


class StyleReward(gym.Wrapper):
    """Add a phase-indexed imitation reward and the phase observation to a MuJoCo locomotion env.

    :param env: the task environment (its reward is the task reward).
    :param reference_q: demonstration joint positions, shape (T, n_joints); the first
        ``cycle_length`` rows are the reference cycle.
    :param cycle_length: steps per gait cycle; ``None`` detects it from ``reference_q``.
    :param joint_qpos: indices of the joints in ``data.qpos``; by default looked up by robot name.
    :param task_weight: weight of the normalised task reward (paper: 0.67).
    :param style_weight: weight of the style term (paper: 0.33).
    :param task_reward_normaliser: divides the task reward; by default the paper's value for the
        robot (Ant 2, Humanoid 25) and 1 otherwise.

    The info dict carries ``task_reward`` and ``style_reward`` so curves can report the task
    reward alone, as the paper does.
    """

    def __init__(
        self,
        env: gym.Env,
        reference_q: np.ndarray,
        cycle_length: int | None = None,
        joint_qpos: slice | np.ndarray | None = None,
        task_weight: float = 0.67,
        style_weight: float = 0.33,
        task_reward_normaliser: float | None = None,
    ):
        super().__init__(env)
        reference_q = np.asarray(reference_q, dtype=np.float64)
        if reference_q.ndim != 2 or not np.isfinite(reference_q).all():
            raise StyleError(f"reference_q must be a finite (T, n_joints) array, got shape {reference_q.shape}")
        name = robot_name(env.spec.id) if env.spec else ""
        if joint_qpos is None:
            if name not in JOINT_QPOS:
                raise StyleError(f"no joint layout known for {name or 'this environment'}; pass joint_qpos")
            joint_qpos = JOINT_QPOS[name]
        self.joint_qpos = joint_qpos
        n_joints = len(np.arange(env.unwrapped.model.nq)[joint_qpos])
        if reference_q.shape[1] != n_joints:
            raise StyleError(f"reference has {reference_q.shape[1]} joints, the environment's robot has {n_joints}")
        if cycle_length is None:
            cycle_length = detect_cycle_length(reference_q)
        if not 1 <= cycle_length <= len(reference_q):
            raise StyleError(f"cycle_length {cycle_length} is longer than the demonstration ({len(reference_q)} steps)")
        self.cycle_length = int(cycle_length)
        self.reference_q = reference_q[: self.cycle_length]
        self.task_weight = task_weight
        self.style_weight = style_weight
        self.task_reward_normaliser = task_reward_normaliser or TASK_REWARD_NORMALISERS.get(name, 1.0)
        self.phase = 0
        obs_space = env.observation_space
        low = np.concatenate([obs_space.low, [-1.0, -1.0]]).astype(obs_space.dtype)
        high = np.concatenate([obs_space.high, [1.0, 1.0]]).astype(obs_space.dtype)
        self.observation_space = gym.spaces.Box(low, high, dtype=obs_space.dtype)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        angle = 2.0 * np.pi * self.phase / self.cycle_length
        return np.concatenate([obs, [np.sin(angle), np.cos(angle)]]).astype(self.observation_space.dtype)

    def style_reward(self) -> float:
        q = self.env.unwrapped.data.qpos[self.joint_qpos]
        return float(np.exp(-np.linalg.norm(self.reference_q[self.phase] - q)))

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.phase = 0
        return self._observe(obs), info

    def step(self, action):
        obs, task_reward, terminated, truncated, info = self.env.step(action)
        self.phase = (self.phase + 1) % self.cycle_length
        style = self.style_reward()
        reward = self.task_weight * task_reward / self.task_reward_normaliser + self.style_weight * style
        info = {**info, "task_reward": task_reward, "style_reward": style}
        return self._observe(obs), reward, terminated, truncated, info
