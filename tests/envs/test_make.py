"""make_vec_env: same-step autoreset with the right final observations, for both backends."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from latentprior.envs.make import ENVPOOL_MATCHED, EnvPoolVectorEnv, envpool_task_ids, make_vec_env
from latentprior.io import LatentPriorError

needs_envpool = pytest.mark.skipif("InvertedPendulum-v5" not in envpool_task_ids(), reason="envpool not installed")


def _reference_episodes(env_id, actions, **kwargs):
    """Observations of a plain Gymnasium env under ``actions``, with each episode's last one."""
    env = gym.make(env_id, **kwargs)
    obs, _ = env.reset(seed=0)
    trajectory, finals = [obs], []
    for a in actions:
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            finals.append(obs)
            obs, _ = env.reset()
        trajectory.append(obs)
    env.close()
    return trajectory, finals


def _check_same_step(envs, env_id, actions, **kwargs):
    expected, expected_finals = _reference_episodes(env_id, actions, **kwargs)
    obs, _ = envs.reset(seed=0)
    np.testing.assert_allclose(obs[0], expected[0], atol=1e-6)
    finals = []
    for t, a in enumerate(actions):
        obs, _, terminated, truncated, info = envs.step(a[None])
        if terminated[0] or truncated[0]:
            assert info["_final_obs"][0]
            finals.append(info["final_obs"][0])
        else:
            assert "_final_obs" not in info or not info["_final_obs"][0]
        # The observation after a finished episode is the next episode's first one.
        np.testing.assert_allclose(obs[0], expected[t + 1], atol=1e-6)
    assert len(finals) == len(expected_finals) >= 2
    for got, want in zip(finals, expected_finals):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_sync_backend_returns_final_observation_of_truncated_episodes():
    actions = np.random.default_rng(0).uniform(-2, 2, (25, 1)).astype(np.float32)
    envs = make_vec_env("Pendulum-v1", 1, seed=0, env_kwargs={"max_episode_steps": 10})
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    _check_same_step(envs, "Pendulum-v1", actions, max_episode_steps=10)


@needs_envpool
def test_envpool_backend_matches_gymnasium_step_for_step():
    # Without reset noise both backends start from the same state, and the -v5 dynamics agree.
    actions = np.random.default_rng(0).uniform(-3, 3, (60, 1))
    envs = make_vec_env("InvertedPendulum-v5", 1, seed=0, backend="envpool", env_kwargs={"reset_noise_scale": 0.0})
    assert isinstance(envs, EnvPoolVectorEnv)
    _check_same_step(envs, "InvertedPendulum-v5", actions, reset_noise_scale=0.0)


@needs_envpool
@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Walker2d-v5"])
def test_envpool_tasks_picked_by_auto_step_like_gymnasium(env_id):
    assert env_id in ENVPOOL_MATCHED
    gym_env = gym.make(env_id, reset_noise_scale=0.0)
    pool = make_vec_env(env_id, 4, seed=0, backend="auto", env_kwargs={"reset_noise_scale": 0.0})
    assert isinstance(pool, EnvPoolVectorEnv)
    expected, _ = gym_env.reset(seed=0)
    got, _ = pool.reset()
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = rng.uniform(-1, 1, gym_env.action_space.shape)
        expected, reward, *_ = gym_env.step(a)
        got, pool_reward, *_ = pool.step(np.repeat(a[None], 4, axis=0))
        np.testing.assert_allclose(got, np.repeat(expected[None], 4, axis=0), atol=1e-6)
        np.testing.assert_allclose(pool_reward, reward, atol=1e-5)


@needs_envpool
def test_envpool_rows_stay_in_sub_environment_order_through_partial_resets():
    envs = make_vec_env("Hopper-v5", 8, seed=3, backend="envpool")
    rng = np.random.default_rng(0)
    obs, _ = envs.reset()
    for _ in range(300):
        obs, _, terminated, truncated, info = envs.step(rng.uniform(-1, 1, (8, 3)))
        done = terminated | truncated
        if done.any() and not done.all():
            # Fresh episodes start at the initial height (1.25 m, reset noise 5e-3).
            assert np.all(np.abs(obs[done, 0] - 1.25) < 0.01)
            assert all(info["final_obs"][i] is not None for i in np.flatnonzero(done))
    envs.close()


def test_seeding_makes_sub_environments_repeatable_and_distinct():
    first = make_vec_env("Pendulum-v1", 3, seed=7).reset()[0]
    again = make_vec_env("Pendulum-v1", 3, seed=7).reset()[0]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[0], first[1])


def test_auto_backend_and_errors():
    assert not isinstance(make_vec_env("Pendulum-v1", 8, backend="auto"), EnvPoolVectorEnv)  # not verified
    assert not isinstance(make_vec_env("Hopper-v5", 1, backend="auto"), EnvPoolVectorEnv)  # too few envs
    with pytest.raises(LatentPriorError, match="backend"):
        make_vec_env("Pendulum-v1", 1, backend="threads")
    with pytest.raises(LatentPriorError, match="wrappers"):
        make_vec_env("Pendulum-v1", 1, backend="envpool", wrappers=[lambda e: e])
    with pytest.raises(LatentPriorError, match="num_envs"):
        make_vec_env("Pendulum-v1", 0)


def test_callable_and_wrappers():
    seen = []

    def wrap(env):
        seen.append(env)
        return gym.wrappers.ClipAction(env)

    envs = make_vec_env(lambda: gym.make("Pendulum-v1"), 2, seed=0, wrappers=[wrap])
    assert len(seen) == 2
    assert envs.step(np.full((2, 1), 5.0, dtype=np.float32))[0].shape == (2, 3)
