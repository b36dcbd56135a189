"""A closed-loop expert: a multi-layer perceptron with a tanh-squashed mean action.

This is the deterministic actor of SAC and TQC (Haarnoja et al. 2018; Kuznetsov et al. 2020):
``obs -> hidden layers -> mu``, action ``= tanh(mu)`` scaled from [-1, 1] to the action bounds.
Imported stable-baselines3 zoo models (:mod:`latentprior.experts.sb3_zoo`) become an
:class:`MLPExpert`, so once saved they load without the original ``.zip``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import gymnasium as gym
import torch
from torch import nn

from latentprior.experts.base import Expert, ExpertError
from latentprior.io import load_artifact, save_artifact

__all__ = ["MLPExpert", "ACTIVATIONS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class MLPExpert(Expert):
    """Deterministic MLP actor: ``a = scale(tanh(clip(net(s), -mean_clip, mean_clip)))``.

    :param observation_space: observation space (a ``Box``; flattened to ``obs_dim`` inputs)
    :param action_space: action space with finite bounds; ``tanh`` output in [-1, 1] is mapped
        linearly onto it
    :param hidden_sizes: widths of the hidden layers, e.g. ``(256, 256)`` for SB3's SAC
    :param activation: hidden activation, a key of :data:`ACTIVATIONS`
    :param mean_clip: clip the pre-tanh mean to ``[-mean_clip, mean_clip]`` (SB3 does this with
        ``clip_mean = 2.0`` when the policy uses gSDE); None for no clipping
    :param state_dict: weights of :attr:`net` (an ``nn.Sequential`` of Linear and activation
        layers, the last Linear being the mean head); None keeps the random initialisation
    :param info: provenance saved with the expert
    """

    kind = "mlp_expert"

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        mean_clip: float | None = None,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        info: Mapping[str, Any] | None = None,
    ):
        super().__init__(observation_space, action_space, info)
        if activation not in ACTIVATIONS:
            raise ExpertError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.hidden_sizes = [int(h) for h in hidden_sizes]
        self.activation = activation
        self.mean_clip = None if mean_clip is None else float(mean_clip)
        layers: list[nn.Module] = []
        width = self.obs_dim
        for h in self.hidden_sizes:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, self.act_dim))
        self.net = nn.Sequential(*layers).requires_grad_(False)
        if state_dict is not None:
            try:
                self.net.load_state_dict(state_dict)
            except RuntimeError as e:
                raise ExpertError(f"weights do not fit an MLP {self.obs_dim}-{self.hidden_sizes}-{self.act_dim}: {e}") from None

    def mu(self, obs: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Mean action ``scale(tanh(net(obs)))``; ``t`` is ignored (closed-loop expert)."""
        mean = self.net(obs.to(torch.float32).reshape(obs.shape[0], -1))
        if self.mean_clip is not None:
            mean = mean.clamp(-self.mean_clip, self.mean_clip)
        return self._scale_to_bounds(torch.tanh(mean))

    def save(self, directory: str | os.PathLike) -> Path:
        config = {
            "kind": self.kind,
            "hidden_sizes": self.hidden_sizes,
            "activation": self.activation,
            "mean_clip": self.mean_clip,
            "info": self.info,
        }
        spaces = {"observation": self.observation_space, "action": self.action_space}
        return save_artifact(directory, {"actor": self.net}, config, spaces)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "MLPExpert":
        config, weights, spaces = load_artifact(directory, cls.kind)
        try:
            return cls(
                spaces["observation"],
                spaces["action"],
                hidden_sizes=config["hidden_sizes"],
                activation=config["activation"],
                mean_clip=config.get("mean_clip"),
                state_dict=weights["actor"],
                info=config.get("info"),
            )
        except (KeyError, ExpertError) as e:
            raise ExpertError(f"{directory}: malformed {cls.kind} artifact ({e})") from None
