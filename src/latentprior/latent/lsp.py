"""Latent space priors (Gehring, Gopinath, Won, Krause, Synnaeve, Usunier, TMLR 2023).

From state-only demonstrations, learn a per-frame latent space with a variational autoencoder
over windows of states, then a generative model of latent sequences, the prior ``pi_0``, that
a high-level policy uses on new tasks (exploration, regularisation, options, planning). This module
builds both; the low-level policy that reenacts latents and the integrations live elsewhere.

Read top to bottom:

1. :class:`VAEConfig` and :class:`PriorConfig`: every knob with the authors' default (from their
   configs ``lcs2_vae.yaml`` and ``lcs2_prior.yaml``), plus a documented CPU preset ``small()``.
2. :func:`default_state_groups`: which observation dimensions are positions and which velocities
   in Gymnasium's MuJoCo locomotion tasks and the Bipedal Skills robots' proprioception, to report
   reconstruction error per group.
3. The state VAE: :class:`VAENetwork` (1-D conv ResNet, non-causal), :class:`StateVAE` (encode,
   decode, reconstruction error, save/load) and :func:`fit_vae`.
4. :class:`TanhGaussianMixture`, the prior's distribution over the next latent.
5. The prior: :class:`PriorNetwork` (a causal transformer), :class:`LatentPrior` (the small API the
   RL side calls: :meth:`~LatentPrior.next_distribution`, :meth:`~LatentPrior.sample`,
   :meth:`~LatentPrior.log_prob`) and :func:`fit_prior`.
6. The latent dimensions the VAE uses (:func:`latent_kl`), and a high level that acts in those
   only: :class:`LatentSubspace` and :class:`SubspacePrior` (an option of this library).

Frames and latents. An episode's ``T + 1`` observations are ``T + 1`` frames, and the VAE gives
one latent per frame: ``z`` has the same length as the states it encodes. The encoder is
convolutional and sees the whole window, past and future frames alike (it is non-causal): latent
``z_t`` depends on the states ``t - 6 .. t + 6`` with the default four blocks of kernel 3, and the
decoder's output at ``t`` on the latents ``t - 6 .. t + 6``. Windows only matter for training; a
sequence of any length is encoded in one pass, which equals window-wise encoding except within
six frames of a window's edge, where training saw zero padding.

Why tanh, and where the mixture lives. Latents are squashed by tanh, so they lie in (-1, 1),
the box a high-level policy acts in. The encoder's Gaussian posterior and the KL to ``N(0, I)`` are
over the pre-tanh value ``u``, ``z = tanh(u)`` (as in the authors' code). The prior's mixture of
Gaussians is over pre-tanh values too: ``u ~ sum_k w_k N(mu_k, diag(sigma_k^2))``, ``z = tanh(u)``,
so samples stay in the box (+-1 exactly only where float32 rounds tanh) and each component
stays an unconstrained Gaussian. Every log-likelihood here is a density of ``z`` itself, by the
change of variables::

    log p(z) = log p_u(atanh z) - sum_i log(1 - z_i^2)

(the authors' ``TransformedDistribution(..., TanhTransform())``). Negative log-likelihoods are in
nats per latent step, summed over the latent's dimensions; as densities of a continuous variable
they can be negative, and only differences between models on the same latents mean anything.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from latentprior.data import Dataset, DatasetError
from latentprior.io import ArtifactError, LatentPriorError, check_space, load_artifact, save_artifact
from latentprior.rl.checkpoint import FitCheckpoint

__all__ = [
    "LSPError",
    "VAEConfig",
    "PriorConfig",
    "default_state_groups",
    "VAENetwork",
    "StateVAE",
    "fit_vae",
    "TanhGaussianMixture",
    "PriorNetwork",
    "LatentPrior",
    "fit_prior",
    "UNUSED_KL",
    "latent_kl",
    "LatentSubspace",
    "SubspacePrior",
]

VAE_KIND = "lsp_vae"
PRIOR_KIND = "lsp_prior"


class LSPError(LatentPriorError, ValueError):
    """A latent space prior cannot be fitted or used as asked (bad configuration or input shapes)."""


# ------------------------------------------------------------------------------------------------
# 1. Configuration
# ------------------------------------------------------------------------------------------------


@dataclass
class VAEConfig:
    """Fitting the state VAE; defaults are Gehring et al. 2023's (``lcs2_vae.yaml``).

    At the defaults one step encodes 128 windows of 256 frames, about 0.5 s on one CPU core, so the
    authors' 100k steps take some 14 hours there (they used a GPU). :meth:`small` is a CPU preset.
    """

    latent_dim: int = 32
    """Size of the per-frame latent ``z`` (the authors: 32)."""
    width: int = 64
    """Channels of the residual blocks (the authors: 64)."""
    blocks: int = 4
    """Residual blocks in the encoder and, mirrored, in the decoder (the authors: 4)."""
    kernel_size: int = 3
    """Temporal kernel of the convolutions, odd (the authors: 3); with ``blocks`` it sets how many
    neighbouring frames a latent sees: ``(blocks + 2) * (kernel_size // 2)`` on each side."""
    window: int = 256
    """Frames per training window (the authors: 256); every episode needs at least this many
    frames (``T + 1`` observations)."""
    kl_weight: float = 0.2
    """Weight of the KL of the pre-tanh posterior to ``N(0, I)`` (the authors: 0.2). Both loss
    terms are means over elements (frames x dimensions), as in the authors' code."""
    batch_size: int = 128
    """Windows per minibatch (the authors: 128)."""
    learning_rate: float = 3e-4
    """Adam step size (the authors: 3e-4)."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up from 0 (the authors: 100)."""
    steps: int = 100_000
    """Gradient steps (the authors: 100k)."""
    groups: dict[str, tuple[int, int]] | None = None
    """Named observation slices ``{name: (start, stop)}`` (slices accepted) to report reconstruction
    error for, e.g. ``{"positions": (0, 8), "velocities": (8, 17)}``; ``None`` uses
    :func:`default_state_groups` of the dataset's env id. ``"all"`` is reserved for the overall error."""
    log_interval: int = 1000
    """Gradient steps between history entries (and held-out evaluations)."""
    seed: int = 0
    """Seed of the initialisation, the window sampling and the posterior noise."""
    device: str = "cpu"
    """Torch device to train on, e.g. ``"cpu"`` or ``"cuda"``."""

    def __post_init__(self) -> None:
        if self.groups is not None:
            self.groups = {str(name): _as_pair(name, value) for name, value in self.groups.items()}
            if "all" in self.groups:
                raise LSPError("VAEConfig: the group name 'all' is reserved for the error over every dimension")
        for name in ("latent_dim", "width", "blocks", "window", "batch_size", "steps", "log_interval"):
            if getattr(self, name) < 1:
                raise LSPError(f"VAEConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise LSPError(f"VAEConfig: kernel_size must be odd (centred on each frame), got {self.kernel_size}")
        if self.kl_weight < 0 or self.warmup_steps < 0:
            raise LSPError(
                f"VAEConfig: kl_weight and warmup_steps must be >= 0, got {self.kl_weight} and {self.warmup_steps}"
            )

    @classmethod
    def small(cls, **overrides) -> "VAEConfig":
        """CPU preset (not the authors'): the authors' architecture on 32 windows of 64 frames,
        20k steps at 1e-3. About 20 ms per step on one CPU core."""
        return cls(**{"window": 64, "batch_size": 32, "learning_rate": 1e-3, "steps": 20_000, **overrides})


@dataclass
class PriorConfig:
    """Fitting the latent space prior ``pi_0``; defaults are Gehring et al. 2023's (``lcs2_prior.yaml``).

    At the defaults (width 256, depth 4, 32 windows of 65 latents) a step takes about 0.7 s on one
    CPU core, so the authors' 1M steps need a GPU. :meth:`small` is a CPU preset.
    """

    width: int = 256
    """Transformer width (the authors: 256)."""
    depth: int = 4
    """Transformer layers (the authors: 4)."""
    heads: int = 4
    """Attention heads; must divide ``width`` (the authors' config does not set it; 4 here)."""
    context: int = 64
    """The most latents the prior conditions on (the authors: 64 positions). Training windows hold
    ``context + 1`` latents: the prior sees a learnt start token plus up to ``context`` latents."""
    mixture_components: int = 8
    """Gaussians in the mixture over the next pre-tanh latent (the authors: 8)."""
    noisy_inputs: bool = True
    """Condition on latents drawn from the VAE posterior while the targets stay the posterior means
    (the authors' setting), which presumably keeps predictions sensible for histories slightly off
    the data, such as a policy's latents. ``False`` conditions on the means: sharper predictions."""
    batch_size: int = 32
    """Windows per minibatch (the authors: 32)."""
    learning_rate: float = 3e-4
    """Adam step size (the authors: 3e-4)."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up from 0 (the authors: 100)."""
    steps: int = 1_000_000
    """Gradient steps (the authors: 1M)."""
    log_interval: int = 1000
    """Gradient steps between history entries (and held-out evaluations)."""
    seed: int = 0
    """Seed of the initialisation, the window sampling and the input noise."""
    device: str = "cpu"
    """Torch device to train on, e.g. ``"cpu"`` or ``"cuda"``."""

    def __post_init__(self) -> None:
        counts = ("width", "depth", "heads", "context", "mixture_components", "batch_size", "steps", "log_interval")
        for name in counts:
            if getattr(self, name) < 1:
                raise LSPError(f"PriorConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise LSPError(f"PriorConfig: heads ({self.heads}) must divide width ({self.width})")
        if self.warmup_steps < 0:
            raise LSPError(f"PriorConfig: warmup_steps must be >= 0, got {self.warmup_steps}")

    @classmethod
    def small(cls, **overrides) -> "PriorConfig":
        """CPU preset (not the authors'): width 64, depth 2, context 32, 20k steps at 1e-3.
        About 30 ms per step on one CPU core."""
        defaults = {"width": 64, "depth": 2, "context": 32, "learning_rate": 1e-3, "steps": 20_000}
        return cls(**{**defaults, **overrides})


def _as_pair(name: str, value: slice | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, slice):
        if value.step not in (None, 1) or value.start is None or value.stop is None:
            raise LSPError(f"VAEConfig: group {name!r} must be a slice with start and stop and no step, got {value}")
        value = (value.start, value.stop)
    start, stop = (int(v) for v in value)
    if not 0 <= start < stop:
        raise LSPError(f"VAEConfig: group {name!r} must satisfy 0 <= start < stop, got ({start}, {stop})")
    return start, stop


# ------------------------------------------------------------------------------------------------
# 2. Default state groups
# ------------------------------------------------------------------------------------------------

# Gymnasium MuJoCo locomotion observations (v4/v5): qpos without the root's x (and y for the 3-D
# robots), then qvel, then task-specific extras. Entries are (group, size) in observation order.
_LOCOMOTION_LAYOUTS: dict[str, tuple[tuple[str, int], ...]] = {
    "HalfCheetah": (("positions", 8), ("velocities", 9)),
    "Hopper": (("positions", 5), ("velocities", 6)),
    "Walker2d": (("positions", 8), ("velocities", 9)),
    "Swimmer": (("positions", 3), ("velocities", 5)),
    "Ant": (("positions", 13), ("velocities", 14), ("contact_forces", 78)),
    "Humanoid": (
        ("positions", 22),
        ("velocities", 23),
        ("com_inertia", 130),
        ("com_velocity", 78),
        ("actuator_forces", 17),
        ("contact_forces", 78),
    ),
}
_LOCOMOTION_LAYOUTS["HumanoidStandup"] = _LOCOMOTION_LAYOUTS["Humanoid"]

# Bipedal Skills robots (latentprior.envs.bipedal_skills, ids "latentprior/Bisk<Task><Robot>-v0", any namespace): the
# states are the proprioception, the joint positions without the root's x and then every joint
# velocity (observation[PROPRIOCEPTION]); the contact forces and the task's features after it are not.
_BIPEDAL_SKILLS_LAYOUTS: dict[str, tuple[tuple[str, int], ...]] = {
    "Walker": (("positions", 8), ("velocities", 9)),
    "HalfCheetah": (("positions", 8), ("velocities", 9)),
}


def default_state_groups(env_id: str | None, obs_dim: int) -> dict[str, slice]:
    """Observation groups of a MuJoCo locomotion task, to report errors per group.

    Known: Gymnasium's HalfCheetah, Hopper, Walker2d, Swimmer, Ant, Humanoid and HumanoidStandup,
    versions v4 and v5, with the default observation (root x/y excluded), and the proprioception of
    the Bipedal Skills robots (:mod:`latentprior.envs.bipedal_skills`). For HalfCheetah-v5,
    ``qpos[1:]`` is ``obs[0:8]`` (``"positions"``) and ``qvel`` is ``obs[8:17]``
    (``"velocities"``); Ant-v5 without contact forces (27-d) has ``obs[0:13]`` positions and
    ``obs[13:27]`` velocities, with them (105-d) also ``"contact_forces"``. A Bipedal Skills
    Walker's or HalfCheetah's 17-d proprioception has ``[0:8]`` positions (every joint but the
    root's x) and ``[8:17]`` velocities. The groups are taken in order while they fill ``obs_dim``
    exactly; any other size (an observation changed by keyword arguments, a Bipedal Skills task's
    whole observation) gets no groups.

    :param env_id: Gymnasium id such as ``"HalfCheetah-v5"`` (a namespace prefix is ignored) or
        ``"latentprior/BiskGapsWalker-v0"``, or ``None``.
    :param obs_dim: observation size.
    :return: ``{name: slice}``; empty when the layout is unknown, in which case
        :meth:`StateVAE.reconstruction_error` reports the overall ``"all"`` only.
    """
    gymnasium = re.fullmatch(r"(?:.*/)?(\w+?)-v[45]", env_id or "")
    bipedal = re.fullmatch(rf"(?:.*/)?Bisk\w+?({'|'.join(_BIPEDAL_SKILLS_LAYOUTS)})-v0", env_id or "")
    if gymnasium:
        layout = _LOCOMOTION_LAYOUTS.get(gymnasium.group(1))
    else:
        layout = _BIPEDAL_SKILLS_LAYOUTS[bipedal.group(1)] if bipedal else None
    groups, start = {}, 0
    for name, size in layout or ():
        groups[name] = slice(start, start + size)
        start += size
        if start == obs_dim:
            return groups
    return {}


# ------------------------------------------------------------------------------------------------
# 3. The state VAE
# ------------------------------------------------------------------------------------------------


class _ResBlock(nn.Module):
    """``x + Conv1x1(ReLU(Conv_k(ReLU(x))))``, the authors' residual block (from Jukebox's VQ-VAE)."""

    def __init__(self, width: int, kernel_size: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2),
            nn.ReLU(),
            nn.Conv1d(width, width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class VAENetwork(nn.Module):
    """Encoder, decoder and the state normalisation they work in, saved together.

    Encoder: ``Conv(obs, width) - blocks x ResBlock - Conv(width, latent)``, then a per-frame linear
    bottleneck to the mean and (softplus) std of the pre-tanh Gaussian. Decoder: ``Conv(latent,
    width) - blocks x ResBlock - Conv(width, obs)``; the authors end with a transposed convolution
    to ``latent`` channels followed by a convolution to ``obs``, two linear maps in a row that one
    convolution expresses. Every convolution is centred ("same" padding), so both sides see past
    and future frames. States are standardised per dimension with the training data's statistics.

    :param obs_dim: state size.
    :param config: architecture (``latent_dim``, ``width``, ``blocks``, ``kernel_size``).
    """

    # Keeps the posterior std positive and its log finite when the data pins a latent exactly.
    MIN_STD = 1e-4

    def __init__(self, obs_dim: int, config: VAEConfig):
        super().__init__()
        self.obs_dim, self.latent_dim = obs_dim, config.latent_dim
        k, pad, width, latent = config.kernel_size, config.kernel_size // 2, config.width, config.latent_dim
        blocks = config.blocks
        self.encoder = nn.Sequential(
            nn.Conv1d(obs_dim, width, k, padding=pad),
            *(_ResBlock(width, k) for _ in range(blocks)),
            nn.Conv1d(width, latent, k, padding=pad),
        )
        self.bottleneck = nn.Linear(latent, 2 * latent)
        self.decoder = nn.Sequential(
            nn.Conv1d(latent, width, k, padding=pad),
            *(_ResBlock(width, k) for _ in range(blocks)),
            nn.Conv1d(width, obs_dim, k, padding=pad),
        )
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def normalise(self, states: torch.Tensor) -> torch.Tensor:
        return (states - self.obs_mean) / self.obs_std

    def posterior(self, states_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the pre-tanh posterior, each ``(B, T, latent_dim)``, from normalised ``(B, T, obs_dim)``."""
        h = self.encoder(states_n.transpose(1, 2)).transpose(1, 2)
        mean, raw_std = self.bottleneck(h).chunk(2, dim=-1)
        return mean, nn.functional.softplus(raw_std) + self.MIN_STD

    def decode_normalised(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised states ``(B, T, obs_dim)`` from latents ``(B, T, latent_dim)``."""
        return self.decoder(z.transpose(1, 2)).transpose(1, 2)


def _source(dataset: Dataset) -> str:
    return str(dataset.path) if dataset.path is not None else "dataset"


def _observation_space(dataset: Dataset) -> gym.spaces.Box:
    """The dataset's observation space, or an unbounded box of the data's shape where it has none."""
    obs = dataset[0].observations
    if obs.ndim != 2:
        raise DatasetError(f"{_source(dataset)}: LSP needs flat observations (T + 1, obs_dim), got {obs.shape}")
    space = dataset.metadata.observation_space
    if space is not None and not isinstance(space, gym.spaces.Box):
        raise DatasetError(f"{_source(dataset)}: LSP needs a Box observation space, the dataset has {space}")
    return space if space is not None else gym.spaces.Box(-np.inf, np.inf, (obs.shape[1],), np.float32)


def _batched(x: np.ndarray | torch.Tensor, dim: int, what: str, device: torch.device):
    """``(tensor (B, T, dim) float32 on device, was_unbatched)`` from ``(T, dim)`` or ``(B, T, dim)``, ``T >= 1``."""
    x = torch.as_tensor(x, dtype=torch.float32, device=device)
    if x.ndim not in (2, 3) or x.shape[-1] != dim or x.shape[-2] < 1:
        raise LSPError(f"{what} must have shape ([batch,] T >= 1, {dim}), got {tuple(x.shape)}")
    return (x[None], True) if x.ndim == 2 else (x, False)


def _fingerprint(module: nn.Module) -> str:
    """Short hash of a module's weights: which VAE made the latents a prior was fitted on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class StateVAE:
    """A fitted state VAE: one latent in (-1, 1) per frame of a state sequence.

    Methods take numpy arrays or torch tensors and return torch tensors on the VAE's device. The
    weights are frozen, but gradients flow to the inputs (to optimise latents through the decoder).

    :param network: encoder, decoder and normalisation (:class:`VAENetwork`).
    :param config: how it was fitted.
    :param observation_space: the observation space it expects.
    :param groups: named observation slices its errors are reported for (see
        :meth:`reconstruction_error`).
    :param history: training curves, one entry per ``log_interval`` steps: ``step``, ``loss``,
        ``mse`` (normalised units, see :meth:`reconstruction_error`), ``kl`` (nats per latent
        dimension and frame), ``seconds`` and, with held-out data, ``held_out_mse/<group>`` for
        every group and ``"all"``.
    :param held_out_error: final :meth:`reconstruction_error` on the held-out data, if given.
    :param env_id: environment of the training data, when known.
    """

    network: VAENetwork
    config: VAEConfig
    observation_space: gym.spaces.Box
    groups: dict[str, slice] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    held_out_error: dict[str, float] | None = None
    env_id: str | None = None

    @property
    def latent_dim(self) -> int:
        return self.network.latent_dim

    @property
    def obs_dim(self) -> int:
        return self.network.obs_dim

    @property
    def device(self) -> torch.device:
        return self.network.obs_mean.device

    @property
    def fingerprint(self) -> str:
        """Hash of the weights; a :class:`LatentPrior` records the one of the VAE it was fitted on."""
        return _fingerprint(self.network)

    def to(self, device: str | torch.device) -> "StateVAE":
        """Move the network to ``device``; returns ``self``."""
        self.network.to(device)
        return self

    def posterior(self, states: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the pre-tanh Gaussian posterior of every frame (``z = tanh(u)``).

        :param states: raw states, shape ``(T, obs_dim)`` or ``(B, T, obs_dim)``, ``T >= 1``.
        :return: ``(mean, std)``, each ``([B,] T, latent_dim)``.
        """
        x, unbatched = _batched(states, self.obs_dim, "states", self.device)
        mean, std = self.network.posterior(self.network.normalise(x))
        return (mean[0], std[0]) if unbatched else (mean, std)

    def encode(self, states: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Latents of a state sequence: ``tanh`` of the posterior mean, one per frame.

        :param states: raw states, shape ``(T, obs_dim)`` or ``(B, T, obs_dim)``, any ``T >= 1``
            (an episode's ``T + 1`` observations in one pass; see the module docstring for how
            this relates to the training windows).
        :return: ``([B,] T, latent_dim)``, in (-1, 1).
        """
        return torch.tanh(self.posterior(states)[0])

    def decode(self, z: np.ndarray | torch.Tensor) -> torch.Tensor:
        """States from a latent sequence (the decoder is convolutional: pass sequences, not single frames).

        :param z: latents, shape ``(T, latent_dim)`` or ``(B, T, latent_dim)``, in [-1, 1].
        :return: raw states, ``([B,] T, obs_dim)``.
        """
        z, unbatched = _batched(z, self.latent_dim, "latents", self.device)
        states = self.network.decode_normalised(z) * self.network.obs_std + self.network.obs_mean
        return states[0] if unbatched else states

    @torch.no_grad()
    def reconstruction_error(
        self, dataset: Dataset, groups: Mapping[str, slice | Sequence[int]] | None = None
    ) -> dict[str, float]:
        """Mean squared error of ``decode(encode(states))`` per group of state dimensions.

        Each episode is encoded and decoded whole. Errors are in normalised units, each dimension
        divided by its standard deviation over the training data: 1.0 is no better than predicting
        the mean, so groups of different units (angles, angular velocities) compare directly.

        :param dataset: episodes with observations of the VAE's size.
        :param groups: ``{name: slice or (start, stop)}``; defaults to :attr:`groups`.
        :return: ``{group: mse}`` for every group, plus ``"all"`` over every dimension.
        """
        groups = self.groups if groups is None else {k: slice(*_as_pair(k, v)) for k, v in groups.items()}
        _check_groups(groups, self.obs_dim)
        sums, frames = torch.zeros(self.obs_dim, dtype=torch.float64, device=self.device), 0
        for i, episode in enumerate(dataset):
            where = f"{_source(dataset)}: episode {i} observations"
            x, _ = _batched(episode.observations, self.obs_dim, where, self.device)
            x_n = self.network.normalise(x)
            mean, _ = self.network.posterior(x_n)
            sums += ((self.network.decode_normalised(torch.tanh(mean)) - x_n) ** 2).sum((0, 1)).double()
            frames += x.shape[1]
        per_dim = (sums / frames).cpu().numpy()
        return {**{name: float(per_dim[s].mean()) for name, s in groups.items()}, "all": float(per_dim.mean())}

    def check_space(self, env_or_space: gym.Env | gym.Space, source: str = "state VAE") -> None:
        """Raise :class:`~latentprior.io.ArtifactError` naming what differs if the observation space does not fit."""
        space = env_or_space if isinstance(env_or_space, gym.Space) else env_or_space.observation_space
        check_space(self.observation_space, space, "observation", source)

    def save(self, directory: str | os.PathLike) -> Path:
        """Save as an artifact directory (safetensors weights, config, observation space, history)."""
        return save_artifact(
            directory,
            {"network": self.network},
            {
                "kind": VAE_KIND,
                "obs_dim": self.obs_dim,
                "env_id": self.env_id,
                "fit": asdict(self.config),
                "groups": {name: [s.start, s.stop] for name, s in self.groups.items()},
                "history": self.history,
                "held_out_error": self.held_out_error,
            },
            {"observation": self.observation_space},
        )

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        env_or_space: gym.Env | gym.Space | None = None,
        device: str | torch.device = "cpu",
    ) -> "StateVAE":
        """Load a saved VAE onto ``device``; with ``env_or_space`` check its observation space first."""
        config, weights, spaces = load_artifact(directory, VAE_KIND)
        try:
            fit_config = VAEConfig(**config["fit"])
            network = VAENetwork(int(config["obs_dim"]), fit_config)
            network.load_state_dict(weights["network"])
            vae = cls(
                network.eval().requires_grad_(False).to(device),
                fit_config,
                spaces["observation"],
                {name: slice(*pair) for name, pair in config["groups"].items()},
                {k: list(v) for k, v in config.get("history", {}).items()},
                config.get("held_out_error"),
                config.get("env_id"),
            )
        except (KeyError, TypeError, RuntimeError, LSPError) as e:
            raise ArtifactError(f"{directory}: state VAE does not match its config ({e})") from None
        if env_or_space is not None:
            vae.check_space(env_or_space, str(directory))
        return vae


def _check_groups(groups: Mapping[str, slice], obs_dim: int) -> None:
    for name, s in groups.items():
        if s.stop > obs_dim:
            raise LSPError(
                f"state group {name!r} = [{s.start}, {s.stop}) reaches past the {obs_dim} observation dimensions"
            )


class _Windows:
    """Every window of ``length`` consecutive rows of a list of sequences, gathered by index arithmetic.

    Starts are uniform over every valid ``(episode, t0)``, so episodes count in proportion to
    their length.

    :param sequences: one ``(L_i, ...)`` tensor per episode.
    :param length: rows per window.
    :param source: name of the dataset for messages.
    :param knob: the config field that sets ``length``, and how much ``length`` exceeds it.
    """

    def __init__(self, sequences: Sequence[torch.Tensor], length: int, source: str, knob: tuple[str, int]):
        lengths = [len(s) for s in sequences]
        short = [(i, n) for i, n in enumerate(lengths) if n < length]
        if short:
            name, extra = knob
            listed = ", ".join(f"episode {i} has {n}" for i, n in short[:10])
            more = f" and {len(short) - 10} more" if len(short) > 10 else ""
            raise DatasetError(
                f"{source}: dataset too short for one window of {length} frames ({listed}{more}); lower {name} to "
                f"at most {min(n for _, n in short) - extra} or drop the shorter episodes"
            )
        self.length = length
        self.data = torch.cat(list(sequences))
        offsets = np.cumsum([0, *lengths[:-1]])
        self.starts = torch.as_tensor(
            np.concatenate([o + np.arange(n - length + 1) for o, n in zip(offsets, lengths)]), device=self.data.device
        )

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """``batch`` random windows, shape ``(batch, length, ...)``."""
        index = torch.randint(len(self.starts), (batch,), generator=generator, device=self.data.device)
        return self.data[self.starts[index, None] + torch.arange(self.length, device=self.data.device)]


def _adam_with_warmup(params, learning_rate: float, warmup_steps: int):
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup_steps + 1)))
    return optimizer, scheduler


def _record(history: dict[str, list[float]], step: int, sums: dict[str, float], count: int, start: float) -> None:
    """Append one history entry: the running means of ``sums`` over ``count`` steps, then reset them."""
    history["step"].append(step)
    for key in sums:
        history[key].append(sums[key] / count)
        sums[key] = 0.0
    history["seconds"].append(time.perf_counter() - start)


def _fit_checkpoint(
    directory: str | os.PathLike | None, every: int, config, dataset: Dataset, history: dict[str, list[float]],
    network: nn.Module, optimizer: torch.optim.Optimizer, scheduler, generator: torch.Generator, **identity,
) -> tuple[FitCheckpoint | None, int, dict]:
    """``(checkpoint, first step, state)`` of a fit; restores the newest checkpoint in ``directory`` into
    the network, optimizer, schedule, generator and ``history`` (in place) when there is one."""
    state = {"modules": {"network": network}, "optimizers": {"adam": optimizer}, "schedulers": {"warmup": scheduler},
             "generators": {"sample": generator}}
    if directory is None:
        return None, 1, state
    identity = {**asdict(config), "steps": None, "device": None, "data": _source(dataset), "episodes": len(dataset),
                "frames": int(sum(e.num_steps for e in dataset)), **identity}
    checkpoint = FitCheckpoint(directory, identity, every)
    return checkpoint, checkpoint.resume(history, **state), state


def fit_vae(
    dataset: Dataset,
    config: VAEConfig | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    held_out: Dataset | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 5000,
) -> StateVAE:
    """Fit the state VAE on windows of demonstration states (the autoencoder of Gehring et al. 2023).

    Each step samples ``batch_size`` windows of ``window`` frames, encodes them with the
    reparameterisation trick (``z = tanh(mean + std * eps)``), decodes, and minimises::

        mean((decode(z) - x)^2) + kl_weight * mean(KL(N(mean, std^2) || N(0, 1)))

    in normalised state units, both means over elements. The authors' reconstruction term was a
    pose-tracking reward on motion capture; a squared error suits any state vector.

    :param dataset: episodes with flat ``observations`` (``T + 1`` rows, state-only data is fine),
        each with at least ``window`` frames (else a :class:`~latentprior.data.DatasetError`
        naming the short episodes). Normalisation statistics come from its observations.
    :param config: settings; the authors' by default (sized for a GPU, see :class:`VAEConfig`).
    :param callback: called as ``callback(step, metrics)`` every ``log_interval`` steps with the
        latest history entry (progress displays, logging).
    :param held_out: episodes (any length) to measure :meth:`StateVAE.reconstruction_error` on at
        every history entry and at the end (:attr:`StateVAE.held_out_error`).
    :param checkpoint_dir: write resumable checkpoints there every ``checkpoint_every`` steps and
        continue from the newest one (:class:`~latentprior.rl.checkpoint.FitCheckpoint`).
    :return: the fitted :class:`StateVAE`, in evaluation mode with gradients off, on ``config.device``.
    """
    config = config or VAEConfig()
    source = _source(dataset)
    observation_space = _observation_space(dataset)
    obs_dim = observation_space.shape[0]
    env_id = dataset.metadata.env_id
    if config.groups is not None:
        groups = {name: slice(*pair) for name, pair in config.groups.items()}
    else:
        groups = default_state_groups(env_id, obs_dim)
    _check_groups(groups, obs_dim)
    device = torch.device(config.device)

    torch.manual_seed(config.seed)
    generator = torch.Generator(device).manual_seed(config.seed)
    network = VAENetwork(obs_dim, config)
    states = dataset.concat("observations").astype(np.float64)
    # A constant dimension (a fixed joint, say) would divide by zero; leave it unscaled.
    std = states.std(axis=0)
    network.obs_mean.copy_(torch.as_tensor(states.mean(axis=0)))
    network.obs_std.copy_(torch.as_tensor(np.where(std > 1e-6, std, 1.0)))
    network.to(device)
    episodes = [torch.as_tensor(e.observations, dtype=torch.float32, device=device) for e in dataset]
    windows = _Windows(episodes, config.window, source, ("VAEConfig.window", 0))

    optimizer, scheduler = _adam_with_warmup(network.parameters(), config.learning_rate, config.warmup_steps)
    sums = {"loss": 0.0, "mse": 0.0, "kl": 0.0}
    history: dict[str, list[float]] = {"step": [], **{k: [] for k in sums}, "seconds": []}
    vae = StateVAE(network, config, observation_space, groups, history, None, env_id)
    standard = torch.distributions.Normal(0.0, 1.0)
    checkpoint, first, state = _fit_checkpoint(
        checkpoint_dir, checkpoint_every, config, dataset, history, network, optimizer, scheduler, generator)
    start = time.perf_counter() - (history["seconds"][-1] if history["seconds"] else 0.0)
    for step in range(first, config.steps + 1):
        x_n = network.normalise(windows.sample(config.batch_size, generator))
        mean, std = network.posterior(x_n)
        z = torch.tanh(mean + std * torch.randn(mean.shape, generator=generator, device=device))
        mse = ((network.decode_normalised(z) - x_n) ** 2).mean()
        kl = torch.distributions.kl_divergence(torch.distributions.Normal(mean, std), standard).mean()
        loss = mse + config.kl_weight * kl

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

        for key, value in (("loss", loss), ("mse", mse), ("kl", kl)):
            sums[key] += value.item()
        if step % config.log_interval == 0 or step == config.steps:
            _record(history, step, sums, (step - 1) % config.log_interval + 1, start)
            if held_out is not None:
                vae.held_out_error = vae.reconstruction_error(held_out)
                for name, value in vae.held_out_error.items():
                    history.setdefault(f"held_out_mse/{name}", []).append(value)
            if checkpoint is not None:
                checkpoint.save(step, history, **state, last=step == config.steps)
            if callback is not None:
                callback(step, {key: values[-1] for key, values in history.items()})

    network.eval().requires_grad_(False)
    if held_out is not None and vae.held_out_error is None:  # a finished fit, restored from its checkpoint
        vae.held_out_error = vae.reconstruction_error(held_out)
    return vae


# ------------------------------------------------------------------------------------------------
# 4. The prior's distribution: a mixture of Gaussians over pre-tanh latents
# ------------------------------------------------------------------------------------------------

# atanh(+-1) is infinite; latents within 1e-6 of the bound are scored as if on it. float32 resolves
# 1 - 1e-6, and tanh of a float32 saturates to exactly 1 past u ~ 9, which sampling can reach.
_BOUND = 1.0 - 1e-6
# Gauss-Hermite rule for E[tanh(u)], u ~ N(mu, sigma^2). With 32 nodes the error is below 1e-6 for
# sigma <= 1, 4e-4 at sigma = 2 and 5e-3 at sigma = 3: the wider a component, the more tanh looks like
# a step, which polynomial quadrature resolves slowly. Fitted priors predict far narrower components.
_HERMITE_X, _HERMITE_W = np.polynomial.hermite.hermgauss(32)


class TanhGaussianMixture:
    """``z = tanh(u)`` with ``u ~ sum_k w_k N(loc_k, diag(scale_k^2))``: the prior's next-latent distribution.

    A small distribution-like object (``log_prob``, ``sample``, ``mean``, ``batch_shape``,
    ``event_shape``), hand-written rather than ``TransformedDistribution(MixtureSameFamily(...),
    TanhTransform())`` because that one has no mean, takes no generator and gives ``nan`` for
    latents saturated to +-1. ``log_prob`` is differentiable in ``z`` and in the parameters.

    :param logits: mixture logits, shape ``(*batch, K)``.
    :param loc: component means of ``u``, shape ``(*batch, K, d)``.
    :param scale: component stds of ``u``, shape ``(*batch, K, d)``, positive.
    """

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor):
        if loc.shape != scale.shape or loc.shape[:-1] != logits.shape:
            raise LSPError(
                f"mixture parameters must be logits (*batch, K), loc and scale (*batch, K, d); "
                f"got {tuple(logits.shape)}, {tuple(loc.shape)}, {tuple(scale.shape)}"
            )
        self.logits, self.loc, self.scale = logits, loc, scale

    @property
    def batch_shape(self) -> torch.Size:
        return self.logits.shape[:-1]

    @property
    def event_shape(self) -> torch.Size:
        return self.loc.shape[-1:]

    @property
    def num_components(self) -> int:
        return self.logits.shape[-1]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of latents ``z``, shape ``(*sample, *batch, d)`` in [-1, 1] -> ``(*sample, *batch)``, nats.

        ``log p(z) = logsumexp_k [log w_k + log N(atanh z; loc_k, scale_k^2)] - sum_i log(1 - z_i^2)``.
        """
        u = torch.atanh(z.clamp(-_BOUND, _BOUND))
        components = torch.distributions.Normal(self.loc, self.scale).log_prob(u.unsqueeze(-2)).sum(-1)
        mixture = torch.logsumexp(torch.log_softmax(self.logits, -1) + components, dim=-1)
        # log(1 - tanh(u)^2) in a form that stays finite for large |u|.
        log_det = (2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))).sum(-1)
        return mixture - log_det

    def sample(
        self,
        sample_shape: Sequence[int] = (),
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        mixture_temperature: float | None = None,
    ) -> torch.Tensor:
        """Draw latents, shape ``(*sample_shape, *batch, d)``, in [-1, 1] (no gradient).

        Temperatures as in the authors' sampler: the components' stds are multiplied by
        ``temperature`` and the mixture logits divided by ``mixture_temperature``; 0 takes the mean
        (``tanh(loc)``) of the component, and the most likely component, respectively, without
        drawing noise. The defaults sample the distribution itself.

        :param sample_shape: leading shape of independent draws.
        :param generator: torch generator on the parameters' device, for repeatable samples.
        :param temperature: scale of the components' stds (>= 0).
        :param mixture_temperature: temperature of the component choice (>= 0); ``None``: ``temperature``.
        """
        mixture_temperature = temperature if mixture_temperature is None else mixture_temperature
        if temperature < 0 or mixture_temperature < 0:
            raise LSPError(f"temperatures must be >= 0, got {temperature} and {mixture_temperature}")
        with torch.no_grad():
            shape, k = torch.Size(sample_shape), self.num_components
            if mixture_temperature == 0:
                index = self.logits.argmax(-1).expand(*shape, *self.batch_shape)[..., None, None]
            else:
                logits = self.logits if mixture_temperature == 1 else self.logits / mixture_temperature
                probs = torch.softmax(logits, -1).reshape(-1, k)
                index = torch.multinomial(probs, shape.numel(), replacement=True, generator=generator)
                index = index.T.reshape(*shape, *self.batch_shape, 1, 1)
            gather = index.expand(*index.shape[:-1], self.loc.shape[-1])
            loc = self.loc.expand(*shape, *self.loc.shape).gather(-2, gather).squeeze(-2)
            if temperature == 0:
                return torch.tanh(loc)
            scale = self.scale.expand(*shape, *self.scale.shape).gather(-2, gather).squeeze(-2)
            if temperature != 1:
                scale = scale * temperature
            noise = torch.randn(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
            return torch.tanh(loc + scale * noise)

    def marginal(self, dims: Sequence[int]) -> "TanhGaussianMixture":
        """The distribution of latent dimensions ``dims`` alone: exact, since each component is diagonal."""
        dims = list(dims)
        return TanhGaussianMixture(self.logits, self.loc[..., dims], self.scale[..., dims])

    def repeat_interleave(self, repeats: int) -> "TanhGaussianMixture":
        """Batch shape ``(B,)`` -> ``(B * repeats,)``: each row's distribution ``repeats`` times in a row."""
        if repeats == 1:
            return self
        return TanhGaussianMixture(*(t.repeat_interleave(repeats, dim=0) for t in (self.logits, self.loc, self.scale)))

    def select(self, index: torch.Tensor) -> "TanhGaussianMixture":
        """For batch shape ``(B, T)``: row ``b``'s distribution at position ``index[b]``, batch shape ``(B,)``."""
        rows = torch.arange(len(index), device=index.device)
        return TanhGaussianMixture(self.logits[rows, index], self.loc[rows, index], self.scale[rows, index])

    @property
    def mean(self) -> torch.Tensor:
        """``E[z]``, shape ``(*batch, d)``: each component's ``E[tanh(u)]`` by Gauss-Hermite quadrature, mixed.

        Not ``tanh`` of the mean of ``u``, which overstates ``|E[z]|`` when components are wide.
        """
        x = torch.as_tensor(math.sqrt(2.0) * _HERMITE_X, dtype=self.loc.dtype, device=self.loc.device)
        w = torch.as_tensor(_HERMITE_W / math.sqrt(math.pi), dtype=self.loc.dtype, device=self.loc.device)
        per_component = (torch.tanh(self.loc[..., None] + self.scale[..., None] * x) * w).sum(-1)
        return (torch.softmax(self.logits, -1)[..., None] * per_component).sum(-2)


# ------------------------------------------------------------------------------------------------
# 5. The prior: a causal transformer over latent sequences
# ------------------------------------------------------------------------------------------------


class PriorNetwork(nn.Module):
    """GPT-style causal transformer predicting each next latent as a :class:`TanhGaussianMixture`.

    Tokens are ``[start, z_0, ..., z_{t-1}]``: a learnt start token, then the latents linearly
    embedded, plus learnt positional embeddings; the output at position ``i`` parameterises
    ``p(z_i | z_<i)``, as in the authors' Jukebox-derived model. The layers are torch's built-in
    ``nn.TransformerEncoder`` with a causal mask (pre-norm, GELU, feed-forward ``4 x width``, no
    dropout). :meth:`forward_cached` runs the same layers one new token at a time against a
    key/value cache of the earlier ones, so that sampling costs one token per step rather than the
    whole window (:meth:`LatentPrior.sample`).

    :param latent_dim: latent size ``d``.
    :param config: ``width``, ``depth``, ``heads``, ``context``, ``mixture_components``.
    """

    # Floor of the components' pre-tanh std: keeps the density bounded when a latent is perfectly
    # predictable (synthetic data, a frozen joint).
    MIN_SCALE = 1e-3

    def __init__(self, latent_dim: int, config: PriorConfig):
        super().__init__()
        self.latent_dim, self.context = latent_dim, config.context
        self.components, width = config.mixture_components, config.width
        self.embed = nn.Linear(latent_dim, width)
        self.start = nn.Parameter(0.02 * torch.randn(width))
        self.position = nn.Parameter(0.02 * torch.randn(config.context + 1, width))
        layer = nn.TransformerEncoderLayer(
            width, config.heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(
            layer, config.depth, norm=nn.LayerNorm(width), enable_nested_tensor=False
        )
        self.head = nn.Linear(width, self.components * (1 + 2 * latent_dim))

    def forward(self, history: torch.Tensor) -> TanhGaussianMixture:
        """``p(z_i | z_<i)`` for ``i = 0 .. t``, batch shape ``(B, t + 1)``, from latents ``(B, t <= context, d)``."""
        batch, steps, _ = history.shape
        tokens = torch.cat([self.start.expand(batch, 1, -1), self.embed(history)], dim=1) + self.position[: steps + 1]
        mask = nn.Transformer.generate_square_subsequent_mask(steps + 1, device=history.device, dtype=tokens.dtype)
        return self._mixture(self.head(self.transformer(tokens, mask=mask, is_causal=True)))

    def forward_cached(
        self, latents: torch.Tensor, cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> tuple[TanhGaussianMixture, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The next-latent distribution after ``latents``, keeping every layer's keys and values.

        ``forward_cached(z_0..z_{t-1})`` encodes the start token and the latents; each later
        ``forward_cached(z_t[:, None], cache)`` adds one position and attends to the cached ones,
        which equals :meth:`forward` on the whole sequence (up to float rounding) while positions
        last, i.e. up to ``context`` latents in all.

        :param latents: ``(B, n, d)``: the first latents (``n >= 0``) without a cache, new ones with it.
        :param cache: what the previous call returned, or ``None`` to start.
        :return: ``p(z_next | everything so far)`` with batch shape ``(B,)``, and the extended cache.
        """
        past = 0 if cache is None else cache[0][0].shape[2]
        tokens = self.embed(latents)
        if cache is None:
            tokens = torch.cat([self.start.expand(len(latents), 1, -1), tokens], dim=1)
        if past + tokens.shape[1] > self.context + 1:
            raise LSPError(f"the prior has {self.context + 1} positions; {past} are cached and {tokens.shape[1]} more were given")
        x = tokens + self.position[past : past + tokens.shape[1]]
        new_cache = []
        for i, layer in enumerate(self.transformer.layers):
            attended, keys_values = self._attend(layer, layer.norm1(x), None if cache is None else cache[i])
            x = x + attended
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
            new_cache.append(keys_values)
        out = self.head(self.transformer.norm(x[:, -1:]))
        return _last(self._mixture(out)), new_cache

    @staticmethod
    def _attend(
        layer: nn.TransformerEncoderLayer, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Causal self-attention of the new positions ``x`` (normed, ``(B, n, W)``) over the cached and new ones."""
        attention = layer.self_attn
        heads = attention.num_heads
        q, k, v = (
            t.unflatten(-1, (heads, -1)).transpose(1, 2)
            for t in nn.functional.linear(x, attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
        )
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        new, total = q.shape[2], k.shape[2]
        # New position j sits at total - new + j and sees every position up to its own.
        mask = torch.ones(new, total, dtype=torch.bool, device=x.device).tril(total - new) if new > 1 else None
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return attention.out_proj(out.transpose(1, 2).flatten(-2)), (k, v)

    def _mixture(self, out: torch.Tensor) -> TanhGaussianMixture:
        k, d = self.components, self.latent_dim
        logits, loc, raw_scale = out.split([k, k * d, k * d], dim=-1)
        loc = loc.unflatten(-1, (k, d))
        scale = nn.functional.softplus(raw_scale.unflatten(-1, (k, d))) + self.MIN_SCALE
        return TanhGaussianMixture(logits, loc, scale)


# Windows per forward pass when log_prob scores long sequences: bounds memory, not results.
_EVAL_WINDOWS = 256


def _last(mixture: TanhGaussianMixture) -> TanhGaussianMixture:
    return TanhGaussianMixture(mixture.logits[:, -1], mixture.loc[:, -1], mixture.scale[:, -1])


@dataclass
class LatentPrior:
    """A fitted latent space prior ``pi_0``: a generative model of latent sequences.

    The RL side needs only :meth:`next_distribution`, :meth:`sample` and :meth:`log_prob`; all
    take and return torch tensors on the prior's device (move it with :meth:`to`). The weights are
    frozen; ``log_prob`` stays differentiable in the latents, e.g. for a KL penalty between a
    high-level policy and the prior estimated with reparameterised samples of the policy.

    :param network: the transformer (:class:`PriorNetwork`).
    :param config: how it was fitted.
    :param vae_fingerprint: :attr:`StateVAE.fingerprint` of the VAE whose latents it models.
    :param history: training curves, one entry per ``log_interval`` steps: ``step``, ``nll``
        (training NLL per latent step, nats, with noisy inputs if configured), ``seconds`` and,
        with held-out data, ``held_out_nll``.
    :param held_out_nll: final NLL per latent step on the held-out data, if given (see :meth:`nll`).
    :param vae_path: where the VAE was saved, if the caller recorded it (``latentprior fit prior``
        does), so that ``latentprior sample`` finds it; :meth:`check_vae` still checks it.
    """

    network: PriorNetwork
    config: PriorConfig
    vae_fingerprint: str
    history: dict[str, list[float]] = field(default_factory=dict)
    held_out_nll: float | None = None
    vae_path: str | None = None

    @property
    def latent_dim(self) -> int:
        return self.network.latent_dim

    @property
    def context(self) -> int:
        """The most latents a prediction conditions on; older history is dropped."""
        return self.network.context

    @property
    def device(self) -> torch.device:
        return self.network.start.device

    def to(self, device: str | torch.device) -> "LatentPrior":
        """Move the network to ``device``; returns ``self``."""
        self.network.to(device)
        return self

    def _latents(self, z: torch.Tensor, what: str, min_steps: int) -> torch.Tensor:
        z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        if z.ndim != 3 or z.shape[-1] != self.latent_dim or z.shape[1] < min_steps:
            raise LSPError(
                f"{what} must have shape (batch, steps >= {min_steps}, {self.latent_dim}), got {tuple(z.shape)}"
            )
        return z

    def next_distribution(self, z_history: torch.Tensor, lengths: torch.Tensor | None = None) -> TanhGaussianMixture:
        """``pi_0(z_t | z_{t-context} .. z_{t-1})``, the distribution of the next latent.

        :param z_history: latents so far, shape ``(B, t, latent_dim)``; ``t = 0`` (an empty
            history) gives the distribution of a first latent, from the learnt start token. Only
            the last ``context`` latents are used.
        :param lengths: histories of different lengths in one batch: row ``b`` is
            ``z_history[b, :lengths[b]]`` (left-aligned, anything after is ignored), ``t <= context``.
            One pass serves every row, since the transformer is causal.
        :return: a :class:`TanhGaussianMixture` with batch shape ``(B,)``.
        """
        z = self._latents(z_history, "z_history", 0)
        if lengths is None:
            return _last(self.network(z[:, max(z.shape[1] - self.context, 0) :]))
        lengths = torch.as_tensor(lengths, device=self.device).long()
        if lengths.shape != (len(z),) or z.shape[1] > self.context or (lengths < 0).any() or (lengths > z.shape[1]).any():
            raise LSPError(
                f"lengths must be ({len(z)},) in [0, {z.shape[1]}] with at most context = {self.context} latents; "
                f"got shape {tuple(lengths.shape)} for histories of {z.shape[1]}"
            )
        return self.network(z).select(lengths)

    def log_prob(self, z_seq: torch.Tensor) -> torch.Tensor:
        """Log-density of each latent given the ones before it, as :meth:`sample` generates them.

        Latent ``t`` is scored given ``z_{max(0, t - context)} .. z_{t-1}``: the first
        ``context + 1`` in one pass, later ones in sliding windows. The sum over ``t`` is the
        sequence's log-likelihood.

        :param z_seq: latents, shape ``(B, T, latent_dim)``, ``T >= 1``, in [-1, 1].
        :return: ``log pi_0(z_t | z_<t)``, shape ``(B, T)``, nats.
        """
        z = self._latents(z_seq, "z_seq", 1)
        batch, steps, dim = z.shape
        window = self.context + 1
        head = z[:, :window]
        parts = [self.network(head[:, :-1]).log_prob(head)]
        if steps > window:
            # Window s holds z_s .. z_{s + context} and scores its last latent; s = 1 .. T - window.
            windows = z.unfold(1, window, 1)[:, 1:].transpose(-1, -2).reshape(-1, window, dim)
            scored = [_last(self.network(w[:, :-1])).log_prob(w[:, -1]) for w in windows.split(_EVAL_WINDOWS)]
            parts.append(torch.cat(scored).reshape(batch, steps - window))
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def sample(
        self,
        num_steps: int,
        batch: int = 1,
        context: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        lengths: torch.Tensor | None = None,
        temperature: float = 1.0,
        mixture_temperature: float | None = None,
        cache: bool = True,
    ) -> torch.Tensor:
        """Sample latent sequences autoregressively, each latent from :meth:`next_distribution`.

        Without ``context`` the sequences start from the start token, new motion that the
        authors found to transition between demonstrations; with it they continue the given latents.

        :param num_steps: latents to generate.
        :param batch: sequences to generate; with a ``B``-row ``context``, 1 (taken as ``B``) or a
            multiple ``B * n``: each row is continued ``n`` times independently, in consecutive output
            rows (a one-row context ``batch`` times). The ``n`` continuations of a row share the
            transformer's work on the row's history, computed once: sampling many continuations of a
            few histories, as the planner does, costs about the new latents alone.
        :param context: latents to continue, shape ``(B, t, latent_dim)``; each new latent
            conditions on the last :attr:`context` latents before it. Not included in the output.
        :param generator: torch generator on the prior's device, for repeatable samples.
        :param lengths: contexts of different lengths: row ``b`` continues ``context[b, :lengths[b]]``
            (left-aligned); rows are sampled in groups of equal length.
        :param temperature: std scale of the mixture components (see :meth:`TanhGaussianMixture.sample`;
            0 follows the most likely component's mean deterministically, the authors' options setting).
        :param mixture_temperature: temperature of the component choice; ``None``: ``temperature``.
        :param cache: keep the transformer's keys and values between steps
            (:meth:`PriorNetwork.forward_cached`); the same samples as without, up to float rounding.
            The cache lasts while the sequence fits the prior's positions: once it holds
            :attr:`context` latents, each step re-encodes the sliding window.
        :return: the new latents, shape ``(batch, num_steps, latent_dim)``, in [-1, 1].
        """
        if num_steps < 0 or batch < 1:
            raise LSPError(f"sample needs num_steps >= 0 and batch >= 1, got {num_steps} and {batch}")
        history = (torch.zeros(1, 0, self.latent_dim, device=self.device) if context is None
                   else self._latents(context, "context", 0))
        rows = len(history)
        if batch == 1 or batch % rows:
            if batch != 1 and rows != 1:
                raise LSPError(f"context has {rows} rows, which does not fit batch = {batch} "
                               f"(1, or a multiple of the rows: each row continued batch / rows times)")
            batch = max(batch, rows)
        repeats = batch // rows
        draw = functools.partial(
            TanhGaussianMixture.sample, generator=generator, temperature=temperature, mixture_temperature=mixture_temperature
        )
        if lengths is not None:
            lengths = torch.as_tensor(lengths).long().cpu()
            if lengths.shape != (rows,) or (lengths < 0).any() or (lengths > history.shape[1]).any():
                raise LSPError(f"lengths must be ({rows},) in [0, {history.shape[1]}], got {lengths.tolist()}")
            out = torch.empty(rows, repeats, num_steps, self.latent_dim, device=self.device)
            for length in lengths.unique().tolist():
                group = (lengths == length).nonzero()[:, 0].to(self.device)
                out[group] = self._continue(history[group, :length], repeats, num_steps, draw, cache).unflatten(0, (-1, repeats))
            return out.flatten(0, 1)
        return self._continue(history, repeats, num_steps, draw, cache)

    def _continue(self, history: torch.Tensor, repeats: int, num_steps: int, draw: Callable, cache: bool) -> torch.Tensor:
        """``repeats`` continuations of each row of ``history`` ``(R, t, d)`` -> ``(R * repeats, num_steps, d)``.

        With the cache, the transformer's keys and values of what the continuations of a row share
        (the start token and the row's history in the window) are computed once, at ``R`` rows, and
        copied to the row's continuations, which then encode only their own new latents: while the
        sequence fits the positions, one latent a step; once the window slides, the ``s`` latents
        generated so far (positions shift, so the shared part is encoded anew, still at ``R`` rows).
        """
        start, context = history.shape[1], self.context
        if not cache:
            history = history.repeat_interleave(repeats, dim=0)
            for _ in range(num_steps):
                z = draw(self.next_distribution(history))
                history = torch.cat([history, z[:, None]], dim=1)
            return history[:, start:]

        def shared(keys_values: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
            return [(k.repeat_interleave(repeats, dim=0), v.repeat_interleave(repeats, dim=0)) for k, v in keys_values]

        distribution, kv = self.network.forward_cached(history[:, max(start - context, 0) :])
        distribution, kv_is_shared = distribution.repeat_interleave(repeats), True
        new = history.new_empty(len(history) * repeats, 0, self.latent_dim)
        for step in range(num_steps):
            z = draw(distribution)
            new = torch.cat([new, z[:, None]], dim=1)
            if step == num_steps - 1:
                break
            generated = new.shape[1]
            if start + generated <= context:  # the whole sequence fits the positions: extend the cache by z
                distribution, kv = self.network.forward_cached(z[:, None], shared(kv) if kv_is_shared else kv)
                kv_is_shared = False
            elif generated < context:  # the window slides: the row's last latents, then this continuation's
                _, prefix = self.network.forward_cached(history[:, start - (context - generated) :])
                distribution, kv = self.network.forward_cached(new, shared(prefix))
            else:  # the window holds generated latents only
                distribution, kv = self.network.forward_cached(new[:, -context:])
        return new

    @torch.no_grad()
    def nll(self, vae: StateVAE, dataset: Dataset) -> float:
        """Negative log-likelihood per latent step (nats) of a dataset's episodes, encoded by ``vae``.

        The mean over every latent of every episode of ``-log_prob`` (each episode scored whole).
        Compare it with a baseline on the same latents, e.g. a Gaussian fitted without temporal
        context: the gap is what the prior learnt about how motion unfolds.

        :param vae: the VAE the prior was fitted on (checked by fingerprint).
        :param dataset: episodes of any length.
        """
        self.check_vae(vae)
        total, count = 0.0, 0
        for episode in dataset:
            z = vae.encode(episode.observations).to(self.device)
            total -= float(self.log_prob(z[None]).sum())
            count += len(z)
        return total / count

    def check_vae(self, vae: StateVAE, source: str = "latent prior") -> None:
        """Raise :class:`~latentprior.io.ArtifactError` unless ``vae`` made the latents this prior models."""
        if vae.latent_dim != self.latent_dim:
            raise ArtifactError(
                f"{source}: the prior models {self.latent_dim}-d latents, but the VAE encodes {vae.latent_dim}-d "
                f"latents; fit the prior on this VAE's latents"
            )
        if vae.fingerprint != self.vae_fingerprint:
            raise ArtifactError(
                f"{source}: the prior was fitted on the latents of VAE {self.vae_fingerprint}, but this VAE is "
                f"{vae.fingerprint}; its latents mean something else, so fit the prior on this VAE's latents"
            )

    def save(self, directory: str | os.PathLike) -> Path:
        """Save as an artifact directory (safetensors weights, config, latent space, history)."""
        return save_artifact(
            directory,
            {"network": self.network},
            {
                "kind": PRIOR_KIND,
                "latent_dim": self.latent_dim,
                "vae_fingerprint": self.vae_fingerprint,
                "fit": asdict(self.config),
                "history": self.history,
                "held_out_nll": self.held_out_nll,
                "vae_path": self.vae_path,
            },
            {"latent": gym.spaces.Box(-1.0, 1.0, (self.latent_dim,), np.float32)},
        )

    @classmethod
    def load(
        cls, directory: str | os.PathLike, vae: StateVAE | None = None, device: str | torch.device = "cpu"
    ) -> "LatentPrior":
        """Load a saved prior onto ``device``; with ``vae`` first check it is the one the prior was fitted on.

        :param directory: the artifact directory.
        :param vae: the VAE it will be used with; a different latent size or different weights
            are an :class:`~latentprior.io.ArtifactError` naming both.
        :param device: where the prior's tensors go.
        """
        config, weights, _ = load_artifact(directory, PRIOR_KIND)
        try:
            fit_config = PriorConfig(**config["fit"])
            network = PriorNetwork(int(config["latent_dim"]), fit_config)
            network.load_state_dict(weights["network"])
            prior = cls(
                network.eval().requires_grad_(False).to(device),
                fit_config,
                str(config["vae_fingerprint"]),
                {k: list(v) for k, v in config.get("history", {}).items()},
                config.get("held_out_nll"),
                config.get("vae_path"),
            )
        except (KeyError, TypeError, RuntimeError, LSPError) as e:
            raise ArtifactError(f"{directory}: latent prior does not match its config ({e})") from None
        if vae is not None:
            prior.check_vae(vae, str(directory))
        return prior


def fit_prior(
    vae: StateVAE,
    dataset: Dataset,
    config: PriorConfig | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    held_out: Dataset | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 5000,
) -> LatentPrior:
    """Fit the latent space prior ``pi_0`` on the frozen VAE's latents (Gehring et al. 2023).

    Every episode is encoded once into per-frame posteriors. Each step samples ``batch_size``
    windows of ``context + 1`` latents; targets are the posterior means ``tanh(mean)``, inputs the
    same or, with ``noisy_inputs``, ``tanh(mean + std * eps)``. The loss is the mean NLL per
    latent step of every target given the inputs before it (the first from the start token
    alone). The authors also subtract ``0.01 x log_prob`` of a detached sample from the mixture;
    its expected gradient is zero (the score function has mean zero), so it is left out.

    :param vae: the fitted :class:`StateVAE` (frozen; its device is used for encoding).
    :param dataset: episodes with flat ``observations`` of the VAE's size, each with at least
        ``context + 1`` frames.
    :param config: settings; the authors' by default (sized for a GPU, see :class:`PriorConfig`).
    :param callback: called as ``callback(step, metrics)`` every ``log_interval`` steps with the
        latest history entry.
    :param held_out: episodes (any length) to measure :meth:`LatentPrior.nll` on at every history
        entry and at the end (:attr:`LatentPrior.held_out_nll`).
    :param checkpoint_dir: write resumable checkpoints there every ``checkpoint_every`` steps and
        continue from the newest one (:class:`~latentprior.rl.checkpoint.FitCheckpoint`).
    :return: the fitted :class:`LatentPrior`, in evaluation mode with gradients off, on ``config.device``.
    """
    config = config or PriorConfig()
    source = _source(dataset)
    obs_dim = _observation_space(dataset).shape[0]
    if obs_dim != vae.obs_dim:
        raise DatasetError(f"{source}: observations are {obs_dim}-d, but the VAE encodes {vae.obs_dim}-d states")
    device = torch.device(config.device)
    with torch.no_grad():
        posteriors = [torch.cat(vae.posterior(e.observations), dim=-1).to(device) for e in dataset]
    windows = _Windows(posteriors, config.context + 1, source, ("PriorConfig.context", 1))

    torch.manual_seed(config.seed)
    generator = torch.Generator(device).manual_seed(config.seed)
    network = PriorNetwork(vae.latent_dim, config).to(device)
    optimizer, scheduler = _adam_with_warmup(network.parameters(), config.learning_rate, config.warmup_steps)
    sums = {"nll": 0.0}
    history: dict[str, list[float]] = {"step": [], "nll": [], "seconds": []}
    if held_out is not None:
        history["held_out_nll"] = []
    prior = LatentPrior(network, config, vae.fingerprint, history)
    checkpoint, first, state = _fit_checkpoint(checkpoint_dir, checkpoint_every, config, dataset, history, network,
                                               optimizer, scheduler, generator, vae=vae.fingerprint)
    if history.get("held_out_nll"):
        prior.held_out_nll = history["held_out_nll"][-1]
    start = time.perf_counter() - (history["seconds"][-1] if history["seconds"] else 0.0)
    for step in range(first, config.steps + 1):
        mean, std = windows.sample(config.batch_size, generator).chunk(2, dim=-1)
        target = torch.tanh(mean)
        if config.noisy_inputs:
            inputs = torch.tanh(mean + std * torch.randn(mean.shape, generator=generator, device=device))
        else:
            inputs = target
        nll = -network(inputs[:, :-1]).log_prob(target).mean()

        optimizer.zero_grad(set_to_none=True)
        nll.backward()
        optimizer.step()
        scheduler.step()

        sums["nll"] += nll.item()
        if step % config.log_interval == 0 or step == config.steps:
            _record(history, step, sums, (step - 1) % config.log_interval + 1, start)
            if held_out is not None:
                prior.held_out_nll = prior.nll(vae, held_out)
                history["held_out_nll"].append(prior.held_out_nll)
            if checkpoint is not None:
                checkpoint.save(step, history, **state, last=step == config.steps)
            if callback is not None:
                callback(step, {key: values[-1] for key, values in history.items()})

    network.eval().requires_grad_(False)
    return prior


# ------------------------------------------------------------------------------------------------
# 6. The latent dimensions the VAE uses
# ------------------------------------------------------------------------------------------------

#: mean KL to N(0, I) per frame (nats) under which a latent dimension counts as unused
UNUSED_KL = 0.01


@torch.no_grad()
def _latent_statistics(vae: StateVAE, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per latent dimension over ``dataset``'s frames, in one pass: the mean KL of the posterior to
    ``N(0, 1)`` (nats per frame) and the mean latent (:meth:`StateVAE.encode`)."""
    vae.check_space(_observation_space(dataset), _source(dataset))
    kl, latent, frames = np.zeros(vae.latent_dim), np.zeros(vae.latent_dim), 0
    standard = torch.distributions.Normal(0.0, 1.0)
    for episode in dataset:
        mean, std = vae.posterior(episode.observations)
        kl += torch.distributions.kl_divergence(torch.distributions.Normal(mean, std), standard).sum(0).double().cpu().numpy()
        latent += torch.tanh(mean).sum(0).double().cpu().numpy()
        frames += len(mean)
    return kl / max(frames, 1), latent / max(frames, 1)


def latent_kl(vae: StateVAE, dataset: Dataset) -> np.ndarray:
    """Each latent dimension's mean KL from its posterior to the ``N(0, 1)`` prior, nats per frame, over ``dataset``.

    The KL term of the VAE's loss leaves dimensions the reconstruction does not need at the prior:
    their KL is ~0 (the Ant's and the HalfCheetah's 32-d VAEs use 8 and 5 dimensions with 0.09-2.3
    nats; the rest have 0.000). Those dimensions carry nothing a decoder or a low-level policy reads;
    those under :data:`UNUSED_KL` count as unused.

    :return: ``(latent_dim,)`` float64.
    """
    return _latent_statistics(vae, dataset)[0]


@dataclass(frozen=True)
class LatentSubspace:
    """The latent dimensions a high-level policy acts in; the others are held at ``fill``.

    A 32-d VAE whose KL term switched most dimensions off still gives the high level a 32-d action
    box. The unused dimensions change nothing the low level does (it was trained on posterior
    samples, noise there), but the high level's critic must learn that they do not matter, and an
    actor can exploit its errors along them. Acting in the used dimensions only removes them
    (an option of this library, not of the paper, whose high level acts in all 32).

    :param dims: the dimensions acted in, increasing.
    :param fill: the full latent the others are taken from, ``(latent_dim,)`` in [-1, 1] (see :meth:`used`).
    """

    dims: tuple[int, ...]
    fill: tuple[float, ...]

    def __post_init__(self) -> None:
        dims = tuple(int(d) for d in self.dims)
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "fill", tuple(float(v) for v in self.fill))
        n = len(self.fill)
        if not dims or list(dims) != sorted(set(dims)) or dims[0] < 0 or dims[-1] >= n:
            raise LSPError(f"LatentSubspace: dims must be increasing, distinct and in [0, {n}), got {list(dims)}")
        if not all(-1.0 <= v <= 1.0 for v in self.fill):
            raise LSPError("LatentSubspace: fill must lie in [-1, 1]")
        # pad() runs at every high-level step: build its arrays once
        object.__setattr__(self, "_index", list(dims))
        object.__setattr__(self, "_fill", np.asarray(self.fill, dtype=np.float32))

    @property
    def latent_dim(self) -> int:
        """Size of the full latent."""
        return len(self.fill)

    @property
    def dim(self) -> int:
        """Size of the latents acted in."""
        return len(self.dims)

    @classmethod
    def used(cls, vae: StateVAE, dataset: Dataset, threshold: float = UNUSED_KL) -> "LatentSubspace":
        """The dimensions with :func:`latent_kl` of at least ``threshold`` on ``dataset``; the others held
        at their mean latent over its frames (~0: their posterior is the prior)."""
        kl, mean_latent = _latent_statistics(vae, dataset)
        dims = np.flatnonzero(kl >= threshold)
        if len(dims) == 0:
            raise LSPError(f"{_source(dataset)}: no latent dimension has a KL of {threshold} nats or more: the VAE uses none")
        return cls(tuple(dims.tolist()), tuple(mean_latent.tolist()))

    def to_dict(self) -> dict[str, list]:
        """``{"dims": [...], "fill": [...]}``, as run records keep it (``LatentSubspace(**d)`` rebuilds it)."""
        return {"dims": list(self.dims), "fill": list(self.fill)}

    def pad(self, z: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Full latents from latents of the subspace, ``(..., dim)`` -> ``(..., latent_dim)``, numpy or torch."""
        if isinstance(z, torch.Tensor):
            fill = torch.as_tensor(self._fill, dtype=z.dtype, device=z.device)
            full = fill.expand(*z.shape[:-1], self.latent_dim).clone()
        else:
            z = np.asarray(z)
            full = np.broadcast_to(self._fill.astype(z.dtype, copy=False), (*z.shape[:-1], self.latent_dim)).copy()
        full[..., self._index] = z
        return full

    def project(self, z: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """The subspace's coordinates of full latents, ``(..., latent_dim)`` -> ``(..., dim)``."""
        return z[..., self._index]


class SubspacePrior:
    """A :class:`LatentPrior` seen through a :class:`LatentSubspace`: the same calls, in the subspace's coordinates.

    Contexts are padded with the subspace's ``fill`` (what the high level executed), samples are
    drawn from the full prior and projected, and :meth:`next_distribution` is the mixture's exact
    marginal over the subspace (:meth:`TanhGaussianMixture.marginal`), which the regularising KL uses.
    """

    def __init__(self, prior: LatentPrior, subspace: LatentSubspace):
        if subspace.latent_dim != prior.latent_dim:
            raise LSPError(f"a subspace of {subspace.latent_dim}-d latents does not fit a prior of {prior.latent_dim}-d latents")
        self.prior, self.subspace = prior, subspace

    @property
    def latent_dim(self) -> int:
        return self.subspace.dim

    @property
    def context(self) -> int:
        return self.prior.context

    @property
    def device(self) -> torch.device:
        return self.prior.device

    def next_distribution(self, z_history: torch.Tensor, lengths: torch.Tensor | None = None) -> TanhGaussianMixture:
        """The prior's next-latent distribution marginalised onto the subspace; ``z_history`` ``(B, t, dim)``."""
        full = self.subspace.pad(torch.as_tensor(z_history, dtype=torch.float32, device=self.device))
        return self.prior.next_distribution(full, lengths).marginal(self.subspace.dims)

    def sample(self, num_steps: int, batch: int = 1, context: torch.Tensor | None = None,
               generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        """:meth:`LatentPrior.sample` with ``context`` ``(B, t, dim)``; returns ``(batch, num_steps, dim)``."""
        if context is not None:
            context = self.subspace.pad(torch.as_tensor(context, dtype=torch.float32, device=self.device))
        return self.subspace.project(self.prior.sample(num_steps, batch, context, generator, **kwargs))
