import gymnasium as gym
import numpy as np
import pytest
import torch

from latentprior.data import Dataset, DatasetMetadata, Episode

torch.set_num_threads(1)

OBS_DIM, ACT_DIM = 3, 1  # Pendulum-v1


def make_episode(rng: np.random.Generator, steps: int, state_only: bool = False) -> Episode:
    """An episode with every field (or only observations), shaped like Pendulum-v1 data."""
    observations = rng.uniform(-1, 1, (steps + 1, OBS_DIM)).astype(np.float32)
    if state_only:
        return Episode(observations=observations)
    truncations = np.zeros(steps, dtype=bool)
    truncations[-1] = True
    return Episode(
        observations=observations,
        actions=rng.uniform(-2, 2, (steps, ACT_DIM)).astype(np.float32),
        expert_actions=rng.uniform(-2, 2, (steps, ACT_DIM)).astype(np.float32),
        jacobians=rng.normal(size=(steps, ACT_DIM, OBS_DIM)),
        rewards=rng.normal(size=steps),
        terminations=np.zeros(steps, dtype=bool),
        truncations=truncations,
        qpos=rng.normal(size=(steps + 1, 1)),
        qvel=rng.normal(size=(steps + 1, 1)),
    )


@pytest.fixture
def pendulum_spaces():
    env = gym.make("Pendulum-v1")
    yield env.observation_space, env.action_space
    env.close()


@pytest.fixture
def full_dataset(pendulum_spaces):
    rng = np.random.default_rng(0)
    metadata = DatasetMetadata(
        env_id="Pendulum-v1",
        observation_space=pendulum_spaces[0],
        action_space=pendulum_spaces[1],
        source="latentprior collect",
        license="CC-BY-4.0",
        command="latentprior collect --env Pendulum-v1",
        extra={"noise_std": 0.1, "expert": "runs/sac/expert"},
    )
    return Dataset([make_episode(rng, steps) for steps in (5, 8, 3, 6)], metadata)


@pytest.fixture
def state_only_dataset():
    rng = np.random.default_rng(1)
    episodes = [make_episode(rng, steps, state_only=True) for steps in (4, 0, 7)]
    return Dataset(episodes, DatasetMetadata(source="mocap", extra={"gait_cycle": 32}))


@pytest.fixture
def make_ep():
    """``make_ep(steps, state_only=False, seed=0)`` builds one Pendulum-shaped episode."""
    return lambda steps, state_only=False, seed=0: make_episode(np.random.default_rng(seed), steps, state_only)
