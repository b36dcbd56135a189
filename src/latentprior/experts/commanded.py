"""Command-conditioned locomotion experts: many single-skill experts from one RL run.

Neural probabilistic motor primitives (Merel et al. 2019) compress many single-skill experts into
one module; the paper had one motion-capture tracking expert per clip. A robot without motion
capture gets a family of skills from velocity commands instead: one policy ``pi(a | s, c)`` is
trained once, with a command ``c`` sampled per episode from a training range, rewarded for
tracking it and appended to the observation; fixing ``c`` turns it into a single-skill expert
``mu_c(s) = mu(s, c)``. A skill expert takes the robot's plain observation and appends its command
inside a differentiable ``mu``, so the Jacobians ``d mu_c / d s`` of linear-feedback policy
cloning (Eq. 8 of Merel et al.) and :func:`latentprior.data.collect.collect` work as for any other
expert.

Read top to bottom:

1. :class:`Command`: a commanded planar velocity of the torso, as speed and heading.
2. :class:`CommandedTask` and :data:`COMMANDED_TASKS`: per robot, the command range sampled in
   training, the tracking reward (:class:`~latentprior.envs.tasks.TargetVelocity`) and the named
   skill sets: ``"train"`` (the skills a motor primitive module is fitted on) and ``"held_out"``
   (commands between them, for one-shot imitation of skills the module never saw).
3. :class:`CommandedExpert` (the conditioned policy, over observation + command features) and
   :class:`SkillExpert` (one fixed command, over the plain observation).
4. :func:`train_commanded` (the one RL run), :func:`evaluate_skills` (does each skill do what its
   command says) and :func:`collect_skills` (noisy rollouts of a whole skill set into one dataset,
   each episode labelled with its skill; :func:`episode_skill` reads the label back).

Training budgets. Our SAC (SB3's defaults) runs about 144 environment steps/s on HalfCheetah-v5 on
two CPU cores (``docs/BENCHMARKS.md``) and reaches a forward-running return of about 4,300 in
100k steps. Tracking several forward and backward speeds is a harder task, so the defaults
(:attr:`CommandedTask.default_steps`) are 1M steps for HalfCheetah-v5 (about 2 hours on two
cores) and 3M steps for Ant-v5, whose eight headings need an omnidirectional gait (about 6 hours
at the same rate; Ant's rate was not measured). These budgets are estimates; that the skills
track their commands at them has not been measured yet: check with ``skills.json``, which
:func:`train_commanded` writes (``task_reward_mean`` near 1 and ``velocity_error`` small against
the commanded speed).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch

from latentprior.envs.tasks import COMMAND_DIM, PLANAR, TargetVelocity, command_observation
from latentprior.experts.base import Expert, ExpertError
from latentprior.experts.trained import PolicyExpert
from latentprior.io import atomic_write_json, load_artifact, save_artifact

if TYPE_CHECKING:
    from latentprior.data import DatasetMetadata
    from latentprior.data.collect import CollectResult
    from latentprior.rl import PPOConfig, Policy, SACConfig

__all__ = [
    "Command",
    "CommandedTask",
    "COMMANDED_TASKS",
    "TRAINING_DEFAULTS",
    "commanded_task",
    "CommandedExpert",
    "SkillExpert",
    "load_commanded",
    "shipped_commanded",
    "train_commanded",
    "evaluate_skills",
    "collect_skills",
    "episode_skill",
]


# ------------------------------------------------------------------------------------------------
# 1. Commands
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Command:
    """A commanded velocity of the robot's torso in the plane: ``speed`` m/s along ``heading``.

    A negative ``speed`` becomes the opposite heading, so ``Command(-2.0)`` is 2 m/s backward
    (heading pi), which is how a robot that moves along x only is commanded backward. Headings are
    kept in (-pi, pi].

    :param speed: m/s.
    :param heading: radians, 0 = +x, pi / 2 = +y.
    """

    speed: float
    heading: float = 0.0

    def __post_init__(self) -> None:
        speed, heading = float(self.speed), float(self.heading)
        if not (math.isfinite(speed) and math.isfinite(heading)):
            raise ExpertError(f"a command needs a finite speed and heading, got speed {speed}, heading {heading}")
        if speed < 0:
            speed, heading = -speed, heading + math.pi
        heading = math.remainder(heading, 2 * math.pi)
        object.__setattr__(self, "speed", speed)
        object.__setattr__(self, "heading", math.pi if heading <= -math.pi else heading)

    @property
    def velocity(self) -> np.ndarray:
        """``(v_x, v_y)`` in m/s."""
        return self.speed * np.array([math.cos(self.heading), math.sin(self.heading)])

    @property
    def name(self) -> str:
        """E.g. ``"heading45_speed1.5"``; heading in degrees in [0, 360)."""
        degrees = round(math.degrees(self.heading), 6) % 360
        return f"heading{degrees:g}_speed{round(self.speed, 6):g}"

    def to_dict(self) -> dict[str, float]:
        return {"speed": self.speed, "heading": self.heading}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Command:
        """Inverse of :meth:`to_dict`; ``where`` (file and field) prefixes the error message."""
        try:
            return cls(float(d["speed"]), float(d.get("heading", 0.0)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ExpertError(f"{where}: expected {{'speed': m/s, 'heading': radians}}, got {d!r} ({e})") from None


def _as_command(command: Command | float) -> Command:
    """A float is a signed speed along +x (negative: backward)."""
    if isinstance(command, Command):
        return command
    if isinstance(command, (int, float, np.floating, np.integer)) and not isinstance(command, bool):
        return Command(float(command))
    raise ExpertError(f"a command is a Command(speed, heading) or a signed speed along x, got {command!r}")


# ------------------------------------------------------------------------------------------------
# 2. Tasks: command range, reward, skill sets
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CommandedTask:
    """What a command-conditioned expert of one robot is trained on, and its named skill sets.

    In training, every episode samples a speed uniformly from ``speed_range`` and a heading from
    ``heading_range``, rewards ``exp(-sharpness ||v - v_cmd||)`` (plus the environment's control
    cost and, with ``keep_healthy_reward``, its healthy reward) and appends the command features
    ``(speed, cos heading, sin heading)`` to the observation
    (:class:`~latentprior.envs.tasks.TargetVelocity`).

    :param env_id: Gymnasium id of the robot.
    :param speed_range: ``(low, high)`` m/s sampled per episode. For a robot that moves along x
        only it is a signed speed (negative: backward), and ``heading_range`` stays ``(0, 0)``.
    :param heading_range: ``(low, high)`` radians sampled per episode (planar robots).
    :param env_kwargs: keyword arguments of ``gymnasium.make`` (recorded in collected datasets).
    :param sharpness: of the tracking reward; 2 (not from a paper) is softer than the 5 of the
        latent action priors' transfer tasks, so that a policy learning from scratch, still far
        from its command, sees the reward change as it speeds up.
    :param keep_healthy_reward: keep the environment's healthy reward in training (robots that
        can fall), so that a policy far from its command is not paid to end its episode.
    :param skill_sets: named tuples of commands, each command one single-skill expert.
    :param default_steps: environment steps :func:`train_commanded` defaults to (an estimate, see
        the module docstring).
    """

    env_id: str
    speed_range: tuple[float, float]
    heading_range: tuple[float, float] = (0.0, 0.0)
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    sharpness: float = 2.0
    keep_healthy_reward: bool = False
    skill_sets: dict[str, tuple[Command, ...]] = dataclasses.field(default_factory=dict)
    default_steps: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("speed_range", "heading_range"):
            low, high = (float(x) for x in getattr(self, name))
            if not low <= high:
                raise ExpertError(f"{self.env_id}: {name} must be (low, high) with low <= high, got {(low, high)}")
            object.__setattr__(self, name, (low, high))
        if not self.planar and self.heading_range != (0.0, 0.0):
            raise ExpertError(f"{self.env_id} moves along x only: heading_range must be (0, 0), command backward with a negative speed")
        if self.sharpness <= 0:
            raise ExpertError(f"{self.env_id}: sharpness must be > 0, got {self.sharpness}")
        for set_name, commands in self.skill_sets.items():
            for command in commands:
                self.check(command, f"skill set {set_name!r}")

    @property
    def planar(self) -> bool:
        """Whether the robot moves in the plane (any heading) rather than along x only."""
        return self.env_id.split("-")[0] in PLANAR

    def check(self, command: Command | float, what: str = "command") -> Command:
        """``command`` as a :class:`Command`, or an :class:`ExpertError` if the expert was never trained on it."""
        command = _as_command(command)
        if self.planar:
            # The heading range may start anywhere; compare on the circle.
            low, high = self.heading_range
            offset = (command.heading - low) % (2 * math.pi)
            heading_ok = high - low >= 2 * math.pi - 1e-6 or offset <= high - low + 1e-9
            speed = command.speed
        else:
            heading_ok = abs(math.sin(command.heading)) < 1e-9
            speed = command.speed * round(math.cos(command.heading))
        if not heading_ok:
            raise ExpertError(
                f"{self.env_id}: {what} {command} has a heading the expert was not trained on "
                + (f"(headings {self.heading_range} radians)" if self.planar else "(this robot moves along x only: heading 0 or pi)")
            )
        low, high = self.speed_range
        if not low - 1e-9 <= speed <= high + 1e-9:
            raise ExpertError(
                f"{self.env_id}: {what} {command} asks for {speed:g} m/s, outside the training range "
                f"{low:g} .. {high:g} m/s{' (signed along x)' if not self.planar else ''}; the expert never saw it"
            )
        return command

    def skills(self, skill_set: str) -> dict[str, Command]:
        """The commands of a named skill set, by skill name, in the set's order."""
        if skill_set not in self.skill_sets:
            raise ExpertError(f"{self.env_id}: no skill set {skill_set!r}; the sets are {sorted(self.skill_sets)}")
        return {command.name: command for command in self.skill_sets[skill_set]}

    def wrapper(self, command: Command | None = None) -> Callable[[gym.Env], gym.Env]:
        """The task as an ``env -> env`` wrapper.

        :param command: ``None`` for training: a command sampled per episode and appended to the
            observation, and the reward shaped by the control cost and (``keep_healthy_reward``)
            the healthy reward. A fixed command for one skill: the observation is unchanged (the
            skill expert appends its command itself) and the reward is the skill's task reward,
            the tracking reward alone in (0, 1] per step, by which Merel et al. 2019 score
            one-shot imitation against the expert.
        """
        if command is None:
            speed: float | tuple[float, float] = self.speed_range
            heading: float | tuple[float, float] = self.heading_range
            speed, heading = (r[0] if r[0] == r[1] else r for r in (speed, heading))
            shaped = True
        else:
            command = self.check(command)
            speed, heading, shaped = command.speed, command.heading, False
        return functools.partial(
            TargetVelocity, target_speed=speed, direction=heading, sharpness=self.sharpness, observe_command=shaped,
            keep_ctrl_cost=shaped, keep_healthy_reward=shaped and self.keep_healthy_reward,
        )

    def make_env(self, command: Command | None = None, **make_kwargs: Any) -> gym.Env:
        """``gymnasium.make`` of the robot with ``env_kwargs`` and ``make_kwargs``, wrapped by :meth:`wrapper`."""
        return self.wrapper(command)(gym.make(self.env_id, **self.env_kwargs, **make_kwargs))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["skill_sets"] = {name: [c.to_dict() for c in commands] for name, commands in self.skill_sets.items()}
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> CommandedTask:
        """Inverse of :meth:`to_dict`; ``where`` (file and field) prefixes every error message."""
        if not isinstance(d, Mapping):
            raise ExpertError(f"{where}: expected the task as a JSON object, got {d!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted({"env_id", "speed_range"} - set(d))
        unknown = sorted(set(d) - fields)
        if missing or unknown:
            raise ExpertError(f"{where}: " + "; ".join(
                ([f"missing field(s) {', '.join(missing)}"] if missing else [])
                + ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
            ))
        kwargs = dict(d)
        skill_sets = d.get("skill_sets", {})
        if not isinstance(skill_sets, Mapping) or not all(isinstance(c, list) for c in skill_sets.values()):
            raise ExpertError(f"{where}.skill_sets: expected {{name: [command, ...]}}, got {skill_sets!r}")
        kwargs["skill_sets"] = {
            name: tuple(Command.from_dict(c, f"{where}.skill_sets.{name}[{i}]") for i, c in enumerate(commands))
            for name, commands in skill_sets.items()
        }
        try:
            return cls(**kwargs)
        except ExpertError as e:
            raise ExpertError(f"{where}: {e}") from None
        except (TypeError, ValueError) as e:
            raise ExpertError(f"{where}: malformed task ({e})") from None


def _directions(degrees: Sequence[float], speeds: Sequence[float]) -> tuple[Command, ...]:
    return tuple(Command(speed, math.radians(d)) for d in degrees for speed in speeds)


COMMANDED_TASKS: dict[str, CommandedTask] = {
    "Ant-v5": CommandedTask(
        env_id="Ant-v5",
        speed_range=(0.5, 1.75),
        heading_range=(-math.pi, math.pi),
        # The 27-d observation without the contact forces (Ant-v4's default). Ant-v5's control
        # cost (0.5 ||a||^2) is sized for its forward reward of several per step; against a
        # tracking reward of at most 1 exploration noise costs more than tracking can pay (0.54
        # per step at action noise std 0.37, benchmarks/ant_shaping.py), and PPO's first Ant
        # run learned to stand. A tenth of it keeps the gait economical without outweighing the
        # command. Ant-v5 also ends an episode when the torso rises above 1 m, which noise does
        # (mean episode length 366 steps at std 0.37, 41 at 1.0): bounces, not falls, so the
        # bound is raised out of reach. And a healthy reward of 1 per step makes each such end
        # cost ~100 in value, so the noise was trained away before the command was followed (a
        # second run stood still for 750k steps with the entropy falling); 0.2 keeps every
        # step's reward positive, so falling never pays.
        env_kwargs={
            "include_cfrc_ext_in_observation": False, "ctrl_cost_weight": 0.05, "healthy_reward": 0.2,
            "healthy_z_range": [0.2, 2.0],
        },
        keep_healthy_reward=True,
        skill_sets={
            # 8 headings x 2 speeds; held out: the 8 headings between them at the speed between.
            "train": _directions(range(0, 360, 45), (0.75, 1.5)),
            "held_out": _directions([22.5 + d for d in range(0, 360, 45)], (1.125,)),
        },
        default_steps=3_000_000,
    ),
    "HalfCheetah-v5": CommandedTask(
        env_id="HalfCheetah-v5",
        speed_range=(-2.5, 4.5),
        skill_sets={
            "train": tuple(Command(v) for v in (1.0, 2.0, 3.0, 4.0, -1.0, -2.0)),
            "held_out": tuple(Command(v) for v in (1.5, 2.5, 3.5, -1.5)),
        },
        default_steps=1_000_000,
    ),
}
"""The robots with a command-conditioned task, by Gymnasium id."""

TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "sac": {"learning_starts": 10_000},  # the RL zoo's value for MuJoCo; SB3's 100 is for small tasks
    "ppo": {},
}
"""Config fields :func:`train_commanded` and ``latentprior experts train-commanded`` set per algorithm."""


def commanded_task(task: str | CommandedTask) -> CommandedTask:
    """The :class:`CommandedTask` of an environment id (or the task itself)."""
    if isinstance(task, CommandedTask):
        return task
    if task not in COMMANDED_TASKS:
        raise ExpertError(f"no command-conditioned task for {task!r}; there is one for {sorted(COMMANDED_TASKS)}")
    return COMMANDED_TASKS[task]


# ------------------------------------------------------------------------------------------------
# 3. The experts
# ------------------------------------------------------------------------------------------------


class CommandedExpert(PolicyExpert):
    """A command-conditioned policy ``mu(s, c)``, over the observation with the command features appended.

    Use :meth:`skill` or :meth:`skills` for single-skill experts over the robot's plain
    observation; ``mu`` here takes ``[s, speed, cos heading, sin heading]``.

    Saved as an artifact directory: ``config.json`` (kind ``"commanded"``, the task, provenance)
    and ``policy/`` (a :mod:`latentprior.rl` policy artifact).

    :param policy: the policy trained on :meth:`CommandedTask.wrapper` ``()``'s observations.
    :param task: the task it was trained on.
    :param info: JSON-able provenance (the training run, its budget).
    """

    kind = "commanded"

    def __init__(self, policy: "Policy", task: CommandedTask, info: Mapping[str, Any] | None = None):
        super().__init__(policy, info)
        space = self.observation_space
        if len(space.shape) != 1 or space.shape[0] <= COMMAND_DIM:
            raise ExpertError(
                f"a command-conditioned policy observes the state plus {COMMAND_DIM} command features, "
                f"its observation space has shape {space.shape}"
            )
        self.task = task
        self.robot_observation_space = gym.spaces.Box(space.low[:-COMMAND_DIM], space.high[:-COMMAND_DIM], dtype=space.dtype)

    def skill(self, command: Command | float) -> SkillExpert:
        """The single-skill expert of one command (a float is a signed speed along x)."""
        return SkillExpert(self, self.task.check(command))

    def skills(self, skill_set: str = "train") -> dict[str, SkillExpert]:
        """The single-skill experts of a named skill set (see :data:`COMMANDED_TASKS`), by skill name."""
        return {name: SkillExpert(self, command) for name, command in self.task.skills(skill_set).items()}

    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        self.policy.save(directory / "policy")
        # config.json last: a directory with one holds a complete artifact.
        return save_artifact(
            directory,
            {},
            {"kind": self.kind, "task": self.task.to_dict(), "info": self.info},
            {"observation": self.observation_space, "action": self.action_space},
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> CommandedExpert:
        from latentprior.rl import load_policy

        directory = Path(directory)
        config, _, _ = load_artifact(directory, cls.kind)
        task = CommandedTask.from_dict(config.get("task"), f"{directory / 'config.json'}: field 'task'")
        if not (directory / "policy" / "config.json").is_file():
            raise ExpertError(f"{directory / 'policy'}: the command-conditioned policy is missing")
        return cls(load_policy(directory / "policy"), task, config.get("info", {}))


class SkillExpert(Expert):
    """One skill of a :class:`CommandedExpert`: ``mu_c(s) = mu(s, c)`` for a fixed command ``c``.

    ``mu`` takes the robot's plain observation and appends the command features inside, so it
    stays differentiable in the observation (``jacobian`` is ``d mu / d s`` at the fixed command).

    Saved as an artifact directory: ``config.json`` (kind ``"commanded_skill"``, the command) and
    ``commanded/`` (the whole command-conditioned expert).

    :param commanded: the command-conditioned expert.
    :param command: the fixed command (checked against the training range by
        :meth:`CommandedExpert.skill`, which is the usual way to make one).
    """

    kind = "commanded_skill"

    def __init__(self, commanded: CommandedExpert, command: Command):
        info = {"skill": command.name, "command": command.to_dict(), "env_id": commanded.task.env_id}
        if "source" in commanded.info:
            info["source"] = commanded.info["source"]
        super().__init__(commanded.robot_observation_space, commanded.action_space, info)
        self.commanded, self.command = commanded, command
        self._features = torch.as_tensor(command_observation(command.velocity), dtype=torch.float32)

    @property
    def name(self) -> str:
        return self.command.name

    def mu(self, obs: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """The conditioned policy's mean action at ``[obs, command features]``; ``t`` is ignored."""
        features = self._features.to(obs.dtype).expand(*obs.shape[:-1], COMMAND_DIM)
        return self.commanded.mu(torch.cat([obs, features], dim=-1))

    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        self.commanded.save(directory / "commanded")
        return save_artifact(
            directory,
            {},
            {"kind": self.kind, "command": self.command.to_dict(), "info": self.info},
            {"observation": self.observation_space, "action": self.action_space},
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SkillExpert:
        directory = Path(directory)
        config, _, _ = load_artifact(directory, cls.kind)
        command = Command.from_dict(config.get("command"), f"{directory / 'config.json'}: field 'command'")
        return CommandedExpert.load(directory / "commanded").skill(command)


def shipped_commanded(env_id: str) -> Path | None:
    """Folder of the command-conditioned expert shipped in the package for ``env_id``, or ``None``.

    ``latentprior/assets/experts/commanded/<env_id>/`` holds the expert the benchmarks use
    (``training.json``: the command and settings that trained it; ``skills.json``: its tracking
    per skill). Load it with :func:`load_commanded`.
    """
    from importlib.resources import files

    folder = Path(str(files("latentprior") / "assets" / "experts" / "commanded" / env_id))
    return folder if (folder / "config.json").is_file() else None


def load_commanded(path: str | os.PathLike) -> CommandedExpert:
    """Load a command-conditioned expert, or say clearly what else ``path`` holds."""
    from latentprior.experts.base import load_expert

    expert = load_expert(path)
    if not isinstance(expert, CommandedExpert):
        raise ExpertError(
            f"{path}: holds a {expert.kind!r} expert, not a command-conditioned one "
            "(train one with 'latentprior experts train-commanded')"
        )
    return expert


# ------------------------------------------------------------------------------------------------
# 4. Training, evaluation, data collection
# ------------------------------------------------------------------------------------------------


def train_commanded(
    task: str | CommandedTask,
    config: "SACConfig | PPOConfig | None" = None,
    out: str | os.PathLike = "runs/commanded",
    progress: bool = True,
    evaluate_episodes: int = 1,
    evaluate_steps: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> CommandedExpert:
    """Train a command-conditioned expert in one RL run, evaluate its skills and save it.

    ``out`` ends up holding the expert artifact (``config.json``, ``policy/``; load it with
    :func:`~latentprior.experts.load_expert`), ``skills.json`` (:func:`evaluate_skills` of every
    skill set) and ``run/``, the RL run directory (metrics, checkpoints). Calling again with the
    same arguments continues an interrupted run.

    :param task: an environment id of :data:`COMMANDED_TASKS`, or a task.
    :param config: a :class:`~latentprior.rl.SACConfig` or :class:`~latentprior.rl.PPOConfig`; the
        learner follows its type. Default: SAC with :data:`TRAINING_DEFAULTS` for
        ``task.default_steps``.
    :param out: output directory.
    :param progress: show the learner's progress line.
    :param evaluate_episodes: episodes per skill for ``skills.json`` (0 skips the evaluation).
    :param evaluate_steps: time limit of those episodes (``None``: the environment's).
    :param metadata: JSON-able facts kept in the run's ``config.json`` (the command line ...).
    :return: the trained expert.
    """
    from latentprior.envs.make import make_vec_env
    from latentprior.rl import PPOConfig, SACConfig, ppo, sac

    task = commanded_task(task)
    out = Path(out)
    if config is None:
        config = SACConfig(total_steps=task.default_steps, **TRAINING_DEFAULTS["sac"])
    if isinstance(config, SACConfig):
        learner, algo = sac.train, "sac"
    elif isinstance(config, PPOConfig):
        learner, algo = ppo.train, "ppo"
    else:
        raise ExpertError(f"config must be a SACConfig or a PPOConfig, got {type(config).__name__}")
    env_fn = functools.partial(make_vec_env, task.env_id, wrappers=[task.wrapper()], env_kwargs=task.env_kwargs, backend="sync")
    run_metadata = {"env_id": task.env_id, "commanded_task": task.to_dict(), **dict(metadata or {})}
    result = learner(env_fn, config, out / "run", progress=progress, metadata=run_metadata)
    info = {
        "trained_with": "latentprior.experts.train_commanded",
        "source": str(out),
        "algo": algo,
        "steps": result.steps,
        "seed": config.seed,
        **{k: result.metrics[k] for k in ("eval/return_mean", "eval/task_return_mean") if k in result.metrics},
    }
    expert = CommandedExpert(result.policy, task, info)
    if evaluate_episodes > 0:
        report = {
            name: evaluate_skills(expert, name, evaluate_episodes, max_episode_steps=evaluate_steps)
            for name in task.skill_sets
        }
        expert.info["task_reward_mean"] = {
            name: float(np.mean([s["task_reward_mean"] for s in skills.values()])) for name, skills in report.items()
        }
        atomic_write_json(out / "skills.json", report)
    expert.save(out)
    return expert


def _skill_commands(task: CommandedTask, skills: str | Sequence[Command | float]) -> dict[str, Command]:
    if isinstance(skills, str):
        return task.skills(skills)
    commands = [task.check(c) for c in skills]
    if not commands:
        raise ExpertError("no skills given")
    return {c.name: c for c in commands}


def evaluate_skills(
    expert: CommandedExpert,
    skills: str | Sequence[Command | float] = "train",
    episodes: int = 1,
    seed: int = 0,
    max_episode_steps: int | None = None,
) -> dict[str, dict[str, Any]]:
    """How well each single-skill expert does what its command says (deterministic actions).

    :param expert: the command-conditioned expert.
    :param skills: a skill set's name or a list of commands.
    :param episodes: episodes per skill; episode ``i`` resets with seed ``seed + i``.
    :param seed: base reset seed.
    :param max_episode_steps: time limit (``None``: the environment's).
    :return: per skill name: ``command``; ``velocity``, the mean torso velocity ``(v_x, v_y)``
        over all steps; ``velocity_error``, its distance to the commanded velocity (m/s);
        ``task_reward_mean``, the tracking reward per step (1 = exact tracking); ``return`` (the
        tracking reward summed over an episode, averaged: the episode length at best) and
        ``length`` (mean steps).
    """
    report = {}
    for name, command in _skill_commands(expert.task, skills).items():
        skill = expert.skill(command)
        env = expert.task.make_env(command, max_episode_steps=max_episode_steps)
        velocities, task_rewards, returns, lengths = [], [], [], []
        try:
            for i in range(episodes):
                obs, _ = env.reset(seed=seed + i)
                total, steps, done = 0.0, 0, False
                while not done:
                    obs, reward, terminated, truncated, info = env.step(skill.mean_action(obs))
                    velocities.append(info["velocity"])
                    task_rewards.append(info["task_reward"])
                    total, steps, done = total + float(reward), steps + 1, terminated or truncated
                returns.append(total)
                lengths.append(steps)
        finally:
            env.close()
        mean_velocity = np.mean(velocities, axis=0)
        report[name] = {
            "command": command.to_dict(),
            "velocity": mean_velocity.tolist(),
            "velocity_error": float(np.linalg.norm(mean_velocity - command.velocity)),
            "task_reward_mean": float(np.mean(task_rewards)),
            "return": float(np.mean(returns)),
            "length": float(np.mean(lengths)),
        }
    return report


def collect_skills(
    expert: CommandedExpert,
    skills: str | Sequence[Command | float] = "train",
    episodes: int = 100,
    noise_std: float = 0.1,
    seed: int = 0,
    num_envs: int = 8,
    max_episode_steps: int | None = None,
    jacobians: bool = False,
    out: str | os.PathLike = "skills.h5",
    progress: bool = True,
    license: str = "",
    command: str | None = None,
) -> "CollectResult":
    """Roll out every skill of a set into one dataset: many single-skill experts, one file.

    Each skill expert is rolled out ``episodes`` times with :func:`latentprior.data.collect.collect`
    (noisy executed ``actions``, the expert's mean ``expert_actions``, ``qpos``/``qvel``, and
    ``jacobians`` if asked). Skill ``k`` of the set owns episodes ``k * episodes`` to
    ``(k + 1) * episodes - 1``; the metadata's ``extra["skills"]`` lists each skill's ``name``,
    ``command``, ``first_episode`` and ``episodes`` (:func:`episode_skill` looks one up), and
    ``extra["commanded_task"]`` the task. ``rewards`` are each skill's own task reward (the
    tracking reward of its command, see :meth:`CommandedTask.wrapper`), so one-shot imitation can
    compare returns under it. Skill
    ``k``'s resets and noise derive from ``(seed, k)``.

    :param expert: the command-conditioned expert.
    :param skills: a skill set's name (``"train"``, ``"held_out"``) or a list of commands.
    :param episodes: episodes per skill (Merel et al. 2019: 100 noisy rollouts per expert for
        cloning; one noise-free rollout with ``jacobians=True`` for LFPC).
    :param noise_std: action noise std on the [-1, 1] action scale (Merel et al.: 0.1).
    :param seed: base seed.
    :param num_envs: environments stepped side by side within a skill.
    :param max_episode_steps: time limit (``None``: the environment's).
    :param jacobians: also record ``d mu_c / d s`` at every visited state (for LFPC).
    :param out: the dataset file to write (the file appears when all skills are done).
    :param progress: print one line per skill.
    :param license: license of the data, recorded in the metadata.
    :param command: the command line to record; defaults to this process's.
    :return: the :class:`~latentprior.data.collect.CollectResult` of the whole file.
    """
    from latentprior.data.collect import collect_experts

    task = expert.task
    commands = _skill_commands(task, skills)
    return collect_experts(
        {name: expert.skill(c) for name, c in commands.items()}, task.env_id, episodes, noise_std=noise_std, seed=seed,
        num_envs=num_envs, max_episode_steps=max_episode_steps, jacobians=jacobians, out=out, progress=progress,
        license=license, command=command, env_kwargs=task.env_kwargs,
        wrappers={name: [task.wrapper(c)] for name, c in commands.items()},
        labels={name: {"command": c.to_dict()} for name, c in commands.items()},
        source="latentprior.experts.collect_skills: commanded expert",
        extra={"expert_kind": SkillExpert.kind, "expert_info": dict(expert.info), "commanded_task": task.to_dict()},
    )


def episode_skill(metadata: "DatasetMetadata", index: int) -> tuple[str, Command, CommandedTask] | None:
    """The skill that episode ``index`` of a :func:`collect_skills` dataset came from.

    :return: ``(name, command, task)``, or ``None`` for a dataset without skill labels.
    """
    extra = metadata.extra
    if "skills" not in extra or "commanded_task" not in extra:
        return None
    where = "dataset metadata"
    task = CommandedTask.from_dict(extra["commanded_task"], f"{where}: extra.commanded_task")
    for i, skill in enumerate(extra["skills"]):
        try:
            first, count = int(skill["first_episode"]), int(skill["episodes"])
        except (KeyError, TypeError, ValueError) as e:
            raise ExpertError(f"{where}: extra.skills[{i}] needs first_episode and episodes ({e})") from None
        if first <= index < first + count:
            command = Command.from_dict(skill.get("command"), f"{where}: extra.skills[{i}].command")
            return str(skill.get("name", command.name)), command, task
    return None
