"""Open-loop oscillator experts, their CMA-ES fit, and the default expert shipped in the package."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from latentprior.experts import ExpertError, OscillatorExpert, default_expert, evaluate_expert, fit_oscillator, load_expert


@pytest.fixture
def cheetah_spaces():
    env = gym.make("HalfCheetah-v5")
    yield env.observation_space, env.action_space
    env.close()


@pytest.fixture
def oscillator(cheetah_spaces):
    rng = np.random.default_rng(0)
    return OscillatorExpert(*cheetah_spaces, rng.uniform(-0.5, 0.5, 6), rng.uniform(0, 1, 6), rng.uniform(-3, 3, 6), 7.5)


def test_open_loop_expert_depends_on_t_only(oscillator):
    assert oscillator.is_open_loop
    obs = torch.randn(3, 17)
    t = torch.tensor([0, 1, 2])
    actions = oscillator.mu(obs, t)
    assert torch.equal(actions, oscillator.mu(torch.randn(3, 17), t))
    assert not torch.equal(actions[0], actions[1])
    np.testing.assert_allclose(oscillator.mu(obs[:1], torch.tensor([7.5])), oscillator.mu(obs[:1], torch.tensor([0])), atol=1e-6)
    assert torch.all(oscillator.jacobian(obs, t) == 0) and oscillator.jacobian(obs, t).shape == (3, 6, 17)
    with pytest.raises(ExpertError, match="needs the time step"):
        oscillator.act(obs[0].numpy())


def test_actions_follow_the_documented_formula(oscillator):
    t = np.arange(20)
    expected = np.clip(
        oscillator.offset.numpy() + oscillator.amplitude.numpy() * np.sin(2 * np.pi * t[:, None] / 7.5 + oscillator.phase.numpy()),
        -1,
        1,
    )
    np.testing.assert_allclose(oscillator.sequence(20), expected, atol=1e-5)
    np.testing.assert_allclose(oscillator.act(np.zeros(17), t=3), expected[3], atol=1e-5)


def test_save_load_round_trip(oscillator, tmp_path):
    oscillator.save(tmp_path / "osc")
    loaded = load_expert(tmp_path / "osc", env="HalfCheetah-v5")
    assert isinstance(loaded, OscillatorExpert) and loaded.period == oscillator.period
    np.testing.assert_array_equal(loaded.sequence(50), oscillator.sequence(50))


def test_short_cma_es_fit_improves_on_its_initial_guess():
    expert, info = fit_oscillator(
        "HalfCheetah-v5", episode_steps=50, iterations=6, popsize=8, seed=0, progress=False,
        fitness_episodes=1, eval_steps=50, eval_episodes=1,
    )
    assert len(info["history"]) == 6
    assert info["best_fitness"] > info["initial_return"] + 10
    assert expert.info["eval_return"] == pytest.approx(evaluate_expert(expert, "HalfCheetah-v5", max_episode_steps=50)[0])


def test_default_expert_runs_as_recorded():
    expert = default_expert("HalfCheetah-v5")
    assert isinstance(expert, OscillatorExpert)
    recorded = expert.info["eval_returns"][0]
    achieved = evaluate_expert(expert, "HalfCheetah-v5", episodes=1, seed=0, max_episode_steps=expert.info["eval_steps"])[0]
    assert achieved == pytest.approx(recorded, rel=0.05), f"default expert scored {achieved:.0f}, recorded {recorded:.0f}"
    assert recorded > 1500
    with pytest.raises(ExpertError, match="no default expert for 'Walker2d-v5'"):
        default_expert("Walker2d-v5")
