import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from latentprior.data import Dataset, DatasetError, DatasetMetadata, Episode
from latentprior.io import ArtifactError
from latentprior.latent.npmp import (
    NPMP,
    LinearFeedbackPolicy,
    NPMPConfig,
    NPMPError,
    ar1_prior,
    estimate_perturbation_std,
    fit_npmp,
    gaussian_kl,
    linear_feedback_targets,
    StudentConfig,
    fit_student,
    optimize_latents,
    sample_prior,
)

# A point mass in the plane, state [p (2), v (2)], pushed by actions in [-1, 1]; the expert is a
# smooth nonlinear feedback controller that drives it onto a circular orbit of radius 1.
DT, GAIN = 0.1, 2.0
META = DatasetMetadata(
    observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
    action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
)
SMALL = dict(
    latent_dim=8,
    encoder_hidden=(64, 64),
    decoder_hidden=(64, 64, 64),
    learning_rate=1e-3,
    subsequence_length=10,
    log_interval=200,
)


def expert_mu(s: torch.Tensor) -> torch.Tensor:
    p, v = s[..., :2], s[..., 2:]
    tangent = torch.stack([-p[..., 1], p[..., 0]], -1)
    desired_velocity = tangent + (1.0 - (p**2).sum(-1, keepdim=True)) * p
    return torch.tanh(2.0 * (desired_velocity - v))


def expert_jacobian(states: np.ndarray) -> np.ndarray:
    s = torch.as_tensor(states, dtype=torch.float64)
    return torch.func.vmap(torch.func.jacrev(expert_mu))(s).numpy()


def rollout(steps: int, noise: float, rng: np.random.Generator) -> Episode:
    s = np.array([1.0, 0.0, 0.0, 1.0])
    states, executed, means = [s], [], []
    for _ in range(steps):
        mean = expert_mu(torch.as_tensor(s)).numpy()
        action = np.clip(mean + noise * rng.standard_normal(2), -1.0, 1.0)
        v = s[2:] + DT * GAIN * action
        s = np.concatenate([s[:2] + DT * v, v])
        states.append(s), executed.append(action), means.append(mean)
    states = np.array(states, np.float32)
    return Episode(
        observations=states,
        actions=np.array(executed, np.float32),
        expert_actions=np.array(means, np.float32),
        jacobians=expert_jacobian(states[:-1]).astype(np.float32),
    )


def rollouts(episodes: int, steps: int, noise: float, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset([rollout(steps, noise, rng) for _ in range(episodes)], META)


def without(dataset: Dataset, field: str) -> Dataset:
    return Dataset([dataclasses.replace(e, **{field: None}) for e in dataset], dataset.metadata)


@pytest.fixture(scope="module")
def noisy_data() -> tuple[Dataset, Dataset]:
    return rollouts(8, 60, 0.2, seed=0), rollouts(3, 60, 0.2, seed=1)


@pytest.fixture(scope="module")
def fitted(noisy_data) -> NPMP:
    train, held_out = noisy_data
    return fit_npmp(train, NPMPConfig(steps=600, batch_size=32, **SMALL), held_out=held_out)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.95, 0.99])
def test_ar1_prior_keeps_unit_variance_for_any_alpha(alpha):
    z = sample_prior(200, 3, alpha, batch=4000, generator=torch.Generator().manual_seed(0))
    for t in (0, 1, 50, 199):
        assert abs(z[:, t].var().item() - 1.0) < 0.08
    lag_one = (z[:, 100] * z[:, 101]).mean().item()
    assert abs(lag_one - alpha) < 0.05
    assert ar1_prior(torch.zeros(3), alpha)[1][0].item() == pytest.approx(np.sqrt(1 - alpha**2))


def test_kl_is_zero_when_posterior_equals_prior_and_matches_torch():
    z_prev = torch.randn(5, 4)
    mean, std = ar1_prior(z_prev, 0.95)
    torch.testing.assert_close(gaussian_kl(mean, std, mean, std), torch.zeros(5))
    mean_q, std_q = torch.randn(5, 4), torch.rand(5, 4) + 0.1
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean_q, std_q), torch.distributions.Normal(mean, std)
    ).sum(-1)
    torch.testing.assert_close(gaussian_kl(mean_q, std_q, mean, std), expected)
    assert (gaussian_kl(mean_q, std_q, mean, std) > 0).all()


def test_fitted_npmp_reconstructs_expert_actions(fitted, noisy_data):
    train, held_out = noisy_data
    action_var = train.concat("expert_actions").var(0).mean()
    assert fitted.held_out_mse < 0.05 * action_var
    assert fitted.history["step"] == [200, 400, 600]
    assert fitted.history["loss"][-1] < fitted.history["loss"][0]
    assert len(fitted.history["kl"]) == len(fitted.history["held_out_mse"]) == 3
    episode = held_out[0]
    z = fitted.encode(episode.observations)
    assert z.shape == (episode.num_steps + 1 - fitted.lookahead, fitted.latent_dim)
    actions = fitted.decoder_action(episode.observations[: len(z)], z)
    assert np.mean((actions - episode.expert_actions[: len(z)]) ** 2) < 0.05 * action_var


def test_linear_feedback_targets_are_the_expert_to_first_order():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(16, 4))
    nominal = expert_mu(torch.as_tensor(states)).numpy()
    jacobians = expert_jacobian(states)
    direction = rng.normal(size=(16, 4))
    errors = []
    for eps in (1e-1, 1e-2, 1e-3):
        ds = eps * direction
        truth = expert_mu(torch.as_tensor(states + ds)).numpy()
        errors.append(np.abs(linear_feedback_targets(nominal, jacobians, ds) - truth).max())
    # Second-order remainder: ten times smaller perturbations, a hundred times smaller error.
    assert 60 < errors[0] / errors[1] < 160 and 60 < errors[1] / errors[2] < 160

    policy = LinearFeedbackPolicy(states, nominal, jacobians)
    np.testing.assert_allclose(policy(states[3], 3), nominal[3], rtol=1e-6)
    ds = 1e-2 * direction
    np.testing.assert_allclose(
        policy(states + ds, np.arange(16)), linear_feedback_targets(nominal, jacobians, ds), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(NPMPError, match="outside the nominal"):
        policy(states[0], 16)
    # State-indexed: near s*_5 it corrects around step 5, whatever the clock says.
    np.testing.assert_allclose(policy(states[5] + ds[5]), policy(states[5] + ds[5], 5), rtol=1e-6)
    np.testing.assert_array_equal(policy.nearest_step(states[[2, 9]]), [2, 9])


def test_estimate_perturbation_std_recovers_known_noise():
    nominal = np.zeros((201, 3))
    noisy = [np.random.default_rng(i).normal(scale=[0.1, 0.2, 0.0], size=(201, 3)) for i in range(5)]
    np.testing.assert_allclose(estimate_perturbation_std(nominal, noisy), [0.1, 0.2, 0.0], atol=0.01)


def test_lfpc_from_one_rollout_generalises_better_than_bc():
    nominal = rollouts(1, 100, 0.0, seed=0)
    noisy = rollouts(8, 100, 0.3, seed=1)
    std = estimate_perturbation_std(nominal[0].observations, [e.observations for e in noisy])
    config = NPMPConfig(steps=600, batch_size=40, lfpc_subsequences=8, lfpc_copies=5, **SMALL)
    bc = fit_npmp(nominal, config, held_out=noisy)
    lfpc = fit_npmp(nominal, dataclasses.replace(config, lfpc_perturbation_std=tuple(std)), lfpc=True, held_out=noisy)
    # On states that noisy actions reach, BC from the nominal states alone has never seen the
    # expert correct a deviation; LFPC learnt the correction from the Jacobians.
    assert lfpc.held_out_mse < 0.6 * bc.held_out_mse
    assert lfpc.lfpc and not bc.lfpc


def test_lfpc_student_from_one_rollout_matches_the_expert_where_bc_from_it_cannot():
    nominal = rollouts(1, 100, 0.0, seed=0)
    noisy = rollouts(4, 100, 0.3, seed=1)
    std = estimate_perturbation_std(nominal[0].observations, [e.observations for e in noisy])
    config = StudentConfig(hidden=(64, 64), learning_rate=1e-3, batch_size=128, steps=800, perturbation_std=tuple(std))
    bc = fit_student(nominal, config)
    lfpc = fit_student(nominal, config, lfpc=True)
    states = np.concatenate([e.observations[:-1] for e in noisy])
    truth = noisy.concat("expert_actions")

    def error(student):
        return float(np.mean((student.mean_action(states) - truth) ** 2))

    assert error(lfpc) < 0.6 * error(bc)
    assert lfpc.history["mse"][-1] < 0.3 * lfpc.history["mse"][0]


def test_lfpc_targets_are_clipped_to_the_action_bounds():
    nominal = rollouts(1, 50, 0.0, seed=0)
    # Perturbations this large push a*_t + J_t ds far past the [-1, 1] bounds.
    config = StudentConfig(hidden=(32,), learning_rate=1e-2, batch_size=256, steps=300, perturbation_std=(3.0,) * 4)
    clipped = fit_student(nominal, config, lfpc=True)
    unclipped = fit_student(nominal, dataclasses.replace(config, clip_targets=False), lfpc=True)
    # The regression onto clipped targets has a bounded error; onto unclipped ones it does not.
    assert clipped.history["mse"][-1] < 1.0 < unclipped.history["mse"][-1]


def test_latent_optimisation_lowers_the_action_error(fitted):
    # A reference the encoder has not seen: noisier than the training rollouts.
    episode = rollouts(1, 60, 0.4, seed=7)[0]
    z0 = fitted.encode(episode.observations)
    n = len(z0)
    target = episode.expert_actions[:n]

    def error(z):
        return np.mean((fitted.decoder_action(episode.observations[:n], z) - target) ** 2)

    z = optimize_latents(fitted, episode.observations, episode.expert_actions, steps=200, lr=3e-2)
    assert z.shape == z0.shape
    assert error(z) < 0.5 * error(z0)


def test_save_load_round_trip(fitted, noisy_data, tmp_path):
    fitted.save(tmp_path / "npmp")
    loaded = NPMP.load(tmp_path / "npmp", (META.observation_space, META.action_space))
    states = noisy_data[1][0].observations
    np.testing.assert_array_equal(loaded.encode(states), fitted.encode(states))
    z = np.random.default_rng(0).normal(size=(len(states), fitted.latent_dim)).astype(np.float32)
    np.testing.assert_array_equal(loaded.decoder_action(states, z), fitted.decoder_action(states, z))
    assert loaded.config == fitted.config
    assert loaded.history == fitted.history and loaded.held_out_mse == fitted.held_out_mse


def test_bad_input_is_a_clear_error(fitted, noisy_data, tmp_path):
    train, _ = noisy_data
    tiny = NPMPConfig(steps=1, **SMALL)
    with pytest.raises(DatasetError, match="without expert actions for BC"):
        fit_npmp(without(train, "expert_actions"), tiny)
    with pytest.raises(DatasetError, match="LFPC needs the expert's Jacobians"):
        fit_npmp(without(train, "jacobians"), tiny, lfpc=True)
    with pytest.raises(DatasetError, match="too short"):
        fit_npmp(rollouts(1, 8, 0.0, seed=0), tiny)
    with pytest.raises(NPMPError, match=r"needs at least K \+ 1 = 6"):
        fitted.encode(train[0].observations[:5])
    with pytest.raises(NPMPError, match="alpha"):
        NPMPConfig(alpha=1.0)
    fitted.save(tmp_path / "npmp")
    with pytest.raises(ArtifactError, match=r"observation space has shape \(4,\), environment has \(3,\)"):
        NPMP.load(tmp_path / "npmp", gym.make("Pendulum-v1"))
    with pytest.raises(ArtifactError, match="action space"):
        NPMP.load(tmp_path / "npmp", (None, gym.spaces.Box(-1.0, 1.0, (3,), np.float32)))


def test_an_interrupted_fit_resumes_from_its_checkpoint_to_the_same_module(noisy_data, tmp_path):
    train, _ = noisy_data
    config = NPMPConfig(**{**SMALL, "steps": 40, "batch_size": 16, "log_interval": 10})
    whole = fit_npmp(train, config)
    # Stopped after 20 steps (its last checkpoint), then run again to 40: the same weights as one fit.
    fit_npmp(train, dataclasses.replace(config, steps=20), checkpoint_dir=tmp_path, checkpoint_every=10)
    resumed = fit_npmp(train, config, checkpoint_dir=tmp_path, checkpoint_every=10)
    for (name, a), b in zip(whole.network.state_dict().items(), resumed.network.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.history["step"] == whole.history["step"] and resumed.history["loss"] == whole.history["loss"]
    # A checkpoint of another fit is refused, naming what differs.
    with pytest.raises(ArtifactError, match="another fit.*beta: 0.1 -> 0.01"):
        fit_npmp(train, dataclasses.replace(config, beta=0.01), checkpoint_dir=tmp_path)
