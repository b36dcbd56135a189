"""Latent action priors (Hausdörfer, von Rohr, Lefort, Schoellig, 2024).

A handful of expert actions (even one gait cycle) is compressed by a small autoencoder into a
latent action space of size ``k``; during RL the decoder is frozen and the policy acts partly
through it (see :class:`latentprior.envs.latent_action.LatentActionWrapper`).

Read top to bottom:

1. :func:`pca_latent_size` picks ``k``: the smallest number of principal components of the expert
   actions whose cumulative explained variance exceeds 97 % (Fig. 3 of the paper).
2. :class:`ActionAutoencoder` is the authors' architecture: encoder
   ``Linear(d, 2k) - Tanh - Linear(2k, 2k) - Tanh - Linear(2k, k)`` and the mirrored decoder.
3. :func:`latent_range_penalty` keeps latents inside [-1, 1], the range the policy acts in:
   ``exp((z / 1.2) ** 10) - 1`` wherever ``|z| > 0.8`` (from the authors' code).
4. :func:`fit_action_prior` trains it with MSE + penalty, Adam 3e-4, minibatches of 32.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from latentprior.io import ArtifactError, load_artifact, save_artifact

KIND = "action_prior"


def explained_variance_ratio(actions: np.ndarray) -> np.ndarray:
    """Fraction of the actions' variance explained by each principal component, largest first."""
    centred = actions - actions.mean(axis=0, keepdims=True)
    singular = np.linalg.svd(centred, compute_uv=False)
    var = singular**2
    return var / var.sum()


def pca_latent_size(actions: np.ndarray, threshold: float = 0.97) -> int:
    """Smallest ``k`` whose first ``k`` principal components explain more than ``threshold`` of the variance.

    :param actions: expert actions, shape (N, d), already in the normalised [-1, 1] range.
    :param threshold: cumulative explained variance to exceed (the paper: 0.97).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    cumulative = np.cumsum(explained_variance_ratio(actions))
    return int(min(np.searchsorted(cumulative, threshold, side="right") + 1, actions.shape[1]))


_PENALTY_KNEE = 1.25


def _knee_slope(power: int) -> float:
    return power * _PENALTY_KNEE ** (power - 1) * float(np.exp(_PENALTY_KNEE**power))


def latent_range_penalty(z: torch.Tensor, scale: float = 1.2, power: int = 10, start: float = 0.8) -> torch.Tensor:
    """Penalty that keeps latents in [-1, 1]: ``exp((z / scale) ** power) - 1`` where ``|z| > start``.

    Zero inside ``[-start, start]`` so it never competes with reconstruction there; it rises
    steeply past 1 because the policy's latent actions are bounded to [-1, 1] and latents the
    decoder learnt outside that range would be unreachable.
    """
    # Past |z| = 1.25 scale (penalty ~1e4) it continues linearly with the slope it has there: a
    # stray latent must neither turn the loss into inf nor lose the gradient that pulls it back,
    # and the gradient must stay small enough not to wreck Adam's moment estimates.
    x = z.abs() / scale
    xc = torch.clamp(x, max=_PENALTY_KNEE)
    penalty = torch.expm1(xc**power) + _knee_slope(power) * (x - xc)
    return torch.where(z.abs() > start, penalty, torch.zeros_like(penalty)).sum(-1).mean()


class ActionAutoencoder(nn.Module):
    """The authors' autoencoder over actions: ``d -> 2k -> 2k -> k`` and back, with Tanh.

    :param action_dim: ``d``, the environment's action size.
    :param latent_dim: ``k``, the latent action size (see :func:`pca_latent_size`).
    """

    def __init__(self, action_dim: int, latent_dim: int):
        super().__init__()
        if not 0 < latent_dim <= action_dim:
            raise ValueError(f"latent_dim must be in 1..{action_dim} (the action size), got {latent_dim}")
        self.action_dim = action_dim
        self.latent_dim = latent_dim
        hidden = 2 * latent_dim
        self.encoder = nn.Sequential(
            nn.Linear(action_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, latent_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, action_dim)
        )

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        return self.encoder(actions)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents)

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(actions))


@dataclass
class ActionPriorConfig:
    """Fitting an action autoencoder; defaults are the authors'."""

    latent_dim: int | None = None
    """Latent action size ``k``; ``None`` picks it by PCA (see ``variance_threshold``)."""
    variance_threshold: float = 0.97
    """Cumulative explained variance the PCA latent size must exceed."""
    epochs: int = 10_000
    """Passes over the (tiny) action set; the authors trained ~10k epochs."""
    batch_size: int = 32
    """Minibatch size (the authors': 32)."""
    learning_rate: float = 3e-4
    """Adam step size."""
    penalty_weight: float = 1.0
    """Weight of the latent-range penalty relative to the reconstruction MSE."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of each step (not in the authors' code; keeps the steep penalty stable)."""
    seed: int = 0
    """Seed for initialisation and minibatch order."""


@dataclass
class ActionPrior:
    """A fitted latent action prior: the autoencoder plus what it was fitted on.

    :param autoencoder: the fitted :class:`ActionAutoencoder`.
    :param config: how it was fitted.
    :param explained_variance: PCA explained-variance ratio of the training actions.
    :param reconstruction_mse: per action dimension, on the training actions.
    :param env_id: environment whose actions it encodes, when known.
    """

    autoencoder: ActionAutoencoder
    config: ActionPriorConfig
    explained_variance: np.ndarray
    reconstruction_mse: np.ndarray
    env_id: str | None = None
    history: list[float] = field(default_factory=list)

    @property
    def action_dim(self) -> int:
        return self.autoencoder.action_dim

    @property
    def latent_dim(self) -> int:
        return self.autoencoder.latent_dim

    @torch.no_grad()
    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Decode latent actions (..., k) in [-1, 1] to full actions (..., d)."""
        z = torch.as_tensor(latents, dtype=torch.float32)
        return self.autoencoder.decode(z).numpy()

    @torch.no_grad()
    def encode(self, actions: np.ndarray) -> np.ndarray:
        return self.autoencoder.encode(torch.as_tensor(actions, dtype=torch.float32)).numpy()

    def save(self, directory: str | os.PathLike) -> Path:
        return save_artifact(
            directory,
            {"autoencoder": self.autoencoder},
            {
                "kind": KIND,
                "action_dim": self.action_dim,
                "latent_dim": self.latent_dim,
                "env_id": self.env_id,
                "fit": asdict(self.config),
                "explained_variance": self.explained_variance.tolist(),
                "reconstruction_mse": self.reconstruction_mse.tolist(),
                "loss_history": self.history,
            },
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ActionPrior":
        config, weights, _ = load_artifact(directory, KIND)
        try:
            autoencoder = ActionAutoencoder(int(config["action_dim"]), int(config["latent_dim"]))
            autoencoder.load_state_dict(weights["autoencoder"])
        except (KeyError, RuntimeError) as e:
            raise ArtifactError(f"{directory}: action prior does not match its config ({e})") from None
        autoencoder.eval().requires_grad_(False)
        return cls(
            autoencoder,
            ActionPriorConfig(**config["fit"]),
            np.asarray(config["explained_variance"]),
            np.asarray(config["reconstruction_mse"]),
            config.get("env_id"),
            list(config.get("loss_history", [])),
        )


def fit_action_prior(
    actions: np.ndarray,
    config: ActionPriorConfig | None = None,
    env_id: str | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> ActionPrior:
    """Fit the latent action autoencoder on expert actions.

    :param actions: expert actions (N, d) in the normalised [-1, 1] range; N may be as small as
        one gait cycle (the paper: 5-106 frames).
    :param config: fitting settings; the authors' by default.
    :param env_id: recorded in the artifact so later use can check it.
    :param callback: called as ``callback(epoch, loss)`` every 100 epochs (progress displays).
    """
    config = config or ActionPriorConfig()
    actions = np.asarray(actions, dtype=np.float32)
    if actions.ndim != 2 or len(actions) < 2:
        raise ValueError(f"actions must have shape (N >= 2, d), got {actions.shape}")
    if not np.isfinite(actions).all():
        raise ValueError("actions contain NaN or inf")
    variance = explained_variance_ratio(actions)
    k = config.latent_dim or pca_latent_size(actions, config.variance_threshold)
    config = ActionPriorConfig(**{**asdict(config), "latent_dim": k})

    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    autoencoder = ActionAutoencoder(actions.shape[1], k)
    optimizer = torch.optim.Adam(autoencoder.parameters(), lr=config.learning_rate)
    data = torch.from_numpy(actions)
    history: list[float] = []
    for epoch in range(config.epochs):
        order = torch.randperm(len(data), generator=generator)
        epoch_loss = 0.0
        for start in range(0, len(data), config.batch_size):
            batch = data[order[start : start + config.batch_size]]
            z = autoencoder.encode(batch)
            loss = nn.functional.mse_loss(autoencoder.decode(z), batch)
            loss = loss + config.penalty_weight * latent_range_penalty(z)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # The penalty is steep by design; clipping keeps one stray latent from derailing Adam.
            nn.utils.clip_grad_norm_(autoencoder.parameters(), config.max_grad_norm)
            optimizer.step()
            epoch_loss += loss.item() * len(batch)
        if epoch % 100 == 0 or epoch == config.epochs - 1:
            history.append(epoch_loss / len(data))
            if callback is not None:
                callback(epoch, history[-1])

    autoencoder.eval().requires_grad_(False)
    with torch.no_grad():
        mse = ((autoencoder(data) - data) ** 2).mean(0).numpy()
    return ActionPrior(autoencoder, config, variance, mse, env_id, history)
