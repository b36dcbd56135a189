"""The latent space of latent space priors (Gehring et al., TMLR 2023) as a Gymnasium action space.

A high-level policy ``pi_hi(z | s)`` acts in the state VAE's latent space: each action is a latent
``z`` in ``[-1, 1]^d`` (the tanh range of the VAE's latents), which a frozen low-level policy
``pi_lo(a | s_p, z)`` turns into ``steps_per_action`` environment actions. Any RL library that
takes a Gymnasium env, the project's SAC or stable-baselines3's, then learns in the latent space.

- :class:`LowLevelController`: what the wrapper needs of a low-level policy (``act`` and its
  spaces); :class:`~latentprior.experiments.low_level.LowLevelPolicy` is one.
- :class:`LatentSpaceWrapper`: act in the latent space; it records the latents executed in the
  episode (:attr:`~LatentSpaceWrapper.latent_history`, the context of the prior's next-latent
  distribution) and can append the last ones to the observation (``observe_latents``), which is how
  the prior integrations inside SAC's update see a replayed transition's context
  (:func:`observed_latent_history` reads them back).
- :class:`OptionsWrapper`: the *z-prior Options* integration: each high-level action is the first
  latent of a short sequence that the prior completes.

Steps per action. The authors' high-level policy chooses a latent at every environment step for
the exploration and regularisation integrations (``steps_per_action = 1``, the default); with
options the prior fills in the latents between high-level decisions (:class:`OptionsWrapper`),
where ``steps_per_action`` would repeat one latent.
"""

from __future__ import annotations

from typing import Protocol

import gymnasium as gym
import numpy as np
import torch

from latentprior.envs.extras import proprioception_slice
from latentprior.io import check_space
from latentprior.latent.lsp import LatentSubspace, LSPError

__all__ = ["LowLevelController", "LatentSampler", "LatentSpaceWrapper", "observed_latent_history", "OptionsWrapper"]


class TaskRewardSum:
    """Sums ``info["task_reward"]`` over the environment steps of one wrapper step, as the reward is.

    A task whose training reward differs from its score (a shaped reward, a style reward) reports
    the score as ``info["task_reward"]``; a wrapper that takes several steps per action must hand on
    their sum, not the last step's, so evaluations still report the score.
    """

    def __init__(self) -> None:
        self.total: float | None = None

    def add(self, info: dict) -> None:
        if "task_reward" in info:
            self.total = (self.total or 0.0) + float(info["task_reward"])

    def into(self, info: dict) -> dict:
        """``info`` with the summed ``task_reward`` (unchanged when no step reported one)."""
        return info if self.total is None else {**info, "task_reward": self.total}


class LowLevelController(Protocol):
    """A low-level policy as the wrapper uses it: latent targets and proprioception in, actions out."""

    @property
    def latent_dim(self) -> int: ...

    @property
    def proprioception_space(self) -> gym.spaces.Box: ...

    @property
    def action_space(self) -> gym.spaces.Box: ...

    def act(self, proprioception: np.ndarray, targets: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for proprioception ``(p,)`` and one latent target ``(latent_dim,)``."""
        ...


class LatentSampler(Protocol):
    """A prior as :class:`OptionsWrapper` uses it: continue latent sequences (a
    :class:`~latentprior.latent.lsp.LatentPrior` is one)."""

    @property
    def latent_dim(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def sample(
        self, num_steps: int, batch: int = 1, context: torch.Tensor | None = None, generator: torch.Generator | None = None, *,
        temperature: float = 1.0,
    ) -> torch.Tensor: ...


class LatentSpaceWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Act in the latent space through a frozen low-level policy.

    ``step(z)`` runs the low-level policy with target ``z`` (repeated for each of its target
    offsets) for ``steps_per_action`` environment steps, or until the episode ends, and returns the
    last observation, the *sum* of the rewards, and ``info`` of the last step plus
    ``low_level_steps`` (steps taken) and ``latent`` (the full latent executed, clipped to the box).

    With a ``subspace`` the actions are latents of its dimensions only, the others held at its
    ``fill`` (:class:`~latentprior.latent.lsp.LatentSubspace`); :attr:`latent_dim`, the recorded
    history and the observed latents are then in the subspace's coordinates, which
    :class:`~latentprior.latent.lsp.SubspacePrior` takes.

    With ``observe_latents = k > 0`` the observation is ``env``'s followed by the last ``k``
    executed latents, oldest first, right-aligned and zero-filled before the episode has ``k``,
    then ``k`` flags that mark the slots holding one: ``k * (latent_dim + 1)`` values in all.

    :param env: the task environment; the low-level policy must take its actions and observe its
        proprioception (else an :class:`~latentprior.io.ArtifactError` naming what differs).
    :param low_level: the fitted low-level policy (anything with :class:`LowLevelController`'s
        ``act`` and spaces).
    :param steps_per_action: environment steps per latent (>= 1; the authors: 1).
    :param deterministic: the low-level policy's mean action (the default) or samples from it.
    :param observe_latents: executed latents appended to the observation (>= 0).
    :param proprioception: the slice of ``env``'s observation the low-level policy sees, when the
        task adds features of its own (a command, a goal); default: the task's ``proprioception``
        attribute (AntMaze, Bipedal Skills set it), else the whole observation.
    :param subspace: act in these latent dimensions only (default: all of them).
    """

    def __init__(
        self,
        env: gym.Env,
        low_level: LowLevelController,
        steps_per_action: int = 1,
        deterministic: bool = True,
        observe_latents: int = 0,
        proprioception: slice | None = None,
        subspace: LatentSubspace | None = None,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self, low_level=low_level, steps_per_action=steps_per_action, deterministic=deterministic,
            observe_latents=observe_latents, proprioception=proprioception, subspace=subspace,
        )
        super().__init__(env)
        if steps_per_action < 1 or observe_latents < 0:
            raise LSPError(
                f"LatentSpaceWrapper: steps_per_action must be >= 1 and observe_latents >= 0, got {steps_per_action} "
                f"and {observe_latents}"
            )
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise LSPError(f"LatentSpaceWrapper needs a flat Box observation space, got {space}")
        self.proprioception = proprioception if proprioception is not None else proprioception_slice(env)
        seen = gym.spaces.Box(space.low[self.proprioception], space.high[self.proprioception], dtype=space.dtype)
        source = "latent space wrapper: the low-level policy"
        check_space(low_level.proprioception_space, seen, "observation (proprioception)", source)
        check_space(low_level.action_space, env.action_space, "action", source)
        self.low_level, self.steps_per_action, self.deterministic = low_level, int(steps_per_action), deterministic
        self.observe_latents = int(observe_latents)
        if subspace is not None and subspace.latent_dim != low_level.latent_dim:
            raise LSPError(f"LatentSpaceWrapper: a subspace of {subspace.latent_dim}-d latents does not fit a low-level "
                           f"policy of {low_level.latent_dim}-d latents")
        self.subspace = subspace
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.latent_dim,), np.float32)
        if self.observe_latents:
            n = self.observe_latents * (self.latent_dim + 1)
            self.observation_space = gym.spaces.Box(
                np.concatenate([space.low, -np.ones(n)]).astype(space.dtype),
                np.concatenate([space.high, np.ones(n)]).astype(space.dtype),
                dtype=space.dtype,
            )
        self._obs: np.ndarray | None = None
        self._latents: list[np.ndarray] = []

    @property
    def latent_dim(self) -> int:
        """Size of an action: the subspace's, else the low-level policy's latent size."""
        return self.low_level.latent_dim if self.subspace is None else self.subspace.dim

    @property
    def latent_history(self) -> np.ndarray:
        """Latents executed in the current episode, oldest first, shape ``(t, latent_dim)``."""
        return np.asarray(self._latents, dtype=np.float32).reshape(len(self._latents), self.latent_dim)

    def latent_context(self, length: int) -> torch.Tensor:
        """The last ``length`` (at most) executed latents as a prior's history, shape ``(1, t, latent_dim)``.

        Pass ``prior.context`` for what :meth:`~latentprior.latent.lsp.LatentPrior.next_distribution`
        conditions on; at an episode's start the history is empty (``t = 0``).
        """
        return torch.from_numpy(self.latent_history[max(len(self._latents) - length, 0) :])[None]

    def _observation(self, obs: np.ndarray) -> np.ndarray:
        k = self.observe_latents
        if not k:
            return obs
        recent = self._latents[-k:]
        latents = np.zeros((k, self.latent_dim), dtype=obs.dtype)
        flags = np.zeros(k, dtype=obs.dtype)
        if recent:
            latents[k - len(recent) :] = recent
            flags[k - len(recent) :] = 1.0
        return np.concatenate([obs, latents.ravel(), flags])

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs, self._latents = obs, []
        return self._observation(obs), info

    def step(self, action):
        z = np.clip(np.asarray(action, dtype=np.float32).reshape(self.latent_dim), -1.0, 1.0)
        full = z if self.subspace is None else self.subspace.pad(z)
        total, steps, task = 0.0, 0, TaskRewardSum()
        while True:
            low_action = self.low_level.act(self._obs[self.proprioception], full, deterministic=self.deterministic)
            self._obs, reward, terminated, truncated, info = self.env.step(low_action)
            total, steps = total + float(reward), steps + 1
            task.add(info)
            if terminated or truncated or steps == self.steps_per_action:
                break
        self._latents.append(z)
        info = {**task.into(info), "low_level_steps": steps, "latent": full}
        return self._observation(self._obs), total, terminated, truncated, info


def observed_latent_history(obs: torch.Tensor, latent_dim: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The executed latents a :class:`LatentSpaceWrapper` with ``observe_latents = count`` appended to ``obs``.

    :param obs: observations ``(B, obs_dim)`` (raw, as the wrapper returned them; a replay buffer's rows).
    :param latent_dim: size of a latent.
    :param count: the wrapper's ``observe_latents``.
    :return: ``(history, lengths)``: ``history`` ``(B, count, latent_dim)`` holds row ``b``'s
        ``lengths[b]`` latents first, oldest first (then zeros), the layout of
        :meth:`~latentprior.latent.lsp.LatentPrior.next_distribution`'s ``lengths``.
    """
    if count == 0:
        return obs.new_zeros(len(obs), 0, latent_dim), torch.zeros(len(obs), dtype=torch.long, device=obs.device)
    tail = obs[:, obs.shape[1] - count * (latent_dim + 1) :]
    latents, flags = tail[:, : count * latent_dim].reshape(-1, count, latent_dim), tail[:, count * latent_dim :]
    lengths = (flags > 0.5).sum(1)
    # Right-aligned -> left-aligned: row b starts at slot count - lengths[b].
    slots = (torch.arange(count, device=obs.device) + (count - lengths)[:, None]) % count
    history = latents.gather(1, slots[..., None].expand(-1, -1, latent_dim))
    return history * (torch.arange(count, device=obs.device) < lengths[:, None])[..., None], lengths


class OptionsWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """*z-prior Options* (Gehring et al. 2023): a high-level action starts a latent sequence the prior completes.

    ``step(z)`` executes ``z`` and then the ``option_length - 1`` latents the prior generates after
    it, one environment step of ``env`` (a :class:`LatentSpaceWrapper`) each, stopping early when
    the episode ends; it returns the last observation, the *sum* of the rewards and the last
    ``info`` plus ``option_steps``. The authors' setting: options of 2 latents, continued at
    temperature 0 (the most likely component's mean) from the high-level action alone, which their
    unconditional prior takes as its context; the prior needs no action input
    (``hucc/agents/sachrl.py``, ``upsampler.type: jukebox``). They summed the option's rewards with
    discounting and bootstrapped with ``gamma ** length``; here the option is one step of the
    high-level MDP with the plain sum, and the learner's ``gamma`` per option.

    :param env: a :class:`LatentSpaceWrapper` (its action space is the latent box).
    :param prior: the latent space prior (:class:`LatentSampler`), of ``env``'s latent size.
    :param option_length: latents per high-level action (>= 1; the authors: 2).
    :param temperature: sampling temperature of the continuation (the authors: 0, deterministic).
    """

    def __init__(self, env: gym.Env, prior: LatentSampler, option_length: int = 2, temperature: float = 0.0):
        gym.utils.RecordConstructorArgs.__init__(self, prior=prior, option_length=option_length, temperature=temperature)
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or space.shape != (prior.latent_dim,):
            raise LSPError(f"OptionsWrapper: the prior generates {prior.latent_dim}-d latents, but the environment takes {space}")
        if option_length < 1 or temperature < 0:
            raise LSPError(f"OptionsWrapper: option_length must be >= 1 and temperature >= 0, got {option_length} and {temperature}")
        self.prior, self.option_length, self.temperature = prior, int(option_length), float(temperature)

    def step(self, action):
        z = np.clip(np.asarray(action, dtype=np.float32).reshape(self.action_space.shape), -1.0, 1.0)
        latents = [z]
        if self.option_length > 1:
            generator = None
            if self.temperature > 0:
                generator = torch.Generator(self.prior.device).manual_seed(int(self.np_random.integers(2**62)))
            context = torch.as_tensor(z, device=self.prior.device)[None, None]
            rest = self.prior.sample(self.option_length - 1, 1, context, generator, temperature=self.temperature)
            latents += list(rest[0].cpu().numpy())
        total, task = 0.0, TaskRewardSum()
        for steps, latent in enumerate(latents, 1):
            obs, reward, terminated, truncated, info = self.env.step(latent)
            total += float(reward)
            task.add(info)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, {**task.into(info), "option_steps": steps}
