"""The extension points the prior integrations use: custom actors, extra losses, exploration."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from latentprior.io import ArtifactError
from latentprior.rl import load_policy, ppo, sac
from latentprior.rl.checkpoint import load_checkpoint
from latentprior.rl.networks import DiagGaussian


def test_ppo_extra_loss_sees_minibatches_and_shapes_the_policy(tmp_path, env_fn, tiny_ppo):
    seen = []

    def pull_mean_to_half(batch, dist):
        # Stands for a KL to a prior: a strong penalty towards a fixed action.
        seen.append((batch.obs.shape, batch.raw_obs.shape, batch.actions.shape, batch.advantages.shape))
        gap = (dist.mean - 0.5).square().mean()
        return 10.0 * gap, {"gap": gap}

    config = dataclasses.replace(tiny_ppo, total_steps=2048, learning_rate=3e-3)
    result = ppo.train(env_fn("Pendulum-v1"), config, tmp_path, extra_loss=pull_mean_to_half, progress=False)
    assert seen[0] == ((64, 3), (64, 3), (64, 1), (64,))
    assert len(seen) == 8 * config.n_epochs * config.n_steps // config.batch_size
    assert result.metrics["train/gap"] < 0.01
    obs = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    np.testing.assert_allclose(result.policy.act(obs), 0.5, atol=0.15)


class TinyActor(nn.Module):
    """A user-defined actor: a linear mean and a learned log std (no ``spec``, so not registered)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.log_std = nn.Parameter(torch.zeros(1))

    def forward(self, obs):
        return DiagGaussian(self.linear(obs), self.log_std)


def test_ppo_takes_a_custom_actor_and_loads_it_back(tmp_path, env_fn, tiny_ppo):
    result = ppo.train(env_fn("Pendulum-v1"), tiny_ppo, tmp_path, actor=TinyActor(), progress=False)
    with pytest.raises(ArtifactError, match="TinyActor"):
        load_policy(tmp_path)
    loaded = load_policy(tmp_path, actor=TinyActor())
    obs = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(loaded.act(obs), result.policy.act(obs))


def test_sac_explore_replaces_behaviour_actions(tmp_path, env_fn, tiny_sac):
    calls = []

    def push_right(obs, actions, step, episode_start):
        calls.append((obs.shape, actions.shape, step, bool(episode_start[0])))
        assert torch.all(actions.abs() <= 2.0)
        out = actions.clone()
        if step % 2 == 0:
            out[:] = 1.5  # e.g. follow a prior's sample on every other step
        return out

    config = dataclasses.replace(tiny_sac, total_steps=400)
    sac.train(env_fn("Pendulum-v1"), config, tmp_path, explore=push_right, progress=False)
    assert [c[2] for c in calls] == list(range(400))
    assert calls[0][:2] == ((1, 3), (1, 1))
    assert [c[2] for c in calls if c[3]] == [0, 200], "episode_start marks each new episode"
    _, tensors = load_checkpoint(tmp_path)
    stored = tensors["replay"]["data"][:, 6]  # obs(3) | next_obs(3) | action(1) | ...
    assert torch.all(stored[::2] == 1.5) and not torch.all(stored[1::2] == 1.5)


def test_sac_actor_regularizer_adds_an_annealed_term(tmp_path, env_fn, tiny_sac):
    steps = []

    def kl_to_prior(obs, dist, step):
        # An annealed pull towards a "prior" that always says 1.0 (strong at first, then weaker).
        weight = 50.0 * max(0.0, 1.0 - step / 1000)
        steps.append(step)
        actions, _ = dist.rsample_with_log_prob()
        return weight * (actions - 1.0).square().mean(), {"prior_weight": torch.tensor(weight)}

    config = dataclasses.replace(tiny_sac, learning_rate=3e-3)
    result = sac.train(env_fn("Pendulum-v1"), config, tmp_path, actor_regularizer=kl_to_prior, progress=False)
    assert steps[0] == 101 and len(steps) == 500
    assert 0 < result.metrics["train/prior_weight"] < 50.0
    obs = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    assert np.abs(result.policy.act(obs) - 1.0).mean() < 0.2
