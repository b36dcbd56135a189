"""Policies trained with latentprior.rl as experts."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from latentprior.experts import PolicyExpert, load_expert
from latentprior.rl import Policy
from latentprior.rl.networks import GaussianActor
from latentprior.rl.normalize import ObservationNormalizer


@pytest.fixture
def policy() -> Policy:
    env = gym.make("Pendulum-v1")
    torch.manual_seed(0)
    normalizer = ObservationNormalizer((3,))
    normalizer.rms.mean.copy_(torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64))
    normalizer.rms.var.copy_(torch.tensor([0.5, 1.0, 16.0], dtype=torch.float64))
    actor = GaussianActor(3, 1, hidden=(16,), ortho_init=False)
    return Policy(actor, env.observation_space, env.action_space, normalizer, algo="ppo")


def test_mu_and_jacobian_are_with_respect_to_raw_observations(policy):
    expert = PolicyExpert(policy)
    obs = torch.tensor([[0.5, -0.2, 1.0], [0.1, 0.9, -3.0]], dtype=torch.float64)
    torch.testing.assert_close(expert.mu(obs), policy.mean_action(obs))
    jac = expert.jacobian(obs)
    eps = 1e-3
    for j in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[j] = eps
        fd = (policy.mean_action(obs + step) - policy.mean_action(obs - step)) / (2 * eps)
        np.testing.assert_allclose(jac[:, :, j].numpy(), fd.numpy(), atol=1e-3, rtol=1e-2)
    assert jac.abs().sum() > 0


def test_run_directory_loads_as_an_expert(policy, tmp_path):
    policy.save(tmp_path / "run" / "policy")
    expert = load_expert(tmp_path / "run", env="Pendulum-v1")
    assert isinstance(expert, PolicyExpert) and expert.info["algo"] == "ppo"
    obs = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(expert.mean_action(obs), policy.act(obs), atol=1e-6)
    expert.save(tmp_path / "copy")
    np.testing.assert_array_equal(load_expert(tmp_path / "copy").mean_action(obs), expert.mean_action(obs))
