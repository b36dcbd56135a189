"""One-shot imitation: encode a reference, run the decoder closed loop in the reference's environment."""

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from latentprior.cli import main
from latentprior.data import Dataset, DatasetError, Episode, load_dataset
from latentprior.data.collect import collect
from latentprior.experiments.npmp import imitate, summarize_imitation
from latentprior.experts import MLPExpert
from latentprior.experts.commanded import COMMANDED_TASKS, Command, CommandedExpert, collect_skills
from latentprior.io import ArtifactError
from latentprior.latent.npmp import NPMP, NPMPConfig, NPMPError, fit_npmp
from latentprior.rl import Policy
from latentprior.rl.networks import SquashedGaussianActor

TINY = NPMPConfig(latent_dim=4, encoder_hidden=(32, 32), decoder_hidden=(32, 32), steps=60, batch_size=16,
                  subsequence_length=10, learning_rate=1e-3, log_interval=60)


@pytest.fixture(scope="module")
def cheetah(tmp_path_factory):
    """Noisy rollouts of a small random HalfCheetah expert, and a tiny module fitted on them."""
    tmp = tmp_path_factory.mktemp("imitate")
    env = gym.make("HalfCheetah-v5")
    torch.manual_seed(0)
    expert = MLPExpert(env.observation_space, env.action_space, hidden_sizes=(16,))
    result = collect(expert, "HalfCheetah-v5", episodes=4, noise_std=0.1, num_envs=4, max_episode_steps=30,
                     out=tmp / "demos.h5", progress=False)
    npmp = fit_npmp(load_dataset(result.path), TINY)
    npmp.save(tmp / "module")
    return tmp, load_dataset(result.path), npmp


def test_rollout_starts_in_the_reference_state_and_reports_returns(cheetah):
    _, reference, npmp = cheetah
    results = imitate(npmp, reference, episodes=2)
    assert [r.episode for r in results] == [0, 1]
    for r, episode in zip(results, reference):
        assert r.start == "reference" and r.skill is None
        np.testing.assert_allclose(r.observations[0], episode.observations[0], atol=1e-6)
        # 31 states encode into 31 - K latents, one closed-loop step each (HalfCheetah never falls).
        assert r.latents == 31 - npmp.lookahead and r.steps == r.latents and not r.terminated
        assert r.reference_return == pytest.approx(episode.rewards[: r.steps].sum())
        expected = r.episode_return / r.reference_return if r.reference_return > 0 else None
        assert r.relative_return == (pytest.approx(expected) if expected is not None else None)
        assert r.state_rmse >= 0 and r.action_mse is not None
    # The decoder acted closed loop: replaying its actions from the same state gives the same return.
    env = gym.make("HalfCheetah-v5")
    env.reset(seed=0)
    env.unwrapped.set_state(reference[0].qpos[0], reference[0].qvel[0])
    replay = sum(env.step(a)[1] for a in results[0].actions)
    assert replay == pytest.approx(results[0].episode_return)
    decoded = npmp.decoder_action(results[0].observations[:-1], npmp.encode(reference[0].observations)[: results[0].steps])
    np.testing.assert_allclose(results[0].actions, np.clip(decoded, -1, 1), atol=1e-5)
    summary = summarize_imitation(results)
    assert summary["episodes"] == 2 and summary["return_mean"] == pytest.approx(np.mean([r.episode_return for r in results]))


def test_without_simulator_states_the_rollout_starts_from_a_seeded_reset(cheetah):
    _, reference, npmp = cheetah
    states_only = Dataset([Episode(observations=e.observations) for e in reference], reference.metadata)
    first, again = imitate(npmp, states_only, episodes=1, seed=7), imitate(npmp, states_only, episodes=1, seed=7)
    assert first[0].start == "reset" and first[0].reference_return is None and first[0].relative_return is None
    np.testing.assert_array_equal(first[0].observations, again[0].observations)


def test_latent_optimisation_lowers_the_action_error(cheetah):
    _, reference, npmp = cheetah
    encoded = imitate(npmp, reference, episodes=1)[0]
    optimised = imitate(npmp, reference, episodes=1, optimize=True, optimize_steps=50)[0]
    assert optimised.action_mse < encoded.action_mse


def test_bad_input_is_a_clear_error(cheetah, tmp_path):
    _, reference, npmp = cheetah
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(0)
    pendulum = Dataset(
        [Episode(observations=rng.normal(size=(21, 3)).astype(np.float32), expert_actions=rng.uniform(-2, 2, (20, 1)).astype(np.float32))],
        dataclasses.replace(reference.metadata, env_id="Pendulum-v1", observation_space=env.observation_space, action_space=env.action_space),
    )
    other = fit_npmp(pendulum, dataclasses.replace(TINY, steps=2))
    with pytest.raises(ArtifactError, match="pendulum module: observation space has shape"):
        imitate(other, reference, episodes=1, module_source="pendulum module")
    short = Dataset([dataclasses.replace(reference[0], **{f: getattr(reference[0], f)[:4] for f in ("observations", "qpos", "qvel")},
                                         **{f: getattr(reference[0], f)[:3] for f in ("actions", "expert_actions", "rewards", "terminations", "truncations")})],
                    reference.metadata)
    with pytest.raises(NPMPError, match=r"episode 0 has 3 steps \(4 states\); one-shot imitation needs at least K \+ 1 = 6 states"):
        imitate(npmp, short)
    states_only = Dataset([Episode(observations=e.observations) for e in reference], reference.metadata)
    with pytest.raises(DatasetError, match="without expert actions for latent optimisation"):
        imitate(npmp, states_only, optimize=True)
    wrong_qpos = Dataset([dataclasses.replace(e, qpos=e.qpos[:, :5]) for e in reference], reference.metadata)
    with pytest.raises(NPMPError, match=r"episode 0 fields 'qpos'/'qvel' have rows of \(5,\)/\(9,\), the environment's simulator has nq = 9"):
        imitate(npmp, wrong_qpos)
    with pytest.raises(NPMPError, match="names no environment"):
        imitate(npmp, Dataset(reference.episodes, dataclasses.replace(reference.metadata, env_id=None)))


def test_skill_references_are_scored_under_their_own_task(cheetah, tmp_path):
    _, _, npmp = cheetah
    task = COMMANDED_TASKS["HalfCheetah-v5"]
    env = task.make_env()
    torch.manual_seed(1)
    actor = SquashedGaussianActor(20, env.action_space.low, env.action_space.high, hidden=(16,))
    commanded = CommandedExpert(Policy(actor, env.observation_space, env.action_space, algo="sac"), task)
    result = collect_skills(commanded, [Command(2.0), Command(-1.0)], episodes=1, max_episode_steps=12,
                            out=tmp_path / "skills.h5", progress=False)
    reference = load_dataset(result.path)
    results = imitate(npmp, reference)
    assert [r.skill for r in results] == ["heading0_speed2", "heading180_speed1"]
    for r, episode, command in zip(results, reference, (Command(2.0), Command(-1.0))):
        skill_env = task.make_env(command)
        skill_env.reset(seed=0)
        skill_env.unwrapped.set_state(episode.qpos[0], episode.qvel[0])
        assert sum(skill_env.step(a)[1] for a in r.actions) == pytest.approx(r.episode_return)
    assert set(summarize_imitation(results)["by_skill"]) == {"heading0_speed2", "heading180_speed1"}


def test_command_line_writes_the_summary_and_a_video(cheetah, tmp_path, capsys):
    directory, _, _ = cheetah
    out, video = tmp_path / "out", tmp_path / "imitation.mp4"
    args = ["imitate", str(directory / "module"), "--reference", str(directory / "demos.h5"), "--episodes", "1",
            "--out", str(out), "--video", str(video)]
    assert main(args) == 0
    report = json.loads((out / "imitation.json").read_text())
    assert report["episodes"] == 1 and report["env_id"] == "HalfCheetah-v5" and len(report["results"]) == 1
    assert report["results"][0]["start"] == "reference" and "return" in report["results"][0]
    assert video.stat().st_size > 1000
    assert "median relative return" in capsys.readouterr().out
    assert main(["imitate", str(directory / "module"), "--reference", str(directory / "demos.h5"), "--episodes", "0",
                 "--out", str(out)]) == 2
    assert "episodes must be >= 1" in capsys.readouterr().err
    loaded = NPMP.load(directory / "module")
    assert loaded.lookahead == TINY.lookahead
