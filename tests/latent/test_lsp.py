import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from latentprior.data import Dataset, DatasetError, DatasetMetadata, Episode
from latentprior.io import ArtifactError
from latentprior.latent.lsp import (
    UNUSED_KL,
    LatentPrior,
    LatentSubspace,
    LSPError,
    PriorConfig,
    StateVAE,
    SubspacePrior,
    TanhGaussianMixture,
    VAEConfig,
    default_state_groups,
    fit_prior,
    fit_vae,
    latent_kl,
)

# Synthetic "gaits": three periodic motions of 5 joint positions and their 5 velocities, each at
# its own frequency (radians per frame), each episode starting at a random phase.
OBS_DIM = 10
FREQUENCIES = (0.15, 0.25, 0.4)
META = DatasetMetadata(observation_space=gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32))
VAE_SMALL = VAEConfig(
    latent_dim=8,
    width=32,
    blocks=2,
    window=32,
    batch_size=32,
    learning_rate=3e-3,
    steps=600,
    log_interval=200,
    groups={"positions": slice(0, 5), "velocities": slice(5, 10)},
)
PRIOR_SMALL = PriorConfig(
    width=64, depth=2, heads=4, context=16, mixture_components=4, learning_rate=1e-3, steps=900, log_interval=300
)


def gaits(episodes_per_gait: int, frames: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    episodes = []
    for g, omega in enumerate(FREQUENCIES):
        shape = np.random.default_rng(100 + g)
        amplitude, harmonic = shape.uniform(0.5, 1.5, 5), shape.integers(1, 3, 5)
        offset = shape.uniform(0, 2 * np.pi, 5)
        for _ in range(episodes_per_gait):
            angle = harmonic * (omega * np.arange(frames) + rng.uniform(0, 2 * np.pi))[:, None] + offset
            states = np.concatenate([amplitude * np.sin(angle), amplitude * harmonic * omega * np.cos(angle)], 1)
            states += 0.01 * rng.standard_normal(states.shape)
            episodes.append(Episode(observations=states.astype(np.float32)))
    return Dataset(episodes, META)


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, Dataset]:
    return gaits(4, 150, seed=0), gaits(1, 150, seed=1)


@pytest.fixture(scope="module")
def vae(data) -> StateVAE:
    train, held_out = data
    return fit_vae(train, VAE_SMALL, held_out=held_out)


@pytest.fixture(scope="module")
def prior(vae, data) -> LatentPrior:
    train, held_out = data
    return fit_prior(vae, train, PRIOR_SMALL, held_out=held_out)


def latents(vae: StateVAE, dataset: Dataset) -> list[torch.Tensor]:
    return [vae.encode(e.observations) for e in dataset]


def lag_one_autocorrelation(z: torch.Tensor, mean: torch.Tensor) -> float:
    """Pooled over dimensions: sum (z_t - m)(z_{t+1} - m) / sum (z_t - m)^2 along the time axis."""
    centred = z - mean
    return float((centred[..., 1:, :] * centred[..., :-1, :]).sum() / (centred[..., :-1, :] ** 2).sum())


# -- state VAE ------------------------------------------------------------------------------------


def test_vae_reconstructs_held_out_states_per_group(vae, data):
    train, held_out = data
    # Normalised units: 1.0 would be no better than predicting each dimension's mean.
    assert set(vae.held_out_error) == {"positions", "velocities", "all"}
    assert all(error < 0.05 for error in vae.held_out_error.values())
    assert vae.reconstruction_error(held_out) == pytest.approx(vae.held_out_error)
    assert vae.history["step"] == [200, 400, 600]
    assert vae.history["held_out_mse/all"][-1] < vae.history["held_out_mse/all"][0]

    states = held_out[0].observations
    reconstruction = vae.decode(vae.encode(states)).numpy()
    assert np.mean((reconstruction - states) ** 2) < 0.05 * train.concat("observations").var(0).mean()
    only_velocities = vae.reconstruction_error(held_out, groups={"v": (5, 10)})
    assert only_velocities == pytest.approx({"v": vae.held_out_error["velocities"], "all": vae.held_out_error["all"]})


def test_latents_are_per_frame_and_inside_the_tanh_box(vae, data):
    episode = data[1][0]
    z = vae.encode(episode.observations)
    assert z.shape == (len(episode.observations), 8)
    assert z.abs().max() < 1.0
    batched = vae.encode(np.stack([episode.observations[:40], episode.observations[60:100]]))
    assert batched.shape == (2, 40, 8)
    torch.testing.assert_close(batched[1], vae.encode(episode.observations[60:100]))
    # The encoder sees +-4 frames with two blocks: away from the cut, a crop encodes like the whole.
    torch.testing.assert_close(batched[0, :30], z[:30], atol=1e-5, rtol=0)
    mean, std = vae.posterior(episode.observations)
    torch.testing.assert_close(torch.tanh(mean), z)
    assert (std > 0).all()


def test_too_short_episodes_are_a_clear_error(data):
    train, _ = data
    with pytest.raises(DatasetError, match=r"dataset too short for one window of 256 frames \(episode 0 has 150,"):
        fit_vae(train, dataclasses.replace(VAE_SMALL, window=256, steps=1))
    short = Dataset([*train.episodes, Episode(observations=np.zeros((20, OBS_DIM), np.float32))], META)
    with pytest.raises(DatasetError, match="episode 12 has 20\\); lower VAEConfig.window to at most 20"):
        fit_vae(short, dataclasses.replace(VAE_SMALL, steps=1))


def test_prior_needs_context_plus_one_frames(vae, data):
    train, _ = data
    message = "too short for one window of 201 frames.*lower PriorConfig.context to at most 149"
    with pytest.raises(DatasetError, match=message):
        fit_prior(vae, train, dataclasses.replace(PRIOR_SMALL, context=200, steps=1))


def test_default_state_groups_of_locomotion_tasks():
    assert default_state_groups("HalfCheetah-v5", 17) == {"positions": slice(0, 8), "velocities": slice(8, 17)}
    assert default_state_groups("Walker2d-v5", 17) == {"positions": slice(0, 8), "velocities": slice(8, 17)}
    assert default_state_groups("Ant-v5", 27) == {"positions": slice(0, 13), "velocities": slice(13, 27)}
    assert default_state_groups("Ant-v5", 105)["contact_forces"] == slice(27, 105)
    assert list(default_state_groups("Humanoid-v5", 348))[-1] == "contact_forces"
    assert default_state_groups("HalfCheetah-v5", 18) == {}  # positions incl. x: layout unknown
    assert default_state_groups("Pendulum-v1", 3) == {} and default_state_groups(None, 10) == {}


def test_default_groups_are_used_and_unknown_envs_report_all(data):
    train, _ = data
    vae = fit_vae(train, dataclasses.replace(VAE_SMALL, groups=None, steps=2))
    assert vae.groups == {} and set(vae.reconstruction_error(train)) == {"all"}


def test_bad_configs_are_clear_errors():
    with pytest.raises(LSPError, match="'all' is reserved"):
        VAEConfig(groups={"all": (0, 3)})
    with pytest.raises(LSPError, match="kernel_size must be odd"):
        VAEConfig(kernel_size=4)
    with pytest.raises(LSPError, match=r"heads \(3\) must divide width \(64\)"):
        PriorConfig(width=64, heads=3)


# -- the mixture ----------------------------------------------------------------------------------


def test_one_component_log_prob_is_a_normal_pushed_through_tanh():
    gen = torch.Generator().manual_seed(0)
    loc, scale = torch.randn(5, 1, 3, generator=gen), torch.rand(5, 1, 3, generator=gen) + 0.2
    mixture = TanhGaussianMixture(torch.zeros(5, 1), loc, scale)
    z = torch.rand(5, 3, generator=gen) * 1.8 - 0.9
    u = torch.atanh(z)
    direct = torch.distributions.Normal(loc[:, 0], scale[:, 0]).log_prob(u).sum(-1) - torch.log1p(-(z**2)).sum(-1)
    torch.testing.assert_close(mixture.log_prob(z), direct)


def test_mixture_matches_torch_and_its_samples_and_mean_agree():
    gen = torch.Generator().manual_seed(1)
    logits, loc = torch.randn(2, 3, generator=gen), torch.randn(2, 3, 4, generator=gen)
    scale = torch.rand(2, 3, 4, generator=gen) + 0.1
    mixture = TanhGaussianMixture(logits, loc, scale)
    reference = torch.distributions.TransformedDistribution(
        torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(logits=logits),
            torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1),
        ),
        torch.distributions.transforms.TanhTransform(),
    )
    z = mixture.sample((100,), generator=gen)
    assert z.shape == (100, 2, 4) and mixture.batch_shape == (2,) and mixture.event_shape == (4,)
    torch.testing.assert_close(mixture.log_prob(z.clamp(-0.999, 0.999)), reference.log_prob(z.clamp(-0.999, 0.999)))
    many = mixture.sample((20000,), generator=gen)
    torch.testing.assert_close(mixture.mean, many.mean(0), atol=0.02, rtol=0)
    # Saturated samples (tanh rounds to exactly 1 in float32) still get a finite density.
    assert torch.isfinite(mixture.log_prob(torch.ones(2, 4))).all()


# -- the prior ------------------------------------------------------------------------------------


def test_prior_learns_temporal_structure(prior, vae, data):
    train, held_out = data
    nll = prior.history["held_out_nll"]
    assert len(nll) == 3 and nll[-1] < nll[0] - 1.0
    assert prior.held_out_nll == nll[-1] == pytest.approx(prior.nll(vae, held_out), abs=1e-4)

    # Baseline: one full-covariance Gaussian over pre-tanh latents, no temporal context, scored as
    # a density of z like the prior (change of variables through tanh).
    u_train = torch.atanh(torch.cat(latents(vae, train)).double())
    gaussian = torch.distributions.MultivariateNormal(u_train.mean(0), torch.cov(u_train.T))
    z_held = torch.cat(latents(vae, held_out)).double()
    baseline = -(gaussian.log_prob(torch.atanh(z_held)) - torch.log1p(-(z_held**2)).sum(-1)).mean().item()
    assert prior.held_out_nll < baseline - 5.0  # nats per step: knowing the past pins the next latent


def test_log_prob_chains_next_distribution_with_a_sliding_context(prior, vae, data):
    z = vae.encode(data[1][0].observations[:40])[None]
    log_prob = prior.log_prob(z)
    assert log_prob.shape == (1, 40)
    for t in (0, 5, 16, 17, 39):  # context is 16: from t = 17 on, the oldest latents drop out
        expected = prior.next_distribution(z[:, :t]).log_prob(z[:, t])
        torch.testing.assert_close(log_prob[:, t], expected, atol=1e-4, rtol=1e-5)
    z.requires_grad_(True)
    prior.log_prob(z).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_samples_move_like_the_data(prior, vae, data):
    train, _ = data
    z_data = torch.stack([z[:60] for z in latents(vae, train)])
    generator = torch.Generator().manual_seed(0)
    samples = prior.sample(60, 16, generator=generator)
    assert samples.shape == (16, 60, 8) and samples.abs().max() <= 1.0
    torch.testing.assert_close(prior.sample(60, 16, generator=torch.Generator().manual_seed(0)), samples)

    mean = z_data.mean((0, 1))
    data_ac, sample_ac = lag_one_autocorrelation(z_data, mean), lag_one_autocorrelation(samples, mean)
    # Latents drawn independently from the marginal would give about 0.
    assert data_ac > 0.7 and abs(sample_ac - data_ac) < 0.1
    assert 0.5 < samples.var((0, 1)).sum() / z_data.var((0, 1)).sum() < 2.0

    states = train.concat("observations")
    low, high = states.min(0), states.max(0)
    margin = 0.1 * (high - low)
    decoded = vae.decode(samples).numpy()
    assert np.mean((decoded > low - margin) & (decoded < high + margin)) > 0.97


def test_sampling_continues_a_context(prior, vae, data):
    context = vae.encode(data[1][0].observations[:20])[None]
    continued = prior.sample(10, 4, context=context, generator=torch.Generator().manual_seed(1))
    assert continued.shape == (4, 10, 8)
    # The next latent follows on from the context: much closer to it than the data's latents are.
    gap = (continued[:, 0] - context[0, -1]).norm(dim=-1).mean()
    assert gap < 0.5 * (torch.cat(latents(vae, data[0])) - context[0, -1]).norm(dim=-1).mean()
    assert prior.sample(5, context=context.expand(3, -1, -1)).shape == (3, 5, 8)
    with pytest.raises(LSPError, match="context has 3 rows, which does not fit batch = 2"):
        prior.sample(5, 2, context=context.expand(3, -1, -1))
    first = prior.next_distribution(torch.zeros(6, 0, 8))
    assert first.batch_shape == (6,) and first.mean.shape == (6, 8)


def test_cached_sampling_equals_uncached_sampling(prior, vae, data):
    context = vae.encode(data[1][0].observations[:5])[None].expand(3, -1, -1)
    # 40 steps from 5 latents: 11 steps extend the key/value cache, the rest slide the window of 16.
    for given in (None, context):
        cached = prior.sample(40, 3, given, torch.Generator().manual_seed(4))
        uncached = prior.sample(40, 3, given, torch.Generator().manual_seed(4), cache=False)
        torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=0)
    distribution, cache = prior.network.forward_cached(context[:, :3])
    distribution, cache = prior.network.forward_cached(context[:, 3:4], cache)
    whole = prior.next_distribution(context[:, :4])
    torch.testing.assert_close(distribution.logits, whole.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(distribution.loc, whole.loc, atol=1e-5, rtol=0)


def test_many_continuations_of_a_few_histories_share_the_history_and_equal_repeating_it(prior, vae, data):
    # What the planner asks for: n continuations of each of a few histories. The shared keys and
    # values must give the samples of the same histories repeated n times, in every regime of the
    # window (context 16 here): room to extend (5 latents), filling up then sliding (14), sliding
    # from the start (20), and continuations longer than the window (20 steps).
    z = vae.encode(data[1][0].observations[:20])
    for length, steps in [(5, 8), (14, 6), (20, 4), (14, 20)]:
        history = torch.stack([z[:length], z.flip(0)[:length]])
        shared = prior.sample(steps, 2 * 7, history, torch.Generator().manual_seed(3), temperature=2.0)
        repeated = history.repeat_interleave(7, dim=0)
        reference = prior.sample(steps, 14, repeated, torch.Generator().manual_seed(3), temperature=2.0, cache=False)
        assert shared.shape == (14, steps, 8)
        torch.testing.assert_close(shared, reference, atol=1e-4, rtol=0)
        assert not torch.allclose(shared[0], shared[1])  # independent continuations of one row
    lengths = torch.tensor([3, 9])
    history = torch.stack([z[:9], z[5:14]])
    grouped = prior.sample(5, 6, history, torch.Generator().manual_seed(0), lengths=lengths, temperature=0)
    for row, n in enumerate(lengths.tolist()):
        alone = prior.sample(5, 1, history[row : row + 1, :n], temperature=0)[0]
        for copy in range(3):
            torch.testing.assert_close(grouped[3 * row + copy], alone, atol=1e-5, rtol=0)


def test_histories_of_different_lengths_in_one_batch(prior, vae, data):
    history = vae.encode(data[1][0].observations[:6])[None].expand(3, -1, -1)
    lengths = torch.tensor([0, 3, 6])
    together = prior.next_distribution(history, lengths)
    for row, n in enumerate(lengths.tolist()):
        alone = prior.next_distribution(history[row : row + 1, :n])
        torch.testing.assert_close(together.loc[row], alone.loc[0], atol=1e-5, rtol=0)
    samples = prior.sample(4, 3, history, torch.Generator().manual_seed(0), lengths=lengths, temperature=0)
    for row, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(samples[row], prior.sample(4, 1, history[row : row + 1, :n], temperature=0)[0], atol=1e-5, rtol=0)
    with pytest.raises(LSPError, match="lengths"):
        prior.next_distribution(history, torch.tensor([0, 7, 1]))


def test_temperature_zero_follows_the_most_likely_component_mean():
    logits = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    loc = torch.tensor([[[0.1, 0.2], [0.5, -0.5]], [[-1.0, 1.0], [2.0, 2.0]]])
    mixture = TanhGaussianMixture(logits, loc, torch.ones(2, 2, 2))
    torch.testing.assert_close(mixture.sample(temperature=0), torch.tanh(torch.tensor([[0.5, -0.5], [-1.0, 1.0]])))
    assert mixture.sample((5,), temperature=0).shape == (5, 2, 2)
    wide = mixture.sample((4000,), torch.Generator().manual_seed(0), temperature=3.0, mixture_temperature=9.0)
    narrow = mixture.sample((4000,), torch.Generator().manual_seed(0))
    assert wide.std(0).mean() > narrow.std(0).mean()


# -- save / load ----------------------------------------------------------------------------------


def test_save_load_round_trips(vae, prior, data, tmp_path):
    states = data[1][0].observations
    vae.save(tmp_path / "vae")
    loaded_vae = StateVAE.load(tmp_path / "vae", META.observation_space)
    torch.testing.assert_close(loaded_vae.encode(states), vae.encode(states), rtol=0, atol=0)
    assert loaded_vae.config == vae.config and loaded_vae.groups == vae.groups
    assert loaded_vae.history == vae.history and loaded_vae.held_out_error == vae.held_out_error

    prior.save(tmp_path / "prior")
    loaded = LatentPrior.load(tmp_path / "prior", vae=loaded_vae)
    z = vae.encode(states)[None]
    torch.testing.assert_close(loaded.log_prob(z), prior.log_prob(z), rtol=0, atol=0)
    assert loaded.config == prior.config and loaded.history == prior.history
    assert loaded.held_out_nll == prior.held_out_nll

    with pytest.raises(ArtifactError, match=r"observation space has shape \(10,\), environment has \(11,\)"):
        StateVAE.load(tmp_path / "vae", gym.spaces.Box(-np.inf, np.inf, (11,), np.float32))
    with pytest.raises(ArtifactError, match="holds a 'lsp_prior' artifact, expected lsp_vae"):
        StateVAE.load(tmp_path / "prior")


def test_prior_refuses_a_vae_it_was_not_fitted_on(prior, data, tmp_path):
    train, _ = data
    prior.save(tmp_path / "prior")
    smaller = fit_vae(train, dataclasses.replace(VAE_SMALL, latent_dim=4, steps=1))
    with pytest.raises(ArtifactError, match="the prior models 8-d latents, but the VAE encodes 4-d latents"):
        LatentPrior.load(tmp_path / "prior", vae=smaller)
    other = fit_vae(train, dataclasses.replace(VAE_SMALL, seed=1, steps=1))
    with pytest.raises(ArtifactError, match="fitted on the latents of VAE [0-9a-f]{16}, but this VAE is"):
        prior.nll(other, train)


def test_interrupted_vae_and_prior_fits_resume_to_the_same_weights(data, tmp_path):
    train, held_out = data
    vae_config = dataclasses.replace(VAE_SMALL, steps=40, log_interval=10)
    whole = fit_vae(train, vae_config)
    fit_vae(train, dataclasses.replace(vae_config, steps=20), checkpoint_dir=tmp_path / "vae", checkpoint_every=10)
    resumed = fit_vae(train, vae_config, held_out=held_out, checkpoint_dir=tmp_path / "vae", checkpoint_every=10)
    for (name, a), b in zip(whole.network.state_dict().items(), resumed.network.state_dict().values()):
        assert torch.equal(a, b), name
    assert set(resumed.held_out_error) == {"positions", "velocities", "all"}

    prior_config = dataclasses.replace(PRIOR_SMALL, steps=30, log_interval=10)
    whole_prior = fit_prior(whole, train, prior_config)
    fit_prior(whole, train, dataclasses.replace(prior_config, steps=10), checkpoint_dir=tmp_path / "prior", checkpoint_every=10)
    resumed_prior = fit_prior(whole, train, prior_config, checkpoint_dir=tmp_path / "prior", checkpoint_every=10)
    for (name, a), b in zip(whole_prior.network.state_dict().items(), resumed_prior.network.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed_prior.history["nll"] == whole_prior.history["nll"]
    with pytest.raises(ArtifactError, match="another fit.*context"):
        fit_prior(whole, train, dataclasses.replace(prior_config, context=8), checkpoint_dir=tmp_path / "prior")


# -- the latent dimensions the VAE uses -----------------------------------------------------------


def test_a_mixtures_marginal_integrates_out_the_other_dimensions():
    gen = torch.Generator().manual_seed(2)
    mixture = TanhGaussianMixture(torch.randn(3, generator=gen), torch.randn(3, 2, generator=gen) * 0.5,
                                  torch.rand(3, 2, generator=gen) * 0.5 + 0.2)
    marginal = mixture.marginal([0])
    assert marginal.event_shape == (1,) and marginal.num_components == 3
    # p(z0) = integral of p(z0, z1) dz1, by the trapezoid rule on a fine grid of z1.
    z0 = torch.tensor([-0.6, 0.1, 0.7])
    grid = torch.linspace(-0.99999, 0.99999, 200_001)
    joint = mixture.log_prob(torch.stack([z0[:, None].expand(-1, len(grid)), grid.expand(3, -1)], -1)).exp()
    torch.testing.assert_close(marginal.log_prob(z0[:, None]), torch.trapezoid(joint, grid).log(), atol=2e-3, rtol=0)


def test_latent_kl_finds_the_used_dimensions_and_a_subspace_pads_and_projects(vae, data):
    train, _ = data
    kl = latent_kl(vae, train)
    assert kl.shape == (VAE_SMALL.latent_dim,) and (kl >= -1e-9).all()
    subspace = LatentSubspace.used(vae, train)
    assert list(subspace.dims) == np.flatnonzero(kl >= UNUSED_KL).tolist() and subspace.latent_dim == VAE_SMALL.latent_dim
    z = np.concatenate([vae.encode(e.observations).numpy() for e in train])
    np.testing.assert_allclose(subspace.fill, z.mean(0), atol=1e-5)
    # This small VAE leaves some dimensions unused; they barely move, so holding them at their mean loses little.
    unused = [d for d in range(subspace.latent_dim) if d not in subspace.dims]
    assert 0 < len(unused) < subspace.latent_dim
    assert z[:, unused].std(0).max() < 0.1 < z[:, list(subspace.dims)].std(0).max()
    small = np.full(subspace.dim, 0.5, np.float32)
    full = subspace.pad(small)
    assert full.shape == (subspace.latent_dim,) and full.dtype == np.float32
    np.testing.assert_array_equal(subspace.project(full), small)
    np.testing.assert_allclose(full[unused], np.asarray(subspace.fill)[unused], rtol=1e-6)
    batch = torch.zeros(2, 3, subspace.dim)
    assert subspace.pad(batch).shape == (2, 3, subspace.latent_dim)
    for dims in [(), (1, 0), (0, VAE_SMALL.latent_dim)]:
        with pytest.raises(LSPError, match="dims must be"):
            LatentSubspace(dims, subspace.fill)


def test_a_prior_seen_through_a_subspace(prior, vae, data):
    train, _ = data
    subspace = LatentSubspace((0, 3, 5), LatentSubspace.used(vae, train).fill)
    seen = SubspacePrior(prior, subspace)
    assert seen.latent_dim == 3 and seen.context == prior.context
    history = torch.rand(4, 5, 3) * 2 - 1
    lengths = torch.tensor([0, 2, 5, 3])
    full = prior.next_distribution(subspace.pad(history), lengths)
    mine = seen.next_distribution(history, lengths)
    z = torch.rand(6, 4, 3) * 1.8 - 0.9
    torch.testing.assert_close(mine.log_prob(z), full.marginal([0, 3, 5]).log_prob(z))
    samples = seen.sample(7, 4, history, torch.Generator().manual_seed(0), lengths=lengths)
    expected = prior.sample(7, 4, subspace.pad(history), torch.Generator().manual_seed(0), lengths=lengths)
    assert samples.shape == (4, 7, 3)
    torch.testing.assert_close(samples, expected[..., [0, 3, 5]])
    with pytest.raises(LSPError, match="does not fit a prior"):
        SubspacePrior(prior, LatentSubspace((0,), (0.0,) * 3))
