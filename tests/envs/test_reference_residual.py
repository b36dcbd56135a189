import gymnasium as gym
import numpy as np
import pytest

from latentprior.envs.reference_residual import ReferenceResidual
from latentprior.envs.style_reward import StyleError, StyleReward


def periodic_q(T=60, period=7, joints=6):
    t = np.arange(T)[:, None]
    return 0.4 * np.sin(2 * np.pi * t / period + np.arange(joints))


class Executed(gym.ActionWrapper):
    """Records the action the simulator receives."""

    def action(self, action):
        self.last = np.array(action)
        return action


def test_executed_action_is_the_reference_at_the_observed_phase_plus_the_residual():
    rng = np.random.default_rng(0)
    reference = rng.uniform(-0.8, 0.8, (7, 6))
    executed = Executed(gym.make("HalfCheetah-v5"))
    env = ReferenceResidual(StyleReward(executed, periodic_q(period=7)), reference, residual_scale=0.5)
    assert env.action_space.shape == (6,) and np.all(env.action_space.low == -1)
    obs, _ = env.reset(seed=0)
    for t in range(16):
        residual = rng.uniform(-1, 1, 6).astype(np.float32)
        phase = t % 7
        # The phase the policy sees in its observation is the one whose reference action is replayed.
        np.testing.assert_allclose(obs[-2:], [np.sin(2 * np.pi * phase / 7), np.cos(2 * np.pi * phase / 7)], atol=1e-6)
        np.testing.assert_allclose(env.reference_action(), reference[phase])
        obs, *_ = env.step(residual)
        np.testing.assert_allclose(executed.last, np.clip(reference[phase] + 0.5 * residual, -1, 1), atol=1e-6)
    env.close()


def test_residual_is_in_normalised_units_and_the_reference_in_env_units():
    # Humanoid's actions lie in [-0.4, 0.4]: a zero residual replays the reference exactly,
    # a full residual moves by the whole half-range.
    reference = np.random.default_rng(1).uniform(-0.3, 0.3, (5, 17))
    executed = Executed(gym.make("Humanoid-v5"))
    env = ReferenceResidual(StyleReward(executed, np.zeros((5, 17)), cycle_length=5), reference)
    env.reset(seed=0)
    env.step(np.zeros(17, dtype=np.float32))
    np.testing.assert_allclose(executed.last, reference[0], atol=1e-6)
    env.step(np.full(17, 0.5, dtype=np.float32))
    np.testing.assert_allclose(executed.last, np.clip(reference[1] + 0.2, -0.4, 0.4), atol=1e-6)
    env.close()


def test_bad_references_are_clear_errors():
    style = StyleReward(gym.make("HalfCheetah-v5"), periodic_q(period=7))
    with pytest.raises(StyleError, match="needs a StyleReward"):
        ReferenceResidual(gym.make("HalfCheetah-v5"), np.zeros((7, 6)))
    with pytest.raises(StyleError, match="5 reference actions for a gait cycle of 7 steps"):
        ReferenceResidual(style, np.zeros((5, 6)))
    with pytest.raises(StyleError, match=r"shape \(cycle_length, 6\)"):
        ReferenceResidual(style, np.zeros((7, 8)))
