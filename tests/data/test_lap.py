import gymnasium as gym
import numpy as np
import pytest

from latentprior.data import DatasetError
from latentprior.data.lap import import_lap_demonstration


def test_loading_a_pickled_file_needs_an_explicit_opt_in(shared_data):
    with pytest.raises(DatasetError, match="allow_pickle=True.*trust"):
        import_lap_demonstration(shared_data / "latent_action_priors" / "HalfCheetah-v4.npy")


@pytest.mark.parametrize(
    "stem, env_id, steps, cycle",
    [("HalfCheetah-v4", "HalfCheetah-v5", 124, 5), ("Ant-v4", "Ant-v5", 292, 11), ("Humanoid", "Humanoid-v5", 22, 22)],
)
def test_imports_match_gymnasium_v5_spaces(shared_data, stem, env_id, steps, cycle):
    dataset = import_lap_demonstration(shared_data / "latent_action_priors" / f"{stem}.npy", allow_pickle=True)
    assert dataset.metadata.env_id == env_id
    env = gym.make(env_id, **dataset.metadata.env_kwargs)
    dataset.check_env(env)
    assert dataset.num_steps == steps and dataset.metadata.extra["cycle_length"] == cycle
    assert np.all(dataset[0].actions <= env.action_space.high) and np.all(dataset[0].actions >= env.action_space.low)
    env.close()


def test_halfcheetah_observations_are_the_v5_layout(shared_data):
    """Replaying the demonstration's first qpos/qvel in v5 reproduces its first observation."""
    dataset = import_lap_demonstration(shared_data / "latent_action_priors" / "HalfCheetah-v4.npy", allow_pickle=True)
    obs = dataset[0].observations[0]
    env = gym.make("HalfCheetah-v5")
    env.reset(seed=0)
    qpos = np.concatenate([[0.0], obs[:8]])
    env.unwrapped.set_state(qpos, obs[8:])
    np.testing.assert_allclose(env.unwrapped._get_obs(), obs, atol=1e-5)
    env.close()


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        import_lap_demonstration(tmp_path / "none.npy", allow_pickle=True)
    np.save(tmp_path / "bad.npy", {"something": 1}, allow_pickle=True)
    with pytest.raises(DatasetError, match="recorded_actions_eps"):
        import_lap_demonstration(tmp_path / "bad.npy", allow_pickle=True)
