"""The networks and action distributions of PPO and SAC, matching stable-baselines3's defaults.

An *actor* is any ``nn.Module`` whose ``forward(obs)`` (normalised observations, shape
``(batch, obs_dim)``) returns an action distribution with the methods the learner calls:

- PPO: ``sample()``, ``log_prob(actions)``, ``entropy()`` and ``mode``;
- SAC: ``sample()``, ``rsample_with_log_prob()`` and ``mode``.

Actions are in the environment's units (a latent action space is just another Box). Replace the
actor to change how actions are chosen (e.g. a head of different size); :class:`GaussianActor`
and :class:`SquashedGaussianActor` are the defaults. An actor that should be loadable by
:func:`latentprior.rl.load_policy` without passing it in again has a ``spec`` attribute
``{"class": name, "kwargs": {...}}`` with its class registered in :data:`ACTORS`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentprior.io import ArtifactError, LatentPriorError

__all__ = [
    "ACTIVATIONS",
    "ACTORS",
    "MLP",
    "DiagGaussian",
    "SquashedGaussian",
    "GaussianActor",
    "SquashedGaussianActor",
    "QEnsemble",
    "FlatParameters",
    "actor_from_spec",
    "flat_dim",
]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"tanh": torch.tanh, "relu": torch.relu, "elu": F.elu}
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ACTIVATIONS:
        raise LatentPriorError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """``Linear -> activation`` per hidden size, then a linear output layer.

    The forward pass calls ``F.linear`` on the layers' weights instead of running an
    ``nn.Sequential``: one module call instead of one per layer, which matters at PPO's sizes,
    where a policy step costs tens of microseconds and most of it is call overhead.

    :param in_dim: input size.
    :param hidden: hidden layer sizes.
    :param out_dim: output size.
    :param activation: ``"tanh"``, ``"relu"`` or ``"elu"``.
    :param ortho_gain: ``None`` keeps PyTorch's default init; a number applies SB3's orthogonal
        init (hidden layers gain sqrt(2), this gain for the output layer, zero biases).
    """

    def __init__(
        self, in_dim: int, hidden: Sequence[int], out_dim: int, activation: str, ortho_gain: float | None = None
    ) -> None:
        super().__init__()
        self.activation = _activation(activation)
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out) for d_in, d_out in zip(dims[:-1], dims[1:]))
        if ortho_gain is not None:
            for i, layer in enumerate(self.layers):
                nn.init.orthogonal_(layer.weight, gain=ortho_gain if i == len(self.layers) - 1 else math.sqrt(2))
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers
        for layer in hidden:
            x = self.activation(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, last.weight, last.bias)


class DiagGaussian:
    """Diagonal Gaussian over actions; unbounded (PPO clips samples to the bounds, as SB3).

    :param mean: shape ``(batch, act_dim)``.
    :param log_std: broadcastable to ``mean`` (shape ``(act_dim,)`` for a state-independent std).
    """

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor) -> None:
        self.mean, self.log_std = mean, log_std

    @property
    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self) -> torch.Tensor:
        return torch.addcmul(self.mean, self.log_std.exp(), torch.randn_like(self.mean))

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-density of ``actions``, summed over action dimensions: shape ``(batch,)``."""
        z = (actions - self.mean) * torch.exp(-self.log_std)
        return -0.5 * z.square().sum(-1) - (self.log_std + _LOG_SQRT_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        """Entropy summed over action dimensions; a scalar when the std is state-independent."""
        return (self.log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)


class SquashedGaussian:
    """``a = bias + scale * tanh(u)``, ``u ~ N(mean, exp(log_std))``: actions inside a Box.

    Log-probabilities are those of ``tanh(u)``, i.e. of the action rescaled to [-1, 1], with
    SB3's ``log(1 - tanh(u)^2 + 1e-6)`` correction: the entropy target ``-act_dim`` then means
    the same for every Box. For a KL to a prior stated in environment units this differs by the
    constant ``sum(log(scale))`` (zero for [-1, 1] boxes), which does not change gradients.

    :param mean: mean of ``u``, shape ``(batch, act_dim)``.
    :param log_std: log std of ``u``, same shape.
    :param scale: half-widths of the Box, or ``None`` for [-1, 1].
    :param bias: centres of the Box, or ``None`` for [-1, 1].
    """

    def __init__(
        self, mean: torch.Tensor, log_std: torch.Tensor, scale: torch.Tensor | None, bias: torch.Tensor | None
    ) -> None:
        self.mean, self.log_std, self.scale, self.bias = mean, log_std, scale, bias

    def _to_env(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.scale is None else torch.addcmul(self.bias, self.scale, y)

    @property
    def mode(self) -> torch.Tensor:
        return self._to_env(torch.tanh(self.mean))

    def sample(self) -> torch.Tensor:
        return self._to_env(torch.tanh(torch.addcmul(self.mean, self.log_std.exp(), torch.randn_like(self.mean))))

    def rsample_with_log_prob(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample (differentiable in mean and log std) and its log-probability."""
        eps = torch.randn_like(self.mean)
        y = torch.tanh(self.mean + self.log_std.exp() * eps)
        log_prob = (-0.5 * eps.square() - self.log_std).sum(-1) - torch.log(1 - y.square() + 1e-6).sum(-1)
        return self._to_env(y), log_prob - _LOG_SQRT_2PI * y.shape[-1]

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-probability of given actions (environment units), shape ``(batch,)``."""
        y = actions if self.scale is None else (actions - self.bias) / self.scale
        y = y.clamp(-1 + 1e-6, 1 - 1e-6)
        z = (torch.atanh(y) - self.mean) * torch.exp(-self.log_std)
        log_prob = (-0.5 * z.square() - self.log_std).sum(-1) - torch.log(1 - y.square() + 1e-6).sum(-1)
        return log_prob - _LOG_SQRT_2PI * y.shape[-1]


def _box_affine(low: Sequence[float], high: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(scale, bias)`` mapping [-1, 1] onto the Box, or None when the Box is [-1, 1] already."""
    low_t, high_t = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
    if not (torch.isfinite(low_t).all() and torch.isfinite(high_t).all()):
        raise LatentPriorError(f"SAC needs a bounded action space; got low {low_t.tolist()}, high {high_t.tolist()}")
    if torch.equal(low_t, -torch.ones_like(low_t)) and torch.equal(high_t, torch.ones_like(high_t)):
        return None
    return (high_t - low_t) / 2, (high_t + low_t) / 2


class GaussianActor(nn.Module):
    """PPO's default actor: an MLP for the mean and a state-independent log std (SB3 ``MlpPolicy``).

    :param obs_dim: size of the (flat) observation.
    :param act_dim: size of the action.
    :param hidden: hidden layer sizes (SB3: 64, 64).
    :param activation: ``"tanh"`` (SB3 default), ``"relu"`` or ``"elu"``.
    :param log_std_init: initial log std of every action dimension (SB3: 0).
    :param ortho_init: SB3's orthogonal init (gain 0.01 on the mean layer, so first actions ~ 0).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
        ortho_init: bool = True,
    ) -> None:
        super().__init__()
        self.spec = {"class": "GaussianActor", "kwargs": dict(
            obs_dim=obs_dim, act_dim=act_dim, hidden=list(hidden), activation=activation,
            log_std_init=log_std_init, ortho_init=ortho_init,
        )}
        self.mean = MLP(obs_dim, hidden, act_dim, activation, ortho_gain=0.01 if ortho_init else None)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def forward(self, obs: torch.Tensor) -> DiagGaussian:
        return DiagGaussian(self.mean(obs), self.log_std)


class SquashedGaussianActor(nn.Module):
    """SAC's default actor: an MLP giving mean and log std of a tanh-squashed Gaussian (SB3 ``SACPolicy``).

    The mean and log-std heads of SB3 are one linear layer here (same init distribution, one
    matmul instead of two); the log std is clamped to [-20, 2] as in SB3.

    :param obs_dim: size of the (flat) observation.
    :param low: lower action bounds (finite).
    :param high: upper action bounds (finite).
    :param hidden: hidden layer sizes (SB3: 256, 256).
    :param activation: ``"relu"`` (SB3 default), ``"tanh"`` or ``"elu"``.
    """

    LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

    def __init__(
        self,
        obs_dim: int,
        low: Sequence[float],
        high: Sequence[float],
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        low, high = [float(x) for x in low], [float(x) for x in high]
        self.spec = {"class": "SquashedGaussianActor", "kwargs": dict(
            obs_dim=obs_dim, low=low, high=high, hidden=list(hidden), activation=activation,
        )}
        self.act_dim = len(low)
        self.net = MLP(obs_dim, hidden, 2 * self.act_dim, activation)
        affine = _box_affine(low, high)
        self.register_buffer("scale", None if affine is None else affine[0])
        self.register_buffer("bias", None if affine is None else affine[1])

    def forward(self, obs: torch.Tensor) -> SquashedGaussian:
        # float() undoes a bf16 autocast: the tanh-Gaussian maths needs float32 (1 - tanh^2 + 1e-6).
        mean, log_std = self.net(obs).float().split(self.act_dim, dim=-1)
        return SquashedGaussian(mean, log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX), self.scale, self.bias)


class QEnsemble(nn.Module):
    """``n`` independent Q-networks ``Q_k(obs, action)`` evaluated together with batched matmuls.

    Each member is an MLP like SB3's ``ContinuousCritic`` (PyTorch's default ``nn.Linear`` init);
    their weights are stacked so one ``baddbmm`` per layer computes all members: fewer, larger
    kernels than ``n`` separate networks. Actions are rescaled from the Box to [-1, 1] on the way
    in, which is what SB3's critics see.

    :param obs_dim: size of the (flat, possibly normalised) observation.
    :param low: lower action bounds (finite).
    :param high: upper action bounds (finite).
    :param hidden: hidden layer sizes (SB3: 256, 256).
    :param n: number of members (SB3 ``n_critics``: 2).
    :param activation: hidden activation (SB3: ReLU).
    """

    def __init__(
        self,
        obs_dim: int,
        low: Sequence[float],
        high: Sequence[float],
        hidden: Sequence[int] = (256, 256),
        n: int = 2,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        dims = [obs_dim + len(low), *hidden, 1]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            bound = 1 / math.sqrt(d_in)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            self.weights.append(nn.Parameter(torch.empty(n, d_in, d_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, d_out).uniform_(-bound, bound)))
        self.activation = _activation(activation)
        affine = _box_affine(low, high)
        self.register_buffer("scale", None if affine is None else affine[0])
        self.register_buffer("bias", None if affine is None else affine[1])

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """Q-values of every member, shape ``(n, batch)``.

        :param detach_params: treat the weights as constants: gradients still reach ``actions``
            (for the actor's loss) but no weight gradients are computed.
        """
        if self.scale is not None:
            actions = (actions - self.bias) / self.scale
        x = torch.cat([obs, actions], dim=-1).expand(self.weights[0].shape[0], -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if detach_params:
                w, b = w.detach(), b.detach()
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = self.activation(x)
        return x.squeeze(-1).float()  # float32 Q-values under a bf16 autocast too


class FlatParameters:
    """The parameters of several modules moved into one tensor, and their gradients into another.

    Adam and gradient-norm clipping then run as one kernel each instead of one per tensor: at
    PPO's default sizes on CPU that is ~120 us of a ~650 us minibatch step. The modules work as
    before, their parameters being views of the flat storage. Build it after moving the modules to
    their device, and clear gradients with :meth:`zero_grad` (gradients set to ``None`` would no
    longer land in the flat tensor).

    :param params: the parameters to flatten (same device and dtype).
    """

    def __init__(self, params: Sequence[nn.Parameter]) -> None:
        self.param = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
        self.param.grad = torch.zeros_like(self.param)
        offset = 0
        for p in params:
            n = p.numel()
            p.data = self.param.data[offset:offset + n].view_as(p)
            p.grad = self.param.grad[offset:offset + n].view_as(p)
            offset += n

    def zero_grad(self) -> None:
        self.param.grad.zero_()

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients to a global L2 norm of at most ``max_norm`` (as ``nn.utils.clip_grad_norm_``)."""
        norm = self.param.grad.norm()
        self.param.grad.mul_((max_norm / (norm + 1e-6)).clamp(max=1.0))
        return norm


ACTORS: dict[str, type[nn.Module]] = {"GaussianActor": GaussianActor, "SquashedGaussianActor": SquashedGaussianActor}


def actor_from_spec(spec: dict[str, Any], where: str) -> nn.Module:
    """Rebuild an actor from its ``spec`` (see module docstring); ``where`` names the source in errors."""
    cls = ACTORS.get(spec.get("class", ""))
    if cls is None:
        raise ArtifactError(
            f"{where}: actor class {spec.get('class')!r} is not registered in latentprior.rl.networks.ACTORS; "
            "pass the actor module to load_policy(..., actor=...)"
        )
    return cls(**spec["kwargs"])


def flat_dim(space: Any) -> int:
    """Size of a flat Box observation or action."""
    return int(np.prod(space.shape))
