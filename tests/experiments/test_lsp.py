import dataclasses
import json

import numpy as np
import pytest
import torch

from latentprior.cli import main
from latentprior.data import save_dataset
from latentprior.envs.reenactment import LowLevelConfig
from latentprior.experiments.low_level import fit_low_level_bc
from latentprior.experiments.lsp import (
    decoded_objective,
    reenact_motions,
    render_kinematic,
    run_lsp_experiment,
    run_sample,
    sample_motions,
)
from latentprior.io import ArtifactError, LatentPriorError
from latentprior.latent.lsp import LatentSubspace, LSPError, PriorConfig, VAEConfig, fit_prior, fit_vae
from latentprior.rl import SACConfig
from latentprior.rl.prior_integrations import INTEGRATIONS, LSPIntegrationConfig

ENV_ID = "HalfCheetah-v5"
# Episodes of 40 steps, so that evaluations are quick.
SHORT = {"max_episode_steps": 40}
TINY_SAC = SACConfig(
    total_steps=240, learning_starts=80, batch_size=32, hidden_sizes=(32, 32), eval_episodes=2, eval_envs=1, eval_every=0,
    log_every=80, checkpoint_every=0, tensorboard=False, device="cpu",
)
# The authors' knobs, scaled to a test: fewer and shorter planning candidates.
TINY_LSP = LSPIntegrationConfig(plan_rollouts=16, plan_horizon=8)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, lsp_data, lsp_vae, lsp_prior):
    """The shared VAE, a prior fitted on its latents (recording the VAE's path) and a low-level policy, saved."""
    root = tmp_path_factory.mktemp("lsp")
    dataset = lsp_data[0]
    lsp_vae.save(root / "vae")
    prior = dataclasses.replace(lsp_prior, vae_path=str(root / "vae"))
    prior.save(root / "prior")
    low_level = fit_low_level_bc(lsp_vae, dataset, LowLevelConfig(episode_steps=32), epochs=10, hidden_sizes=(32, 32))
    low_level.save(root / "low")
    return {"root": root, "dataset": dataset, "vae": lsp_vae, "prior": prior, "low_level": low_level}


def test_samples_are_latent_sequences_decoded_to_states(artifacts):
    motions = sample_motions(artifacts["prior"], artifacts["vae"], steps=20, samples=3, seed=1)
    assert motions.latents.shape == (3, 20, 4) and motions.states.shape == (3, 20, 17)
    assert np.abs(motions.latents).max() <= 1.0
    again = sample_motions(artifacts["prior"], artifacts["vae"], steps=20, samples=3, seed=1)
    np.testing.assert_array_equal(again.latents, motions.latents)
    assert not np.array_equal(sample_motions(artifacts["prior"], artifacts["vae"], 20, 3, seed=2).latents, motions.latents)


def test_kinematic_rendering_writes_an_mp4_frame_by_frame(artifacts, tmp_path):
    import imageio

    motions = sample_motions(artifacts["prior"], artifacts["vae"], steps=15, samples=2)
    path = render_kinematic(motions.states, ENV_ID, tmp_path / "kinematic.mp4")
    assert path.stat().st_size > 1000
    with imageio.get_reader(path) as reader:
        assert reader.count_frames() == 30
    assert not list(tmp_path.glob(".*tmp*"))


def test_kinematic_rendering_needs_qpos_in_the_states(tmp_path):
    with pytest.raises(LSPError, match="must contain the robot's joint positions; 5-d states of HalfCheetah-v5"):
        render_kinematic(np.zeros((4, 5)), ENV_ID, tmp_path / "k.mp4")
    with pytest.raises(LSPError, match="no known qpos layout"):
        render_kinematic(np.zeros((4, 3)), "Pendulum-v1", tmp_path / "k.mp4")
    assert not (tmp_path / "k.mp4").exists()


def test_sample_finds_the_vae_the_prior_records_and_writes_latents_and_video(artifacts, tmp_path):
    summary = run_sample(artifacts["root"] / "prior", steps=12, samples=2, video=tmp_path / "s.mp4", out=tmp_path / "s.npz")
    assert summary["video"] == str(tmp_path / "s.mp4") and (tmp_path / "s.mp4").stat().st_size > 1000
    with np.load(tmp_path / "s.npz") as saved:
        assert saved["latents"].shape == (2, 12, 4) and saved["states"].shape == (2, 12, 17)


def test_physical_reenactment_of_samples(artifacts, tmp_path):
    summary = run_sample(
        artifacts["root"] / "prior", artifacts["root"] / "vae", steps=16, samples=2, video=tmp_path / "s.mp4",
        physical=True, low_level_dir=artifacts["root"] / "low",
    )
    assert (tmp_path / "s-physical.mp4").stat().st_size > 1000 and summary["physical_video"] == str(tmp_path / "s-physical.mp4")
    report = summary["reenactment"]
    assert report["references"] == 2 and report["frames"] == 2 * (16 - 1 - 6)
    assert 1 <= report["reenacted_frames"] <= report["frames"]

    motions = sample_motions(artifacts["prior"], artifacts["vae"], steps=7, samples=1)
    with pytest.raises(LSPError, match="too short to reenact.*at least 8 steps"):
        reenact_motions(artifacts["low_level"], artifacts["vae"], motions)
    with pytest.raises(LSPError, match="--low-level"):
        run_sample(artifacts["root"] / "prior", physical=True)


def test_a_prior_for_another_latent_size_than_the_vae_is_a_clear_error(artifacts, tmp_path):
    other = fit_vae(artifacts["dataset"], VAEConfig(**{**vars(artifacts["vae"].config), "latent_dim": 3, "steps": 2}))
    other.save(tmp_path / "other_vae")
    with pytest.raises(ArtifactError, match=r"prior: the prior models 4-d latents, but the VAE encodes 3-d latents"):
        run_sample(artifacts["root"] / "prior", tmp_path / "other_vae", steps=4)


def test_command_line_sample_after_fit_prior(artifacts, tmp_path, capsys):
    save_dataset(artifacts["dataset"], tmp_path / "demos.h5")
    small = ["width=32", "depth=1", "heads=2", "context=16", "mixture_components=2", "batch_size=8", "steps=5", "log_interval=5"]
    fit = ["fit", "prior", "--vae", str(artifacts["root"] / "vae"), "--data", str(tmp_path / "demos.h5"), "--out", str(tmp_path / "prior")]
    assert main([*fit, *(a for pair in small for a in ("--set", pair)), "--quiet"]) == 0
    prior = str(tmp_path / "prior")  # records its VAE, so sampling needs no --vae
    assert main(["sample", prior, "--steps", "10", "--samples", "1", "--out", str(tmp_path / "s.npz")]) == 0
    assert "sampled 1 x 10 latents (4-d), decoded to 17-d states" in capsys.readouterr().out
    assert main(["sample", prior, "--physical"]) == 2
    assert "--low-level" in capsys.readouterr().err


# -- high-level SAC with the prior integrated ---------------------------------------------------------


def lsp_run(artifacts, integration, run_dir, config=TINY_LSP, **kwargs):
    a = artifacts
    return run_lsp_experiment(ENV_ID, a["vae"], a["prior"], a["low_level"], integration, config, TINY_SAC, run_dir,
                              env_kwargs=SHORT, progress=False, **kwargs)


@pytest.mark.parametrize("integration", list(INTEGRATIONS))
def test_each_integration_trains_high_level_sac_end_to_end(artifacts, integration, tmp_path):
    result = lsp_run(artifacts, integration, tmp_path / "run")
    metrics = result["metrics"]
    assert result["integration"] == integration and result["steps"] == 240
    assert metrics["train/n_updates"] == 160 and np.isfinite(metrics["eval/return_mean"])
    assert json.loads((tmp_path / "run" / "result.json").read_text())["integration"] == integration
    hooks = json.loads((tmp_path / "run" / "config.json").read_text())["hooks"]
    # Each high-level step of an option runs option_length = 2 environment steps: 40-step episodes last 20.
    assert metrics["eval/length_mean"] == (20 if integration == "options" else 40)
    if integration == "explore":
        assert "PriorExplore" in hooks["explore"]
        assert 0.1 < result["explore_fraction"] < 1.0  # the warm-up, episode starts and p = 0.1 follow the prior
    if integration == "regularize":
        assert "PriorRegularizer" in hooks["actor_regularizer"]
        assert np.isfinite(metrics["train/prior_kl"]) and metrics["train/prior_weight"] == pytest.approx(0.01, rel=1e-3)
    if integration == "plan":
        assert "LatentPlanner" in hooks["explore"] and "score=critic" in hooks["explore"]
        assert np.isfinite(result["planner"]["planner/return_mean"]) and result["planner"]["planner/length_mean"] == 40


def test_plan_scores_decoded_candidates_with_a_task_objective(artifacts, tmp_path):
    seen = []

    def forward_speed(obs, states):  # HalfCheetah's decoded x-velocity, averaged over the candidate
        seen.append(states.shape)
        return states[..., 8].mean(-1)

    config = dataclasses.replace(TINY_LSP, plan_horizon=12)
    result = lsp_run(artifacts, "plan", tmp_path / "run", config, objective=forward_speed)
    assert seen[0] == (1, 16, 12, 17) and np.isfinite(result["planner"]["planner/return_mean"])
    score = decoded_objective(artifacts["vae"], forward_speed)
    candidates = torch.rand(2, 3, 12, 4) * 2 - 1
    expected = artifacts["vae"].decode(candidates.reshape(6, 12, 4))[..., 8].mean(-1).view(2, 3)
    torch.testing.assert_close(score(torch.zeros(2, 22), candidates), expected)
    with pytest.raises(LSPError, match="does not plan"):
        lsp_run(artifacts, "explore", tmp_path / "other", objective=forward_speed)


@pytest.mark.parametrize("integration", ["explore", "regularize", "options", "plan"])
def test_each_integration_acts_in_a_latent_subspace(artifacts, integration, tmp_path):
    subspace = LatentSubspace((0, 2), LatentSubspace.used(artifacts["vae"], artifacts["dataset"]).fill)
    objective = (lambda obs, states: states[..., 8].mean(-1)) if integration == "plan" else None
    result = lsp_run(artifacts, integration, tmp_path / "run", subspace=subspace, objective=objective)
    assert result["subspace"]["dims"] == [0, 2] and np.isfinite(result["metrics"]["eval/return_mean"])
    assert result["metrics"]["train/n_updates"] == 160
    assert result["run_dir"] == str(tmp_path / "run")
    if integration == "regularize":
        assert np.isfinite(result["metrics"]["train/prior_kl"])
    # The run's high level acts in 2 dimensions; continuing it in all 4 is refused before anything runs.
    with pytest.raises(LSPError, match=r"acted in latent dimensions \[0, 2\], this call in all latent dimensions"):
        lsp_run(artifacts, integration, tmp_path / "run", objective=objective)


def test_unknown_integrations_and_mismatched_artifacts_are_clear_errors(artifacts, tmp_path):
    with pytest.raises(LatentPriorError, match="unknown prior integration 'explor'; valid names: none, explore, regularize, options, plan"):
        lsp_run(artifacts, "explor", tmp_path / "run")
    other = fit_vae(artifacts["dataset"], VAEConfig(**{**vars(artifacts["vae"].config), "latent_dim": 3, "steps": 2}))
    wrong_size = fit_prior(other, artifacts["dataset"], dataclasses.replace(artifacts["prior"].config, steps=2))
    with pytest.raises(ArtifactError, match="the prior models 3-d latents, but the VAE encodes 4-d latents"):
        run_lsp_experiment(ENV_ID, artifacts["vae"], wrong_size, artifacts["low_level"], "explore", run_dir=tmp_path / "run")
    with pytest.raises(LatentPriorError, match="context is 32 latents, but the prior conditions on at most 16"):
        lsp_run(artifacts, "regularize", tmp_path / "run", LSPIntegrationConfig(context=32))


def test_command_line_lsp(artifacts, tmp_path, capsys):
    root = artifacts["root"]
    assert main(["lsp", "--list-integrations"]) == 0
    assert "regularize" in capsys.readouterr().out
    argv = ["lsp", "--prior", str(root / "prior"), "--low-level", str(root / "low"), "--out", str(tmp_path / "run"),
            "--steps", "120", "--device", "cpu", "--quiet", "--set", "learning_starts=60", "--set", "batch_size=16",
            "--set", "hidden_sizes=16,16", "--set", "eval_episodes=0", "--set", "tensorboard=false"]
    assert main([*argv, "--integration", "regularize", "--set", "regularize_weight=0.1"]) == 0
    assert "regularize on HalfCheetah-v5: no evaluation after 120 steps" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["config"]["regularize_weight"] == 0.1 and saved["metrics"]["train/prior_weight"] > 0.09
    assert main([*argv[:6], str(tmp_path / "kwargs"), *argv[7:], "--env-kwarg", "ctrl_cost_weight=0.5"]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "kwargs" / "result.json").read_text())["env_kwargs"]["ctrl_cost_weight"] == 0.5
    save_dataset(artifacts["dataset"], tmp_path / "demos.h5")
    assert main([*argv[:6], str(tmp_path / "used"), *argv[7:], "--used-dims", str(tmp_path / "demos.h5")]) == 0
    out = capsys.readouterr().out
    assert "latent dimensions the VAE uses on" in out
    used = json.loads((tmp_path / "used" / "result.json").read_text())["subspace"]
    assert f"acting in the {len(used['dims'])} of 4" in out
    assert main([*argv, "--integration", "nope"]) == 2
    assert "valid names: none, explore, regularize, options, plan" in capsys.readouterr().err
    assert main([*argv, "--set", "nonsense=1"]) == 2
    assert "nonsense" in capsys.readouterr().err
