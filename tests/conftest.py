"""Shared test fixtures.

Third-party data lives beside the project in ``../shared/data`` (never in this repository);
tests that need it skip with a reason when it is absent, as on a user's machine.
"""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``, or skip the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"third-party data not found at {SHARED_DATA} (it is never shipped with the project)")
    return SHARED_DATA


# -- latent space priors (Gehring et al. 2023): tiny HalfCheetah demonstrations and models ----------

LSP_ENV_ID = "HalfCheetah-v5"


def _lsp_rollout(env, seed: int, steps: int):
    """An oscillating gait with action noise, recorded with qpos/qvel as ``data collect`` does."""
    import numpy as np

    from latentprior.data import Episode

    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 6)
    obs, _ = env.reset(seed=seed)
    data = env.unwrapped.data
    rows = {"observations": [obs], "actions": [], "qpos": [data.qpos.copy()], "qvel": [data.qvel.copy()]}
    for t in range(steps):
        action = np.clip(np.sin(0.5 * t + phase) + 0.1 * rng.standard_normal(6), -1, 1).astype(np.float32)
        obs, *_ = env.step(action)
        for key, value in (("observations", obs), ("actions", action), ("qpos", data.qpos.copy()), ("qvel", data.qvel.copy())):
            rows[key].append(value)
    return Episode(**{key: np.array(value) for key, value in rows.items()})


def _lsp_demonstrations(seeds, steps: int = 100, state_only: bool = False):
    import gymnasium as gym

    from latentprior.data import Dataset, DatasetMetadata, Episode

    env = gym.make(LSP_ENV_ID)
    episodes = [_lsp_rollout(env, seed, steps) for seed in seeds]
    if state_only:
        episodes = [Episode(observations=e.observations) for e in episodes]
    env.close()
    return Dataset(episodes, DatasetMetadata(env_id=LSP_ENV_ID, observation_space=env.observation_space, action_space=env.action_space))


@pytest.fixture(scope="session")
def lsp_demonstrations():
    """``lsp_demonstrations(seeds, steps=100, state_only=False)``: one HalfCheetah-v5 gait episode per seed."""
    return _lsp_demonstrations


@pytest.fixture(scope="session")
def lsp_data():
    """Training (seeds 0-3) and held-out (seed 10) demonstrations of 100 steps."""
    return _lsp_demonstrations(range(4)), _lsp_demonstrations([10])


@pytest.fixture(scope="session")
def lsp_vae(lsp_data):
    """A state VAE with 4-d latents fitted in a second (shared: never modify it)."""
    from latentprior.latent.lsp import VAEConfig, fit_vae

    config = VAEConfig(latent_dim=4, width=16, blocks=1, window=32, batch_size=16, learning_rate=3e-3, steps=150, log_interval=50)
    return fit_vae(lsp_data[0], config)


@pytest.fixture(scope="session")
def lsp_prior(lsp_vae, lsp_data):
    """A prior over ``lsp_vae``'s latents (context 16) fitted in a second (shared: never modify it)."""
    from latentprior.latent.lsp import PriorConfig, fit_prior

    config = PriorConfig(width=32, depth=1, heads=2, context=16, mixture_components=2, batch_size=16, steps=100, log_interval=50)
    return fit_prior(lsp_vae, lsp_data[0], config)
