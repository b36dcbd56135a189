import gymnasium as gym
import numpy as np
import pytest

from latentprior.envs.latent_action import LatentActionWrapper
from latentprior.io import ArtifactError
from latentprior.latent.action_prior import ActionPriorConfig, fit_action_prior


@pytest.fixture(scope="module")
def cheetah_prior():
    rng = np.random.default_rng(0)
    phase = np.linspace(0, 6 * np.pi, 90)
    actions = np.clip(np.stack([np.sin(phase), np.cos(phase)], 1) @ rng.normal(size=(2, 6)) * 0.5, -1, 1)
    return fit_action_prior(actions.astype(np.float32), ActionPriorConfig(epochs=300), env_id="HalfCheetah-v5")


def test_executed_action_mixes_decoder_and_residual(cheetah_prior):
    env = LatentActionWrapper(gym.make("HalfCheetah-v5"), cheetah_prior, residual_weight=0.1)
    k = cheetah_prior.latent_dim
    assert env.action_space.shape == (k + 6,)
    a = np.concatenate([np.full(k, 0.3), np.full(6, -1.0)]).astype(np.float32)
    expected = 0.9 * cheetah_prior.decode(a[:k]) + 0.1 * a[k:]
    np.testing.assert_allclose(env.action(a), np.clip(expected, -1, 1), atol=1e-6)
    env.close()


def test_latent_only_mode_and_bounds_rescaling(cheetah_prior):
    # Humanoid-like bounds [-0.4, 0.4]: the decoder's normalised output is rescaled to them.
    base = gym.make("Pendulum-v1")
    base.action_space = gym.spaces.Box(-0.4, 0.4, shape=(6,), dtype=np.float32)
    env = LatentActionWrapper(base, cheetah_prior, latent_only=True)
    assert env.action_space.shape == (cheetah_prior.latent_dim,)
    z = np.zeros(cheetah_prior.latent_dim, dtype=np.float32)
    np.testing.assert_allclose(env.action(z), 0.4 * np.clip(cheetah_prior.decode(z), -1, 1), atol=1e-6)


def test_mismatched_prior_is_a_clear_error(cheetah_prior):
    with pytest.raises(ArtifactError, match="6-d actions for HalfCheetah-v5.*8-d"):
        LatentActionWrapper(gym.make("Ant-v5"), cheetah_prior)


def test_stable_baselines3_ppo_trains_through_the_wrapper(cheetah_prior):
    sb3 = pytest.importorskip("stable_baselines3", reason="stable-baselines3 is an optional extra")
    env = LatentActionWrapper(gym.make("HalfCheetah-v5"), cheetah_prior)
    model = sb3.PPO("MlpPolicy", env, n_steps=512, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=2048)
    action, _ = model.predict(env.observation_space.sample(), deterministic=True)
    assert action.shape == env.action_space.shape
    env.close()
