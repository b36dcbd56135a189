import numpy as np
import pytest
import torch

from latentprior.io import ArtifactError
from latentprior.latent.action_prior import (
    ActionPrior,
    ActionPriorConfig,
    fit_action_prior,
    latent_range_penalty,
    pca_latent_size,
)


def gait_actions(n=120, d=6, k=2, seed=0):
    """Actions that lie on a k-dimensional curve in d dimensions, like a periodic gait."""
    rng = np.random.default_rng(seed)
    phase = np.linspace(0, 4 * np.pi, n)
    basis = np.stack([np.sin(phase), np.cos(phase), np.sin(2 * phase)][:k], axis=1)
    mix = rng.normal(size=(k, d)) / np.sqrt(k)
    return np.clip(0.7 * basis @ mix, -1, 1).astype(np.float32)


def test_pca_latent_size_finds_the_intrinsic_dimension():
    actions = gait_actions(k=2)
    assert pca_latent_size(actions) == 2
    noisy = actions + np.random.default_rng(1).normal(scale=0.3, size=actions.shape)
    assert pca_latent_size(noisy) > 2


def test_penalty_is_zero_inside_and_grows_outside():
    assert latent_range_penalty(torch.tensor([[0.0, 0.79, -0.5]])) == 0
    inside, outside = latent_range_penalty(torch.tensor([[0.9]])), latent_range_penalty(torch.tensor([[1.3]]))
    assert 0 < inside < outside
    assert torch.isfinite(latent_range_penalty(torch.tensor([[1e6]])))


def test_fitted_autoencoder_reconstructs_and_keeps_latents_in_range():
    actions = gait_actions(k=2)
    prior = fit_action_prior(actions, ActionPriorConfig(epochs=1500, seed=0))
    assert prior.latent_dim == 2
    assert prior.reconstruction_mse.mean() < 0.01 * actions.var(0).mean() + 1e-3
    z = prior.encode(actions)
    assert np.abs(z).max() < 1.05
    assert prior.decode(z).shape == actions.shape


def test_save_load_round_trip(tmp_path):
    prior = fit_action_prior(gait_actions(), ActionPriorConfig(epochs=50), env_id="HalfCheetah-v5")
    prior.save(tmp_path / "prior")
    loaded = ActionPrior.load(tmp_path / "prior")
    z = np.random.default_rng(0).uniform(-1, 1, size=(5, prior.latent_dim)).astype(np.float32)
    np.testing.assert_array_equal(prior.decode(z), loaded.decode(z))
    assert loaded.env_id == "HalfCheetah-v5" and loaded.config.latent_dim == prior.latent_dim


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        fit_action_prior(np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match="shape"):
        fit_action_prior(np.zeros(5))
    with pytest.raises(ArtifactError, match="not found"):
        ActionPrior.load(tmp_path / "missing")
