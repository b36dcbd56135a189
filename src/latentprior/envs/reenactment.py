"""The reenactment task of latent space priors (Gehring et al., TMLR 2023): follow a motion's latents.

The low-level policy ``pi_lo(a | s_p, z)`` sees the robot's proprioception ``s_p`` and near-term
latent targets ``z`` (the frozen state VAE's latents of a motion) and is trained to *reenact*
demonstrations: an episode starts in a demonstration's state, the policy is shown the
demonstration's latents, and the reward tracks the demonstration's states. This module is that
task; the policy as an artifact and its training (SAC or behavioural cloning) live in
:mod:`latentprior.experiments.low_level`.

Read top to bottom:

1. :class:`LowLevelConfig`: the reenactment task's knobs with the authors' defaults where they
   have one (``lcs2_policy_lo.yaml``), documented otherwise.
2. :class:`StateLayout`: where a MuJoCo robot's ``qpos``/``qvel`` sit in its observation, to put
   the simulator into a state given as an observation (demonstrations without ``qpos``, decoded
   prior samples, kinematic rendering), for Gymnasium's robots and the Bipedal Skills ones.
3. :class:`Reference` and :func:`encode_references`: motions to reenact, each state with its latent.
4. :class:`Tracking`: the reenactment reward and the tracking error, per state group of the VAE.
5. :func:`low_level_observation` and :class:`ReenactmentEnv`: the task as a Gymnasium wrapper.

Which latents the policy sees. The authors condition on one latent, the one 6 frames ahead
(``n_ref: 6`` with ``last_ref_only``): their VAE's latent at frame ``t + 6`` summarises frames
``t .. t + 12`` (its receptive field is +-6 frames), the motion that starts now. The default here
is the same, ``target_offsets = (6,)``; several offsets (``(1, 2, 3)``, say) give a policy that
sees several targets. A high-level policy acting in the latent space supplies one latent per step,
which :meth:`~latentprior.experiments.low_level.LowLevelPolicy.act` repeats for every target slot.

Reward. ``mean_g exp(-k * e_g)`` over the VAE's state groups ``g`` (positions, velocities, ...),
``e_g`` the mean squared difference between the robot's state and the reference state in the VAE's
normalised units (each dimension divided by its standard deviation over the VAE's training data),
``k = reward_scale``; 1 when the state equals the reference. The authors tracked humanoid poses with
CoMic's reward (body positions, joint angles, velocities, appendages); this is its analogue for any
state vector the VAE reconstructs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch

from latentprior.data import Dataset, DatasetError
from latentprior.envs.extras import proprioception_slice
from latentprior.latent.lsp import LSPError, StateVAE, _observation_space, _source, _Windows, default_state_groups

__all__ = [
    "LowLevelConfig",
    "StateLayout",
    "require_state_layout",
    "Reference",
    "encode_references",
    "Tracking",
    "low_level_observation",
    "ReenactmentEnv",
]


# ------------------------------------------------------------------------------------------------
# 1. Configuration
# ------------------------------------------------------------------------------------------------


@dataclass
class LowLevelConfig:
    """The reenactment task the low-level policy is trained on (Gehring et al. 2023)."""

    target_offsets: tuple[int, ...] = (6,)
    """Frames ahead of the current one whose latents the policy sees, in this order (the authors:
    only the latent 6 frames ahead, which with their VAE's +-6-frame receptive field summarises
    the next 12 frames). Each >= 0; a demonstration's last ``max(target_offsets)`` frames are
    targets only, never reenacted."""
    reward_scale: float = 2.0
    """``k`` in the reward ``mean_g exp(-k e_g)``: ``e_g`` is group ``g``'s mean squared error in
    the VAE's normalised units, so ``1 / k`` is the error at which a group's term falls to ``1/e``
    (not the authors': they used CoMic's humanoid tracking reward)."""
    termination_error: float | None = 2.0
    """End an episode as terminal once the error over all dimensions exceeds this: the robot has
    lost the reference (2 is the expected error between two unrelated states). CoMic-style early
    termination; ``None`` never ends an episode for this."""
    episode_steps: int = 64
    """Steps of a training episode, from a random frame of a random demonstration (the authors ran
    to the end of a clip); every demonstration needs ``episode_steps + max(target_offsets) + 1``
    frames."""
    tolerance: float = 0.1
    """Reports count a reenacted frame as tracked when its error over all dimensions is at most
    this (normalised units: 1 is the error of always predicting the mean state)."""

    def __post_init__(self) -> None:
        self.target_offsets = tuple(int(o) for o in self.target_offsets)
        problems = [
            f"{name} must be {rule}, got {getattr(self, name)!r}"
            for name, ok, rule in [
                ("target_offsets", len(self.target_offsets) > 0 and min(self.target_offsets) >= 0, "non-empty, each >= 0"),
                ("reward_scale", self.reward_scale > 0, "> 0"),
                ("termination_error", self.termination_error is None or self.termination_error > 0, "> 0 or None"),
                ("episode_steps", self.episode_steps >= 1, ">= 1"),
                ("tolerance", self.tolerance > 0, "> 0"),
            ]
            if not ok
        ]
        if problems:
            raise LSPError("LowLevelConfig: " + "; ".join(problems))

    @property
    def horizon(self) -> int:
        """The furthest target offset: frames a reference needs beyond the last reenacted one."""
        return max(self.target_offsets)


# ------------------------------------------------------------------------------------------------
# 2. Simulator states from observations
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateLayout:
    """Where a MuJoCo robot's ``qpos`` and ``qvel`` sit in its observation.

    Locomotion observations hold ``qpos`` without the root's horizontal position (x, or x and y)
    and then ``qvel``; the missing coordinates (:attr:`omitted_qpos`) are integrated from the
    velocities at the same indices of ``qvel``, starting at 0. Gymnasium's robots leave out the
    leading coordinates (Ant's free joint has x, y at ``qpos[0:2]`` and their velocities at
    ``qvel[0:2]``); the Bipedal Skills robots (:mod:`latentprior.envs.bipedal_skills`) name their
    coordinates, and the Walker's omitted x is ``qpos[1]`` (its root is z, x, pitch). Known for the
    robots of :func:`~latentprior.latent.lsp.default_state_groups`.

    :param positions: observation slice holding ``qpos`` without the omitted coordinates, in order.
    :param velocities: observation slice holding ``qvel``.
    :param omitted_qpos: ``qpos`` indices the observation leaves out, ascending; ``qvel`` holds
        their velocities at the same indices.
    :param dt: seconds per environment step, to integrate them.
    """

    positions: slice
    velocities: slice
    omitted_qpos: tuple[int, ...]
    dt: float

    @classmethod
    def of(cls, env: gym.Env, obs_dim: int) -> "StateLayout | None":
        """The layout of ``obs_dim``-d states of ``env``'s robot, or ``None`` when it is unknown.

        :param env: a Gymnasium MuJoCo environment or a Bipedal Skills task (made with
            ``gymnasium.make``, so its id is known; its ``unwrapped`` has ``set_state`` and ``dt``).
        :param obs_dim: size of the states (a VAE's, which may differ from ``env``'s observation,
            e.g. Ant-v5 with and without contact forces, or a Bipedal Skills task's proprioception).
        """
        unwrapped = env.unwrapped
        if not hasattr(unwrapped, "set_state") or env.spec is None:
            return None
        groups = default_state_groups(env.spec.id, obs_dim)
        positions, velocities = groups.get("positions"), groups.get("velocities")
        if positions is None or velocities is None:
            return None
        if hasattr(unwrapped, "qpos_names"):
            omitted = _omitted_by_name(unwrapped, positions, velocities)
        else:
            omitted = _omitted_leading(unwrapped, positions, velocities)
        return None if omitted is None else cls(positions, velocities, omitted, float(unwrapped.dt))

    def sim_states(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(qpos, qvel)``, shapes ``(T, nq)`` and ``(T, nv)``, of a state sequence ``(T, obs_dim)``.

        The omitted coordinates follow the trapezoidal rule on their velocities.
        """
        states = np.asarray(states, dtype=np.float64)
        qvel = states[:, self.velocities]
        omitted = list(self.omitted_qpos)
        nq = self.positions.stop - self.positions.start + len(omitted)
        steps = 0.5 * self.dt * (qvel[1:, omitted] + qvel[:-1, omitted])
        qpos = np.empty((len(states), nq))
        qpos[:, omitted] = np.concatenate([np.zeros((1, len(omitted))), np.cumsum(steps, axis=0)])
        qpos[:, np.setdiff1d(np.arange(nq), omitted)] = states[:, self.positions]
        return qpos, qvel


def _omitted_leading(unwrapped: Any, positions: slice, velocities: slice) -> tuple[int, ...] | None:
    """Gymnasium's MuJoCo robots: the observation holds ``qpos`` from the first coordinate it keeps on."""
    model = getattr(unwrapped, "model", None)
    if model is None:
        return None
    omitted = model.nq - (positions.stop - positions.start)
    if velocities.stop - velocities.start != model.nv or not 0 <= omitted <= model.nv:
        return None
    return tuple(range(omitted))


def _omitted_by_name(unwrapped: Any, positions: slice, velocities: slice) -> tuple[int, ...] | None:
    """An environment that names its observation's values and its joint coordinates (Bipedal Skills'
    ``observation_names``, ``qpos_names``, ``qvel_names``, as ``"<joint>:p"`` and ``"<joint>:v"``).

    The states are the observation's first values (its proprioception). The layout holds when the
    positions are the named ``qpos`` coordinates in order but for some left out, the velocities are
    all of ``qvel`` in order, and each left-out coordinate's joint has its velocity at its index.
    """
    names, qpos_names, qvel_names = unwrapped.observation_names, unwrapped.qpos_names, unwrapped.qvel_names
    observed = tuple(names[positions])
    omitted = tuple(i for i, name in enumerate(qpos_names) if name not in observed)
    if (
        tuple(name for name in qpos_names if name in observed) != observed
        or tuple(names[velocities]) != tuple(qvel_names)
        or any(qpos_names[i].split(":")[0] != qvel_names[i].split(":")[0] for i in omitted)
    ):
        return None
    return omitted


def require_state_layout(env: gym.Env, obs_dim: int, what: str) -> StateLayout:
    """:meth:`StateLayout.of`, or an :class:`LSPError` saying that ``what`` needs ``qpos`` in the states."""
    layout = StateLayout.of(env, obs_dim)
    if layout is None:
        env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise LSPError(
            f"{what} sets the simulator's qpos from states, so the states must contain the robot's joint positions; "
            f"{obs_dim}-d states of {env_id} have no known qpos layout (known: Gymnasium's MuJoCo locomotion "
            f"robots with their default observations and the Bipedal Skills robots' proprioception, see "
            f"latentprior.latent.lsp.default_state_groups)"
        )
    return layout


# ------------------------------------------------------------------------------------------------
# 3. References: motions to reenact
# ------------------------------------------------------------------------------------------------


@dataclass
class Reference:
    """A motion to reenact: its states, the VAE's latent of each, and simulator states if known.

    :param states: ``(L, obs_dim)`` states (a demonstration's observations, or decoded latents).
    :param latents: ``(L, latent_dim)`` latents, one per state.
    :param qpos: ``(L, nq)`` simulator positions (a dataset's ``qpos``), or ``None``.
    :param qvel: ``(L, nv)`` simulator velocities, or ``None``.
    """

    states: np.ndarray
    latents: np.ndarray
    qpos: np.ndarray | None = None
    qvel: np.ndarray | None = None


@torch.no_grad()
def encode_references(vae: StateVAE, dataset: Dataset) -> list[Reference]:
    """Each episode of ``dataset`` as a :class:`Reference`, its latents from the frozen ``vae``."""
    obs_dim = _observation_space(dataset).shape[0]
    if obs_dim != vae.obs_dim:
        raise DatasetError(f"{_source(dataset)}: observations are {obs_dim}-d, but the VAE encodes {vae.obs_dim}-d states")
    return [
        Reference(
            np.asarray(episode.observations, dtype=np.float64),
            vae.encode(episode.observations).cpu().numpy(),
            episode.qpos,
            episode.qvel,
        )
        for episode in dataset
    ]


# ------------------------------------------------------------------------------------------------
# 4. Tracking error and reward
# ------------------------------------------------------------------------------------------------


class Tracking:
    """The tracking error per state group and the reenactment reward, in the VAE's normalised units.

    :param vae: its standard deviations normalise the differences; its groups
        (:attr:`StateVAE.groups`) are the reward's terms, or one term over every dimension when it
        has none.
    :param reward_scale: ``k`` in ``mean_g exp(-k e_g)`` (:attr:`LowLevelConfig.reward_scale`).
    """

    def __init__(self, vae: StateVAE, reward_scale: float):
        self.inv_std = 1.0 / vae.network.obs_std.detach().cpu().double().numpy()
        self.groups = dict(vae.groups) or {"all": slice(0, vae.obs_dim)}
        self.reward_scale = float(reward_scale)

    def errors(self, state: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        """Mean squared normalised difference per group, plus ``"all"`` over every dimension."""
        squared = np.square((np.asarray(state, dtype=np.float64) - reference) * self.inv_std)
        return {**{name: float(squared[s].mean()) for name, s in self.groups.items()}, "all": float(squared.mean())}

    def reward(self, errors: Mapping[str, float]) -> float:
        """``mean_g exp(-k e_g)``, in (0, 1], 1 exactly when every group's error is 0."""
        return float(np.mean([np.exp(-self.reward_scale * errors[name]) for name in self.groups]))


# ------------------------------------------------------------------------------------------------
# 5. The reenactment task
# ------------------------------------------------------------------------------------------------


def low_level_observation(proprioception: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The low-level policy's input: proprioception, then the latent targets flattened in offset order.

    :param proprioception: ``(*batch, p)``.
    :param targets: ``(*batch, n, latent_dim)``.
    """
    proprioception = np.asarray(proprioception)
    flat = np.asarray(targets).reshape(*proprioception.shape[:-1], -1)
    return np.concatenate([proprioception, flat.astype(proprioception.dtype, copy=False)], axis=-1)


class ReenactmentEnv(gym.Wrapper):
    """Reenact references: start in a reference's state, see its latent targets, track its states.

    Each episode starts at frame ``t0`` of a reference: the simulator is set to the reference's
    ``qpos``/``qvel`` there, or, without them, to the state its observation describes
    (:class:`StateLayout`; the root's x/y at 0), or left where ``env.reset`` put it when neither
    is known. The robot's state is ``env``'s observation, or its :attr:`proprioception` when the
    references' states are that part of it (a task that appends features of its own after the
    robot's: Bipedal Skills, AntMaze). At frame ``t`` the observation is the state followed by the
    reference's latents at ``t + target_offsets``; after a step to frame ``t + 1`` the reward is
    :meth:`Tracking.reward` of the new state against the reference state ``t + 1``.

    An episode is *terminated* when ``env`` terminates or the error over all dimensions exceeds
    ``termination_error``, and *truncated* when ``env`` truncates or the episode reaches its last
    frame (``episode_steps`` after ``t0`` in training, the reference's last frame with targets
    otherwise). ``info`` carries ``tracking_error`` (per group), ``env_reward`` and ``frame``.

    ``reset()`` starts at a random window (reference chosen in proportion to its windows);
    ``reset(options={"reference": i, "start": t0, "steps": n})`` starts at frame ``t0`` (default
    0) of reference ``i`` and runs ``n`` steps (default: to its end). :attr:`frame` is the current
    reference frame, :attr:`last_frame` the one the episode is truncated at.

    :param env: a Gymnasium MuJoCo environment or a Bipedal Skills task made by ``gymnasium.make``
        without observation wrappers (its state is set with ``unwrapped.set_state`` and read back
        with ``unwrapped._get_obs``), observing the references' states, or observing them in the
        slice its ``unwrapped.proprioception`` names.
    :param references: the motions (:func:`encode_references`).
    :param tracking: the reward and error (:class:`Tracking` of the VAE that made the latents).
    :param config: the task's knobs.
    :param sample_starts: allow ``reset()`` without options, which needs every reference to hold
        one window of ``episode_steps + max(target_offsets) + 1`` frames (checked here, with a
        :class:`~latentprior.data.DatasetError` naming the short ones).
    :param source: name of the references' origin for error messages (a dataset file).
    """

    def __init__(
        self,
        env: gym.Env,
        references: Sequence[Reference],
        tracking: Tracking,
        config: LowLevelConfig,
        sample_starts: bool = True,
        source: str = "dataset",
    ):
        super().__init__(env)
        if not references:
            raise LSPError("ReenactmentEnv needs at least one reference")
        space = env.observation_space
        obs_dim, latent_dim = references[0].states.shape[1], references[0].latents.shape[1]
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise DatasetError(f"{source}: states are {obs_dim}-d, but the environment observes {space}")
        proprioception = proprioception_slice(env, obs_dim)
        if len(range(space.shape[0])[proprioception]) != obs_dim:
            raise DatasetError(
                f"{source}: states are {obs_dim}-d, but the environment observes {space} (the robot's state in "
                f"observation[{proprioception.start}:{proprioception.stop}])"
            )
        self.proprioception = proprioception
        """The part of ``env``'s observation that holds the robot's state, the references' states."""
        self.references, self.tracking, self.config, self.source = list(references), tracking, config, source
        self.layout = StateLayout.of(env, obs_dim)
        self.offsets = np.asarray(config.target_offsets)
        n = len(self.offsets)
        self.observation_space = gym.spaces.Box(
            np.concatenate([space.low[proprioception], -np.ones(n * latent_dim)]).astype(space.dtype),
            np.concatenate([space.high[proprioception], np.ones(n * latent_dim)]).astype(space.dtype),
            dtype=space.dtype,
        )
        self._starts: np.ndarray | None = None
        if sample_starts:
            frames = [torch.arange(len(r.states)) for r in self.references]
            knob = ("LowLevelConfig.episode_steps", config.horizon + 1)
            windows = _Windows(frames, config.episode_steps + config.horizon + 1, source, knob)
            self._starts = windows.starts.numpy()
            self._first_frame = np.cumsum([0, *(len(r.states) for r in self.references[:-1])])
        self._reference: Reference | None = None
        self.frame = self.last_frame = 0

    def _observation(self, obs: np.ndarray) -> np.ndarray:
        return low_level_observation(obs[self.proprioception], self._reference.latents[self.frame + self.offsets])

    def _set_state(self, reference: Reference, frame: int) -> np.ndarray | None:
        """Put the simulator into ``reference``'s state at ``frame``; the new observation, or ``None`` if unknown."""
        unwrapped = self.env.unwrapped
        if reference.qpos is not None and reference.qvel is not None:
            qpos, qvel = reference.qpos[frame], reference.qvel[frame]
            if hasattr(unwrapped, "qpos_names"):  # an adapter that names its robot's coordinates (Bipedal Skills)
                nq, nv = len(unwrapped.qpos_names), len(unwrapped.qvel_names)
            else:
                nq, nv = unwrapped.model.nq, unwrapped.model.nv
            if qpos.shape != (nq,) or qvel.shape != (nv,):
                raise DatasetError(
                    f"{self.source}: fields 'qpos'/'qvel' have rows of {qpos.shape[0]}/{qvel.shape[0]} values, but the "
                    f"environment's robot has nq {nq} and nv {nv}"
                )
        elif self.layout is not None:
            qpos, qvel = (a[0] for a in self.layout.sim_states(reference.states[frame : frame + 1]))
        else:
            return None
        unwrapped.set_state(qpos, qvel)
        return unwrapped._get_obs()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed)
        options = options or {}
        if "reference" in options:
            index, start = int(options["reference"]), int(options.get("start", 0))
            if not 0 <= index < len(self.references):
                raise LSPError(f"reset option 'reference' is {index}, but there are {len(self.references)} references")
            steps = options.get("steps")
        elif self._starts is not None:
            frame = int(self._starts[self.np_random.integers(len(self._starts))])
            index = int(np.searchsorted(self._first_frame, frame, side="right")) - 1
            start, steps = frame - int(self._first_frame[index]), self.config.episode_steps
        else:
            raise LSPError("this ReenactmentEnv was made with sample_starts=False: reset it with options={'reference': i}")
        reference = self.references[index]
        last = len(reference.states) - 1 - self.config.horizon
        self.last_frame = last if steps is None else min(last, start + int(steps))
        if not 0 <= start < self.last_frame:
            raise DatasetError(
                f"{self.source}: reference {index} has {len(reference.states)} frames, too short to reenact from frame "
                f"{start} with targets up to {self.config.horizon} frames ahead"
            )
        self._reference, self.frame = reference, start
        set_obs = self._set_state(reference, start)
        return self._observation(obs if set_obs is None else set_obs), info

    def step(self, action):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        self.frame += 1
        errors = self.tracking.errors(obs[self.proprioception], self._reference.states[self.frame])
        lost = self.config.termination_error is not None and errors["all"] > self.config.termination_error
        info = {**info, "tracking_error": errors, "env_reward": env_reward, "frame": self.frame}
        truncated = truncated or self.frame >= self.last_frame
        return self._observation(obs), self.tracking.reward(errors), terminated or lost, truncated, info
