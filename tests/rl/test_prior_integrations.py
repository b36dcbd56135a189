"""The latent space prior integrations that live in SAC's hooks: explore, regularize, plan."""

import dataclasses

import numpy as np
import pytest
import torch

from latentprior.io import LatentPriorError
from latentprior.latent.lsp import LatentPrior, PriorConfig, PriorNetwork
from latentprior.rl.networks import SquashedGaussian
from latentprior.rl.prior_integrations import (
    INTEGRATIONS,
    LatentPlanner,
    LSPIntegrationConfig,
    PriorExplore,
    PriorRegularizer,
    annealed,
    check_integration,
)

D = 3


def untrained_prior(context: int = 4, seed: int = 0) -> LatentPrior:
    """A real prior with random weights: a proper distribution over latent sequences, made in milliseconds."""
    torch.manual_seed(seed)
    config = PriorConfig(width=16, depth=1, heads=2, context=context, mixture_components=3)
    return LatentPrior(PriorNetwork(D, config).eval().requires_grad_(False), config, "0" * 16)


def no_history(obs):
    return obs.new_zeros(len(obs), 0, D), torch.zeros(len(obs), dtype=torch.long)


class Marker:
    """A prior stand-in whose sequences are 0.5, 0.51, 0.52, ... in every dimension; records its calls."""

    latent_dim, context, device = D, 4, torch.device("cpu")

    def __init__(self):
        self.calls = []

    def sample(self, num_steps, batch=1, context=None, generator=None, *, lengths=None, temperature=1.0, mixture_temperature=None):
        self.calls.append((num_steps, batch, None if lengths is None else lengths.tolist()))
        return (0.5 + 0.01 * torch.arange(num_steps))[None, :, None].expand(batch, num_steps, D).clone()


def explore_config(**changes):
    defaults = dict(explore_anneal_samples=0, explore_episode_start=False, explore_warmup=False)
    return LSPIntegrationConfig(**{**defaults, **changes})


def run_explore(hook, steps, n_envs=4, start_step=0, episode_start=None):
    """Call the hook like SAC does; the share of actions it replaced and the replaced values per env."""
    obs, policy_actions = torch.zeros(n_envs, 5), torch.zeros(n_envs, D)
    replaced = []
    for k in range(steps):
        starts = torch.zeros(n_envs, dtype=torch.bool) if episode_start is None else episode_start(k)
        out = hook(obs, policy_actions, start_step + k * n_envs, starts)
        replaced.append(out[:, 0].numpy().copy())
    replaced = np.array(replaced)
    return (replaced != 0).mean(), replaced


def test_the_names_are_checked_and_listed():
    assert list(INTEGRATIONS) == ["none", "explore", "regularize", "options", "plan"]
    assert check_integration("plan") == "plan"
    with pytest.raises(LatentPriorError, match="unknown prior integration 'explor'; valid names: none, explore, regularize, options, plan"):
        check_integration("explor")


def test_config_defaults_are_the_authors_and_bad_values_are_named():
    c = LSPIntegrationConfig()
    assert (c.context, c.explore_probability, c.explore_anneal_samples, c.explore_max_steps, c.explore_mean_steps) == (1, 0.1, 10**7, 64, 5.0)
    assert (c.regularize_weight, c.regularize_anneal_samples, c.option_length) == (0.01, 10**6, 2)
    assert (c.plan_rollouts, c.plan_horizon, c.plan_replan_interval) == (1024, 64, 4)
    with pytest.raises(LatentPriorError, match="explore_probability must be in \\[0, 1\\].*regularize_kl"):
        LSPIntegrationConfig(explore_probability=1.5, regularize_kl="both")
    with pytest.raises(LatentPriorError, match="context is 8 latents, but the prior conditions on at most 4"):
        PriorExplore(untrained_prior(), no_history, LSPIntegrationConfig(context=8))


def test_annealing_is_linear_to_zero():
    assert [annealed(0.1, s, 100) for s in (0, 50, 100, 200)] == pytest.approx([0.1, 0.05, 0.0, 0.0])
    assert annealed(0.1, 10**9, 0) == 0.1


def test_explore_replaces_actions_at_the_configured_rate():
    p, r = 0.2, 5.0
    hook = PriorExplore(Marker(), no_history, explore_config(explore_probability=p, explore_mean_steps=r), seed=1)
    fraction, replaced = run_explore(hook, 5000)
    # Renewal argument: Geometric((1-p)/p) policy steps, then min(64, Poisson(r) + 1) prior steps.
    expected = (r + 1) / (r + 1 + (1 - p) / p)
    assert fraction == pytest.approx(expected, abs=0.03)
    assert hook.followed / hook.steps == pytest.approx(fraction)
    # Each followed sequence is the prior's, in order: 0.5, 0.51, ... (rounded to float32).
    column = replaced[:, 0]
    starts = np.flatnonzero((column[1:] != 0) & (column[:-1] == 0)) + 1
    for s in starts[:20]:
        run = column[s : s + 3]
        run = run[: np.argmax(run == 0)] if (run == 0).any() else run
        np.testing.assert_allclose(run, 0.5 + 0.01 * np.arange(len(run)), atol=1e-6)

    assert run_explore(PriorExplore(Marker(), no_history, explore_config(explore_probability=0.0)), 200)[0] == 0.0


def test_explore_anneals_then_stops_and_follows_the_prior_at_episode_starts_and_in_warm_up():
    hook = PriorExplore(Marker(), no_history, explore_config(explore_probability=0.5, explore_anneal_samples=4000), seed=0)
    early, _ = run_explore(hook, 100)
    late, _ = run_explore(hook, 100, start_step=3000)
    assert early > late > 0.0 and hook.probability(3000) == pytest.approx(0.125)
    assert run_explore(hook, 100, start_step=4000)[0] == 0.0

    starts = PriorExplore(Marker(), no_history, explore_config(explore_probability=0.0, explore_episode_start=True), seed=0)
    _, replaced = run_explore(starts, 200, episode_start=lambda k: torch.tensor([k % 100 == 0, False, False, False]))
    assert replaced[0, 0] == 0.5 and replaced[100, 0] == 0.5 and not replaced[:, 1:].any()

    warm = PriorExplore(Marker(), no_history, explore_config(explore_probability=0.0, explore_warmup=True), random_steps=400, seed=0)
    assert run_explore(warm, 100)[0] == 1.0  # 100 vector steps of 4 envs: all in the warm-up
    assert run_explore(warm, 50, start_step=400)[0] < 0.2


def test_explore_conditions_each_sequence_on_the_observed_history():
    prior = Marker()

    def history(obs):  # the number of latents a row has seen is written in its first column
        lengths = obs[:, 0].long()
        return torch.ones(len(obs), 2, D), lengths

    hook = PriorExplore(prior, history, explore_config(explore_probability=0.0, explore_episode_start=True, context=2))
    obs = torch.tensor([[0.0], [2.0], [1.0]]).expand(3, 5).contiguous()
    hook(obs, torch.zeros(3, D), 0, torch.tensor([True, True, False]))
    assert prior.calls[0][1:] == (2, [0, 2])


@pytest.mark.parametrize("kl", ["forward", "reverse"])
def test_regularize_adds_a_finite_term_that_lowers_the_kl_when_optimised_alone(kl):
    prior = untrained_prior()
    history = torch.tanh(torch.randn(8, 4, D, generator=torch.Generator().manual_seed(0)))
    lengths = torch.tensor([0, 1, 2, 3, 4, 4, 2, 0])
    config = LSPIntegrationConfig(context=4, regularize_kl=kl, regularize_samples=8)
    hook = PriorRegularizer(prior, lambda obs: (history, lengths), config, seed=0)
    mean = torch.full((8, D), 1.5, requires_grad=True)  # far from the prior, which sits near 0
    log_std = torch.full((8, D), -2.0, requires_grad=True)
    obs = torch.zeros(8, 5)

    def estimate():
        torch.manual_seed(123)
        with torch.no_grad():
            return float(PriorRegularizer(prior, lambda obs: (history, lengths), dataclasses.replace(config, regularize_samples=256), seed=7).kl(obs, SquashedGaussian(mean, log_std, None, None)))

    before = estimate()
    loss, info = hook(obs, SquashedGaussian(mean, log_std, None, None), step=0)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad
    assert float(loss.detach()) == pytest.approx(0.01 * float(info["prior_kl"]), rel=1e-5)
    assert float(info["prior_weight"]) == pytest.approx(0.01)
    assert float(hook(obs, SquashedGaussian(mean, log_std, None, None), step=500_000)[1]["prior_weight"]) == pytest.approx(0.005)

    optimizer = torch.optim.Adam([mean, log_std], lr=0.05)
    for _ in range(150):
        loss, _ = hook(obs, SquashedGaussian(mean, log_std, None, None), step=0)
        optimizer.zero_grad()
        (100 * loss).backward()  # the term alone, without SAC's losses
        optimizer.step()
    after = estimate()
    assert before > 1.0 and after < 0.5 * before


def test_plan_executes_the_best_scoring_candidate_and_replans_on_schedule():
    prior = untrained_prior()
    target = torch.tensor([0.3, -0.2, 0.1])
    scored = []

    def closeness(obs, candidates):  # how near the candidate's first latent comes to a target
        scored.append(candidates.shape)
        return -(candidates[:, :, 0] - target).norm(dim=-1)

    config = LSPIntegrationConfig(context=2, plan_rollouts=32, plan_horizon=6, plan_replan_interval=3)
    planner = LatentPlanner(prior, lambda obs: (torch.zeros(len(obs), 2, D), torch.tensor([0, 2])[: len(obs)]), config, closeness)
    best, candidates, scores = planner.plan(torch.zeros(2, 5))
    assert candidates.shape == (2, 32, 6, D) and scores.shape == (2, 32)
    for b in range(2):
        np.testing.assert_array_equal(best[b], candidates[b, scores[b].argmax()])
        assert (best[b, 0] - target).norm() == pytest.approx(float(-scores[b].max()))
    assert scores.std() > 0  # the candidates differ

    actions = []
    planner.reset()
    scored.clear()
    for step in range(7):
        actions.append(planner(torch.zeros(2, 5), torch.zeros(2, D), step, torch.tensor([step == 0, False])))
    assert len(scored) == 3  # planned at steps 0, 3 and 6
    first_plan = actions[0]
    assert not torch.equal(actions[0], actions[1])  # it executes the plan's latents in turn
    assert torch.all(first_plan.abs() <= 1)

    with pytest.raises(LatentPriorError, match="no score"):
        LatentPlanner(prior, no_history, config).plan(torch.zeros(1, 5))


class Continuer:
    """A prior stand-in: uniform random first latents without context; with one, it continues the
    row's last latent by +0.01 per step (so a continuation shows which latent it was given)."""

    latent_dim, context, device = D, 4, torch.device("cpu")

    def sample(self, num_steps, batch=1, context=None, generator=None, *, lengths=None, temperature=1.0, mixture_temperature=None):
        if (lengths == 0).all():
            return torch.rand(batch, num_steps, D, generator=generator) * 2 - 1
        rows = len(context)
        last = context[torch.arange(rows), lengths - 1]
        steps = 0.01 * torch.arange(1, num_steps + 1)
        return (last[:, None] + steps[None, :, None]).repeat_interleave(batch // rows, dim=0)


def test_a_first_latent_score_draws_the_continuation_of_the_best_candidate_alone():
    # The critics score Q(s, z_0). The planner then draws first latents only and continues the best
    # one from the prior given it.
    target = torch.tensor([0.5, -0.5, 0.2])

    def whole(obs, candidates):
        return -(candidates[:, :, 0] - target).norm(dim=-1)

    def first(obs, candidates):
        assert candidates.shape[2] == 1
        return whole(obs, candidates)

    first.first_latent_only = True
    config = LSPIntegrationConfig(context=2, plan_rollouts=64, plan_horizon=4, plan_replan_interval=4)
    best, candidates, scores = LatentPlanner(Continuer(), no_history, config, first).plan(torch.zeros(3, 5))
    assert candidates.shape == (3, 64, 1, D) and best.shape == (3, 4, D)
    torch.testing.assert_close(best[:, 0], candidates[torch.arange(3), scores.argmax(1), 0])
    torch.testing.assert_close(best[:, 1:], best[:, :1] + 0.01 * torch.arange(1, 4)[None, :, None])  # given the chosen z_0
    # Only what runs before the next decision is drawn: a longer horizon changes nothing.
    long = LatentPlanner(Continuer(), no_history, dataclasses.replace(config, plan_horizon=64), first)
    assert long.plan(torch.zeros(3, 5))[0].shape == (3, 4, D)
    executed = [long(torch.zeros(3, 5), torch.zeros(3, D), step, torch.tensor([step == 0] * 3)) for step in range(9)]
    assert all(torch.allclose(executed[k] + 0.01, executed[k + 1]) for k in (0, 1, 2, 4, 5, 6))  # replanned at 4 and 8
    assert not torch.allclose(executed[3] + 0.01, executed[4])

    # With a real prior the executed plans follow the same distribution as with candidates drawn
    # whole (the same score without the attribute), for histories of 0, 1 and 2 latents.
    prior = untrained_prior(context=8, seed=3)
    config = dataclasses.replace(config, plan_rollouts=16, plan_temperature=1.0)
    history = lambda obs: (torch.full((len(obs), 2, D), 0.3), torch.tensor([0, 1, 2])[: len(obs)])  # noqa: E731
    plans = {}
    for name, score in (("whole", whole), ("first", first)):
        planner = LatentPlanner(prior, history, config, score, seed=1)
        plans[name] = torch.stack([planner.plan(torch.zeros(3, 5))[0] for _ in range(300)])  # (300, 3, H, D)
    mean = {name: p.mean(0) for name, p in plans.items()}
    std = {name: p.std(0) for name, p in plans.items()}
    assert (mean["whole"] - mean["first"]).abs().max() < 5 * std["whole"].max() * (2 / 300) ** 0.5
    torch.testing.assert_close(std["first"], std["whole"], atol=0.05, rtol=0.15)
