"""The Expert interface: Jacobians, action noise, save/load and space checks (MLPExpert as the example)."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from latentprior.experts import ExpertError, MLPExpert, evaluate_expert, load_expert
from latentprior.io import ArtifactError

# Asymmetric bounds so that scaling to the bounds is exercised, not just the identity.
OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (5,), np.float64)
ACT_SPACE = gym.spaces.Box(np.array([-2.0, 0.0, -1.0], np.float32), np.array([2.0, 1.0, 3.0], np.float32))


@pytest.fixture
def expert() -> MLPExpert:
    torch.manual_seed(0)
    return MLPExpert(OBS_SPACE, ACT_SPACE, hidden_sizes=(16, 16), activation="tanh")


def test_mu_is_inside_the_bounds_and_batched(expert):
    obs = torch.randn(64, 5) * 10
    action = expert.mu(obs)
    assert action.shape == (64, 3) and action.dtype == torch.float32
    assert torch.all(action >= torch.as_tensor(ACT_SPACE.low)) and torch.all(action <= torch.as_tensor(ACT_SPACE.high))
    single = expert.mean_action(obs[0].numpy())
    assert single.shape == (3,)
    np.testing.assert_allclose(single, action[0].numpy(), rtol=1e-6)


def test_jacobian_matches_finite_differences(expert):
    obs = torch.randn(4, 5, dtype=torch.float64)
    jac = expert.jacobian(obs)
    assert jac.shape == (4, 3, 5)
    eps = 1e-3
    for j in range(5):
        step = torch.zeros(5, dtype=torch.float64)
        step[j] = eps
        fd = (expert.mu(obs + step) - expert.mu(obs - step)) / (2 * eps)
        np.testing.assert_allclose(jac[:, :, j].numpy(), fd.numpy(), atol=2e-3, rtol=1e-2)


def test_no_noise_returns_the_mean_action(expert):
    obs = np.random.default_rng(0).normal(size=(8, 5))
    np.testing.assert_array_equal(expert.act(obs, noise_std=0.0), expert.mean_action(obs))


def test_noise_std_is_in_normalised_units_and_clipped(expert):
    obs = np.zeros((20000, 5))
    mean = expert.mean_action(obs)
    noisy = expert.act(obs, noise_std=0.05, rng=0)
    half_range = (ACT_SPACE.high - ACT_SPACE.low) / 2
    # std 0.05 of the [-1, 1] range = 0.05 * half the range in env units (few samples are clipped)
    np.testing.assert_allclose((noisy - mean).std(axis=0), 0.05 * half_range, rtol=0.05)
    wild = expert.act(obs, noise_std=10.0, rng=1)
    assert np.all(wild >= ACT_SPACE.low) and np.all(wild <= ACT_SPACE.high)
    assert np.mean(wild == ACT_SPACE.high) > 0.4  # most draws land on a bound
    np.testing.assert_array_equal(expert.act(obs[:5], noise_std=0.1, rng=3), expert.act(obs[:5], noise_std=0.1, rng=3))
    with pytest.raises(ExpertError, match="noise_std"):
        expert.act(obs, noise_std=-1.0)


def test_save_load_round_trip_gives_identical_mu(expert, tmp_path):
    expert.info["note"] = "round trip"
    expert.save(tmp_path / "expert")
    loaded = load_expert(tmp_path / "expert")
    assert isinstance(loaded, MLPExpert) and loaded.info == {"note": "round trip"}
    obs = torch.randn(32, 5)
    assert torch.equal(loaded.mu(obs), expert.mu(obs))


def test_load_with_mismatched_env_names_file_and_space(tmp_path):
    pendulum = gym.make("Pendulum-v1")
    expert = MLPExpert(pendulum.observation_space, pendulum.action_space, hidden_sizes=(8,))
    expert.save(tmp_path / "pendulum_expert")
    load_expert(tmp_path / "pendulum_expert", env=pendulum)
    with pytest.raises(ArtifactError, match=r"pendulum_expert.*observation space has shape \(3,\)"):
        load_expert(tmp_path / "pendulum_expert", env="HalfCheetah-v5")
    with pytest.raises(ArtifactError, match=r"pendulum_expert.*action space low bound"):
        load_expert(tmp_path / "pendulum_expert", env=gym.wrappers.RescaleAction(pendulum, np.float32(-1), np.float32(1)))


def test_load_rejects_an_artifact_that_is_not_an_expert(tmp_path):
    (tmp_path / "thing").mkdir()
    (tmp_path / "thing" / "config.json").write_text(json.dumps({"kind": "autoencoder"}))
    with pytest.raises(ExpertError, match="'autoencoder' is not an expert"):
        load_expert(tmp_path / "thing")


def test_evaluate_expert_returns_one_return_per_episode():
    env = gym.make("Pendulum-v1")
    expert = MLPExpert(env.observation_space, env.action_space, hidden_sizes=(8,))
    returns = evaluate_expert(expert, "Pendulum-v1", episodes=2, max_episode_steps=20)
    assert returns.shape == (2,) and np.all(returns < 0)
