"""The collector: noisy expert rollouts written episode by episode into a dataset file."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from latentprior.data import load_dataset
from latentprior.data.collect import collect
from latentprior.experts import MLPExpert, OscillatorExpert
from latentprior.io import ArtifactError


def mlp_expert(env_id: str, seed: int = 0) -> MLPExpert:
    env = gym.make(env_id)
    torch.manual_seed(seed)
    return MLPExpert(env.observation_space, env.action_space, hidden_sizes=(16,))


def cheetah_spaces():
    env = gym.make("HalfCheetah-v5")
    return env.observation_space, env.action_space


def test_collector_writes_all_fields_with_aligned_lengths(tmp_path):
    expert = mlp_expert("HalfCheetah-v5")
    result = collect(
        expert, "HalfCheetah-v5", episodes=3, noise_std=0.1, num_envs=2, max_episode_steps=15,
        jacobians=True, out=tmp_path / "demos.h5", progress=False, metadata_extra={"purpose": "test"},
    )
    assert result.episodes == 3 and result.steps == 45 and result.path.is_file()
    dataset = load_dataset(result.path, env=gym.make("HalfCheetah-v5"))
    assert len(dataset) == 3
    assert dataset.metadata.env_id == "HalfCheetah-v5"
    assert dataset.metadata.extra["noise_std"] == 0.1 and dataset.metadata.extra["purpose"] == "test"
    np.testing.assert_allclose(dataset.returns(), result.returns)
    for episode in dataset:
        assert episode.observations.shape == (16, 17)
        assert episode.qpos.shape == (16, 9) and episode.qvel.shape == (16, 9)
        for name, shape in [("actions", (15, 6)), ("expert_actions", (15, 6)), ("jacobians", (15, 6, 17)),
                            ("rewards", (15,)), ("terminations", (15,)), ("truncations", (15,))]:
            assert getattr(episode, name).shape == shape, name
        assert episode.truncations[-1] and not episode.truncations[:-1].any() and not episode.terminations.any()
        # DART-style data: executed actions are noisy, the logged targets are the expert's means
        assert not np.allclose(episode.actions, episode.expert_actions)
        np.testing.assert_allclose(episode.expert_actions, expert.mean_action(episode.observations[:-1]), atol=1e-6)
        np.testing.assert_allclose(episode.jacobians, expert.jacobian(episode.observations[:-1]).numpy(), atol=1e-5)
    first = dataset[0]
    env = gym.make("HalfCheetah-v5")
    env.reset()
    env.unwrapped.set_state(first.qpos[0], first.qvel[0])
    obs = env.step(first.actions[0])[0]
    np.testing.assert_allclose(obs, first.observations[1], atol=1e-8)  # qpos/qvel align with observations


def test_without_noise_actions_equal_expert_actions(tmp_path):
    expert = mlp_expert("HalfCheetah-v5")
    result = collect(expert, "HalfCheetah-v5", episodes=2, max_episode_steps=10, out=tmp_path / "d.h5", progress=False)
    for episode in load_dataset(result.path):
        np.testing.assert_array_equal(episode.actions, episode.expert_actions)
        assert episode.jacobians is None


def test_episodes_do_not_depend_on_num_envs_and_have_their_own_resets(tmp_path):
    expert = OscillatorExpert(*cheetah_spaces(), np.zeros(6), np.full(6, 0.5), np.zeros(6), 8.0)
    a = collect(expert, "HalfCheetah-v5", 3, noise_std=0.1, num_envs=1, max_episode_steps=10, out=tmp_path / "a.h5", progress=False)
    b = collect(expert, "HalfCheetah-v5", 3, noise_std=0.1, num_envs=3, max_episode_steps=10, out=tmp_path / "b.h5", progress=False)
    for x, y in zip(load_dataset(a.path), load_dataset(b.path)):
        # An open-loop expert makes the trajectory independent of batched float rounding.
        np.testing.assert_array_equal(x.observations, y.observations)
        np.testing.assert_array_equal(x.actions, y.actions)
    starts = [ep.observations[0] for ep in load_dataset(a.path)]
    assert not np.allclose(starts[0], starts[1])


def test_terminating_episodes_end_at_termination(tmp_path):
    expert = mlp_expert("Hopper-v5", seed=1)
    result = collect(expert, "Hopper-v5", episodes=4, noise_std=0.3, num_envs=3, max_episode_steps=300,
                     out=tmp_path / "hopper.h5", progress=False)
    dataset = load_dataset(result.path)
    assert sum(ep.num_steps for ep in dataset) == result.steps
    for episode in dataset:
        done = episode.terminations | episode.truncations
        assert done[-1] and not done[:-1].any()
    assert any(ep.terminations[-1] for ep in dataset), "a random Hopper policy should fall within 300 steps"


def test_collector_rejects_expert_for_another_env(tmp_path):
    with pytest.raises(ArtifactError, match="observation space has shape"):
        collect(mlp_expert("Pendulum-v1"), "HalfCheetah-v5", 1, out=tmp_path / "x.h5", progress=False)
    assert not (tmp_path / "x.h5").exists()
