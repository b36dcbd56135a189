"""Pieces of the learners checked against stable-baselines3's and against their definitions."""

import numpy as np
import pytest
import torch

from latentprior.rl.networks import GaussianActor, QEnsemble, SquashedGaussianActor
from latentprior.rl.normalize import ObservationNormalizer, RewardScaler, RunningMeanStd
from latentprior.rl.ppo import gae


def test_running_statistics_match_sb3():
    sb3 = pytest.importorskip("stable_baselines3.common.running_mean_std")
    ours, theirs = RunningMeanStd((3,)), sb3.RunningMeanStd(shape=(3,))
    rng = np.random.default_rng(0)
    for n in [1, 5, 1, 1, 64, 1]:
        batch = rng.normal(2.0, 3.0, (n, 3))
        ours.update(batch)
        theirs.update(batch)
    np.testing.assert_allclose(ours.mean.numpy(), theirs.mean, rtol=1e-12)
    np.testing.assert_allclose(ours.var.numpy(), theirs.var, rtol=1e-12)
    assert ours.count.item() == pytest.approx(theirs.count)


def test_observation_normalizer_clips_and_is_differentiable():
    norm = ObservationNormalizer((2,), clip=5.0)
    norm.update(np.array([[0.0, 10.0], [2.0, 10.0]]))
    obs = torch.tensor([[1.0, 1e6]], requires_grad=True)
    out = norm(obs)
    assert out.dtype == torch.float32 and out[0, 1] == 5.0
    out[0, 0].backward()
    assert obs.grad[0, 0] == pytest.approx(1 / np.sqrt(norm.rms.var[0].item() + 1e-8))


def test_reward_scaler_matches_sb3_vecnormalize_rewards():
    sb3 = pytest.importorskip("stable_baselines3.common.running_mean_std")
    scaler, rms, returns = RewardScaler(2, gamma=0.9), sb3.RunningMeanStd(shape=()), np.zeros(2)
    rng = np.random.default_rng(1)
    for t in range(20):
        reward, done = rng.normal(size=2), np.array([t % 7 == 6, False])
        returns = returns * 0.9 + reward
        rms.update(returns)
        expected = np.clip(reward / np.sqrt(rms.var + 1e-8), -10, 10)
        returns[done] = 0.0
        np.testing.assert_allclose(scaler(reward, done), expected, rtol=1e-10)


def test_gae_matches_its_definition():
    rng = np.random.default_rng(0)
    T, n, gamma, lam = 6, 2, 0.9, 0.8
    rewards, values, last = rng.normal(size=(T, n)), rng.normal(size=(T, n)), rng.normal(size=n)
    dones = np.zeros((T, n))
    dones[2, 0] = 1.0
    adv = gae(rewards, values, dones, last, gamma, lam)
    next_values = np.vstack([values[1:], last[None]])
    delta = rewards + gamma * next_values * (1 - dones) - values
    for i in range(n):
        for t in range(T):
            expected, discount = 0.0, 1.0
            for k in range(t, T):  # sum of (gamma lam)^k delta_k within the episode (Eq. 16)
                expected += discount * delta[k, i]
                if dones[k, i]:
                    break
                discount *= gamma * lam
            assert adv[t, i] == pytest.approx(expected)


def test_actors_and_critics_respect_bounds_and_shapes():
    torch.manual_seed(0)
    obs = torch.randn(5, 4)
    sac_actor = SquashedGaussianActor(4, low=[-2.0, 0.0], high=[2.0, 1.0])
    dist = sac_actor(obs)
    actions, log_prob = dist.rsample_with_log_prob()
    assert actions.shape == (5, 2) and log_prob.shape == (5,)
    assert torch.all(actions[:, 0].abs() <= 2) and torch.all((actions[:, 1] >= 0) & (actions[:, 1] <= 1))
    torch.testing.assert_close(dist.log_prob(actions), log_prob, rtol=1e-3, atol=1e-3)
    ppo_actor = GaussianActor(4, 2)
    assert ppo_actor(obs).entropy().shape == () and ppo_actor(obs).log_prob(actions).shape == (5,)
    q = QEnsemble(4, [-2.0, 0.0], [2.0, 1.0], hidden=(8, 8), n=3)
    assert q(obs, actions).shape == (3, 5)
    # Members are independent networks: different weights, different values.
    assert not torch.allclose(q(obs, actions)[0], q(obs, actions)[1])
