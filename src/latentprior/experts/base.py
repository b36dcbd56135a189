"""The one interface every expert implements, and the functions that load and evaluate experts.

An expert is whatever produces demonstrations: a policy trained with the project's own SAC/PPO
(:mod:`latentprior.experts.trained`), a stable-baselines3 zoo model imported without
stable-baselines3 (:mod:`latentprior.experts.sb3_zoo`), or an open-loop oscillator fitted by
black-box search (:mod:`latentprior.experts.oscillator`). All of them expose the same things the
rest of the pipeline needs:

- ``mu(obs, t)``: the deterministic, differentiable mean action, in the environment's action
  units. Neural probabilistic motor primitives clone this mean, not the executed action
  (Merel et al. 2019, "Neural probabilistic motor primitives for humanoid control", Sec. 3).
- ``act(obs, t, noise_std, rng)``: the action executed in a noisy rollout (DART-like data
  collection, Laskey et al. 2017; Merel et al. 2019 use ``noise_std`` 0.1 on [-1, 1] actions).
- ``jacobian(obs, t)``: ``d mu / d s`` at the given states, the feedback term of linear-feedback
  policy cloning (LFPC, Merel et al. 2019, Eq. 8-9).

Every expert saves as one artifact directory (see :mod:`latentprior.io`) whose ``config.json``
names its ``kind``; :func:`load_expert` dispatches on that kind and checks the expert's spaces
against an environment.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, ClassVar, Mapping

import gymnasium as gym
import numpy as np
import torch

from latentprior.io import LatentPriorError, check_space, read_json

__all__ = ["Expert", "ExpertError", "load_expert", "default_expert", "evaluate_expert"]


class ExpertError(LatentPriorError, ValueError):
    """An expert cannot be built, loaded or queried as asked (bad file, missing time step, ...)."""


# Artifact kind -> Expert subclass; filled by ``Expert.__init_subclass__``.
_EXPERT_KINDS: dict[str, type["Expert"]] = {}

# Environment id -> artifact directory under ``latentprior/assets/experts`` shipped with the package.
_DEFAULT_EXPERTS = {"HalfCheetah-v5": "halfcheetah_oscillator"}


class Expert(abc.ABC):
    """A deterministic expert policy with optional Gaussian action noise.

    Subclasses implement :meth:`mu`, :meth:`save` and :meth:`load`, and set the class attribute
    ``kind`` (the artifact kind :func:`load_expert` dispatches on).

    :param observation_space: the observation space the expert expects (a ``Box``)
    :param action_space: the action space it acts in; a ``Box`` with finite bounds, because
        action noise is defined relative to the bounds (see :meth:`act`)
    :param info: JSON-serialisable provenance saved with the expert (where it came from, the
        command that fitted it, the return it achieved, ...)
    """

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _EXPERT_KINDS[cls.kind] = cls

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        info: Mapping[str, Any] | None = None,
    ):
        if not isinstance(observation_space, gym.spaces.Box):
            raise ExpertError(f"experts need a Box observation space, got {observation_space}")
        if not isinstance(action_space, gym.spaces.Box) or not action_space.is_bounded("both"):
            raise ExpertError(f"experts need a Box action space with finite bounds, got {action_space}")
        self.observation_space = observation_space
        self.action_space = action_space
        self.info = dict(info or {})
        self._low = torch.as_tensor(action_space.low, dtype=torch.float32)
        self._high = torch.as_tensor(action_space.high, dtype=torch.float32)

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.observation_space.shape))

    @property
    def act_dim(self) -> int:
        return int(np.prod(self.action_space.shape))

    @property
    def is_open_loop(self) -> bool:
        """True if the action depends on the time step only, never on the observation."""
        return False

    @abc.abstractmethod
    def mu(self, obs: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic mean action, differentiable with respect to ``obs``.

        :param obs: observations, shape ``(batch, obs_dim)``, raw (unnormalised) env units
        :param t: time step within the episode for each row, shape ``(batch,)``; needed by
            open-loop experts, ignored by the others
        :return: mean actions, shape ``(batch, act_dim)``, float32, in the env's action units and
            inside the action bounds
        """

    @abc.abstractmethod
    def save(self, directory: str | os.PathLike) -> Path:
        """Save as an artifact directory that :func:`load_expert` reads back; returns the directory."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: str | os.PathLike) -> "Expert":
        """Read an expert of this class from what :meth:`save` wrote (no space checks; see :func:`load_expert`)."""

    def jacobian(self, obs: torch.Tensor | np.ndarray, t: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Jacobian ``d mu / d s`` of the mean action with respect to the raw observation.

        Used by linear-feedback policy cloning: the target for a perturbed state
        ``s* + ds`` is ``a* + J ds`` (Merel et al. 2019, Eq. 8).

        :param obs: observations, shape ``(batch, obs_dim)`` (or ``(obs_dim,)``)
        :param t: time steps, shape ``(batch,)``; see :meth:`mu`
        :return: shape ``(batch, act_dim, obs_dim)``, float32. Rows are computed by one backward
            pass per action dimension through the summed batch, which is exact as long as
            ``mu`` treats batch rows independently (true for every expert here). Where an action
            is clipped at a bound the Jacobian row is zero.
        """
        obs_t, t_t, unbatched = self._prepare(obs, t)
        obs_t = obs_t.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self.mu(obs_t, t_t)
            rows = [
                torch.autograd.grad(out[:, i].sum(), obs_t, retain_graph=i < out.shape[1] - 1, allow_unused=True)[0]
                for i in range(out.shape[1])
            ]
        jac = torch.stack([torch.zeros_like(obs_t) if r is None else r for r in rows], dim=1).detach()
        return jac[0] if unbatched else jac

    def mean_action(self, obs: np.ndarray, t: int | np.ndarray | None = None) -> np.ndarray:
        """:meth:`mu` for numpy input without gradients; accepts one observation or a batch.

        :param obs: shape ``(obs_dim,)`` or ``(batch, obs_dim)``
        :param t: time step (int) or time steps ``(batch,)``
        :return: float32 array of shape ``(act_dim,)`` or ``(batch, act_dim)``
        """
        obs_t, t_t, unbatched = self._prepare(obs, t)
        with torch.no_grad():
            action = self.mu(obs_t, t_t).numpy()
        return action[0] if unbatched else action

    def perturb(
        self, action: np.ndarray, noise_std: float, rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """Add Gaussian noise to actions in normalised units and clip them to the bounds.

        The action is mapped to [-1, 1] (``-1`` = low bound, ``1`` = high bound), ``N(0,
        noise_std^2)`` noise is added independently per dimension, the result is clipped to
        [-1, 1] and mapped back. ``noise_std = 0.1`` therefore means 5 % of each dimension's
        range, whatever its units.

        :param action: actions in env units, shape ``(act_dim,)`` or ``(batch, act_dim)``
        :param noise_std: standard deviation in normalised action units; 0 returns ``action``
            unchanged (not even clipped)
        :param rng: a numpy Generator, a seed, or None for fresh OS entropy
        :return: float32 actions of the same shape, inside the bounds
        """
        if noise_std < 0:
            raise ExpertError(f"noise_std must be >= 0, got {noise_std}")
        action = np.asarray(action, dtype=np.float32)
        if noise_std == 0:
            return action
        rng = np.random.default_rng(rng)
        low, high = self._low.numpy(), self._high.numpy()
        normalised = 2.0 * (action - low) / (high - low) - 1.0
        noisy = np.clip(normalised + noise_std * rng.standard_normal(action.shape), -1.0, 1.0)
        return (low + 0.5 * (noisy + 1.0) * (high - low)).astype(np.float32)

    def act(
        self,
        obs: np.ndarray,
        t: int | np.ndarray | None = None,
        noise_std: float = 0.0,
        rng: np.random.Generator | int | None = None,
    ) -> np.ndarray:
        """Action to execute: the mean action plus optional Gaussian noise (see :meth:`perturb`).

        :param obs: shape ``(obs_dim,)`` or ``(batch, obs_dim)``, raw env units
        :param t: time step(s) within the episode (needed by open-loop experts)
        :param noise_std: noise std in normalised [-1, 1] action units (0.1 in Merel et al. 2019)
        :param rng: a numpy Generator, a seed, or None for fresh OS entropy
        :return: float32 actions in env units, clipped to the bounds when noise is added
        """
        return self.perturb(self.mean_action(obs, t), noise_std, rng)

    def _scale_to_bounds(self, normalised: torch.Tensor) -> torch.Tensor:
        """Map actions from [-1, 1] to the action bounds (the inverse of SB3's ``scale_action``)."""
        return self._low + 0.5 * (normalised + 1.0) * (self._high - self._low)

    def _prepare(
        self, obs: torch.Tensor | np.ndarray, t: torch.Tensor | np.ndarray | int | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        obs_t = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs, dtype=torch.float32)
        unbatched = obs_t.ndim == 1
        if unbatched:
            obs_t = obs_t[None]
        if obs_t.ndim != 2 or obs_t.shape[1] != self.obs_dim:
            raise ExpertError(
                f"{type(self).__name__} expects observations of shape (batch, {self.obs_dim}), got {tuple(obs_t.shape)}"
            )
        t_t = None
        if t is not None:
            t_t = torch.as_tensor(t).reshape(-1).expand(obs_t.shape[0]) if np.ndim(t) == 0 else torch.as_tensor(t)
        return obs_t, t_t, unbatched


def load_expert(path: str | os.PathLike, env: gym.Env | str | None = None) -> Expert:
    """Load any expert: an artifact directory, a training run, or a stable-baselines3 ``.zip``.

    :param path: one of
        - an artifact directory written by :meth:`Expert.save` (dispatched on the ``kind`` in its
          ``config.json``), including a policy artifact of :mod:`latentprior.rl`;
        - a run directory of :func:`latentprior.rl.ppo.train` / ``sac.train`` (its final policy,
          else its latest checkpoint's), loaded as a :class:`~latentprior.experts.trained.PolicyExpert`;
        - a ``.zip`` saved by stable-baselines3 / sb3-contrib SAC or TQC (imported with
          :func:`latentprior.experts.sb3_zoo.load_sb3_zoo`, no stable-baselines3 needed).
    :param env: an environment or environment id; if given, the expert's observation and action
        spaces must match it, else an :class:`~latentprior.io.ArtifactError` names the file and
        the space that differs
    :return: the expert
    """
    # Importing the package registers every Expert subclass in _EXPERT_KINDS.
    import latentprior.experts  # noqa: F401

    path = Path(path)
    if path.suffix == ".zip":
        from latentprior.experts.sb3_zoo import load_sb3_zoo

        return load_sb3_zoo(path, env=env)
    config_path = path / "config.json"
    kind = read_json(config_path).get("kind") if config_path.is_file() else None
    if kind is None and ((path / "policy").is_dir() or (path / "checkpoints").is_dir()):
        kind = "policy"  # a training run directory, whose config.json describes the run
    if kind not in _EXPERT_KINDS:
        if not config_path.is_file():
            raise ExpertError(f"{path}: neither an expert artifact (no config.json), a training run nor a .zip")
        raise ExpertError(
            f"{path}: artifact kind {kind!r} is not an expert; expected one of {sorted(_EXPERT_KINDS)}"
        )
    expert = _EXPERT_KINDS[kind].load(path)
    if env is not None:
        check_expert_spaces(expert, env, str(path))
    return expert


def check_expert_spaces(expert: Expert, env: gym.Env | str, source: str) -> None:
    """Raise an :class:`~latentprior.io.ArtifactError` naming ``source`` if the spaces differ."""
    if isinstance(env, str):
        env = gym.make(env)
        env.close()
    check_space(expert.observation_space, env.observation_space, "observation", source)
    check_space(expert.action_space, env.action_space, "action", source)


def default_expert(env_id: str = "HalfCheetah-v5") -> Expert:
    """The expert shipped inside the package for ``env_id``: demonstrations with no download.

    For ``HalfCheetah-v5`` this is an open-loop oscillator fitted with CMA-ES
    (:func:`latentprior.experts.oscillator.fit_oscillator`); its ``config.json`` records the
    command that fitted it and its return over 1000 steps (``expert.info["return_1000"]``).
    """
    from importlib.resources import as_file, files

    if env_id not in _DEFAULT_EXPERTS:
        raise ExpertError(f"no default expert for {env_id!r}; there is one for {sorted(_DEFAULT_EXPERTS)}")
    resource = files("latentprior") / "assets" / "experts" / _DEFAULT_EXPERTS[env_id]
    with as_file(resource) as directory:
        return load_expert(directory)


def evaluate_expert(
    expert: Expert,
    env_id: str,
    episodes: int = 1,
    seed: int = 0,
    noise_std: float = 0.0,
    max_episode_steps: int | None = None,
) -> np.ndarray:
    """Undiscounted return of each of ``episodes`` rollouts of ``expert`` in ``env_id``.

    :param expert: the expert; its spaces are checked against the environment first
    :param env_id: Gymnasium environment id
    :param episodes: number of episodes, run one after another
    :param seed: episode ``i`` resets with seed ``seed + i``; action noise draws from
        ``numpy.random.default_rng(seed)``
    :param noise_std: action noise std in normalised [-1, 1] units (see :meth:`Expert.perturb`)
    :param max_episode_steps: time limit; None keeps the environment's registered limit
    :return: float64 array of shape ``(episodes,)``
    """
    env = gym.make(env_id, max_episode_steps=max_episode_steps)
    check_expert_spaces(expert, env, f"expert {type(expert).__name__}")
    rng = np.random.default_rng(seed)
    returns = np.zeros(episodes)
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            t, done = 0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(expert.act(obs, t, noise_std, rng))
                returns[i] += float(reward)
                t, done = t + 1, terminated or truncated
    finally:
        env.close()
    return returns
