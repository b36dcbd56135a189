import gymnasium as gym
import numpy as np
import pytest

from latentprior.envs.tasks import TargetVelocity


def test_tracking_reward_peaks_at_the_commanded_speed():
    env = TargetVelocity(gym.make("HalfCheetah-v5"), target_speed=2.0, keep_ctrl_cost=False)
    env.reset(seed=0)
    _, reward, *_, info = env.step(np.zeros(6, dtype=np.float32))
    v = info["x_velocity"]
    assert reward == pytest.approx(np.exp(-5 * abs(v - 2.0)))
    env.close()


def test_ant_direction_command_is_sampled_and_observed():
    env = TargetVelocity(gym.make("Ant-v5"), target_speed=(0.5, 1.0), direction=(-np.pi, np.pi), observe_command=True)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (env.unwrapped.observation_space.shape[0] + 3,)
    speed, c, s = obs[-3:]
    assert 0.5 <= speed <= 1.0 and c**2 + s**2 == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(env.command, speed * np.array([c, s]), atol=1e-5)
    obs2, _ = env.reset(seed=4)
    assert not np.allclose(obs[-3:], obs2[-3:])
    env.close()


def test_sideways_command_for_a_planar_only_robot_is_an_error():
    with pytest.raises(ValueError, match="moves along x only"):
        TargetVelocity(gym.make("HalfCheetah-v5"), target_speed=1.0, direction=np.pi / 2)
