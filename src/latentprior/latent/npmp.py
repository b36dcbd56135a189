"""Neural probabilistic motor primitives (Merel et al., ICLR 2019).

Many single-skill experts are compressed into one latent-variable inverse model. An encoder reads
a short look-ahead of the reference trajectory and emits a latent ``z_t``; a decoder, the motor
primitive module, maps ``(s_t, z_t)`` to an action. The frozen decoder is later reused as a
low-level controller whose action space is the latent space.

Read top to bottom:

1. :class:`NPMPConfig`: every knob with the paper's default (a CPU run sizes it down by
   configuration: hidden sizes, ``latent_dim``, ``batch_size``, ``steps``).
2. The AR(1) prior ``p(z_t | z_{t-1}) = N(alpha z_{t-1}, (1 - alpha^2) I)`` (Eq. 2),
   :func:`gaussian_kl` and :func:`sample_prior`.
3. The networks: encoder ``q(z_t | z_{t-1}, x_t)`` with ``x_t = [s_t, ..., s_{t+K}]`` (never
   the actions, so references without actions can be imitated), decoder ``pi(a_t | s_t, z_t)``
   with fixed std 0.1, and :func:`posterior_rollout`, which runs the encoder along a sequence.
4. Linear-feedback policy cloning (LFPC): :func:`linear_feedback_targets`,
   :func:`estimate_perturbation_std` and :class:`LinearFeedbackPolicy` (derivation below).
5. :class:`NPMP`, the fitted module (encode, decode, save/load), and :func:`fit_npmp`, which
   maximises the beta-weighted ELBO over subsequences (Eq. 3; Eq. 9 with ``lfpc=True``).
6. :func:`optimize_latents`, latent optimisation for references that one-shot imitation fails
   (Eq. 10).
7. :class:`StudentConfig`, :class:`StudentPolicy` and :func:`fit_student`: one expert cloned
   into one plain network, by BC from noisy rollouts (Eq. 4) or LFPC from one rollout (Eq. 8),
   the single-skill validation of the paper's Fig. 3.

Sequences and alignment. An episode has ``T + 1`` observations ``s_0 .. s_T`` and ``T`` clone
targets ``a_0 .. a_{T-1}`` (the expert's mean actions, ``expert_actions``). The encoder needs
``K`` future states after ``s_t``, so a reference of ``L`` states is encoded into ``L - K``
latents, one for each step ``t = 0 .. L - K - 1``; training uses the steps ``t <= T - K`` that
have both a full window and a target. The first latent of a sequence is conditioned on
``z_{-1} = 0`` and has the prior ``N(0, I)``, the stationary marginal of the AR(1) process; a
training subsequence cut from the middle of an episode is treated the same way, so encoding at
test time starts as training did.

Derivation of linear-feedback policy cloning (Sec. 2.3 of the paper)
--------------------------------------------------------------------
An expert that robustly reproduces one skill is a nonlinear feedback controller ``mu_E(s)``
around its nominal trajectory: executing ``mu_E`` from ``s*_0`` visits ``s*_1 .. s*_T`` with
actions ``a*_t = mu_E(s*_t)``. To clone it we want the student to match the expert on the
states it will actually meet, a tube around that trajectory (Eq. 7)::

    min_theta  sum_t  E_{ds ~ Delta} || mu_E(s*_t + ds) - mu_theta(s*_t + ds) ||^2

which needs the expert at every perturbed state: the expert online, or many noisy rollouts (BC
from noisy rollouts, the DART-like option). LFPC avoids both. Expand the expert to first order
around the nominal state (Eq. 5)::

    mu_E(s*_t + ds) = a*_t + J_t ds + r_t(ds),    J_t = d mu_E / d s |_{s = s*_t},
    ||r_t(ds)|| <= 1/2 sup ||d^2 mu_E / d s^2|| ||ds||^2.

The remainder is second order, so for perturbations that are small against the scale on which
the expert's gains change (the state noise that moderate action noise induces), the
linear-feedback action ``a*_t + J_t ds`` (Eq. 6) *is* the expert's action at the perturbed state,
with an error that shrinks quadratically with ``||ds||`` (halve the perturbation, quarter the
error). It is a good target because it carries what makes the expert robust, its feedback gains
``J_t`` (how it corrects a deviation), and needs only one rollout and ``T`` Jacobians (one
backward pass per action dimension per step), all available offline. Targets that keep ``a*_t``
at perturbed states instead (Eq. 11, Appendix C) would teach the student zero feedback, an
open-loop controller that fails under any noise. Replacing ``mu_E(s*_t + ds)`` in Eq. 7 by the
linear-feedback action gives the LFPC objective (Eq. 8)::

    min_theta  sum_t  E_{ds ~ Delta} || mu_theta(s*_t + ds) - a*_t - J_t ds ||^2.

The NPMP decoder is a Gaussian with fixed std ``sigma`` (0.1), so its log-likelihood is a scaled
squared error, ``log pi(a | s, z) = -||a - mu_theta(s, z)||^2 / (2 sigma^2) + const``, and the
reconstruction term of the ELBO (Eq. 3) is Eq. 8's regression. Substituting the perturbed states
everywhere a state enters, in the decoder's input and in the encoder's look-ahead, turns Eq. 3
into Eq. 9::

    E_{ds, q} sum_t  log pi(a*_t + J_t ds_t | s*_t + ds_t, z_t)
                     + beta (log p(z_t | z_{t-1}) - log q(z_t | z_{t-1}, x*_t + dx_t)),
    dx_t = [ds_t, ds_{t+1}, ..., ds_{t+K}],   ds_t i.i.d. ~ Delta.

The same ``ds_{t+k}`` enters the window at ``t`` and the decoder at ``t + k``: a perturbed copy of
a subsequence is one perturbed state sequence, so the encoder sees a perturbed reference exactly
as it will when asked to imitate a noisy trajectory. Window states past the last step with a
target (``s_{t+K}`` near the end) are perturbed too but need no Jacobian, since only states enter
the encoder. ``Delta`` is a fixed zero-mean Gaussian whose per-dimension std is estimated from
the state noise that noisy actions induce (:func:`estimate_perturbation_std`; the paper found the
objective robust to its exact choice), or, with only a nominal rollout at hand, a fixed fraction
of each state dimension's spread (:attr:`NPMPConfig.lfpc_perturbation_fraction`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from latentprior.data import Dataset, DatasetError, Episode
from latentprior.io import ArtifactError, LatentPriorError, check_space, load_artifact, save_artifact
from latentprior.rl.checkpoint import FitCheckpoint

__all__ = [
    "NPMPConfig",
    "NPMPError",
    "ar1_prior",
    "gaussian_kl",
    "sample_prior",
    "NPMPEncoder",
    "NPMPDecoder",
    "NPMPNetwork",
    "posterior_rollout",
    "linear_feedback_targets",
    "estimate_perturbation_std",
    "LinearFeedbackPolicy",
    "NPMP",
    "fit_npmp",
    "optimize_latents",
    "StudentConfig",
    "StudentPolicy",
    "fit_student",
]

KIND = "npmp"


class NPMPError(LatentPriorError, ValueError):
    """An NPMP cannot be fitted or used as asked (bad configuration, reference too short, ...)."""


# ------------------------------------------------------------------------------------------------
# 1. Configuration
# ------------------------------------------------------------------------------------------------


@dataclass
class NPMPConfig:
    """Fitting a neural probabilistic motor primitive module; defaults are Merel et al. 2019's.

    The defaults are the paper's full-scale model (2 x 1024 encoder, 3 x 1024 decoder, 60 latents,
    minibatches of 512 subsequences of 30 steps): sized for an accelerator and thousands of
    experts. A CPU run sizes it down by configuration, e.g. ``encoder_hidden=(256, 256)``,
    ``decoder_hidden=(256, 256, 256)``, ``latent_dim=16``, ``batch_size=64``, and a higher
    ``learning_rate`` with fewer ``steps``.
    """

    latent_dim: int = 60
    """Size of the latent ``z_t`` (the paper: 60; 20 in an ablation that did worse)."""
    lookahead: int = 5
    """``K``: the encoder reads ``x_t = [s_t, ..., s_{t+K}]`` (the paper: K = 5)."""
    encoder_hidden: tuple[int, ...] = (1024, 1024)
    """Hidden layer sizes of the encoder MLP (the paper: two layers of 1024)."""
    decoder_hidden: tuple[int, ...] = (1024, 1024, 1024)
    """Hidden layer sizes of the decoder MLP (the paper: three layers of 1024)."""
    activation: str = "elu"
    """Hidden activation, ``"elu"``, ``"tanh"`` or ``"relu"`` (the paper does not name one)."""
    action_std: float = 0.1
    """Fixed std of the decoder's Gaussian, in normalised [-1, 1] action units (the paper: 0.1)."""
    alpha: float = 0.95
    """AR(1) prior coefficient in [0, 1) (the paper: 0.95; 0 gives i.i.d. N(0, I) latents, as
    MoCapAct trained its models)."""
    beta: float = 0.1
    """Weight of the prior term in the ELBO, Eq. 3 (the paper: 0.1 best, 0.001 "weakly
    regularised")."""
    learning_rate: float = 1e-4
    """Adam step size (the paper: 1e-4)."""
    batch_size: int = 512
    """Subsequences per minibatch when cloning from rollouts (the paper: 512)."""
    subsequence_length: int = 30
    """Steps per training subsequence (the paper: 30; it found the length mattered little)."""
    steps: int = 100_000
    """Gradient steps (the paper does not say how many)."""
    lfpc_subsequences: int = 32
    """LFPC: nominal subsequences per minibatch (the paper: 32)."""
    lfpc_copies: int = 5
    """LFPC: perturbed copies of each subsequence (the paper: 5); a minibatch holds
    ``lfpc_subsequences * lfpc_copies`` sequences."""
    lfpc_perturbation_std: tuple[float, ...] | None = None
    """LFPC: per-dimension std of the state perturbation ``Delta`` in raw observation units, e.g.
    from :func:`estimate_perturbation_std`; ``None`` uses ``lfpc_perturbation_fraction``."""
    lfpc_perturbation_fraction: float = 0.1
    """LFPC without ``lfpc_perturbation_std``: the std of ``Delta`` is this fraction of each state
    dimension's std over the nominal data (not from the paper, which estimated ``Delta``)."""
    lfpc_clip_targets: bool = True
    """LFPC: clip the linear-feedback targets ``a*_t + J_t ds`` to the action bounds. A bounded
    expert (tanh-squashed, say) never acts outside them, so a target past a bound is further from
    the expert's action than the bound is (not in the paper, which does not say)."""
    log_interval: int = 1000
    """Gradient steps between history entries (and held-out evaluations)."""
    seed: int = 0
    """Seed of the initialisation, the subsequence sampling and the noise."""

    def __post_init__(self) -> None:
        # JSON turns tuples into lists; normalise so a loaded config equals the saved one.
        self.encoder_hidden = tuple(int(h) for h in self.encoder_hidden)
        self.decoder_hidden = tuple(int(h) for h in self.decoder_hidden)
        if self.lfpc_perturbation_std is not None:
            self.lfpc_perturbation_std = tuple(float(s) for s in self.lfpc_perturbation_std)
        counts = ("latent_dim", "batch_size", "subsequence_length", "steps", "lfpc_subsequences", "lfpc_copies")
        for name in (*counts, "log_interval"):
            if getattr(self, name) < 1:
                raise NPMPError(f"NPMPConfig: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("lookahead", "beta", "lfpc_perturbation_fraction"):
            if getattr(self, name) < 0:
                raise NPMPError(f"NPMPConfig: {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.alpha < 1.0:
            raise NPMPError(f"NPMPConfig: alpha must lie in [0, 1) (1 leaves the prior no variance), got {self.alpha}")
        if self.action_std <= 0.0:
            raise NPMPError(f"NPMPConfig: action_std must be > 0, got {self.action_std}")
        if self.activation not in _ACTIVATIONS:
            raise NPMPError(f"NPMPConfig: activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")


_ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "tanh": nn.Tanh, "relu": nn.ReLU}


# ------------------------------------------------------------------------------------------------
# 2. The AR(1) prior and the Gaussian KL
# ------------------------------------------------------------------------------------------------


def ar1_prior(z_prev: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of ``p(z_t | z_{t-1}) = N(alpha z_{t-1}, (1 - alpha^2) I)`` (Eq. 2).

    With ``sigma = sqrt(1 - alpha^2)`` the process keeps the marginal ``N(0, I)`` for any
    ``alpha``: ``Var z_t = alpha^2 Var z_{t-1} + 1 - alpha^2 = 1`` when ``Var z_{t-1} = 1``.

    :param z_prev: previous latents, shape ``(..., latent_dim)``.
    :param alpha: AR(1) coefficient in [0, 1); 0 gives i.i.d. ``N(0, I)`` latents.
    :return: ``(mean, std)``, both shaped like ``z_prev``.
    """
    return alpha * z_prev, torch.full_like(z_prev, math.sqrt(1.0 - alpha**2))


def gaussian_kl(
    mean_q: torch.Tensor, std_q: torch.Tensor, mean_p: torch.Tensor, std_p: torch.Tensor
) -> torch.Tensor:
    """``KL(N(mean_q, std_q^2) || N(mean_p, std_p^2))`` for diagonal Gaussians, summed over the last axis.

    Equals ``E_q[log q(z) - log p(z)]``, the prior term of Eq. 3 of Merel et al. 2019 in closed
    form, which has lower variance than the single-sample estimate.
    """
    var_ratio = (std_q / std_p) ** 2
    mean_term = ((mean_q - mean_p) / std_p) ** 2
    return 0.5 * (var_ratio + mean_term - 1.0 - torch.log(var_ratio)).sum(-1)


def sample_prior(
    num_steps: int, latent_dim: int, alpha: float, batch: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Latent sequences drawn from the AR(1) prior: ``z_0 ~ N(0, I)``, then Eq. 2.

    Decoding prior samples with a fitted module shows what behaviour the prior alone produces,
    a check worth making before reusing the decoder in RL.

    :param num_steps: sequence length ``T``.
    :param latent_dim: latent size.
    :param alpha: AR(1) coefficient in [0, 1).
    :param batch: number of independent sequences.
    :param generator: torch generator for repeatable samples.
    :return: shape ``(batch, num_steps, latent_dim)``, float32.
    """
    eps = torch.randn(batch, num_steps, latent_dim, generator=generator)
    z = [eps[:, 0]]
    for t in range(1, num_steps):
        mean, std = ar1_prior(z[-1], alpha)
        z.append(mean + std * eps[:, t])
    return torch.stack(z, dim=1)


# ------------------------------------------------------------------------------------------------
# 3. Encoder, decoder and the posterior along a sequence
# ------------------------------------------------------------------------------------------------


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), _ACTIVATIONS[activation]()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class NPMPEncoder(nn.Module):
    """``q(z_t | z_{t-1}, x_t)``: a Gaussian with learnt mean and std, the inputs concatenated.

    :param obs_dim: size of one (normalised) state.
    :param lookahead: ``K``; the window ``x_t`` holds ``K + 1`` states.
    :param latent_dim: size of ``z``.
    :param hidden: hidden layer sizes.
    :param activation: key of the hidden activation (see :class:`NPMPConfig`).
    """

    # Keeps the posterior std positive and its log finite when the data pins a latent exactly.
    MIN_STD = 1e-4

    def __init__(self, obs_dim: int, lookahead: int, latent_dim: int, hidden: Sequence[int], activation: str):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = _mlp((lookahead + 1) * obs_dim + latent_dim, hidden, 2 * latent_dim, activation)

    def forward(self, window: torch.Tensor, z_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` of ``q``; ``window`` is ``x_t`` flattened, shape ``(..., (K + 1) * obs_dim)``."""
        mean, raw_std = self.net(torch.cat([window, z_prev], dim=-1)).split(self.latent_dim, dim=-1)
        return mean, nn.functional.softplus(raw_std) + self.MIN_STD


class NPMPDecoder(nn.Module):
    """Mean of ``pi(a_t | s_t, z_t)``, the motor primitive module; its std is fixed (config ``action_std``).

    :param obs_dim: size of one (normalised) state.
    :param latent_dim: size of ``z``.
    :param act_dim: size of the (normalised) action.
    :param hidden: hidden layer sizes.
    :param activation: key of the hidden activation (see :class:`NPMPConfig`).
    """

    def __init__(self, obs_dim: int, latent_dim: int, act_dim: int, hidden: Sequence[int], activation: str):
        super().__init__()
        self.net = _mlp(obs_dim + latent_dim, hidden, act_dim, activation)

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, z], dim=-1))


class NPMPNetwork(nn.Module):
    """Encoder, decoder and the normalisation they work in, saved together.

    Observations are standardised with the training data's mean and std, so raw environment
    observations go in. Actions are mapped to [-1, 1] from the action space's bounds when they are
    finite (the paper's fixed std 0.1 is relative to that range) and left as they are otherwise.

    :param obs_dim: observation size.
    :param act_dim: action size.
    :param config: architecture (``latent_dim``, ``lookahead``, hidden sizes, activation).
    """

    def __init__(self, obs_dim: int, act_dim: int, config: NPMPConfig):
        super().__init__()
        self.obs_dim, self.act_dim, self.lookahead = obs_dim, act_dim, config.lookahead
        self.latent_dim = config.latent_dim
        latent, activation = config.latent_dim, config.activation
        self.encoder = NPMPEncoder(obs_dim, config.lookahead, latent, config.encoder_hidden, activation)
        self.decoder = NPMPDecoder(obs_dim, latent, act_dim, config.decoder_hidden, activation)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("action_offset", torch.zeros(act_dim))
        self.register_buffer("action_scale", torch.ones(act_dim))

    def normalise_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def normalise_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.action_offset) / self.action_scale

    def unnormalise_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return actions * self.action_scale + self.action_offset

    def windows(self, obs_n: torch.Tensor) -> torch.Tensor:
        """``x_t = [s_t, ..., s_{t+K}]`` for every ``t`` with a full window, flattened.

        :param obs_n: normalised states, shape ``(B, L, obs_dim)`` with ``L >= K + 1``.
        :return: shape ``(B, L - K, (K + 1) * obs_dim)``, oldest state first.
        """
        k = self.lookahead
        return obs_n.unfold(1, k + 1, 1).transpose(-1, -2).flatten(-2)


def posterior_rollout(
    encoder: NPMPEncoder,
    windows: torch.Tensor,
    alpha: float,
    sample: bool,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``q(z_t | z_{t-1}, x_t)`` along sequences and score it against the AR(1) prior.

    Each step conditions on the previous step's latent: a reparameterised sample when
    ``sample`` (training, where the gradient flows through the whole chain), the posterior mean
    otherwise (one-shot imitation). The first step conditions on ``z_{-1} = 0`` and is scored
    against ``N(0, I)``, the AR(1) marginal; every later step against ``N(alpha z_{t-1},
    (1 - alpha^2) I)`` given the latent actually fed to the encoder, in closed form (the
    expectation over ``z_{t-1}`` is the single sample taken along the chain).

    :param encoder: the encoder.
    :param windows: flattened look-ahead windows, shape ``(B, L, (K + 1) * obs_dim)``.
    :param alpha: AR(1) coefficient.
    :param sample: draw ``z_t`` from ``q`` (True) or take its mean (False).
    :param generator: torch generator for the samples.
    :return: ``(z, kl)``: latents ``(B, L, latent_dim)`` and per-step
        ``KL(q(z_t | .) || p(z_t | z_{t-1}))`` of shape ``(B, L)``.
    """
    batch, length, _ = windows.shape
    z_prev = windows.new_zeros(batch, encoder.latent_dim)
    prior_mean, prior_std = torch.zeros_like(z_prev), torch.ones_like(z_prev)
    latents, kls = [], []
    for t in range(length):
        mean, std = encoder(windows[:, t], z_prev)
        kls.append(gaussian_kl(mean, std, prior_mean, prior_std))
        z = mean + std * torch.randn(mean.shape, generator=generator) if sample else mean
        latents.append(z)
        z_prev = z
        prior_mean, prior_std = ar1_prior(z_prev, alpha)  # Eq. 2 of Merel et al. 2019
    return torch.stack(latents, dim=1), torch.stack(kls, dim=1)


def _gaussian_log_likelihood(target: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """``log N(target; mean, std^2 I)`` summed over the last axis: a scaled squared error."""
    dim = target.shape[-1]
    return -0.5 * ((target - mean) ** 2).sum(-1) / std**2 - dim * math.log(std * math.sqrt(2.0 * math.pi))


# ------------------------------------------------------------------------------------------------
# 4. Linear-feedback policy cloning (derivation in the module docstring)
# ------------------------------------------------------------------------------------------------


def linear_feedback_targets(
    expert_actions: np.ndarray | torch.Tensor, jacobians: np.ndarray | torch.Tensor, ds: np.ndarray | torch.Tensor
) -> np.ndarray | torch.Tensor:
    """The linear-feedback action ``a*_t + J_t ds_t``: the expert's action at ``s*_t + ds_t`` to first order.

    Eq. 5-6 of Merel et al. 2019; the error against the expert is ``O(||ds||^2)``.

    :param expert_actions: nominal actions ``a*_t``, shape ``(..., act_dim)`` (numpy or torch).
    :param jacobians: ``J_t = d mu_E / d s`` at ``s*_t``, shape ``(..., act_dim, obs_dim)``, in
        action units per raw observation unit.
    :param ds: state perturbations in raw observation units, shape ``(..., obs_dim)``; leading
        axes broadcast (several perturbed copies of one nominal step, say).
    :return: targets shaped like the broadcast of ``expert_actions`` and ``ds``' leading axes.
    """
    return expert_actions + (jacobians @ ds[..., None])[..., 0]


def estimate_perturbation_std(
    nominal_states: np.ndarray, noisy_states: np.ndarray | Sequence[np.ndarray]
) -> np.ndarray:
    """Per-dimension std of the state noise that noisy actions induce, for LFPC's ``Delta``.

    Compares each noisy rollout with the nominal rollout at the same time index and fits a
    zero-mean Gaussian to the differences (its std is their root mean square, so a systematic
    drift counts as spread). The paper estimates "the stationary transition noise distribution
    induced by noisy actions ... from a small number of trajectories". Differences grow along a
    rollout as deviations accumulate, so long rollouts give a wider ``Delta`` than their early
    steps alone would; the paper found LFPC robust to the exact choice.

    :param nominal_states: the nominal rollout's states, shape ``(T + 1, obs_dim)``, raw units.
    :param noisy_states: noisy rollouts of the same expert from the same start, an array
        ``(N, T' + 1, obs_dim)`` or a sequence of ``(T_i + 1, obs_dim)`` arrays; each is compared
        over the steps both rollouts have.
    :return: std per observation dimension, shape ``(obs_dim,)``, float64; pass it as
        ``NPMPConfig(lfpc_perturbation_std=tuple(std))``.
    """
    nominal = np.asarray(nominal_states, dtype=np.float64)
    if nominal.ndim != 2:
        raise NPMPError(f"nominal_states must have shape (T + 1, obs_dim), got {nominal.shape}")
    diffs = []
    for i, states in enumerate(noisy_states):
        states = np.asarray(states, dtype=np.float64)
        if states.ndim != 2 or states.shape[1] != nominal.shape[1]:
            raise NPMPError(
                f"noisy rollout {i} has shape {states.shape}, expected (T + 1, {nominal.shape[1]}) like the nominal"
            )
        n = min(len(states), len(nominal))
        diffs.append(states[:n] - nominal[:n])
    if not diffs:
        raise NPMPError("estimate_perturbation_std needs at least one noisy rollout")
    return np.sqrt(np.mean(np.concatenate(diffs) ** 2, axis=0))


class LinearFeedbackPolicy:
    """The linear-feedback policy ``a*_k + J_k (s - s*_k)`` around a nominal rollout (Eq. 6; the Fig. 3 baseline).

    Time-indexed (``t`` given, ``k = t``, the paper's form for time-indexed tracking experts): it
    expects to be in ``s*_t`` at step ``t`` and corrects the nominal action in proportion to the
    deviation. State-indexed (``t=None``): ``k`` is the nominal step whose state is nearest to
    ``s`` (Euclidean distance in units of each dimension's std along the rollout), which suits a
    cyclic skill (a gait) whose phase drifts against the clock under noise. Actions are not
    clipped: clip to the action bounds (the environment usually does).

    :param nominal_states: ``s*_t``, shape ``(T, obs_dim)`` or ``(T + 1, obs_dim)`` (a final
        observation without an action is ignored).
    :param nominal_actions: ``a*_t``, the expert's mean actions, shape ``(T, act_dim)``.
    :param jacobians: ``J_t``, shape ``(T, act_dim, obs_dim)``.
    """

    def __init__(self, nominal_states: np.ndarray, nominal_actions: np.ndarray, jacobians: np.ndarray):
        states, actions, jac = (np.asarray(x, dtype=np.float64) for x in (nominal_states, nominal_actions, jacobians))
        horizon = len(actions)
        if actions.ndim != 2 or jac.shape != (horizon, actions.shape[1], states.shape[-1]):
            raise NPMPError(
                f"jacobians must have shape (T, act_dim, obs_dim) = ({horizon}, {actions.shape[-1]}, "
                f"{states.shape[-1]}), got {jac.shape}"
            )
        if states.ndim != 2 or len(states) not in (horizon, horizon + 1):
            raise NPMPError(
                f"nominal_states must have shape (T or T + 1, obs_dim) with T = {horizon}, got {states.shape}"
            )
        self.nominal_states, self.nominal_actions, self.jacobians = states[:horizon], actions, jac
        spread = self.nominal_states.std(axis=0)
        self._scale = np.where(spread > 1e-6, spread, 1.0)
        self._scaled_states = self.nominal_states / self._scale  # for nearest_step, called every step

    @classmethod
    def from_episode(cls, episode: Episode) -> "LinearFeedbackPolicy":
        """Build from a nominal rollout recorded with ``expert_actions`` and ``jacobians``."""
        if episode.expert_actions is None or episode.jacobians is None:
            raise DatasetError(
                "a linear-feedback policy needs 'expert_actions' and 'jacobians'; "
                f"the episode has {', '.join(episode.fields)}"
            )
        return cls(episode.observations, episode.expert_actions, episode.jacobians)

    @property
    def horizon(self) -> int:
        """Number of steps ``T`` the policy has a nominal action for."""
        return len(self.nominal_actions)

    def nearest_step(self, obs: np.ndarray) -> np.ndarray:
        """Index of the nominal state nearest to each observation (std-scaled distance), shape ``obs.shape[:-1]``."""
        scaled = (np.asarray(obs, dtype=np.float64) / self._scale)[..., None, :]
        return np.argmin(((self._scaled_states - scaled) ** 2).sum(-1), axis=-1)

    def mean_action(self, obs: np.ndarray, t: int | np.ndarray | None = None) -> np.ndarray:
        """Action at time step(s) ``t``, or around the nearest nominal state when ``t`` is ``None``.

        :param obs: shape ``(obs_dim,)`` or ``(batch, obs_dim)``, raw units.
        :param t: step index, an int or an array ``(batch,)`` in ``0 .. T - 1``; ``None`` for
            the state-indexed policy.
        :return: float32, shape ``(act_dim,)`` or ``(batch, act_dim)``.
        """
        t = self.nearest_step(obs) if t is None else np.asarray(t)
        if t.min() < 0 or t.max() >= self.horizon:
            raise NPMPError(f"time step {t.tolist()} is outside the nominal trajectory's 0 .. {self.horizon - 1}")
        ds = np.asarray(obs, dtype=np.float64) - self.nominal_states[t]
        return linear_feedback_targets(self.nominal_actions[t], self.jacobians[t], ds).astype(np.float32)

    __call__ = mean_action


# ------------------------------------------------------------------------------------------------
# 5. The fitted module and its training
# ------------------------------------------------------------------------------------------------


@dataclass
class NPMP:
    """A fitted neural probabilistic motor primitive module.

    :param network: encoder, decoder and normalisation (:class:`NPMPNetwork`).
    :param config: how it was fitted (``subsequence_length`` as actually used).
    :param observation_space: the observation space it expects.
    :param action_space: the action space its decoder acts in.
    :param lfpc: whether it was fitted with linear-feedback policy cloning.
    :param history: training curves, one entry per ``log_interval`` steps: ``step``, ``loss``
        (negative ELBO per step), ``mse`` (reconstruction error per action dimension, normalised
        action units), ``kl`` (KL per step), ``seconds`` and, with held-out data,
        ``held_out_mse``.
    :param held_out_mse: final one-shot reconstruction error on the held-out data, if given
        (see :meth:`reconstruction_mse`).
    :param env_id: environment of the training data, when known.
    """

    network: NPMPNetwork
    config: NPMPConfig
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Box
    lfpc: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)
    held_out_mse: float | None = None
    env_id: str | None = None

    @property
    def latent_dim(self) -> int:
        return self.network.latent_dim

    @property
    def lookahead(self) -> int:
        """``K``: a reference of ``L`` states is encoded into ``L - K`` latents."""
        return self.network.lookahead

    @property
    def obs_dim(self) -> int:
        return self.network.obs_dim

    @property
    def act_dim(self) -> int:
        return self.network.act_dim

    def _states(self, states: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
        states = torch.as_tensor(np.asarray(states), dtype=torch.float32)
        if states.ndim not in (2, 3) or states.shape[-1] != self.obs_dim:
            raise NPMPError(f"{what} must have shape ([batch,] L, {self.obs_dim}), got {tuple(states.shape)}")
        if states.shape[-2] < self.lookahead + 1:
            raise NPMPError(
                f"{what} has {states.shape[-2]} states, but the encoder needs at least K + 1 = "
                f"{self.lookahead + 1} (the current state and K = {self.lookahead} future ones)"
            )
        return states

    def _encode(self, states: torch.Tensor) -> torch.Tensor:
        windows = self.network.windows(self.network.normalise_obs(states))
        z, _ = posterior_rollout(self.network.encoder, windows, self.config.alpha, sample=False)
        return z

    @torch.no_grad()
    def encode(self, states: np.ndarray) -> np.ndarray:
        """Encode a reference state trajectory into its latent sequence (posterior means).

        One-shot imitation runs :meth:`decoder_action` closed loop in state on these latents.

        :param states: raw reference states, shape ``(L, obs_dim)`` or ``(batch, L, obs_dim)``,
            with ``L >= K + 1``; no actions needed.
        :return: latents for steps ``0 .. L - K - 1``, shape ``([batch,] L - K, latent_dim)``.
        """
        states = self._states(states, "reference states")
        unbatched = states.ndim == 2
        z = self._encode(states[None] if unbatched else states)
        return (z[0] if unbatched else z).numpy()

    @torch.no_grad()
    def decoder_action(self, obs: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Deterministic action of the motor primitive module: the mean of ``pi(a | s, z)``.

        :param obs: raw observations, shape ``(..., obs_dim)``.
        :param z: latents, shape ``(..., latent_dim)``, broadcasting with ``obs``.
        :return: actions in the environment's units, shape ``(..., act_dim)``, float32, unclipped.
        """
        obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
        if obs.shape[-1] != self.obs_dim or z.shape[-1] != self.latent_dim:
            raise NPMPError(
                f"decoder_action expects observations (..., {self.obs_dim}) and latents (..., {self.latent_dim}), "
                f"got {tuple(obs.shape)} and {tuple(z.shape)}"
            )
        batch_shape = torch.broadcast_shapes(obs.shape[:-1], z.shape[:-1])
        obs, z = obs.expand(*batch_shape, self.obs_dim), z.expand(*batch_shape, self.latent_dim)
        mean = self.network.decoder(self.network.normalise_obs(obs), z)
        return self.network.unnormalise_actions(mean).numpy()

    @torch.no_grad()
    def reconstruction_mse(self, dataset: Dataset) -> float:
        """One-shot reconstruction error: encode each episode's states, decode, compare with ``expert_actions``.

        Latents are the posterior means (as in one-shot imitation), the error is averaged over
        steps ``0 .. T - K`` and action dimensions, in normalised action units (those of
        :attr:`NPMPConfig.action_std`).

        :param dataset: episodes with ``expert_actions``, each with at least ``K`` steps.
        """
        _require_expert_actions(dataset, "reconstruction")
        errors, count = 0.0, 0
        for i, episode in enumerate(dataset):
            states = self._states(episode.observations, f"{_source(dataset)}: episode {i} observations")
            z = self._encode(states[None])[0]
            n = min(len(z), episode.num_steps)
            mean = self.network.decoder(self.network.normalise_obs(states[:n]), z[:n])
            target = self.network.normalise_actions(torch.as_tensor(episode.expert_actions[:n], dtype=torch.float32))
            errors += float(((mean - target) ** 2).sum())
            count += target.numel()
        return errors / count

    def check_env(
        self, env_or_spaces: gym.Env | tuple[gym.Space | None, gym.Space | None], source: str = "NPMP"
    ) -> None:
        """Raise :class:`~latentprior.io.ArtifactError` naming what differs if the spaces do not fit.

        :param env_or_spaces: an environment, or ``(observation_space, action_space)`` where
            either may be ``None`` to skip it.
        :param source: name used in the message (e.g. the artifact directory).
        """
        if isinstance(env_or_spaces, tuple):
            obs_space, act_space = env_or_spaces
        else:
            obs_space, act_space = env_or_spaces.observation_space, env_or_spaces.action_space
        if obs_space is not None:
            check_space(self.observation_space, obs_space, "observation", source)
        if act_space is not None:
            check_space(self.action_space, act_space, "action", source)

    def save(self, directory: str | os.PathLike) -> Path:
        """Save as an artifact directory (safetensors weights, config, spaces, history)."""
        return save_artifact(
            directory,
            {"network": self.network},
            {
                "kind": KIND,
                "obs_dim": self.obs_dim,
                "act_dim": self.act_dim,
                "env_id": self.env_id,
                "lfpc": self.lfpc,
                "fit": asdict(self.config),
                "history": self.history,
                "held_out_mse": self.held_out_mse,
            },
            {"observation": self.observation_space, "action": self.action_space},
        )

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        env_or_spaces: gym.Env | tuple[gym.Space | None, gym.Space | None] | None = None,
    ) -> "NPMP":
        """Load a saved module; with ``env_or_spaces`` check its spaces first (see :meth:`check_env`)."""
        config, weights, spaces = load_artifact(directory, KIND)
        try:
            fit_config = NPMPConfig(**config["fit"])
            network = NPMPNetwork(int(config["obs_dim"]), int(config["act_dim"]), fit_config)
            network.load_state_dict(weights["network"])
            npmp = cls(
                network.eval().requires_grad_(False),
                fit_config,
                spaces["observation"],
                spaces["action"],
                bool(config.get("lfpc", False)),
                {k: list(v) for k, v in config.get("history", {}).items()},
                config.get("held_out_mse"),
                config.get("env_id"),
            )
        except (KeyError, TypeError, RuntimeError, NPMPError) as e:
            raise ArtifactError(f"{directory}: NPMP module does not match its config ({e})") from None
        if env_or_spaces is not None:
            npmp.check_env(env_or_spaces, str(directory))
        return npmp


def _source(dataset: Dataset) -> str:
    return str(dataset.path) if dataset.path is not None else "dataset"


def _require_expert_actions(dataset: Dataset, purpose: str) -> None:
    if "expert_actions" not in dataset.fields:
        raise DatasetError(
            f"{_source(dataset)}: dataset without expert actions for {purpose}; NPMP clones the expert's mean "
            f"action mu_E(s) at each visited state ('expert_actions'), not the executed one. The dataset has "
            f"{', '.join(dataset.fields)}; record it with latentprior.data.collect"
        )


def _spaces(dataset: Dataset) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """The dataset's spaces, or unbounded boxes of the data's shapes where the metadata has none."""
    first = dataset[0]
    if first.observations.ndim != 2 or first.expert_actions.ndim != 2:
        raise DatasetError(
            f"{_source(dataset)}: NPMP needs flat observations (T + 1, obs_dim) and actions (T, act_dim), "
            f"got {first.observations.shape} and {first.expert_actions.shape}"
        )
    spaces = []
    for space, dim in (
        (dataset.metadata.observation_space, first.observations.shape[1]),
        (dataset.metadata.action_space, first.expert_actions.shape[1]),
    ):
        if space is not None and not isinstance(space, gym.spaces.Box):
            raise DatasetError(f"{_source(dataset)}: NPMP needs Box spaces, the dataset has {space}")
        spaces.append(space if space is not None else gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32))
    return spaces[0], spaces[1]


def _fit_normalisation(module: nn.Module, dataset: Dataset, action_space: gym.spaces.Box) -> np.ndarray:
    """Set ``module``'s ``obs_mean``/``obs_std`` from the data and its action buffers from the bounds.

    :return: the raw per-dimension std of the observations (for the LFPC perturbation fraction).
    """
    states = dataset.concat("observations").astype(np.float64)
    # A constant dimension (a fixed target, say) would divide by zero; leave it unscaled.
    obs_std = states.std(axis=0)
    module.obs_mean.copy_(torch.as_tensor(states.mean(axis=0)))
    module.obs_std.copy_(torch.as_tensor(np.where(obs_std > 1e-6, obs_std, 1.0)))
    if action_space.is_bounded("both"):
        low, high = (torch.as_tensor(b, dtype=torch.float32) for b in (action_space.low, action_space.high))
        module.action_offset.copy_((high + low) / 2)
        module.action_scale.copy_((high - low) / 2)
    return obs_std


def _clip_to_bounds(actions: torch.Tensor, action_space: gym.spaces.Box) -> torch.Tensor:
    """Clip environment-unit actions to ``action_space``'s bounds (infinite bounds clip nothing)."""
    low, high = (torch.as_tensor(b, dtype=actions.dtype) for b in (action_space.low, action_space.high))
    return torch.minimum(torch.maximum(actions, low), high)


def _perturbation_std(explicit: Sequence[float] | None, fraction: float, obs_std: np.ndarray, name: str) -> torch.Tensor:
    """The std of LFPC's ``Delta``: the one given, else ``fraction`` of each state dimension's std."""
    if explicit is None:
        return torch.as_tensor(fraction * obs_std, dtype=torch.float32)
    if len(explicit) != len(obs_std):
        raise NPMPError(f"{name} has {len(explicit)} entries, observations have {len(obs_std)}")
    return torch.as_tensor(explicit, dtype=torch.float32)


class _Subsequences:
    """All training subsequences of one length, stored flat and gathered by index arithmetic.

    Subsequence ``i`` covers the states ``s_t0 .. s_{t0 + L - 1 + K}`` and the steps
    ``t0 .. t0 + L - 1`` of one episode; starts are uniform over every valid ``(episode, t0)``,
    so episodes count in proportion to their length.
    """

    def __init__(self, dataset: Dataset, length: int, lookahead: int, with_jacobians: bool):
        self.length, self.lookahead = length, lookahead
        obs_starts, step_starts = [], []
        obs_offset = step_offset = 0
        for i, episode in enumerate(dataset):
            # Steps t with a full window s_t .. s_{t+K} and a target a_t.
            usable = min(episode.num_steps, episode.num_steps - lookahead + 1)
            if usable < length:
                raise DatasetError(
                    f"{_source(dataset)}: episode {i} has {episode.num_steps} steps, too short for one training "
                    f"subsequence of {length} steps plus K = {lookahead} look-ahead states; lower "
                    f"subsequence_length to at most {max(usable, 0)} or drop the episode"
                )
            obs_starts.append(obs_offset + np.arange(usable - length + 1))
            step_starts.append(step_offset + np.arange(usable - length + 1))
            obs_offset += episode.num_steps + 1
            step_offset += episode.num_steps
        self.obs_starts = torch.as_tensor(np.concatenate(obs_starts))
        self.step_starts = torch.as_tensor(np.concatenate(step_starts))
        self.states = torch.as_tensor(dataset.concat("observations"), dtype=torch.float32)
        self.targets = torch.as_tensor(dataset.concat("expert_actions"), dtype=torch.float32)
        self.jacobians = torch.as_tensor(dataset.concat("jacobians"), dtype=torch.float32) if with_jacobians else None

    def sample(self, batch: int, generator: torch.Generator):
        """``(states (B, L + K, obs_dim), targets (B, L, act_dim), jacobians (B, L, act_dim, obs_dim) or None)``."""
        index = torch.randint(len(self.obs_starts), (batch,), generator=generator)
        obs_index = self.obs_starts[index, None] + torch.arange(self.length + self.lookahead)
        step_index = self.step_starts[index, None] + torch.arange(self.length)
        jacobians = None if self.jacobians is None else self.jacobians[step_index]
        return self.states[obs_index], self.targets[step_index], jacobians


def fit_npmp(
    dataset: Dataset,
    config: NPMPConfig | None = None,
    lfpc: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    held_out: Dataset | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 5000,
) -> NPMP:
    """Fit an NPMP module by maximising the beta-weighted ELBO over subsequences.

    Behavioural cloning (``lfpc=False``, Eq. 3): minibatches of ``batch_size`` subsequences of
    ``subsequence_length`` steps; the target is the expert's mean action ``expert_actions`` at the
    visited states, so noisy rollouts teach the expert's corrections (DART-like; the paper: 100
    rollouts per expert with action noise 0.1).

    Linear-feedback policy cloning (``lfpc=True``, Eq. 9): the dataset holds one nominal rollout
    per expert with ``expert_actions`` (``a*_t``) and ``jacobians`` (``J_t``). Each minibatch takes
    ``lfpc_subsequences`` subsequences and makes ``lfpc_copies`` perturbed copies of each: every
    state of the copy (the decoder's inputs and the encoder's look-ahead alike) is moved by
    ``ds ~ N(0, diag(lfpc_perturbation_std^2))`` and each target becomes ``a*_t + J_t ds_t``.

    Latents are sampled along each subsequence with the reparameterisation trick, each step
    conditioned on the previous step's sample; the prior term is the closed-form KL per step.
    The loss is the negative ELBO averaged over sequences and steps.

    :param dataset: episodes with flat ``observations`` (``T + 1`` rows), ``expert_actions``
        (``T`` rows) and, for LFPC, ``jacobians`` (``T, act_dim, obs_dim``, with respect to the
        raw observation). Every episode needs ``subsequence_length + K - 1`` steps or more.
        Observation statistics for the normalisation come from its observations; actions are
        scaled to [-1, 1] when the metadata's action space is bounded.
    :param config: settings; the paper's by default (sized for an accelerator, see
        :class:`NPMPConfig`).
    :param lfpc: fit with linear-feedback policy cloning instead of plain cloning.
    :param callback: called as ``callback(step, metrics)`` every ``log_interval`` steps with the
        latest history entry (progress displays, logging).
    :param held_out: episodes (with ``expert_actions``) to measure one-shot reconstruction on at
        every history entry and at the end (:attr:`NPMP.held_out_mse`); for LFPC, noisy rollouts
        of the same experts show how well the cloned feedback generalises.
    :param checkpoint_dir: write resumable checkpoints there every ``checkpoint_every`` steps and
        continue from the newest one (:class:`~latentprior.rl.checkpoint.FitCheckpoint`): a rerun
        after an interruption ends with the weights of an uninterrupted fit.
    :return: the fitted :class:`NPMP`, in evaluation mode with gradients off.
    """
    config = config or NPMPConfig()
    source = _source(dataset)
    _require_expert_actions(dataset, "LFPC" if lfpc else "BC")
    if lfpc and "jacobians" not in dataset.fields:
        raise DatasetError(
            f"{source}: LFPC needs the expert's Jacobians d mu/d s along the nominal rollout ('jacobians'), "
            f"the dataset has {', '.join(dataset.fields)}; collect it with jacobians=True"
        )
    if held_out is not None:
        _require_expert_actions(held_out, "the held-out reconstruction metric")
    observation_space, action_space = _spaces(dataset)
    obs_dim, act_dim = observation_space.shape[0], action_space.shape[0]

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    network = NPMPNetwork(obs_dim, act_dim, config)
    obs_std = _fit_normalisation(network, dataset, action_space)

    data = _Subsequences(dataset, config.subsequence_length, config.lookahead, with_jacobians=lfpc)
    if lfpc:
        perturbation_std = _perturbation_std(
            config.lfpc_perturbation_std, config.lfpc_perturbation_fraction, obs_std, "lfpc_perturbation_std"
        )

    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    history: dict[str, list[float]] = {"step": [], "loss": [], "mse": [], "kl": [], "seconds": []}
    if held_out is not None:
        history["held_out_mse"] = []
    npmp = NPMP(network, config, observation_space, action_space, lfpc, history, None, dataset.metadata.env_id)
    state = {"modules": {"network": network}, "optimizers": {"adam": optimizer}, "generators": {"sample": generator}}
    checkpoint, first = None, 1
    if checkpoint_dir is not None:
        identity = {**asdict(config), "steps": None, "lfpc": lfpc, "data": source,
                    "episodes": len(dataset), "frames": int(sum(e.num_steps for e in dataset))}
        checkpoint = FitCheckpoint(checkpoint_dir, identity, checkpoint_every)
        first = checkpoint.resume(history, **state)
    sums = np.zeros(3)
    start = time.perf_counter() - (history["seconds"][-1] if history["seconds"] else 0.0)
    for step in range(first, config.steps + 1):
        # -- minibatch: nominal subsequences, perturbed for LFPC --------------------------------
        if lfpc:
            states_b, targets_b, jacobians_b = data.sample(config.lfpc_subsequences, generator)
            # ds_t i.i.d. ~ Delta for every state of every copy, window states included (Eq. 9 of
            # Merel et al. 2019), so each copy is one coherently perturbed reference.
            shape = (len(states_b), config.lfpc_copies, *states_b.shape[1:])
            ds = perturbation_std * torch.randn(shape, generator=generator)
            targets_b = linear_feedback_targets(
                targets_b[:, None], jacobians_b[:, None], ds[:, :, : config.subsequence_length]
            ).flatten(0, 1)
            if config.lfpc_clip_targets:
                targets_b = _clip_to_bounds(targets_b, action_space)
            states_b = (states_b[:, None] + ds).flatten(0, 1)
        else:
            states_b, targets_b, _ = data.sample(config.batch_size, generator)

        # -- negative ELBO, Eq. 3 (Eq. 9 with the perturbed states and targets) -----------------
        obs_n = network.normalise_obs(states_b)
        windows = network.windows(obs_n)
        z, kl = posterior_rollout(network.encoder, windows, config.alpha, sample=True, generator=generator)
        mean = network.decoder(obs_n[:, : config.subsequence_length], z)
        target_n = network.normalise_actions(targets_b)
        log_likelihood = _gaussian_log_likelihood(target_n, mean, config.action_std)
        loss = (-log_likelihood + config.beta * kl).mean()

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        # -- record -----------------------------------------------------------------------------
        with torch.no_grad():
            sums += (loss.item(), ((mean - target_n) ** 2).mean().item(), kl.mean().item())
        if step % config.log_interval == 0 or step == config.steps:
            count = (step - 1) % config.log_interval + 1
            for key, value in zip(("loss", "mse", "kl"), sums / count):
                history[key].append(float(value))
            history["step"].append(step)
            history["seconds"].append(time.perf_counter() - start)
            sums[:] = 0.0
            if held_out is not None:
                history["held_out_mse"].append(npmp.reconstruction_mse(held_out))
            if checkpoint is not None:
                checkpoint.save(step, history, **state, last=step == config.steps)
            if callback is not None:
                callback(step, {key: values[-1] for key, values in history.items()})

    network.eval().requires_grad_(False)
    if held_out is not None and history["held_out_mse"]:
        npmp.held_out_mse = history["held_out_mse"][-1]
    return npmp


# ------------------------------------------------------------------------------------------------
# 6. Latent optimisation
# ------------------------------------------------------------------------------------------------


def optimize_latents(
    npmp: NPMP, states: np.ndarray, actions: np.ndarray, steps: int = 500, lr: float = 1e-2
) -> np.ndarray:
    """Optimise a reference's latent sequence directly so the decoder reproduces its actions (Eq. 10).

    Minimises ``sum_t ||mu_theta(s_t, z_t) - a*_t||^2`` over ``z`` with Adam, starting from the
    encoder's latents; the decoder stays frozen. When one-shot imitation of a reference fails,
    this tells a decoder that cannot express the actions apart from an encoder that does not find
    them (the paper lifted median relative performance on failing clips from 43 % to 78 %). The
    error is measured in normalised action units, as in training.

    :param npmp: a fitted module.
    :param states: raw reference states, shape ``(L, obs_dim)`` with ``L >= K + 1`` (an episode's
        ``T + 1`` observations).
    :param actions: target actions ``a*_t`` in environment units, shape ``(T, act_dim)`` with
        ``T >= L - K``; only the first ``L - K`` are used, one per encoded latent.
    :param steps: Adam steps.
    :param lr: Adam step size.
    :return: optimised latents, shape ``(L - K, latent_dim)``, float32.
    """
    states_t = npmp._states(states, "reference states")
    if states_t.ndim != 2:
        raise NPMPError(f"optimize_latents takes one reference (L, {npmp.obs_dim}), got {tuple(states_t.shape)}")
    n = len(states_t) - npmp.lookahead
    actions_t = torch.as_tensor(np.asarray(actions), dtype=torch.float32)
    if actions_t.ndim != 2 or actions_t.shape[1] != npmp.act_dim or len(actions_t) < n:
        raise NPMPError(
            f"actions must have shape (T >= {n}, {npmp.act_dim}) for {len(states_t)} reference states, "
            f"got {tuple(actions_t.shape)}"
        )
    network = npmp.network
    with torch.no_grad():
        z = npmp._encode(states_t[None])[0]
        obs_n = network.normalise_obs(states_t[:n])
        target = network.normalise_actions(actions_t[:n])
    z = z.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        loss = ((network.decoder(obs_n, z) - target) ** 2).sum()  # Eq. 10 of Merel et al. 2019
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return z.detach().numpy()


# ------------------------------------------------------------------------------------------------
# 7. Single-skill students (the validation of Fig. 3)
# ------------------------------------------------------------------------------------------------


@dataclass
class StudentConfig:
    """Cloning one expert into one network ``mu_theta(s)``, the single-skill validation of Sec. 3.1.

    Before compressing many experts, Merel et al. 2019 check that one skill transfers from an
    expert to a new network: behavioural cloning from noisy rollouts (Eq. 4) against LFPC from one
    nominal rollout (Eq. 8). The student is a plain MLP from the observation to the action (no
    latent); the defaults are the NPMP decoder's size and optimiser (the paper does not give the
    student's).
    """

    hidden: tuple[int, ...] = (1024, 1024, 1024)
    """Hidden layer sizes (the NPMP decoder's: three layers of 1024)."""
    activation: str = "elu"
    """Hidden activation, ``"elu"``, ``"tanh"`` or ``"relu"``."""
    learning_rate: float = 1e-4
    """Adam step size."""
    batch_size: int = 512
    """States per minibatch; for LFPC, perturbed copies of nominal states (each with its own ``ds``)."""
    steps: int = 20_000
    """Gradient steps."""
    perturbation_std: tuple[float, ...] | None = None
    """LFPC: per-dimension std of ``Delta`` in raw observation units (e.g. from
    :func:`estimate_perturbation_std`); ``None`` uses ``perturbation_fraction``."""
    perturbation_fraction: float = 0.1
    """LFPC without ``perturbation_std``: the std of ``Delta`` as a fraction of each state
    dimension's std over the nominal data."""
    clip_targets: bool = True
    """LFPC: clip the linear-feedback targets to the action bounds (see
    :attr:`NPMPConfig.lfpc_clip_targets`)."""
    seed: int = 0
    """Seed of the initialisation, the minibatches and the perturbations."""

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.perturbation_std is not None:
            self.perturbation_std = tuple(float(s) for s in self.perturbation_std)
        for name in ("batch_size", "steps"):
            if getattr(self, name) < 1:
                raise NPMPError(f"StudentConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.perturbation_fraction < 0:
            raise NPMPError(
                f"StudentConfig: learning_rate must be > 0 and perturbation_fraction >= 0, got "
                f"{self.learning_rate} and {self.perturbation_fraction}"
            )
        if self.activation not in _ACTIVATIONS:
            raise NPMPError(f"StudentConfig: activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")


class StudentPolicy(nn.Module):
    """A single-skill student ``mu_theta(s)``: raw observation in, action in environment units out.

    Works in the same normalised units as :class:`NPMPNetwork` (standardised observations, actions
    scaled to [-1, 1] from bounded action spaces), so its squared error is Eq. 4's / Eq. 8's.

    :param obs_dim: observation size.
    :param act_dim: action size.
    :param config: architecture (``hidden``, ``activation``).
    """

    def __init__(self, obs_dim: int, act_dim: int, config: StudentConfig):
        super().__init__()
        self.net = _mlp(obs_dim, config.hidden, act_dim, config.activation)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("action_offset", torch.zeros(act_dim))
        self.register_buffer("action_scale", torch.ones(act_dim))
        self.history: dict[str, list[float]] = {}

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalised mean action at raw observations ``obs``."""
        return self.net((obs - self.obs_mean) / self.obs_std)

    @torch.no_grad()
    def mean_action(self, obs: np.ndarray, t: int | np.ndarray | None = None) -> np.ndarray:
        """Action at raw observation(s) ``obs``, environment units, float32, unclipped; ``t`` is ignored."""
        mean = self(torch.as_tensor(np.asarray(obs), dtype=torch.float32))
        return (mean * self.action_scale + self.action_offset).numpy()


def fit_student(dataset: Dataset, config: StudentConfig | None = None, lfpc: bool = False) -> StudentPolicy:
    """Clone one expert into a :class:`StudentPolicy` by regression on its mean actions.

    Behavioural cloning (``lfpc=False``, Eq. 4 of Merel et al. 2019): minibatches of visited
    states and the expert's mean actions there (``expert_actions``), from noisy rollouts (DART-like;
    the paper: 100 to 1000 rollouts with action noise). Linear-feedback policy cloning
    (``lfpc=True``, Eq. 8): the dataset holds nominal rollouts with ``jacobians``; each minibatch
    draws nominal steps ``t``, perturbs their states by ``ds ~ Delta`` and regresses onto
    ``a*_t + J_t ds`` (:func:`linear_feedback_targets`).

    :param dataset: episodes with ``observations`` and ``expert_actions`` (and ``jacobians`` for LFPC).
    :param config: settings (default :class:`StudentConfig`).
    :param lfpc: fit with LFPC instead of plain cloning.
    :return: the student in evaluation mode with gradients off; ``history`` holds ``step`` and
        ``mse`` (normalised action units) every ``steps // 20`` steps.
    """
    config = config or StudentConfig()
    _require_expert_actions(dataset, "LFPC" if lfpc else "BC")
    if lfpc and "jacobians" not in dataset.fields:
        raise DatasetError(
            f"{_source(dataset)}: LFPC needs 'jacobians' along the nominal rollout, the dataset has "
            f"{', '.join(dataset.fields)}; collect it with jacobians=True"
        )
    observation_space, action_space = _spaces(dataset)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    student = StudentPolicy(observation_space.shape[0], action_space.shape[0], config)
    obs_std = _fit_normalisation(student, dataset, action_space)
    # Observations paired with the step they act in: each episode's last observation has no action.
    states = torch.as_tensor(np.concatenate([e.observations[:-1] for e in dataset]), dtype=torch.float32)
    targets = torch.as_tensor(dataset.concat("expert_actions"), dtype=torch.float32)
    jacobians = torch.as_tensor(dataset.concat("jacobians"), dtype=torch.float32) if lfpc else None
    if lfpc:
        perturbation_std = _perturbation_std(config.perturbation_std, config.perturbation_fraction, obs_std, "perturbation_std")

    optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
    student.history = {"step": [], "mse": []}
    every, total = max(config.steps // 20, 1), 0.0
    for step in range(1, config.steps + 1):
        index = torch.randint(len(states), (config.batch_size,), generator=generator)
        states_b, targets_b = states[index], targets[index]
        if jacobians is not None:
            ds = perturbation_std * torch.randn(states_b.shape, generator=generator)
            targets_b = linear_feedback_targets(targets_b, jacobians[index], ds)  # Eq. 8 of Merel et al. 2019
            if config.clip_targets:
                targets_b = _clip_to_bounds(targets_b, action_space)
            states_b = states_b + ds
        target_n = (targets_b - student.action_offset) / student.action_scale
        loss = ((student(states_b) - target_n) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
        if step % every == 0 or step == config.steps:
            student.history["step"].append(step)
            student.history["mse"].append(total / ((step - 1) % every + 1))
            total = 0.0
    return student.eval().requires_grad_(False)
