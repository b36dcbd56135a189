"""The reenactment task of latent space priors: start in a demonstration's state, see its latents, track it."""

import gymnasium as gym
import numpy as np
import pytest

from latentprior.data import DatasetError
from latentprior.envs.reenactment import LowLevelConfig, ReenactmentEnv, StateLayout, Tracking, encode_references
from latentprior.latent.lsp import LSPError

ENV_ID = "HalfCheetah-v5"


def reenactment(vae, dataset, config=LowLevelConfig(episode_steps=32), **kwargs) -> ReenactmentEnv:
    return ReenactmentEnv(gym.make(ENV_ID), encode_references(vae, dataset), Tracking(vae, config.reward_scale), config, **kwargs)


def test_reward_is_maximal_when_the_state_equals_the_reference(lsp_vae, lsp_data):
    tracking = Tracking(lsp_vae, reward_scale=2.0)
    reference = lsp_data[0][0].observations[30]
    errors = tracking.errors(reference, reference)
    assert errors == {"positions": 0.0, "velocities": 0.0, "all": 0.0}
    assert tracking.reward(errors) == 1.0

    rewards = [tracking.reward(tracking.errors(reference + noise, reference)) for noise in (0.01, 0.1, 1.0)]
    assert 1.0 > rewards[0] > rewards[1] > rewards[2] > 0.0
    off_in_velocity = reference.copy()
    off_in_velocity[8:] += 1.0
    errors = tracking.errors(off_in_velocity, reference)
    assert errors["positions"] == 0.0 and errors["velocities"] > 0.0
    assert tracking.reward(errors) == pytest.approx(0.5 * (1.0 + np.exp(-2.0 * errors["velocities"])))


def test_an_episode_starts_in_the_demonstration_state_and_sees_its_latents(lsp_vae, lsp_data):
    env = reenactment(lsp_vae, lsp_data[0])
    references = encode_references(lsp_vae, lsp_data[0])
    obs, _ = env.reset(seed=0, options={"reference": 1, "start": 10, "steps": 5})
    assert obs.shape == env.observation_space.shape == (17 + 4,)
    np.testing.assert_allclose(obs[:17], lsp_data[0][1].observations[10])
    np.testing.assert_allclose(obs[17:], references[1].latents[16])  # the authors' target: 6 frames ahead
    np.testing.assert_allclose(env.unwrapped.data.qpos, lsp_data[0][1].qpos[10])

    # Replaying the demonstration's actions from its state reenacts it exactly: the maximal reward.
    for k in range(5):
        obs, reward, terminated, truncated, info = env.step(lsp_data[0][1].actions[10 + k])
        assert reward == pytest.approx(1.0) and info["tracking_error"]["all"] < 1e-12
        assert info["frame"] == 11 + k and not terminated
        np.testing.assert_allclose(obs[17:], references[1].latents[17 + k])
    assert truncated
    env.close()


def test_state_only_demonstrations_start_from_the_state_their_observation_describes(lsp_vae, lsp_data, lsp_demonstrations):
    env = reenactment(lsp_vae, lsp_demonstrations(range(2), state_only=True))
    obs, _ = env.reset(seed=0, options={"reference": 0, "start": 20})
    np.testing.assert_allclose(obs[:17], lsp_data[0][0].observations[20])
    assert env.unwrapped.data.qpos[0] == 0.0  # the root's x is not in the observation
    layout = StateLayout.of(env, 17)
    assert (layout.positions, layout.velocities, layout.omitted_qpos) == (slice(0, 8), slice(8, 17), (0,))
    env.close()


@pytest.mark.parametrize(
    "env_id, obs_dim, omitted", [("HalfCheetah-v5", 17, (0,)), ("Walker2d-v5", 17, (0,)), ("Ant-v5", 27, (0, 1)), ("Ant-v5", 105, (0, 1))]
)
def test_gymnasium_robots_leave_out_the_leading_qpos_coordinates(env_id, obs_dim, omitted):
    env = gym.make(env_id)
    layout = StateLayout.of(env, obs_dim)
    assert layout.omitted_qpos == omitted and layout.dt == env.unwrapped.dt
    obs, _ = env.reset(seed=0)
    data = env.unwrapped.data
    qpos, qvel = layout.sim_states(np.tile(obs[:obs_dim], (3, 1)))
    np.testing.assert_allclose(qpos[:, len(omitted) :], np.tile(data.qpos[len(omitted) :], (3, 1)))
    np.testing.assert_allclose(qvel, np.tile(data.qvel, (3, 1)))
    # The root's horizontal position starts at 0 and moves with its velocity.
    np.testing.assert_allclose(qpos[:, : len(omitted)], np.outer([0, 1, 2], layout.dt * data.qvel[: len(omitted)]))
    env.close()


def test_random_starts_run_episode_steps_unless_the_robot_loses_the_reference(lsp_vae, lsp_data):
    env = reenactment(lsp_vae, lsp_data[0], LowLevelConfig(episode_steps=12, termination_error=None))
    env.reset(seed=3)
    lengths = []
    for _ in range(3):
        env.reset()
        start, steps, done = env.frame, 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            steps, done = steps + 1, terminated or truncated
            assert 0.0 < reward <= 1.0
        assert 0 <= start <= 100 - 12 - 6 and not terminated
        lengths.append(steps)
    assert lengths == [12, 12, 12]

    strict = reenactment(lsp_vae, lsp_data[0], LowLevelConfig(episode_steps=12, termination_error=0.05))
    strict.reset(seed=0)
    _, _, terminated, _, info = strict.step(-strict.env.action_space.high)
    assert terminated and info["tracking_error"]["all"] > 0.05
    env.close()
    strict.close()


def test_a_dataset_too_short_for_one_window_is_a_clear_error(lsp_vae, lsp_demonstrations):
    short = lsp_demonstrations(range(2), steps=30)
    with pytest.raises(DatasetError, match=r"too short for one window of 71 frames.*episode 0 has 31.*LowLevelConfig.episode_steps"):
        reenactment(lsp_vae, short, LowLevelConfig())


def test_several_target_offsets_widen_the_observation(lsp_vae, lsp_data):
    env = reenactment(lsp_vae, lsp_data[0], LowLevelConfig(target_offsets=(1, 2, 4), episode_steps=16))
    assert env.observation_space.shape == (17 + 3 * 4,)
    env.close()


def test_config_is_checked():
    with pytest.raises(LSPError, match="target_offsets"):
        LowLevelConfig(target_offsets=())
    with pytest.raises(LSPError, match="target_offsets.*reward_scale"):
        LowLevelConfig(target_offsets=(-1,), reward_scale=0)
    assert LowLevelConfig(target_offsets=[1, 3]).horizon == 3
