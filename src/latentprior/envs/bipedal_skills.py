"""Bipedal Skills (Gehring et al. 2021), the sparse-reward transfer tasks of latent space priors, in Gymnasium.

The latent space priors paper (Gehring et al., TMLR 2023) evaluates its high-level policies on the
Bipedal Skills benchmark (``bipedal-skills`` on PyPI, package ``bisk``, extra ``bipedal``), which is
written for the old ``gym`` 0.26 API and builds its worlds with ``dm_control``. This module is a thin
adapter: it builds a benchmark environment from the benchmark's own registered settings, bypassing
``gym.make`` (whose environment checker breaks under NumPy 2), and exposes it as a
:class:`gymnasium.Env` with a flat observation.

Tasks (:data:`TASKS`; each maps to the benchmark's ``C`` variant, the one the authors' README names
for GoToTargets, Gaps and Stairs):

- ``GoToTargets`` (``BiskGoToTargetsC``): +1 on reaching the target (within 0.5 m), which then
  moves to a random point within 8 m of the start; the one after it is observed too.
- ``Gaps`` (``BiskGapsC``): +1 per platform reached; touching a gap ends the episode with -1.
- ``Stairs`` (``BiskStairsContC``, the paper's "Stairs"): +1 per stair passed, 10 flights up and down.
- ``Hurdles`` (``BiskHurdlesC``): +1 per hurdle passed.
- ``VelocityControl`` (``BiskVelocityControlC``): follow a speed that changes every 166 steps (from
  MoCapAct); with ``shaped=True`` a dense locomotion reward on flat ground, the task on which to
  train an expert and collect demonstrations for a Bipedal Skills robot (see below).

Butterflies (catch butterflies with a net held in the hand) needs the benchmark's humanoid with a
net, the CMU/AMASS humanoid, which is not supported here. Robots (:data:`ROBOTS`): ``Walker`` and
``HalfCheetah``; episodes are truncated after 1000 steps, as registered by the benchmark.

Two fixes of the benchmark (:func:`_patch_benchmark`). Under MuJoCo 3, ``bisk`` 2.0's contact-force
features are computed from stale constraint forces and can be NaN or garbage (a PPO run on the
Walker met NaN within 12 steps); the adapter recomputes them from the current state. And ``bisk``
crashes when MuJoCo's state diverges (its base ``step`` returns an old-API 4-tuple there); the
adapter ends the episode with ``info["physics_error"]`` instead.

Falls. The ``C`` variants allow the robot to fall over without ending the episode, except Gaps:
``bisk`` 2.0's Gaps does not pass its flag on, so its ``C`` variant ends the episode with -1 when
the robot falls, as a plain variant does. ``allow_fallover=None`` (default) keeps the benchmark's
behaviour, quirk included; ``True``/``False`` sets it for every task.

Observation (``float32``; :attr:`BipedalSkills.observation_names` names each value):

    [0:17]   proprioception (:data:`PROPRIOCEPTION`): the robot's joint positions without the
             root's x (``rootz``, ``rooty`` and the 6 leg joints, in the model's joint order), then
             all 9 joint velocities (the root's 3, then the legs'). On ``Stairs`` the root's z is the
             height above the surface below the torso (the benchmark's ``joints-relz`` features).
    [17:59]  contact forces: ``cfrc_ext`` of the robot's 7 bodies, 6 each, clipped to [-1, 1].
    [59:]    the task's features (``targets``: x offsets of the next 2 targets; ``next_gap_platform``
             / ``next_hurdle`` / ``next_steps``: distances ahead and whether it is cleared;
             ``target`` for VelocityControl: speed, sin/cos of the direction, phase).

The benchmark's observation also holds the root's absolute x, dropped here: no task needs it (their
features are relative to the robot) and a low-level policy or a state VAE should not see it.

Simulator states. :meth:`BipedalSkills.set_state` puts the robot into a joint state, as Gymnasium's
MuJoCo environments' ``set_state`` does, so that :class:`~latentprior.envs.reenactment.ReenactmentEnv`
and kinematic rendering work here (:class:`~latentprior.envs.reenactment.StateLayout` reads the
proprioception's layout from :attr:`~BipedalSkills.observation_names` and
:attr:`~BipedalSkills.qpos_names`). The robots' joints are all hinges and slides, so ``qpos`` and
``qvel`` have one value per joint in the same order: the Walker's root joints are z, x, pitch (the
omitted x is ``qpos[1]``), the HalfCheetah's x, z, pitch (``qpos[0]``), then the legs. One step is
:attr:`~BipedalSkills.dt` seconds: 0.025 for the Walker (10 physics steps of 2.5 ms), 0.05 for the
HalfCheetah (5 of 10 ms). On Stairs the observed root z is the height above the surface below, so
a state set from the proprioception (root z taken as absolute) is the observed one only where that
surface is the floor, as at the start.

Robots versus Gymnasium's. The benchmark's ``Walker`` is dm_control's walker (gears 100/50/20,
0.025 s control step, joint axes along -y, root joints z, x, pitch), a different robot from Gymnasium's
``Walker2d-v5``. Its ``HalfCheetah`` is Gym's half cheetah, as in ``HalfCheetah-v5`` (0.05 s control
step), but simulated with the RK4 integrator on a floor of friction 1 instead of 0.4, and its root
``z`` reads 0.7 m where ``HalfCheetah-v5``'s reads 0; from the same state and actions the two
diverge within a few steps. So demonstrations, the state VAE and the low-level policy for these
tasks come from the Bipedal Skills robot itself: train an expert on ``VelocityControl`` with
``shaped=True`` (or Gaps, Stairs or Hurdles with ``shaped=True``: forward progress), record
its rollouts in this environment and fit on ``observation[PROPRIOCEPTION]``.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import gymnasium as gym
import numpy as np

from latentprior.envs.extras import TaskError, register_task, require

__all__ = ["BipedalSkills", "make_bipedal_skills", "bipedal_skills_id", "TASKS", "ROBOTS", "PROPRIOCEPTION"]

#: Task name -> the benchmark's id stem of the variant the authors used.
TASKS = {
    "GoToTargets": "GoToTargets",
    "Gaps": "Gaps",
    "Stairs": "StairsCont",
    "Hurdles": "Hurdles",
    "VelocityControl": "VelocityControl",
}

#: Robots the adapter supports (the planar ones; their proprioception is 17 values).
ROBOTS = ("Walker", "HalfCheetah")

#: The observation slice a low-level policy sees: joint positions without root x, then velocities.
PROPRIOCEPTION = slice(0, 17)

MAX_EPISODE_STEPS = 1000

#: Root coordinates the observation leaves out (the benchmark's names, prefix removed).
_HORIZONTAL_ROOT = ("rootx:p",)


def bipedal_skills_id(task: str, robot: str = "Walker") -> str:
    """The registered Gymnasium id of ``task`` with ``robot`` (``"latentprior/BiskGapsWalker-v0"``)."""
    _check(task, robot)
    return f"latentprior/Bisk{task}{robot}-v0"


def make_bipedal_skills(task: str, robot: str = "Walker", **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` of :func:`bipedal_skills_id`: a :class:`BipedalSkills` task with its 1000-step limit.

    :param task: one of :data:`TASKS`.
    :param robot: one of :data:`ROBOTS`.
    :param kwargs: :class:`BipedalSkills` arguments and ``gymnasium.make`` options.
    """
    return gym.make(bipedal_skills_id(task, robot), **kwargs)


def _check(task: str, robot: str) -> None:
    if task == "Butterflies":
        raise TaskError(
            "Bipedal Skills' Butterflies needs a humanoid holding a net (the benchmark's HumanoidCMUPC or "
            f"HumanoidAMASSPC robots), which this adapter does not support; tasks: {', '.join(TASKS)}"
        )
    if task not in TASKS:
        raise TaskError(f"unknown Bipedal Skills task {task!r}; known: {', '.join(TASKS)}")
    if robot not in ROBOTS:
        raise TaskError(f"Bipedal Skills robot {robot!r} is not supported; supported: {', '.join(ROBOTS)}")


def _benchmark_env(task: str, robot: str, shaped: bool) -> Any:
    """The benchmark's environment with its registered settings, made without ``gym.make``."""
    # Importing gym prints a notice that gym is unmaintained; only the benchmark's classes and its
    # registry are used here, behind the Gymnasium API.
    with contextlib.redirect_stderr(io.StringIO()):
        require("bisk", "bipedal", "Bipedal Skills")
        import gym as old_gym
    _patch_benchmark()
    spec = old_gym.envs.registration.registry[f"Bisk{TASKS[task]}{'Shaped' if shaped else ''}C{robot}-v1"]
    return old_gym.envs.registration.load(spec.entry_point)(**spec.kwargs)


def _patch_benchmark() -> None:
    """Fix two bugs of ``bisk`` 2.0 under MuJoCo 3 (patched once, on the benchmark's base class).

    1. Stale contact forces. After the last physics step of an action, ``BiskEnv.step_simulation``
       computes the observed contact forces (``cfrc_ext``) with ``mj_rnePostConstraint``. But
       dm_control's ``Physics.step`` ends with ``mj_step1`` (the next step's collision detection),
       so the contacts are the new state's while the constraint forces ``efc_force`` are still the
       previous solve's, laid out for the old contacts: where the contact set changed, the forces
       read are unrelated or uninitialised memory (NaN, denormals). Measured: a PPO run on the
       Walker saw NaN contact features within 12 steps of 16 environments, which then turned
       every action into NaN. The patch runs ``mj_forward`` (the constraint solve of the current
       state) before the contact forces are computed: one more forward pass per action, and the
       trajectory is unchanged (the next step recomputes everything ``mj_forward`` writes; only
       the solver's warm start differs).
    2. A diverged simulation. When MuJoCo's state diverges (dm_control's ``PhysicsError``),
       ``BiskEnv.step`` returns the old 4-tuple ``(obs, -1, True, {"physics_error": True})``
       while every task's ``step`` unpacks 5 values: a ``ValueError``. The patched step returns
       the same transition as a 5-tuple: terminated, ``info["physics_error"]`` (reward -1, which
       a task with its own reward, such as VelocityControl, replaces); the next ``reset`` rebuilds
       the state.
    """
    from bisk.base import BiskEnv
    from dm_control.mujoco.wrapper.mjbindings import mjlib

    if getattr(BiskEnv.step, "_latentprior_patched", False):
        return
    original_step, original_simulation = BiskEnv.step, BiskEnv.step_simulation

    def step_simulation(self):
        original_simulation(self)
        with self.p.check_invalid_state():
            mjlib.mj_forward(self.p.model.ptr, self.p.data.ptr)
        mjlib.mj_rnePostConstraint(self.p.model.ptr, self.p.data.ptr)

    def step(self, action):
        result = original_step(self, action)
        if len(result) == 4:
            obs, reward, done, info = result
            return obs, reward, done, False, info
        return result

    step._latentprior_patched = True
    BiskEnv.step, BiskEnv.step_simulation = step, step_simulation


class BipedalSkills(gym.Env):
    """A Bipedal Skills task as a Gymnasium environment with a flat observation (module docstring).

    :param task: one of :data:`TASKS`.
    :param robot: one of :data:`ROBOTS`.
    :param shaped: the benchmark's dense reward instead of the sparse one (forward progress in
        metres per step on Gaps, Stairs and Hurdles; distance-based on GoToTargets; speed and
        direction tracking on VelocityControl).
    :param allow_fallover: ``None`` keeps the benchmark's ``C`` variant as it behaves; ``False``
        ends every episode with -1 when the robot falls, ``True`` never does.
    :param render_mode: ``"rgb_array"`` (dm_control's renderer, needs an OpenGL backend).

    ``info`` holds the benchmark's (``score``, ``shaped_reward``, ``fell_over`` ...) and
    ``x_velocity``, the torso's forward speed in m/s, so that
    :class:`~latentprior.envs.tasks.TargetVelocity` applies. :attr:`bisk` is the benchmark's
    environment; :meth:`set_state` sets the robot's joint state (module docstring).
    """

    #: the robot's part of the observation (what a low-level policy sees); the task's features follow
    proprioception = PROPRIOCEPTION

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        task: str,
        robot: str = "Walker",
        shaped: bool = False,
        allow_fallover: bool | None = None,
        render_mode: str | None = None,
    ):
        _check(task, robot)
        self.task, self.robot, self.render_mode = task, robot, render_mode
        self.bisk = _benchmark_env(task, robot, shaped)
        if allow_fallover is not None:
            self.bisk.allow_fallover = bool(allow_fallover)
        self.metadata = {**self.metadata, "render_fps": self.bisk.metadata["render_fps"]}

        featurizer = self.bisk.featurizer
        names = featurizer.feature_names()
        n_qpos, n_qvel = len(featurizer.qpos_idx), len(featurizer.qvel_idx)
        self._qpos_index, self._qvel_index = np.asarray(featurizer.qpos_idx), np.asarray(featurizer.qvel_idx)
        self.qpos_names = tuple(names[:n_qpos])
        """The robot's joint positions in the model's order, what :meth:`set_state` takes: the Walker's
        ``("rootz:p", "rootx:p", "rooty:p", ...)``, the HalfCheetah's ``("rootx:p", "rootz:p", ...)``."""
        self.qvel_names = tuple(names[n_qpos : n_qpos + n_qvel])
        """The robot's joint velocities in the model's order, what :meth:`set_state` takes."""
        positions = [i for i in range(n_qpos) if names[i] not in _HORIZONTAL_ROOT]
        self._robot_index = np.array(positions + list(range(n_qpos, len(names))))
        spaces = self.bisk.observation_space.spaces
        self._task_keys = sorted(key for key in spaces if key != "observation")
        task_names = [f"{key}[{i}]" for key in self._task_keys for i in range(spaces[key].shape[0])]
        self.observation_names = tuple([names[i] for i in self._robot_index] + task_names)
        """What each observation value is: the benchmark's feature names, e.g. ``"rootz:p"``."""
        proprioception = len(positions) + n_qvel
        if proprioception != PROPRIOCEPTION.stop:
            raise TaskError(f"Bipedal Skills {robot}: {proprioception} proprioceptive values, expected {PROPRIOCEPTION.stop}")
        bound = np.full(len(self.observation_names), np.inf, dtype=np.float32)
        bound[proprioception : len(self._robot_index)] = 1.0  # the benchmark clips contact forces
        self.observation_space = gym.spaces.Box(-bound, bound, dtype=np.float32)
        space = self.bisk.action_space
        self.action_space = gym.spaces.Box(space.low, space.high, dtype=np.float32)
        self._seeded = False

    @property
    def dt(self) -> float:
        """Seconds per step (the benchmark's physics steps per action times their length)."""
        return float(self.bisk.dt)

    def _observe(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        robot = obs["observation"][self._robot_index]
        return np.concatenate([robot] + [obs[key] for key in self._task_keys]).astype(np.float32)

    def _get_obs(self) -> np.ndarray:
        """The observation of the current state, under the name Gymnasium's MuJoCo environments give it
        (what :class:`~latentprior.envs.reenactment.ReenactmentEnv` reads after :meth:`set_state`)."""
        return self._observe(self.bisk.get_observation())

    def sim_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The robot's ``(qpos, qvel)`` in the order of :attr:`qpos_names` and :attr:`qvel_names`:
        what :meth:`set_state` takes and what collected datasets record."""
        data = self.bisk.p.data
        return np.array(data.qpos[self._qpos_index], dtype=np.float64), np.array(data.qvel[self._qvel_index], dtype=np.float64)

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Put the robot into a joint state, as Gymnasium's MuJoCo environments' ``set_state`` does.

        The task itself (targets, terrain, progress) is left as it is; :meth:`_get_obs` then observes
        the new state.

        :param qpos: the robot's joint positions in the order of :attr:`qpos_names` (the root's x included).
        :param qvel: its joint velocities in the order of :attr:`qvel_names`.
        """
        from dm_control.mujoco.wrapper.mjbindings import mjlib

        qpos, qvel = np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64)
        if qpos.shape != (len(self.qpos_names),) or qvel.shape != (len(self.qvel_names),):
            raise TaskError(
                f"Bipedal Skills {self.robot}: set_state takes {len(self.qpos_names)} joint positions "
                f"({', '.join(self.qpos_names)}) and {len(self.qvel_names)} velocities, got shapes {qpos.shape} and "
                f"{qvel.shape}"
            )
        physics = self.bisk.p
        physics.data.qpos[self._qpos_index] = qpos
        physics.data.qvel[self._qvel_index] = qvel
        physics.forward()
        # The benchmark computes the observed contact forces after each step; forward() leaves them as they were.
        mjlib.mj_rnePostConstraint(physics.model.ptr, physics.data.ptr)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is None and not self._seeded:
            # The benchmark's random state is unset until it is given an int seed.
            seed = int(self.np_random.integers(2**31 - 1))
        self._seeded = True
        obs, info = self.bisk.reset(seed=None if seed is None else int(seed), options=options)
        return self._observe(obs), dict(info)

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        obs, reward, terminated, truncated, info = self.bisk.step(action)
        info = {**info, "x_velocity": float(self.bisk.robot_speed[0])}
        return self._observe(obs), float(reward), bool(terminated), bool(truncated), info

    def render(self):
        if self.render_mode == "rgb_array":
            return self.bisk.render()
        return None

    def close(self) -> None:
        self.bisk.close()


for _task in TASKS:
    for _robot in ROBOTS:
        register_task(
            bipedal_skills_id(_task, _robot), "latentprior.envs.bipedal_skills:BipedalSkills",
            {"task": _task, "robot": _robot}, MAX_EPISODE_STEPS,
        )
