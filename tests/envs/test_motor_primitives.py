import gymnasium as gym
import numpy as np
import pytest

from latentprior.data import Dataset, DatasetMetadata, Episode
from latentprior.envs.motor_primitives import MotorPrimitivesWrapper
from latentprior.io import ArtifactError
from latentprior.latent.npmp import NPMPConfig, fit_npmp


@pytest.fixture(scope="module")
def pendulum_module():
    """A tiny NPMP fitted on rollouts of a PD controller in Pendulum-v1."""
    env = gym.make("Pendulum-v1")
    episodes = []
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        observations, actions = [obs], []
        for _ in range(60):
            a = np.clip([-2.0 * obs[1] - 0.5 * obs[2]], -2, 2).astype(np.float32)
            obs, *_ = env.step(a)
            observations.append(obs)
            actions.append(a)
        episodes.append(Episode(observations=np.array(observations), actions=np.array(actions), expert_actions=np.array(actions)))
    metadata = DatasetMetadata(env_id="Pendulum-v1", observation_space=env.observation_space, action_space=env.action_space)
    config = NPMPConfig(latent_dim=4, encoder_hidden=(32, 32), decoder_hidden=(32, 32), steps=50, batch_size=8, subsequence_length=10)
    return fit_npmp(Dataset(episodes, metadata), config)


def test_high_level_actions_are_latents_decoded_by_the_frozen_module(pendulum_module):
    env = MotorPrimitivesWrapper(gym.make("Pendulum-v1"), pendulum_module, latent_limit=3.0)
    assert env.action_space.shape == (4,) and env.action_space.high[0] == 3.0
    obs, _ = env.reset(seed=0)
    z = np.full(4, 10.0, dtype=np.float32)
    expected = np.clip(pendulum_module.decoder_action(obs, np.full(4, 3.0)), -2, 2)
    np.testing.assert_allclose(env.action(z), expected, atol=1e-6)
    obs, *_ = env.step(z)
    assert obs.shape == (3,)
    env.close()


def test_a_module_for_another_robot_is_refused(pendulum_module):
    with pytest.raises(ArtifactError, match="observation space"):
        MotorPrimitivesWrapper(gym.make("InvertedPendulum-v5"), pendulum_module)
