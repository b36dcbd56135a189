import gymnasium as gym
import numpy as np
import pytest

from latentprior.envs.style_reward import StyleError, StyleReward, detect_cycle_length


def periodic_q(T=60, period=7, joints=6):
    t = np.arange(T)[:, None]
    return 0.4 * np.sin(2 * np.pi * t / period + np.arange(joints))


def test_detects_the_gait_cycle():
    assert detect_cycle_length(periodic_q(period=7)) == 7
    assert detect_cycle_length(periodic_q(T=200, period=23)) == 23
    with pytest.raises(StyleError, match="too short"):
        detect_cycle_length(periodic_q(T=5))
    with pytest.raises(StyleError, match="constant"):
        detect_cycle_length(np.zeros((40, 3)))


def test_phase_advances_every_step_and_is_observed():
    env = StyleReward(gym.make("HalfCheetah-v5"), periodic_q(period=7))
    assert env.cycle_length == 7
    obs, _ = env.reset(seed=0)
    assert obs.shape == (19,) and np.allclose(obs[-2:], [0.0, 1.0])
    phases = []
    for _ in range(9):
        obs, reward, *_, info = env.step(env.action_space.sample())
        phases.append(env.phase)
        assert 0 < info["style_reward"] <= 1
        expected = 0.67 * info["task_reward"] + 0.33 * info["style_reward"]
        assert reward == pytest.approx(expected)
    assert phases == [1, 2, 3, 4, 5, 6, 0, 1, 2]
    np.testing.assert_allclose(obs[-2:], [np.sin(2 * np.pi * 2 / 7), np.cos(2 * np.pi * 2 / 7)], atol=1e-6)
    env.close()


def test_style_reward_is_one_on_the_reference():
    env = StyleReward(gym.make("HalfCheetah-v5"), periodic_q(period=7))
    env.reset(seed=0)
    env.unwrapped.data.qpos[3:9] = env.reference_q[0]
    assert env.style_reward() == pytest.approx(1.0)
    env.close()


def test_paper_normalisers_and_bad_input():
    ant = StyleReward(gym.make("Ant-v5"), periodic_q(joints=8), cycle_length=7)
    assert ant.task_reward_normaliser == 2.0
    ant.close()
    with pytest.raises(StyleError, match="longer than the demonstration"):
        StyleReward(gym.make("HalfCheetah-v5"), periodic_q(T=30), cycle_length=31)
    with pytest.raises(StyleError, match="8 joints.*6"):
        StyleReward(gym.make("HalfCheetah-v5"), periodic_q(joints=8), cycle_length=7)
