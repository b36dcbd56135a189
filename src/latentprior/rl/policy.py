"""A trained policy as one object that acts: observation normaliser + actor + the spaces it expects."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from latentprior.io import ArtifactError, check_space, load_artifact, read_json, save_artifact
from latentprior.rl.checkpoint import latest_checkpoint
from latentprior.rl.normalize import ObservationNormalizer
from latentprior.rl.networks import actor_from_spec

__all__ = ["Policy", "load_policy"]


class Policy(nn.Module):
    """What a learner produced: it maps raw environment observations to actions in env units.

    :param actor: module mapping *normalised* observations to an action distribution (see
        :mod:`latentprior.rl.networks`).
    :param observation_space: the environment's (flat Box) observation space.
    :param action_space: the environment's Box action space; actions are clipped to it.
    :param obs_normalizer: running observation normalisation, or ``None`` for raw observations.
    :param algo: name of the learner that trained it (``"ppo"``, ``"sac"``), kept in the artifact.
    """

    def __init__(
        self,
        actor: nn.Module,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        obs_normalizer: ObservationNormalizer | None = None,
        algo: str = "",
    ) -> None:
        super().__init__()
        self.actor, self.obs_normalizer, self.algo = actor, obs_normalizer, algo
        self.observation_space, self.action_space = observation_space, action_space
        self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32), persistent=False)
        self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.low.device

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations -> the float32 inputs the actor was trained on."""
        return obs.to(torch.float32) if self.obs_normalizer is None else self.obs_normalizer(obs)

    def distribution(self, obs: torch.Tensor):
        """The actor's action distribution for raw observations (batch first)."""
        return self.actor(self.normalize(obs))

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action for raw observations, in env units, differentiable in ``obs``.

        This is ``mu(obs)``: the distribution's mode clipped to the action bounds (SAC's mode is
        inside them already; PPO's Gaussian mean is clipped as its actions are in the env, so the
        Jacobian is zero in a clipped dimension). Batch first: ``(batch, obs_dim) -> (batch, act_dim)``.
        """
        return torch.maximum(torch.minimum(self.distribution(obs).mode, self.high), self.low)

    forward = mean_action

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a NumPy observation or batch of them, clipped to the bounds, in the space's dtype.

        :param obs: one observation of the space's shape, or a batch with a leading dimension.
        :param deterministic: the mean action if true, else a sample from the policy.
        """
        obs_t = torch.as_tensor(np.asarray(obs), device=self.device)
        single = obs_t.ndim == len(self.observation_space.shape)
        if single:
            obs_t = obs_t.unsqueeze(0)
        if deterministic:
            action = self.mean_action(obs_t)
        else:
            action = torch.maximum(torch.minimum(self.distribution(obs_t).sample(), self.high), self.low)
        action_np = action.cpu().numpy().astype(self.action_space.dtype, copy=False)
        return action_np[0] if single else action_np

    def check_env(self, env: gym.Env | gym.vector.VectorEnv, source: str = "policy") -> None:
        """Raise :class:`~latentprior.io.ArtifactError` if ``env``'s spaces differ from the policy's."""
        vector = isinstance(env, gym.vector.VectorEnv)
        obs_space = env.single_observation_space if vector else env.observation_space
        act_space = env.single_action_space if vector else env.action_space
        check_space(self.observation_space, obs_space, "observation", source)
        check_space(self.action_space, act_space, "action", source)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the policy as an artifact directory (see :mod:`latentprior.io`)."""
        modules: dict[str, nn.Module] = {"actor": self.actor}
        normalizer = None
        if self.obs_normalizer is not None:
            modules["obs_normalizer"] = self.obs_normalizer
            normalizer = {"clip": self.obs_normalizer.clip, "epsilon": self.obs_normalizer.epsilon}
        config = {
            "kind": "policy",
            "algo": self.algo,
            "actor": getattr(self.actor, "spec", {"class": type(self.actor).__name__}),
            "obs_normalizer": normalizer,
        }
        spaces = {"observation": self.observation_space, "action": self.action_space}
        return save_artifact(directory, modules, config, spaces)


def _policy_dir(path: Path) -> Path:
    """The policy artifact a path points to: itself, ``<run>/policy``, or the latest checkpoint's."""
    if (path / "config.json").is_file() and read_json(path / "config.json").get("kind") == "policy":
        return path
    if (path / "policy" / "config.json").is_file():
        return path / "policy"
    checkpoint = latest_checkpoint(path)
    if checkpoint is not None:
        return checkpoint / "policy"
    raise ArtifactError(f"{path}: no policy found (neither a policy artifact, a run's policy/, nor a checkpoint)")


def load_policy(path: str | os.PathLike, actor: nn.Module | None = None, device: str | torch.device = "cpu") -> Policy:
    """Load a policy from a run directory (its final policy, else its latest checkpoint's) or a policy artifact.

    :param path: a run directory written by ``ppo.train``/``sac.train`` or a policy artifact directory.
    :param actor: a module of the right structure to load the weights into; needed only when the
        actor's class is not registered in :data:`latentprior.rl.networks.ACTORS`.
    :param device: where the policy's tensors go.
    """
    directory = _policy_dir(Path(path))
    config, weights, spaces = load_artifact(directory, kind="policy")
    where = str(directory / "config.json")
    actor = actor if actor is not None else actor_from_spec(config["actor"], where)
    normalizer = None
    if config.get("obs_normalizer") is not None:
        normalizer = ObservationNormalizer(spaces["observation"].shape, **config["obs_normalizer"])
        normalizer.load_state_dict(weights["obs_normalizer"])
    try:
        actor.load_state_dict(weights["actor"])
    except RuntimeError as e:
        raise ArtifactError(f"{where}: actor weights do not fit the actor ({e})") from None
    policy = Policy(actor, spaces["observation"], spaces["action"], normalizer, algo=config.get("algo", ""))
    return policy.to(device).eval()
