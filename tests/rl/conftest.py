"""Small, fast configurations shared by the learner tests."""

import functools

import pytest

from latentprior.envs.make import make_vec_env
from latentprior.rl import PPOConfig, SACConfig


@pytest.fixture
def env_fn():
    """``env_fn("Pendulum-v1")`` -> the ``(num_envs, seed) -> VectorEnv`` factory the learners take."""
    return lambda env_id, **kwargs: functools.partial(make_vec_env, env_id, **kwargs)


@pytest.fixture
def tiny_ppo():
    """PPO on Pendulum with rollouts of 256 steps: a few seconds per run."""
    return PPOConfig(
        total_steps=1024, n_steps=256, batch_size=64, n_epochs=2, eval_episodes=2, eval_envs=2,
        eval_every=512, checkpoint_every=512, tensorboard=False,
    )


@pytest.fixture
def tiny_sac():
    """SAC on Pendulum with small networks: a few seconds per run."""
    return SACConfig(
        total_steps=600, learning_starts=100, batch_size=64, hidden_sizes=(32, 32), eval_episodes=2,
        eval_envs=2, eval_every=300, log_every=100, checkpoint_every=200, tensorboard=False,
    )
