"""Latent action priors (Hausdörfer, von Rohr, Lefort, Schoellig, 2024) as experiments.

    from latentprior.experiments.lap import LAPExperiment, run_lap_experiment

    experiment = LAPExperiment(env_id="HalfCheetah-v5", variant="ppo+latent",
                               demonstration="shared/data/latent_action_priors/HalfCheetah-v4.npy", allow_pickle=True)
    result = run_lap_experiment(experiment, "runs/hc_latent")    # also written to runs/hc_latent/result.json

An experiment is one (environment, variant, seed[, transfer task]) of the paper. The variants are
named once, in :data:`VARIANTS`, and the same names are used by the benchmark, configs and docs:

=====================  =======================================================================
``ppo``                PPO in the environment's action space, task reward only.
``ppo+style``          PPO with the style reward of the demonstration (phase in the observation).
``ppo+latent``         PPO acting through the frozen decoder plus a full-action residual.
``ppo+latent+style``   both of the above: the paper's method.
``ppo+latent-only``    PPO acting in the latent alone (``w = 0``, no residual); the authors' code
                       cannot run it.
``ppo+resrl+style``    residual RL on the reference action, with the style reward
                       (:class:`~latentprior.envs.reference_residual.ReferenceResidual`).
``bc``                 behavioural cloning: an MLP regressed on the demonstration's (observation,
                       action) pairs, evaluated in the environment (the paper: BC does not beat PPO).
=====================  =======================================================================

Environments are wrapped in this order: transfer task
(:class:`~latentprior.envs.tasks.TargetVelocity`), then the style reward
(:class:`~latentprior.envs.style_reward.StyleReward`), then the action-space wrapper
(:class:`~latentprior.envs.latent_action.LatentActionWrapper` or
:class:`~latentprior.envs.reference_residual.ReferenceResidual`), so the style wrapper sees the
task reward and the robot's state, and the action wrapper sees the phase.

Reported returns are *task* returns, as in the paper: the evaluation sums ``info["task_reward"]``
(environment reward, or the tracking reward of a transfer task) when the RL core logs it as
``eval/task_return_mean``; otherwise ``eval/return_mean`` is read, and ``result.json`` says which
(``return_metric``), because with the style reward that is the shaped return.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import gymnasium as gym
import mujoco
import numpy as np
import torch

from latentprior.data import Dataset, DatasetError, load_dataset
from latentprior.data.lap import import_lap_demonstration
from latentprior.envs.latent_action import LatentActionWrapper
from latentprior.envs.make import make_vec_env
from latentprior.envs.reference_residual import ReferenceResidual
from latentprior.envs.style_reward import JOINT_QPOS, StyleError, StyleReward, detect_cycle_length, robot_name
from latentprior.envs.tasks import TargetVelocity
from latentprior.experiments.report import Curve, markdown_table, read_curve, write_report
from latentprior.experiments.train import make_config
from latentprior.io import LatentPriorError, atomic_path, atomic_write_json, read_json
from latentprior.latent.action_prior import ActionPrior, ActionPriorConfig, fit_action_prior
from latentprior.rl import EnvFactory, Policy, evaluate_policy, load_policy, ppo
from latentprior.rl.networks import GaussianActor
from latentprior.rl.normalize import ObservationNormalizer
from latentprior.rl.run import eval_seed

__all__ = [
    "load_demonstrations",
    "demonstration_actions",
    "fit_action_prior_from_file",
    "plot_explained_variance",
    "Variant",
    "VARIANTS",
    "get_variant",
    "LAPExperiment",
    "ObservationLayout",
    "observation_layout",
    "ReferenceCycle",
    "reference_cycle",
    "demonstration_speed",
    "replay_reference_cycle",
    "decoder_reach",
    "Gait",
    "gait_of",
    "measure_gait",
    "LAPPlan",
    "plan_lap_experiment",
    "lap_wrappers",
    "lap_env_fn",
    "fit_behaviour_cloning",
    "steps_to_reach",
    "run_lap_experiment",
]


# ----------------------------------------------------------------------------------- demonstrations
def load_demonstrations(path: str | os.PathLike, allow_pickle: bool = False) -> Dataset:
    """A project dataset (``.h5``) or one of the paper's ``.npy`` files (needs ``allow_pickle``)."""
    path = Path(path)
    if path.suffix == ".npy":
        return import_lap_demonstration(path, allow_pickle=allow_pickle)
    return load_dataset(path)


def demonstration_actions(dataset: Dataset) -> np.ndarray:
    """Expert actions normalised to [-1, 1] by the dataset's action bounds.

    The autoencoder works in normalised actions so that one latent range suits every robot
    (Humanoid's actions lie in [-0.4, 0.4]); :class:`~latentprior.envs.latent_action.LatentActionWrapper`
    maps decoded actions back to the bounds.
    """
    source = dataset.path or "dataset"
    if "actions" not in dataset.fields:
        raise DatasetError(f"{source}: has no 'actions' field; a latent action prior is fitted from expert actions")
    actions = dataset.concat("expert_actions" if "expert_actions" in dataset.fields else "actions").astype(np.float64)
    space = dataset.metadata.action_space
    if space is not None and np.isfinite(space.low).all() and np.isfinite(space.high).all():
        actions = 2.0 * (actions - space.low) / (space.high - space.low) - 1.0
    return np.clip(actions, -1.0, 1.0).astype(np.float32)


def fit_action_prior_from_file(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: ActionPriorConfig | None = None,
    allow_pickle: bool = False,
    progress: bool = True,
) -> ActionPrior:
    """``latentprior fit action-prior``: fit on every action of the file, save, and write the PCA plot and per-dimension errors.

    Writes ``out/`` (the artifact), ``out/explained_variance.png`` and ``out/report.md``.
    """
    dataset = load_demonstrations(data, allow_pickle)
    return _fit_and_report(demonstration_actions(dataset), out, config, dataset.metadata.env_id, f"`{data}`", progress)


def _fit_and_report(
    actions: np.ndarray, out: str | os.PathLike, config: ActionPriorConfig | None, env_id: str | None, source: str, progress: bool
) -> ActionPrior:
    """Fit a prior on normalised ``actions``, save it to ``out`` with its PCA plot and ``report.md``."""

    def show(epoch: int, loss: float) -> None:
        if progress and epoch % 1000 == 0:
            print(f"epoch {epoch:6d}  loss {loss:.5f}", flush=True)

    prior = fit_action_prior(actions, config, env_id=env_id, callback=show)
    out = Path(out)
    prior.save(out)
    plot_explained_variance(prior.explained_variance, prior.latent_dim, out / "explained_variance.png", prior.config.variance_threshold)
    rows = [[f"a[{i}]", f"{m:.5f}"] for i, m in enumerate(prior.reconstruction_mse)]
    write_report(
        out / "report.md",
        f"Latent action prior for {env_id or 'unknown environment'}",
        [
            ("Data", f"{source}: {len(actions)} actions of dimension {prior.action_dim}."),
            ("Latent size", f"{prior.latent_dim} (cumulative explained variance "
             f"{np.cumsum(prior.explained_variance)[prior.latent_dim - 1]:.3f}).\n\n![PCA](explained_variance.png)"),
            ("Reconstruction error per action dimension (MSE, normalised units)", markdown_table(["dimension", "MSE"], rows)),
        ],
    )
    return prior


def plot_explained_variance(ratio: np.ndarray, k: int, path: Path, threshold: float) -> Path:
    """Bar plot of each principal component's explained variance, cumulative line, chosen ``k`` (Fig. 3 of the paper)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=120)
    components = np.arange(1, len(ratio) + 1)
    ax.bar(components, ratio, color="tab:blue", label="explained variance")
    ax.plot(components, np.cumsum(ratio), "k.-", label="cumulative")
    ax.axvline(k + 0.5, color="tab:red", label=f"k = {k} (> {threshold:.0%})")
    ax.set_xlabel("principal component")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------- variants
@dataclasses.dataclass(frozen=True)
class Variant:
    """One compared method of the paper: how the agent learns, acts and is rewarded."""

    learner: str
    """``"ppo"`` or ``"bc"`` (behavioural cloning)"""
    style: bool
    """add the style reward and the phase observation"""
    actions: str
    """action space: ``"full"`` (the environment's), ``"latent"`` (decoder + residual),
    ``"latent-only"`` (decoder alone) or ``"reference-residual"`` (reference action + residual)"""
    summary: str
    """one line for reports"""

    @property
    def needs_prior(self) -> bool:
        return self.actions in ("latent", "latent-only")

    @property
    def needs_reference(self) -> bool:
        """Needs the demonstration's reference gait cycle (style reward or reference actions)."""
        return self.style or self.actions == "reference-residual"

    @property
    def needs_actions(self) -> bool:
        return self.needs_prior or self.actions == "reference-residual" or self.learner == "bc"


VARIANTS: dict[str, Variant] = {
    "ppo": Variant("ppo", False, "full", "PPO, task reward"),
    "ppo+style": Variant("ppo", True, "full", "PPO with the style reward"),
    "ppo+latent": Variant("ppo", False, "latent", "PPO through the latent action prior (decoder + residual)"),
    "ppo+latent+style": Variant("ppo", True, "latent", "PPO through the latent action prior, with the style reward"),
    "ppo+latent-only": Variant("ppo", False, "latent-only", "PPO in the latent actions alone (no residual)"),
    "ppo+resrl+style": Variant("ppo", True, "reference-residual", "residual RL on the reference action, with the style reward"),
    "bc": Variant("bc", False, "full", "behavioural cloning of the demonstration"),
}
"""Every variant by its name (the names the CLI, configs, benchmark and docs use)."""


def get_variant(name: str) -> Variant:
    """The :class:`Variant` called ``name``; an unknown name raises an error listing the known ones."""
    if name not in VARIANTS:
        raise LatentPriorError(f"unknown variant {name!r}; known variants: {', '.join(VARIANTS)}")
    return VARIANTS[name]


# ---------------------------------------------------------------------------------- paper defaults
#: Environment steps per run (Sec. IV of the paper): 2M, 5M for the humanoids.
PAPER_TOTAL_STEPS = {"Humanoid": 5_000_000, "UnitreeH1": 5_000_000}
DEFAULT_TOTAL_STEPS = 2_000_000
#: ``w`` of ``a = (1 - w) dec(a_latent) + w a_full``: 0.1, 0.5 for the humanoids.
PAPER_RESIDUAL_WEIGHTS = {"Humanoid": 0.5, "UnitreeH1": 0.5}
DEFAULT_RESIDUAL_WEIGHT = 0.1
#: PPO settings that differ from stable-baselines3's defaults in the authors' training script.
PAPER_PPO = {"Humanoid": {"hidden_sizes": (512, 512), "n_steps": 4 * 2048, "batch_size": 4 * 64, "ent_coef": 0.01}}


@dataclasses.dataclass
class LAPExperiment:
    """One run of the latent action priors study; every knob, with the paper's defaults.

    Plain JSON round-trips it: ``LAPExperiment.from_dict(json.load(f))`` (or
    ``LAPExperiment(**json.load(f))``) rebuilds an experiment from the ``experiment.json``
    that :func:`run_lap_experiment` writes. ``None`` fields resolve by environment (see
    :func:`plan_lap_experiment`).
    """

    env_id: str = "HalfCheetah-v5"
    """Gymnasium id of the environment"""
    variant: str = "ppo+latent+style"
    """a name in :data:`VARIANTS`"""
    demonstration: str | None = None
    """the expert demonstration: a project dataset (``.h5``) or one of the paper's ``.npy`` files;
    needed by every variant but ``ppo`` and by transfer tasks"""
    allow_pickle: bool = False
    """the paper's ``.npy`` files are pickles, which can run code when read: opt in only for files you trust"""
    total_steps: int | None = None
    """environment steps of PPO; ``None``: the paper's 2M (5M for Humanoid and Unitree H1)"""
    seed: int = 0
    """seeds the prior, PPO, behavioural cloning and the environments"""
    residual_weight: float | None = None
    """``w`` in ``a = (1 - w) dec(a_latent) + w a_full``; ``None``: 0.1 (0.5 for Humanoid and Unitree H1)"""
    latent_size: int | None = None
    """latent action size ``k``; ``None``: smallest ``k`` whose principal components explain
    more than ``variance_threshold`` of the expert actions' variance"""
    variance_threshold: float = 0.97
    """cumulative explained variance the PCA latent size must exceed"""
    prior_epochs: int = 10_000
    """epochs of autoencoder training (the authors: 10k)"""
    prior_data: str = "cycle"
    """actions the prior is fitted on: ``"cycle"``, the reference gait cycle (as the authors:
    5-22 frames), or ``"demonstration"``, every action of the demonstration"""
    action_prior: str | None = None
    """a fitted prior's directory (``latentprior fit action-prior``) to use instead of fitting one"""
    cycle_length: int | None = None
    """steps per gait cycle; ``None``: the demonstration's recorded cycle length, else detected
    from its joint positions (:func:`~latentprior.envs.style_reward.detect_cycle_length`)"""
    cycle_start: int | None = None
    """demonstration step where the reference cycle starts; ``None``: the recorded one
    (``metadata.extra["cycle_start"]``, else the first of ``cycle_starts``, else 0)"""
    task_weight: float = 0.67
    """weight of the normalised task reward in the style-shaped reward"""
    style_weight: float = 0.33
    """weight of the imitation term ``exp(-||q_ref(phase) - q||)``"""
    task_reward_normaliser: float | None = None
    """divides the task reward in the style-shaped reward; ``None``: the paper's value by robot
    (Ant 2, Humanoid 25, else 1) and 1 for a transfer task (its tracking reward is in [0, 1])"""
    target_speed_factor: float | None = None
    """transfer task: track ``factor x`` the demonstration's mean forward speed (paper: 2, 3, 4);
    ``None``: the environment's own task (run forward)"""
    target_direction: float = 0.0
    """transfer task: heading of the commanded velocity in radians (0 = +x); only Ant and
    Humanoid can follow one other than 0 or pi"""
    tracking_sharpness: float = 5.0
    """transfer task: the 5 of the tracking reward ``exp(-5 ||v - v_cmd||)``"""
    transfer_ctrl_cost: bool = False
    """transfer task: subtract the environment's control cost from the tracking reward (the
    authors' transfer reward has none, so the task return is the tracking return)"""
    reference_residual_scale: float = 1.0
    """``ppo+resrl+style``: scale of the policy's residual on the reference action (normalised units)"""
    num_envs: int = 1
    """PPO sub-environments (the paper: 1)"""
    eval_episodes: int = 10
    """episodes of every evaluation (deterministic actions)"""
    ppo: dict[str, Any] = dataclasses.field(default_factory=dict)
    """:class:`~latentprior.rl.PPOConfig` fields over the paper's settings (SB3 defaults; Humanoid:
    512-512 networks, 8192-step rollouts, minibatch 256, entropy 0.01) and ``eval_every = steps / 20``"""
    env_kwargs: dict[str, Any] | None = None
    """``gymnasium.make`` keyword arguments; ``None``: the demonstration's (Ant: the 27-d observation)"""
    bc_epochs: int = 2_000
    """behavioural cloning: passes over the demonstration"""
    bc_batch_size: int = 64
    """behavioural cloning: minibatch size"""
    bc_learning_rate: float = 1e-3
    """behavioural cloning: Adam step size"""

    def __post_init__(self) -> None:
        get_variant(self.variant)
        problems = [
            f"{name} must be {rule}, got {getattr(self, name)!r}"
            for name, ok, rule in [
                ("total_steps", self.total_steps is None or self.total_steps >= 1, ">= 1 or None"),
                ("residual_weight", self.residual_weight is None or 0.0 <= self.residual_weight <= 1.0, "in [0, 1] or None"),
                ("latent_size", self.latent_size is None or self.latent_size >= 1, ">= 1 or None"),
                ("prior_epochs", self.prior_epochs >= 1, ">= 1"),
                ("prior_data", self.prior_data in ("cycle", "demonstration"), "'cycle' or 'demonstration'"),
                ("cycle_length", self.cycle_length is None or self.cycle_length >= 1, ">= 1 or None"),
                ("cycle_start", self.cycle_start is None or self.cycle_start >= 0, ">= 0 or None"),
                ("task_weight", self.task_weight >= 0, ">= 0"),
                ("style_weight", self.style_weight >= 0, ">= 0"),
                ("task_reward_normaliser", self.task_reward_normaliser is None or self.task_reward_normaliser > 0, "> 0 or None"),
                ("target_speed_factor", self.target_speed_factor is None or self.target_speed_factor > 0, "> 0 or None"),
                ("reference_residual_scale", self.reference_residual_scale > 0, "> 0"),
                ("num_envs", self.num_envs >= 1, ">= 1"),
                ("eval_episodes", self.eval_episodes >= 1, ">= 1"),
                ("bc_epochs", self.bc_epochs >= 1, ">= 1"),
                ("bc_batch_size", self.bc_batch_size >= 1, ">= 1"),
            ]
            if not ok
        ]
        if problems:
            raise LatentPriorError("LAPExperiment: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LAPExperiment:
        """Build from a plain dict (e.g. a loaded ``experiment.json``); unknown keys are an error that lists the fields."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise LatentPriorError(f"LAPExperiment has no field(s) {', '.join(unknown)}; fields: {', '.join(names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------ the demonstration's gait
@dataclasses.dataclass(frozen=True)
class ObservationLayout:
    """Where a Gymnasium MuJoCo locomotion observation holds the robot's state."""

    joints: slice
    """the actuated joints' positions (``qpos[JOINT_QPOS[robot]]``)"""
    x_velocity: int
    """the root's forward velocity ``qvel[0]``"""


def observation_layout(env: gym.Env) -> ObservationLayout:
    """The layout of ``env``'s observation (Gymnasium v5: ``[qpos without the root's x (and y), qvel, ...]``).

    A free root joint (Ant, Humanoid) leaves x and y out of the observation, a planar root
    (HalfCheetah, Hopper, Walker2d) only x; then come all of ``qvel``, whose first entry is the
    forward velocity: HalfCheetah ``obs[8]``, Ant ``obs[13]``, Humanoid ``obs[22]``.
    """
    name = robot_name(env.spec.id) if env.spec else ""
    base = env.unwrapped
    if name not in JOINT_QPOS or not getattr(base, "_exclude_current_positions_from_observation", False):
        raise StyleError(
            f"the observation layout of {env.spec.id if env.spec else 'this environment'} is not known "
            f"(robots: {', '.join(JOINT_QPOS)}, with exclude_current_positions_from_observation=True)"
        )
    skipped = 2 if base.model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE else 1
    joints = JOINT_QPOS[name]
    return ObservationLayout(slice(joints.start - skipped, joints.stop - skipped), base.model.nq - skipped)


@dataclasses.dataclass(frozen=True)
class ReferenceCycle:
    """One gait cycle of the demonstration: the style reference and the reference actions."""

    start: int
    """step of the demonstration's first episode where the cycle starts"""
    length: int
    """steps per cycle"""
    q: np.ndarray
    """joint positions, ``(length, n_joints)``; row ``p`` is the pose at phase ``p``"""
    actions: np.ndarray | None
    """the actions taken at those poses, ``(length, d)``, environment units (``None`` without actions)"""


def reference_cycle(
    dataset: Dataset, env: gym.Env, cycle_length: int | None = None, cycle_start: int | None = None
) -> ReferenceCycle:
    """The reference gait cycle of the demonstration's first episode.

    :param dataset: the demonstration; joint positions come from ``qpos`` when recorded, else
        from the observations (see :func:`observation_layout`).
    :param env: an environment of the demonstration's robot (for its observation layout).
    :param cycle_length: steps per cycle; ``None``: ``metadata.extra["cycle_length"]``, else
        detected from the joint positions.
    :param cycle_start: first step of the cycle; ``None``: ``metadata.extra["cycle_start"]``, else
        the first of ``extra["cycle_starts"]`` (past the start-up from rest), else 0.
    """
    episode, extra = dataset[0], dataset.metadata.extra
    if episode.qpos is not None:
        q = episode.qpos[:, JOINT_QPOS[robot_name(env.spec.id)]]
    else:
        q = episode.observations[:, observation_layout(env).joints]
    steps = episode.num_steps
    length = cycle_length or extra.get("cycle_length") or detect_cycle_length(q[:steps])
    if cycle_start is None:
        recorded = extra.get("cycle_start")
        cycle_start = recorded if recorded is not None else (extra.get("cycle_starts") or [0])[0]
    if cycle_start + length > steps:
        raise StyleError(
            f"{dataset.path or 'the demonstration'}: a gait cycle of {length} steps from step {cycle_start} is "
            f"longer than the demonstration ({steps} steps)"
        )
    window = slice(cycle_start, cycle_start + length)
    actions = episode.actions[window].astype(np.float64) if episode.actions is not None else None
    return ReferenceCycle(int(cycle_start), int(length), q[window].astype(np.float64), actions)


def demonstration_speed(dataset: Dataset, env: gym.Env) -> float:
    """Mean forward (x) speed of the demonstration in m/s, over every frame of every episode."""
    if "qvel" in dataset.fields:
        return float(dataset.concat("qvel")[:, 0].mean())
    return float(dataset.concat("observations")[:, observation_layout(env).x_velocity].mean())


def replay_reference_cycle(
    cycle: ReferenceCycle, env_id: str, episodes: int = 10, seed: int = 0, env_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The demonstration's reward level, measured: its gait cycle's actions replayed open loop.

    Each episode resets the environment (seed ``seed + i``) and executes ``cycle.actions`` over
    and over, ``actions[t mod length]``, until the episode ends: the reference-torque playback
    without any learning. For a demonstration from an open-loop expert (the paper's HalfCheetah
    oscillators) this is the expert; for a closed-loop expert it is a lower bound, since nothing
    corrects a drift.

    :return: ``returns`` (per episode, the environment's reward), ``mean``, ``std``, ``lengths``.
    """
    if cycle.actions is None:
        raise LatentPriorError("the reference cycle has no actions to replay (the demonstration is state-only)")
    env = gym.make(env_id, **(env_kwargs or {}))
    returns, lengths = [], []
    try:
        for i in range(episodes):
            env.reset(seed=seed + i)
            total, t, done = 0.0, 0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(cycle.actions[t % cycle.length].astype(np.float32))
                total, t, done = total + float(reward), t + 1, terminated or truncated
            returns.append(total), lengths.append(t)
    finally:
        env.close()
    return {"returns": returns, "mean": float(np.mean(returns)), "std": float(np.std(returns)), "lengths": lengths}


def decoder_reach(
    prior: ActionPrior, cycle: ReferenceCycle, env_id: str, episodes: int = 10, seed: int = 0,
    env_kwargs: dict[str, Any] | None = None, grid: int = 11,
) -> dict[str, Any]:
    """What the frozen decoder puts within a latent policy's reach, measured.

    - ``replay``: the reference cycle passed through the prior, ``dec(enc(a_ref))``, replayed open
      loop as in :func:`replay_reference_cycle`: the demonstration's level through the decoder.
      Close to the plain replay, the decoder reproduces the gait.
    - ``reference_latents``: per latent dimension, the least and greatest ``enc(a_ref)``. Inside
      [-1, 1], a latent policy can reach every action of the cycle.
    - ``coverage``: per action dimension, the least and greatest ``dec(z)`` over a ``grid``-point
      grid of the latent box [-1, 1]^k (past 200,000 points: its corners, up to k = 16, and
      100,000 uniform points), in the action bounds mapped to [-1, 1]. With the residual
      weight ``w``, the executed actions lie within ``(1 - w) * coverage +- w``: a decoder that
      covers half the range halves the torque the policy can command.
    """
    if cycle.actions is None:
        raise LatentPriorError("the reference cycle has no actions to encode (the demonstration is state-only)")
    env = gym.make(env_id, **(env_kwargs or {}))
    space = env.action_space
    env.close()
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    normalised = 2.0 * (cycle.actions - low) / (high - low) - 1.0
    latents = prior.encode(normalised)
    decoded = prior.decode(latents).astype(np.float64)
    replayed = dataclasses.replace(cycle, actions=low + (np.clip(decoded, -1.0, 1.0) + 1.0) * (high - low) / 2.0)
    k = prior.latent_dim
    if grid**k <= 200_000:
        axis = np.linspace(-1.0, 1.0, grid)
        box = np.stack(np.meshgrid(*[axis] * k, indexing="ij"), -1).reshape(-1, k)
    else:  # too many grid points (Humanoid: k = 10): the box's corners and uniform points in it
        corners = np.array(np.meshgrid(*[[-1.0, 1.0]] * k, indexing="ij")).reshape(k, -1).T if k <= 16 else np.empty((0, k))
        box = np.concatenate([corners, np.random.default_rng(seed).uniform(-1.0, 1.0, size=(100_000, k))])
    outputs = np.clip(prior.decode(box), -1.0, 1.0)
    return {
        "replay": replay_reference_cycle(replayed, env_id, episodes=episodes, seed=seed, env_kwargs=env_kwargs),
        "reconstruction_max_abs": float(np.abs(decoded - normalised).max()),
        "reference_latents": {"min": latents.min(0).tolist(), "max": latents.max(0).tolist()},
        "coverage": {"min": outputs.min(0).tolist(), "max": outputs.max(0).tolist()},
    }


# ------------------------------------------------------------------------------------------ gaits
@dataclasses.dataclass(frozen=True)
class Gait:
    """A periodic gait, measured: what the transfer claim ("can produce gait transitions") is checked with."""

    cycle_steps: int | None
    """steps per gait cycle (:func:`~latentprior.envs.style_reward.detect_cycle_length`); ``None``: no periodic gait"""
    frequency_hz: float | None
    """cycles per second"""
    speed: float
    """mean forward speed, m/s"""
    stride_m: float | None
    """distance per cycle, m"""
    reference_similarity: float | None
    """how closely the joints follow the reference cycle's pattern: the correlation of the mean
    cycle (phase-folded, resampled to the reference's length) with the reference cycle at the best
    circular shift, in [-1, 1]. Near 1: the demonstration's gait at another pace; low: another gait"""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def gait_of(q: np.ndarray, speed: float, dt: float, reference: np.ndarray | None = None) -> Gait:
    """The :class:`Gait` of joint positions ``q`` ``(T, n_joints)`` moving at ``speed`` m/s.

    :param q: joint positions over time, past any start-up from rest.
    :param speed: mean forward speed over them.
    :param dt: seconds per step.
    :param reference: a reference cycle ``(L, n_joints)`` for :attr:`Gait.reference_similarity`.
    """
    q = np.asarray(q, dtype=np.float64)
    try:
        length = detect_cycle_length(q)
    except StyleError:
        return Gait(None, None, float(speed), None, None)
    similarity = None
    if reference is not None:
        cycles = len(q) // length
        folded = q[: cycles * length].reshape(cycles, length, -1).mean(0)
        grid = np.linspace(0, length, len(reference), endpoint=False)
        resampled = np.stack([np.interp(grid, np.arange(length + 1), np.append(j, j[0])) for j in folded.T], axis=1)
        a = (reference - reference.mean(0)).ravel()
        similarity = max(
            float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
            for b in ((np.roll(resampled, k, axis=0) - resampled.mean(0)).ravel() for k in range(len(reference)))
        )
    return Gait(int(length), 1.0 / (length * dt), float(speed), float(speed) * length * dt, similarity)


class _ExecutedActions(gym.ActionWrapper):
    """Records the actions the robot executes (after every action-space wrapper), in [-1, 1] of its bounds."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._low, self._high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
        self.log: list[np.ndarray] = []

    def action(self, action: np.ndarray) -> np.ndarray:
        self.log.append(2.0 * (np.asarray(action, dtype=np.float64) - self._low) / (self._high - self._low) - 1.0)
        return action


_GAIT_VERSION = 2  # gait.json files of another version are measured again


def measure_gait(out: str | os.PathLike, episodes: int = 3, seed: int = 0, skip: int = 200) -> dict[str, Any]:
    """The gait of a finished run's policy and of its demonstration (``out`` of :func:`run_lap_experiment`).

    The policy acts deterministically for ``episodes`` episodes (seeds ``seed + i``); joint positions,
    forward speed and the executed actions are recorded after the first ``skip`` steps (the start-up
    from rest). Written to ``out/gait.json`` and read from there on later calls with the same
    ``episodes``, ``seed`` and ``skip``.

    :return: ``policy`` (:meth:`Gait.to_dict` over all episodes' steps, the cycle from the first
        episode's), ``demonstration`` (the reference cycle's length and the demonstration's mean
        speed), ``speed_factor`` (policy speed / demonstration speed), ``episode_lengths``,
        ``executed_action`` (over all recorded steps, in units of the action bounds mapped to
        [-1, 1]: ``mean_abs``, ``max_abs`` and ``saturated``, the fraction of entries with
        ``|a| > 0.8``; shows how much of its action range a policy uses, and whether a decoder
        lets it), ``episodes``.
    """
    out = Path(out)
    cached = out / "gait.json"
    if cached.is_file():
        known = read_json(cached)
        if (known.get("episodes"), known.get("seed"), known.get("skip"), known.get("version")) == (episodes, seed, skip, _GAIT_VERSION):
            return known
    experiment = LAPExperiment.from_dict(read_json(out / "experiment.json"))
    plan = plan_lap_experiment(experiment)
    prior = ActionPrior.load(out / "action_prior") if plan.variant.needs_prior else None
    policy = load_policy(out / "run")
    executed = _ExecutedActions(gym.make(experiment.env_id, **plan.env_kwargs))
    env: gym.Env = executed
    robot = robot_name(experiment.env_id)
    reference = reference_cycle(plan.dataset, env, experiment.cycle_length, experiment.cycle_start)
    demo_speed = demonstration_speed(plan.dataset, env)
    dt = float(env.unwrapped.dt)
    for wrapper in lap_wrappers(plan, prior):
        env = wrapper(env)
    first, speeds, actions, lengths = None, [], [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            executed.log.clear()
            q, v, done = [], [], False
            while not done:
                obs, _, terminated, truncated, info = env.step(policy.act(obs))
                q.append(env.unwrapped.data.qpos[JOINT_QPOS[robot]].copy())
                v.append(float(info["x_velocity"]))
                done = terminated or truncated
            speeds.extend(v[skip:])
            actions.extend(executed.log[skip:])
            lengths.append(len(v))
            if first is None:
                first = np.asarray(q[skip:])
    finally:
        env.close()
    speed = float(np.mean(speeds)) if speeds else float("nan")
    gait = gait_of(first, speed, dt, reference.q) if first is not None and len(first) >= 8 else Gait(None, None, speed, None, None)
    magnitude = np.abs(np.asarray(actions)) if actions else None
    result = {
        "policy": gait.to_dict(),
        "demonstration": gait_of(np.tile(reference.q, (4, 1)), demo_speed, dt, reference.q).to_dict(),
        "speed_factor": speed / demo_speed if demo_speed else None,
        "episode_lengths": lengths,
        "executed_action": None if magnitude is None else {
            "mean_abs": float(magnitude.mean()), "max_abs": float(magnitude.max()), "saturated": float((magnitude > 0.8).mean())},
        "episodes": episodes,
        "seed": seed,
        "skip": skip,
        "version": _GAIT_VERSION,
    }
    atomic_write_json(cached, result)
    return result


# -------------------------------------------------------------------------------------- planning
@dataclasses.dataclass
class LAPPlan:
    """An experiment with its ``None`` fields resolved and its demonstration read."""

    experiment: LAPExperiment
    variant: Variant
    dataset: Dataset | None
    """the demonstration (``None`` for ``ppo`` without a demonstration)"""
    env_kwargs: dict[str, Any]
    """``gymnasium.make`` keyword arguments of every environment of the experiment"""
    total_steps: int
    """PPO's environment steps"""
    residual_weight: float
    """``w`` of the latent variants"""
    task_reward_normaliser: float | None
    """``None``: StyleReward's paper value for the robot"""
    cycle: ReferenceCycle | None
    """the reference gait cycle, when the variant or the prior needs it"""
    demonstration_speed: float | None
    """mean forward speed of the demonstration (m/s), for transfer tasks"""
    target_speed: float | None
    """transfer task's commanded speed (m/s); ``None``: the environment's own task"""

    def summary(self) -> dict[str, Any]:
        """JSON-able resolved values for ``result.json``."""
        return {
            "env_kwargs": self.env_kwargs,
            "total_steps": self.total_steps,
            "residual_weight": self.residual_weight,
            "task_reward_normaliser": self.task_reward_normaliser,
            "cycle": None if self.cycle is None else {"start": self.cycle.start, "length": self.cycle.length},
            "demonstration_speed": self.demonstration_speed,
            "target_speed": self.target_speed,
        }


def plan_lap_experiment(experiment: LAPExperiment, dataset: Dataset | None = None) -> LAPPlan:
    """Read the demonstration and resolve every ``None`` field of ``experiment``.

    :param experiment: the experiment.
    :param dataset: the demonstration already loaded; ``None`` loads ``experiment.demonstration``.
    :raises LatentPriorError: (or a subclass) for a variant or task that needs a demonstration
        without one, a demonstration without the actions the variant needs, or a reference
        cycle that does not fit the demonstration.
    """
    e = experiment
    variant = get_variant(e.variant)
    transfer = e.target_speed_factor is not None
    if dataset is None and e.demonstration is not None:
        dataset = load_demonstrations(e.demonstration, e.allow_pickle)
    if dataset is None and (variant.needs_reference or variant.needs_actions or transfer):
        raise LatentPriorError(
            f"variant {e.variant!r}{' with a transfer task' if transfer else ''} needs a demonstration "
            "(LAPExperiment.demonstration)"
        )
    if dataset is not None and variant.needs_actions and "actions" not in dataset.fields:
        raise DatasetError(f"{dataset.path or 'the demonstration'}: has no 'actions' field; variant {e.variant!r} needs the expert's actions")
    robot = robot_name(e.env_id)
    env_kwargs = dict(e.env_kwargs if e.env_kwargs is not None else (dataset.metadata.env_kwargs if dataset is not None else {}))
    cycle = speed = target = None
    if dataset is not None:
        probe = gym.make(e.env_id, **env_kwargs)
        try:
            if variant.needs_reference or (variant.needs_prior and e.prior_data == "cycle" and e.action_prior is None):
                cycle = reference_cycle(dataset, probe, e.cycle_length, e.cycle_start)
            if transfer:
                speed = demonstration_speed(dataset, probe)
                target = e.target_speed_factor * speed
        finally:
            probe.close()
    normaliser = e.task_reward_normaliser if e.task_reward_normaliser is not None else (1.0 if transfer else None)
    return LAPPlan(
        experiment=e,
        variant=variant,
        dataset=dataset,
        env_kwargs=env_kwargs,
        total_steps=e.total_steps or PAPER_TOTAL_STEPS.get(robot, DEFAULT_TOTAL_STEPS),
        residual_weight=e.residual_weight if e.residual_weight is not None else PAPER_RESIDUAL_WEIGHTS.get(robot, DEFAULT_RESIDUAL_WEIGHT),
        task_reward_normaliser=normaliser,
        cycle=cycle,
        demonstration_speed=speed,
        target_speed=target,
    )


def lap_wrappers(plan: LAPPlan, prior: ActionPrior | None = None) -> list[Callable[[gym.Env], gym.Env]]:
    """The wrappers of ``plan``'s variant, in order: transfer task, style reward, action space.

    :param plan: from :func:`plan_lap_experiment`.
    :param prior: the action prior, for the latent variants.
    """
    e, variant = plan.experiment, plan.variant
    wrappers = []
    if plan.target_speed is not None:
        wrappers.append(functools.partial(
            TargetVelocity, target_speed=plan.target_speed, direction=e.target_direction,
            sharpness=e.tracking_sharpness, keep_ctrl_cost=e.transfer_ctrl_cost,
        ))
    if variant.needs_reference:
        wrappers.append(functools.partial(
            StyleReward, reference_q=plan.cycle.q, cycle_length=plan.cycle.length, task_weight=e.task_weight,
            style_weight=e.style_weight, task_reward_normaliser=plan.task_reward_normaliser,
        ))
    if variant.needs_prior:
        if prior is None:
            raise LatentPriorError(f"variant {e.variant!r} acts through an action prior; none was given")
        wrappers.append(functools.partial(
            LatentActionWrapper, prior=prior, residual_weight=plan.residual_weight, latent_only=variant.actions == "latent-only",
        ))
    elif variant.actions == "reference-residual":
        wrappers.append(functools.partial(ReferenceResidual, reference_actions=plan.cycle.actions, residual_scale=e.reference_residual_scale))
    return wrappers


def lap_env_fn(plan: LAPPlan, prior: ActionPrior | None = None) -> EnvFactory:
    """``(num_envs, seed) -> VectorEnv`` of ``plan``'s wrapped environment (Gymnasium sync backend)."""
    return functools.partial(
        make_vec_env, plan.experiment.env_id, wrappers=lap_wrappers(plan, prior), env_kwargs=plan.env_kwargs, backend="sync"
    )


# ------------------------------------------------------------------------------ the action prior
def _lap_prior(plan: LAPPlan, out: Path, progress: bool) -> ActionPrior:
    """The experiment's action prior: given, cached in ``out/action_prior``, or fitted there."""
    e = plan.experiment
    if e.action_prior is not None:
        return ActionPrior.load(e.action_prior)
    directory = out / "action_prior"
    config = ActionPriorConfig(latent_dim=e.latent_size, variance_threshold=e.variance_threshold, epochs=e.prior_epochs, seed=e.seed)
    if (directory / "config.json").is_file():
        prior = ActionPrior.load(directory)
        # A PCA-sized prior records the size it found, so the size is compared only when one was asked for.
        asked = dataclasses.replace(config, latent_dim=e.latent_size or prior.config.latent_dim)
        if prior.config != asked:
            raise LatentPriorError(
                f"{directory} was fitted with {prior.config}, the experiment asks for {asked}; "
                "delete it or use another output folder"
            )
        return prior
    actions = demonstration_actions(plan.dataset)
    source = f"`{plan.dataset.path or e.demonstration}`"
    if e.prior_data == "cycle":
        actions = actions[plan.cycle.start : plan.cycle.start + plan.cycle.length]
        source += f", gait cycle at steps {plan.cycle.start}-{plan.cycle.start + plan.cycle.length - 1}"
    if progress:
        print(f"[lap] fitting the action prior on {len(actions)} actions ({e.prior_epochs} epochs)", flush=True)
    return _fit_and_report(actions, directory, config, e.env_id, source, progress)


# -------------------------------------------------------------------------- behavioural cloning
def fit_behaviour_cloning(
    dataset: Dataset,
    observation_space: gym.spaces.Box,
    action_space: gym.spaces.Box,
    epochs: int = 2_000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    hidden_sizes: tuple[int, ...] = (64, 64),
    seed: int = 0,
) -> Policy:
    """Behavioural cloning: regress the demonstration's actions on its observations (MSE).

    The network is PPO's actor (:class:`~latentprior.rl.networks.GaussianActor`, whose mean
    is fitted) behind an observation normaliser with the demonstration's statistics, so the
    result is an ordinary :class:`~latentprior.rl.Policy`: it saves, loads and evaluates like
    a PPO policy, and compares with one of the same size.

    :param dataset: observations and actions (each episode's ``observations[:-1]`` pair with its
        ``actions``), in the spaces below.
    :param observation_space: the environment's observation space.
    :param action_space: the environment's action space; targets are clipped to it.
    :param epochs: passes over the demonstration.
    :param batch_size: minibatch size.
    :param learning_rate: Adam step size.
    :param hidden_sizes: hidden layers (PPO's: 64, 64).
    :param seed: initialisation and minibatch order.
    """
    obs = np.concatenate([episode.observations[:-1] for episode in dataset]).astype(np.float64)
    actions = np.clip(dataset.concat("actions"), action_space.low, action_space.high).astype(np.float32)
    if obs.shape[1:] != observation_space.shape:
        raise DatasetError(f"{dataset.path or 'the demonstration'}: observations are {obs.shape[1:]}, the environment's {observation_space.shape}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    normalizer = ObservationNormalizer(observation_space.shape)
    normalizer.update(obs)
    actor = GaussianActor(obs.shape[1], actions.shape[1], hidden_sizes)
    policy = Policy(actor, observation_space, action_space, normalizer, algo="bc")
    optimizer = torch.optim.Adam(actor.parameters(), lr=learning_rate)
    inputs, targets = policy.normalize(torch.from_numpy(obs)), torch.from_numpy(actions)
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch_size):
            batch = order[start : start + batch_size]
            loss = torch.nn.functional.mse_loss(actor(inputs[batch]).mode, targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return policy.eval()


# ------------------------------------------------------------------------------------ the run
def steps_to_reach(curve: Curve, target: float) -> float | None:
    """Environment steps at which ``curve`` first reaches ``target`` (``None`` if it never does)."""
    reached = np.flatnonzero(curve.returns >= target)
    return float(curve.steps[reached[0]]) if len(reached) else None


def _task_curve(metrics_csv: Path) -> tuple[Curve, str]:
    """The evaluation curve of task returns, and the metric it was read from."""
    curve = read_curve(metrics_csv, y="eval/task_return_mean")
    if len(curve.steps):
        return curve, "eval/task_return_mean"
    return read_curve(metrics_csv, y="eval/return_mean"), "eval/return_mean"


def _check_same_experiment(out: Path, experiment: LAPExperiment) -> None:
    path = out / "experiment.json"
    if not path.is_file():
        return
    old = read_json(path)
    new = json.loads(json.dumps(experiment.to_dict()))  # tuples as the file holds them: lists
    changed = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
    if changed:
        listing = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
        raise LatentPriorError(f"{out} holds another experiment ({listing}); use another output folder or the same settings")


def run_lap_experiment(
    experiment: LAPExperiment,
    out: str | os.PathLike,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one experiment: demonstration -> prior -> wrapped environment -> PPO (or BC) -> ``out/result.json``.

    Rerunning on the same ``out`` continues: the prior in ``out/action_prior`` is reused, PPO
    resumes from its newest checkpoint in ``out/run`` (or returns at once when it finished), a
    cloned policy is reloaded from ``out/run/policy``. A different experiment on the same
    ``out`` is an error.

    :param experiment: what to run (``out/experiment.json`` keeps it).
    :param out: output folder: ``experiment.json``, ``action_prior/``, ``run/`` (metrics.csv,
        checkpoints, policy), ``result.json``.
    :param progress: print each stage and PPO's progress line.
    :param metadata: JSON-able facts added to ``result.json`` and the run's ``config.json``
        (command line, machine ...).
    :return: what ``result.json`` holds: ``variant``, ``env_id``, ``seed``, ``steps`` (environment
        steps trained; 0 for ``bc``), ``final_task_return_mean``/``_std`` (last evaluation,
        ``eval_episodes`` deterministic episodes), ``curve`` (``steps``, ``task_return_mean``,
        ``task_return_std``; one point for ``bc``), ``return_metric``, ``wall_s`` (this call),
        ``run_wall_s`` (the training run's, earlier attempts included), ``prior`` (size and error),
        ``resolved`` (the plan's resolved values), ``experiment`` and ``metadata``.
    """
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_experiment(out, experiment)
    plan = plan_lap_experiment(experiment)
    # Written once the experiment is known to be valid, so that a corrected one can use the folder.
    atomic_write_json(out / "experiment.json", experiment.to_dict())
    e, run_dir = experiment, out / "run"
    prior = _lap_prior(plan, out, progress) if plan.variant.needs_prior else None
    env_fn = lap_env_fn(plan, prior)
    facts = {"env_id": e.env_id, "variant": e.variant, **(metadata or {})}

    if plan.variant.learner == "bc":
        policy = _behaviour_cloning(plan, env_fn, run_dir, progress)
        envs = env_fn(min(5, e.eval_episodes), 0)
        try:
            evaluation = evaluate_policy(policy, envs, e.eval_episodes, seed=eval_seed(e.seed))
        finally:
            envs.close()
        metrics = evaluation.metrics()
        metric = "eval/task_return_mean" if "eval/task_return_mean" in metrics else "eval/return_mean"
        curve = Curve(np.array([0.0]), np.array([metrics[metric]]), np.array([metrics[metric.replace("_mean", "_std")]]))
        steps, run_wall = 0, time.perf_counter() - started
    else:
        overrides = {"eval_every": max(plan.total_steps // 20, 1), **PAPER_PPO.get(robot_name(e.env_id), {}), **e.ppo}
        config = make_config("ppo", overrides, total_steps=plan.total_steps, seed=e.seed, num_envs=e.num_envs, eval_episodes=e.eval_episodes)
        if progress:
            print(f"[lap] training {e.variant} on {e.env_id} for {plan.total_steps:,} steps (seed {e.seed})", flush=True)
        result = ppo.train(env_fn, config, run_dir, progress=progress, metadata=facts)
        curve, metric = _task_curve(result.paths["metrics"])
        steps, run_wall = result.steps, float(result.metrics.get("time/elapsed_s", float("nan")))

    if plan.variant.style and metric == "eval/return_mean" and progress:
        print("[lap] warning: the evaluation logged no task return; the reported return is the style-shaped one", flush=True)
    summary = {
        "variant": e.variant,
        "env_id": e.env_id,
        "seed": e.seed,
        "steps": steps,
        "final_task_return_mean": float(curve.returns[-1]),
        "final_task_return_std": float(curve.returns_std[-1]) if curve.returns_std is not None else None,
        "return_metric": metric,
        "curve": {
            "steps": curve.steps.tolist(),
            "task_return_mean": curve.returns.tolist(),
            "task_return_std": None if curve.returns_std is None else curve.returns_std.tolist(),
        },
        "wall_s": time.perf_counter() - started,
        "run_wall_s": run_wall,
        "prior": None if prior is None else {
            "latent_dim": prior.latent_dim,
            "action_dim": prior.action_dim,
            "reconstruction_mse": float(prior.reconstruction_mse.mean()),
        },
        "resolved": plan.summary(),
        "experiment": e.to_dict(),
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "metadata": dict(metadata or {}),
    }
    atomic_write_json(out / "result.json", summary)
    if progress:
        print(f"[lap] {e.variant} on {e.env_id}: final task return {summary['final_task_return_mean']:.1f}; {out / 'result.json'}", flush=True)
    return summary


def _behaviour_cloning(plan: LAPPlan, env_fn: EnvFactory, run_dir: Path, progress: bool) -> Policy:
    """The cloned policy in ``run_dir/policy``, fitted there unless it already is."""
    if (run_dir / "policy" / "config.json").is_file():
        return load_policy(run_dir)
    e = plan.experiment
    envs = env_fn(1, e.seed)
    try:
        spaces = envs.single_observation_space, envs.single_action_space
    finally:
        envs.close()
    if progress:
        print(f"[lap] behavioural cloning on {plan.dataset.num_steps} (observation, action) pairs, {e.bc_epochs} epochs", flush=True)
    policy = fit_behaviour_cloning(plan.dataset, *spaces, e.bc_epochs, e.bc_batch_size, e.bc_learning_rate, seed=e.seed)
    policy.save(run_dir / "policy")
    return policy
