"""Latent space priors inside high-level SAC (Gehring et al., TMLR 2023): explore, regularize, plan.

A high-level policy acts in the latent space of a state VAE through a low-level policy
(:class:`~latentprior.envs.latent_space.LatentSpaceWrapper`); a prior ``pi_0`` over latent
sequences knows which latents plausibly follow the recent ones. The integrations, by name
(:data:`INTEGRATIONS`), with every knob in :class:`LSPIntegrationConfig`:

``none``        SAC in the latent space; the prior is not used (the baseline).
``explore``     :class:`PriorExplore`, SAC's ``explore`` hook: with a probability annealed to 0,
                the behaviour follows a latent sequence sampled from the prior for a few steps.
``regularize``  :class:`PriorRegularizer`, SAC's ``actor_regularizer`` hook: an annealed KL between
                the policy and the prior's next-latent distribution, estimated by sampling.
``options``     each high-level action is the first latent of a short sequence the prior completes:
                an environment wrapper (:class:`~latentprior.envs.latent_space.OptionsWrapper`);
                only its knobs live here.
``plan``        :class:`LatentPlanner`: sample candidate continuations from the prior, score them,
                execute the best one's first latents and plan again (model-predictive control).

This module knows the prior only through :class:`SequencePrior` (next-latent distributions that
sample and score, sequences that continue a history; a
:class:`~latentprior.latent.lsp.LatentPrior` is one) and the policy's observation only through a
``history(obs) -> (latents, lengths)`` function that reads the latents executed before it
(:func:`~latentprior.envs.latent_space.observed_latent_history`): the replay buffer stores
observations, so each replayed transition carries its prior context in its observation.

Schedules count environment steps over all sub-environments, the authors' "samples".
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Protocol

import torch

from latentprior.io import LatentPriorError
from latentprior.rl.networks import SquashedGaussian

__all__ = [
    "INTEGRATIONS",
    "check_integration",
    "LatentDistribution",
    "SequencePrior",
    "HistoryFn",
    "ScoreFn",
    "LSPIntegrationConfig",
    "annealed",
    "PriorExplore",
    "PriorRegularizer",
    "LatentPlanner",
    "critic_score",
]

INTEGRATIONS: dict[str, str] = {
    "none": "SAC in the latent space, the prior unused (the baseline)",
    "explore": "z-prior Explore: the behaviour sometimes follows latent sequences sampled from the prior",
    "regularize": "z-prior Regularize: an annealed KL from the policy to the prior's next-latent distribution",
    "options": "z-prior Options: each high-level action starts a short latent sequence the prior completes",
    "plan": "planning: the best of many latent continuations sampled from the prior, scored, replanned often",
}
"""The integrations by name, each with one line for listings."""


def check_integration(name: str) -> str:
    """``name`` if it is one of :data:`INTEGRATIONS`, else a :class:`~latentprior.io.LatentPriorError` listing them."""
    if name not in INTEGRATIONS:
        raise LatentPriorError(f"unknown prior integration {name!r}; valid names: {', '.join(INTEGRATIONS)}")
    return name


class LatentDistribution(Protocol):
    """A distribution over the next latent, batch shape ``(B,)``."""

    def sample(self, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents ``(*sample_shape, B, d)`` in [-1, 1], without gradient."""
        ...

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density ``(*sample, B)`` of latents ``(*sample, B, d)``, differentiable in ``z``."""
        ...


class SequencePrior(Protocol):
    """What the integrations call on a prior over latent sequences."""

    @property
    def latent_dim(self) -> int: ...

    @property
    def context(self) -> int:
        """The most latents a prediction conditions on."""
        ...

    @property
    def device(self) -> torch.device: ...

    def next_distribution(self, z_history: torch.Tensor, lengths: torch.Tensor | None = None) -> LatentDistribution:
        """``p(z_t | history)`` for left-aligned histories ``(B, t, d)`` of ``lengths`` ``(B,)`` latents."""
        ...

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
    ) -> torch.Tensor:
        """``(batch, num_steps, d)`` latents continuing each row's ``context[b, :lengths[b]]``."""
        ...


HistoryFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``history(obs) -> (latents, lengths)``: the latents executed before each observation, left-aligned
``(B, t, d)``, and how many of them each row holds ``(B,)``."""

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``score(obs, candidates) -> scores``: observations ``(B, obs_dim)``, candidate latent sequences
``(B, N, H, d)`` for each of them, scores ``(B, N)`` (higher is better). A score that reads only
each candidate's first latent says so with an attribute ``first_latent_only = True`` (as
:func:`critic_score` does); the planner then passes it first latents alone, ``(B, N, 1, d)``, and
draws the rest of the best candidate only (:meth:`LatentPlanner.plan`)."""


@dataclasses.dataclass
class LSPIntegrationConfig:
    """Every knob of the prior integrations; defaults are Gehring et al. 2023's (their
    ``zprior_explore``, ``zprior_regularize``, ``zprior_options`` and ``zprior_plan`` configs)."""

    context: int = 1
    """latents of history the prior conditions on (the authors' ``ctx``: 1); the high-level
    observation carries them (``LatentSpaceWrapper(observe_latents=context)``) for every
    integration, the baseline included, so that all learn from the same inputs"""
    explore_probability: float = 0.1
    """explore: probability per step, while not already following the prior, of starting to
    follow a sequence sampled from it (the authors' ``p``: 0.1)"""
    explore_anneal_samples: int = 10_000_000
    """explore: the probability falls linearly to 0 over this many environment steps, after which
    the prior is no longer followed at all (the authors: 1e7); 0 keeps it constant"""
    explore_max_steps: int = 64
    """explore: a followed sequence lasts ``min(c, Poisson(r) + 1)`` steps; this is ``c`` (the authors: 64)"""
    explore_mean_steps: float = 5.0
    """explore: ``r`` of ``min(c, Poisson(r) + 1)`` (the authors: 5)"""
    explore_episode_start: bool = True
    """explore: every episode starts by following the prior (the authors' behaviour, until annealed)"""
    explore_warmup: bool = True
    """explore: during the learner's uniformly random warm-up steps, follow the prior whenever not
    already following it, instead of the random actions (the authors' behaviour)"""
    explore_temperature: float = 1.0
    """explore: sampling temperature of the followed sequences (the authors: 1)"""
    regularize_weight: float = 0.01
    """regularize: weight of the KL term in the actor loss (the authors' ``alpha``: 0.01)"""
    regularize_anneal_samples: int = 1_000_000
    """regularize: the weight falls linearly to 0 over this many environment steps (the authors:
    1e6); 0 keeps it constant"""
    regularize_kl: str = "forward"
    """regularize: ``"forward"``: ``KL(prior || policy)``, estimated with samples of the prior, whose
    gradient is that of the policy's negative log-likelihood of the prior's samples (the authors'
    ``reverse_kl: false``); ``"reverse"``: ``KL(policy || prior)`` with reparameterised samples of
    the policy"""
    regularize_samples: int = 1
    """regularize: samples per transition and update in the Monte-Carlo KL estimate (the authors: 1)"""
    option_length: int = 2
    """options: latents per high-level action, the first the action itself (the authors'
    ``action_interval``: 2)"""
    option_temperature: float = 0.0
    """options: temperature of the prior's continuation (the authors: 0, the most likely
    component's mean)"""
    plan_rollouts: int = 1024
    """plan: candidate latent sequences sampled per decision (the authors: 1024)"""
    plan_horizon: int = 64
    """plan: latents per candidate (the authors: 64)"""
    plan_replan_interval: int = 4
    """plan: latents of the best candidate executed before planning again (the authors: 4)"""
    plan_temperature: float = 3.0
    """plan: std scale of the candidates' sampling, for diverse candidates (the authors' ``temp``: 3)"""
    plan_mixture_temperature: float = 9.0
    """plan: temperature of the candidates' component choice (the authors' ``mixture_temp``: 9)"""

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {getattr(self, name)!r}"
            for name, ok, rule in [
                ("context", self.context >= 0, ">= 0"),
                ("explore_probability", 0.0 <= self.explore_probability <= 1.0, "in [0, 1]"),
                ("explore_anneal_samples", self.explore_anneal_samples >= 0, ">= 0"),
                ("explore_max_steps", self.explore_max_steps >= 1, ">= 1"),
                ("explore_mean_steps", self.explore_mean_steps >= 0, ">= 0"),
                ("explore_temperature", self.explore_temperature >= 0, ">= 0"),
                ("regularize_weight", self.regularize_weight >= 0, ">= 0"),
                ("regularize_anneal_samples", self.regularize_anneal_samples >= 0, ">= 0"),
                ("regularize_kl", self.regularize_kl in ("forward", "reverse"), "'forward' or 'reverse'"),
                ("regularize_samples", self.regularize_samples >= 1, ">= 1"),
                ("option_length", self.option_length >= 1, ">= 1"),
                ("option_temperature", self.option_temperature >= 0, ">= 0"),
                ("plan_rollouts", self.plan_rollouts >= 1, ">= 1"),
                ("plan_horizon", self.plan_horizon >= 1, ">= 1"),
                ("plan_replan_interval", 1 <= self.plan_replan_interval <= self.plan_horizon, "in [1, plan_horizon]"),
                ("plan_temperature", self.plan_temperature >= 0, ">= 0"),
                ("plan_mixture_temperature", self.plan_mixture_temperature >= 0, ">= 0"),
            ]
            if not ok
        ]
        if problems:
            raise LatentPriorError("LSPIntegrationConfig: " + "; ".join(problems))

    def check_prior(self, prior: SequencePrior) -> None:
        """Raise a :class:`~latentprior.io.LatentPriorError` if ``prior`` cannot condition on ``context`` latents."""
        if self.context > prior.context:
            raise LatentPriorError(
                f"LSPIntegrationConfig: context is {self.context} latents, but the prior conditions on at most {prior.context}"
            )


def annealed(value: float, step: int, samples: int) -> float:
    """``value`` decreased linearly to 0 over ``samples`` environment steps, as the authors anneal; constant if ``samples`` is 0."""
    return value if samples <= 0 else value * max(0.0, 1.0 - step / samples)


class _PerEnv:
    """Latent sequences being followed, one per sub-environment (CPU tensors: a few rows)."""

    def __init__(self, num_envs: int, length: int, latent_dim: int):
        self.plan = torch.zeros(num_envs, length, latent_dim)
        self.left = torch.zeros(num_envs, dtype=torch.long)
        self.index = torch.zeros(num_envs, dtype=torch.long)

    def start(self, rows: torch.Tensor, sequences: torch.Tensor, lengths: torch.Tensor) -> None:
        self.plan[rows, : sequences.shape[1]] = sequences.float().cpu()
        self.left[rows], self.index[rows] = lengths, 0

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        """The next latent of each of ``rows``' sequences, advancing them."""
        latents = self.plan[rows, self.index[rows]]
        self.index[rows] += 1
        self.left[rows] -= 1
        return latents


class PriorExplore:
    """*z-prior Explore* (Gehring et al. 2023) as SAC's ``explore`` hook.

    Each sub-environment that is not following the prior starts to, with probability
    ``explore_probability`` annealed linearly to 0 over ``explore_anneal_samples`` (always at an
    episode's start and during the learner's random warm-up, as the authors did, unless switched
    off): it samples from the prior, given the latents executed before (``context`` of them, read
    from the observation), a sequence of ``min(explore_max_steps, Poisson(explore_mean_steps) +
    1)`` latents and takes them as its actions, one per step, in place of the policy's. The
    transitions are stored as taken and train the policy like any other (the authors'
    ``exclude_samples: false``). Once the probability has reached 0 the prior is not followed at all.

    :param prior: the latent space prior.
    :param history: reads the latents executed before each observation.
    :param config: the knobs (``explore_*``).
    :param random_steps: environment steps of the learner's uniform warm-up (SAC's ``learning_starts``).
    :param seed: seed of the decisions and of the sampling.

    :attr:`steps` and :attr:`followed` count the sub-environment steps seen and those whose action
    came from the prior.
    """

    def __init__(self, prior: SequencePrior, history: HistoryFn, config: LSPIntegrationConfig, random_steps: int = 0, seed: int = 0):
        config.check_prior(prior)
        self.prior, self.history, self.config, self.random_steps = prior, history, config, int(random_steps)
        self._decide = torch.Generator().manual_seed(seed)
        self._sample = torch.Generator(prior.device).manual_seed(seed)
        self._envs: _PerEnv | None = None
        self.steps = self.followed = 0

    def __repr__(self) -> str:
        c = self.config
        return (f"PriorExplore(p={c.explore_probability}, anneal={c.explore_anneal_samples}, c={c.explore_max_steps}, "
                f"r={c.explore_mean_steps}, context={c.context})")

    def probability(self, step: int) -> float:
        """The probability of starting to follow the prior at environment step ``step``."""
        return annealed(self.config.explore_probability, step, self.config.explore_anneal_samples)

    def __call__(self, obs: torch.Tensor, actions: torch.Tensor, step: int, episode_start: torch.Tensor) -> torch.Tensor:
        c, n = self.config, len(actions)
        if self._envs is None or len(self._envs.left) != n:
            self._envs = _PerEnv(n, c.explore_max_steps, actions.shape[1])
        envs = self._envs
        self.steps += n
        if c.explore_anneal_samples and step >= c.explore_anneal_samples:
            return actions
        idle = envs.left == 0
        if c.explore_warmup and step < self.random_steps:
            start = idle
        else:
            start = idle & (torch.rand(n, generator=self._decide) < self.probability(step))
        if c.explore_episode_start:
            start |= episode_start.cpu()
        if start.any():
            rows = start.nonzero()[:, 0]
            rate = torch.full((len(rows),), float(c.explore_mean_steps))
            lengths = (torch.poisson(rate, generator=self._decide) + 1).clamp(max=c.explore_max_steps).long()
            latents, known = self.history(obs[rows.to(obs.device)])
            device = self.prior.device
            sequences = self.prior.sample(
                int(lengths.max()), len(rows), latents.to(device), self._sample,
                lengths=known.to(device), temperature=c.explore_temperature,
            )
            envs.start(rows, sequences, lengths)
        follow = (envs.left > 0).nonzero()[:, 0]
        if len(follow) == 0:
            return actions
        out = actions.clone()
        out[follow.to(out.device)] = envs.take(follow).to(out.device, out.dtype)
        self.followed += len(follow)
        return out


class PriorRegularizer:
    """*z-prior Regularize* (Gehring et al. 2023) as SAC's ``actor_regularizer`` hook.

    Adds ``w(step) * KL`` to the actor loss, ``w`` being ``regularize_weight`` annealed linearly to
    0 over ``regularize_anneal_samples``, and the KL that between the policy's latent distribution
    ``pi_hi(. | s)`` and the prior's next-latent distribution ``pi_0(. | z_<t)`` given the
    transition's latent history (read from its observation). The prior is a mixture, so the KL
    has no closed form; it is estimated by sampling, ``regularize_samples`` per transition:

    - ``"forward"`` (the authors'): ``KL(pi_0 || pi_hi) ~ mean[log pi_0(z) - log pi_hi(z | s)]``,
      ``z ~ pi_0``; only the second term depends on the policy, so the gradient is that of the
      policy's negative log-likelihood of the prior's samples, which pulls the policy to cover
      what the prior considers plausible;
    - ``"reverse"``: ``KL(pi_hi || pi_0) ~ mean[log pi_hi(z | s) - log pi_0(z)]``, ``z ~ pi_hi``
      reparameterised, which pulls it towards the prior's modes.

    Both densities are of the latent itself, so the tanh Jacobians cancel: the same KL as between
    the pre-tanh distributions the authors used. Logged as ``train/prior_kl`` and ``train/prior_weight``.

    :param prior: the latent space prior.
    :param history: reads the latents executed before each observation.
    :param config: the knobs (``regularize_*``).
    :param seed: seed of the prior's samples (``"forward"``).
    """

    def __init__(self, prior: SequencePrior, history: HistoryFn, config: LSPIntegrationConfig, seed: int = 0):
        config.check_prior(prior)
        self.prior, self.history, self.config = prior, history, config
        self._sample = torch.Generator(prior.device).manual_seed(seed)

    def __repr__(self) -> str:
        c = self.config
        return (f"PriorRegularizer(weight={c.regularize_weight}, anneal={c.regularize_anneal_samples}, "
                f"kl={c.regularize_kl!r}, samples={c.regularize_samples}, context={c.context})")

    def weight(self, step: int) -> float:
        """The KL's weight at environment step ``step``."""
        return annealed(self.config.regularize_weight, step, self.config.regularize_anneal_samples)

    def kl(self, obs: torch.Tensor, dist: SquashedGaussian) -> torch.Tensor:
        """The Monte-Carlo KL estimate, averaged over the batch: a scalar, differentiable in the policy."""
        device = self.prior.device
        latents, known = self.history(obs)
        prior = self.prior.next_distribution(latents.to(device), known.to(device))
        if self.config.regularize_kl == "forward":
            z = prior.sample((self.config.regularize_samples,), generator=self._sample)
            return (prior.log_prob(z).to(obs.device) - dist.log_prob(z.to(obs.device))).mean()
        terms = []
        for _ in range(self.config.regularize_samples):
            z, log_pi = dist.rsample_with_log_prob()
            terms.append(log_pi - prior.log_prob(z.to(device)).to(obs.device))
        return torch.stack(terms).mean()

    def __call__(self, obs: torch.Tensor, dist: SquashedGaussian, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        weight = self.weight(step)
        kl = self.kl(obs, dist)
        return weight * kl, {"prior_kl": kl.detach(), "prior_weight": torch.tensor(weight, device=obs.device)}


def critic_score(policy: Any, critic: Any) -> ScoreFn:
    """Score candidates by the learner's critics: ``min_i Q_i(s, z_1)`` of each candidate's first latent.

    :param policy: has ``normalize(obs)``, the observation normalisation the critics see
        (:class:`~latentprior.rl.Policy`).
    :param critic: ``critic(obs, actions) -> (n_critics, B)`` (:class:`~latentprior.rl.networks.QEnsemble`).
    """

    def score(obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        batch, n = candidates.shape[:2]
        obs_in = policy.normalize(obs).repeat_interleave(n, dim=0)
        return critic(obs_in, candidates[:, :, 0].reshape(batch * n, -1)).min(0).values.view(batch, n)

    score.first_latent_only = True  # Q(s, z_0): the continuation does not enter the score
    return score


class LatentPlanner:
    """Planning with the prior (Gehring et al. 2023): model-predictive control over sampled latent sequences.

    At a decision, for each sub-environment, ``plan_rollouts`` continuations of ``plan_horizon``
    latents are sampled from the prior given the latents executed before (at the temperatures
    ``plan_temperature`` and ``plan_mixture_temperature``, for diverse candidates) and scored; the
    best one's first ``plan_replan_interval`` latents are executed, then it plans again (and at
    every episode's start).

    The score is a :data:`ScoreFn`. The authors decoded the candidates with the VAE and scored the
    states with the task objective (distance to a goal; see
    :func:`~latentprior.experiments.lsp.decoded_objective`); without one, the planner scores by the
    learner's critics (:func:`critic_score`), which SAC hands it through :meth:`attach`: as SAC's
    ``explore`` hook the planner then picks every behaviour action among the prior's proposals,
    a learnt value taking the task objective's place (only the first latent of a candidate enters
    ``Q``; the rest are the prior's continuation, executed until the next decision).

    :param prior: the latent space prior.
    :param history: reads the latents executed before each observation.
    :param config: the knobs (``plan_*``).
    :param score: the score of candidates; ``None``: the critics given by :meth:`attach`.
    :param seed: seed of the sampling.
    """

    def __init__(
        self, prior: SequencePrior, history: HistoryFn, config: LSPIntegrationConfig, score: ScoreFn | None = None, seed: int = 0
    ):
        config.check_prior(prior)
        self.prior, self.history, self.config, self.score = prior, history, config, score
        self._sample = torch.Generator(prior.device).manual_seed(seed)
        self._envs: _PerEnv | None = None

    def __repr__(self) -> str:
        c = self.config
        return (f"LatentPlanner(rollouts={c.plan_rollouts}, horizon={c.plan_horizon}, replan={c.plan_replan_interval}, "
                f"temperature={c.plan_temperature}/{c.plan_mixture_temperature}, context={c.context}, "
                f"score={'critic' if self.score is None else getattr(self.score, '__name__', 'custom')})")

    def attach(self, policy: Any, critic: Any) -> None:
        """Called by SAC with its policy and critics; they score candidates unless a score was given."""
        if self.score is None:
            self.score = critic_score(policy, critic)

    def reset(self) -> None:
        """Forget the plans being executed (before acting in new environments)."""
        self._envs = None

    @torch.no_grad()
    def plan(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample and score candidates for each observation.

        Where the score reads first latents only (``score.first_latent_only``, the critics), only
        the candidates' first latents are drawn and scored, and the best one's continuation is then
        drawn from the prior given it, as far as it is executed (``plan_replan_interval`` latents in
        all; the rest of a candidate never runs): the same distribution of executed plans as drawing
        every candidate whole (candidates are independent, and the chosen one's continuation is a
        draw from the prior given its first latent), without the ``N * (H - 1)`` latents nobody
        reads. ``plan_horizon`` then changes nothing, neither the plans nor the cost.

        :param obs: ``(B, obs_dim)``.
        :return: ``(best, candidates, scores)``: the best candidate ``(B, H, d)``, all of them
            ``(B, N, H, d)`` and their scores ``(B, N)``; with a first-latent score, the best one's
            executed part ``(B, plan_replan_interval, d)`` and first latents ``(B, N, 1, d)``.
        """
        if self.score is None:
            raise LatentPriorError("LatentPlanner has no score: pass one, or let SAC attach its critics")
        c, batch = self.config, len(obs)
        latents, known = self.history(obs)
        latents, known = latents.to(self.prior.device), known.to(self.prior.device)
        sample = functools.partial(
            self.prior.sample, generator=self._sample, temperature=c.plan_temperature, mixture_temperature=c.plan_mixture_temperature
        )
        first_only = getattr(self.score, "first_latent_only", False)
        # plan_rollouts continuations of each history: the prior encodes each history once for all of them.
        candidates = sample(1 if first_only else c.plan_horizon, batch * c.plan_rollouts, latents, lengths=known)
        candidates = candidates.view(batch, c.plan_rollouts, candidates.shape[1], -1).to(obs.device)
        scores = self.score(obs, candidates)
        best = candidates[torch.arange(batch, device=obs.device), scores.argmax(dim=1)]
        executed = c.plan_replan_interval  # latents run before the next decision (<= plan_horizon)
        if first_only and executed > 1:  # the best candidate's continuation, given its first latent
            rows = torch.arange(batch, device=latents.device)
            history = torch.cat([latents, latents.new_zeros(batch, 1, latents.shape[-1])], dim=1)
            history[rows, known] = best[:, 0].to(latents.device)
            rest = sample(executed - 1, batch, history, lengths=known + 1)
            best = torch.cat([best, rest.to(best.device)], dim=1)
        return best, candidates, scores

    def act(self, obs: torch.Tensor, episode_start: torch.Tensor) -> torch.Tensor:
        """The next latent for each sub-environment, planning where due. ``(B, obs_dim)`` -> ``(B, d)``."""
        n, c = len(obs), self.config
        if self._envs is None or len(self._envs.left) != n:
            self._envs = _PerEnv(n, c.plan_horizon, self.prior.latent_dim)
        envs = self._envs
        due = (envs.index >= c.plan_replan_interval) | (envs.left == 0) | episode_start.cpu()
        if due.any():
            rows = due.nonzero()[:, 0]
            best, _, _ = self.plan(obs[rows.to(obs.device)])
            envs.start(rows, best, torch.full((len(rows),), best.shape[1]))
        return envs.take(torch.arange(n)).to(obs.device)

    def __call__(self, obs: torch.Tensor, actions: torch.Tensor, step: int, episode_start: torch.Tensor) -> torch.Tensor:
        """SAC's ``explore`` hook: every behaviour action is the planner's."""
        return self.act(obs, episode_start).to(actions.dtype)
