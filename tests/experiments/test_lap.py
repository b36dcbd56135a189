import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest

from latentprior.data import Dataset, DatasetError, Episode
from latentprior.envs.reference_residual import ReferenceResidual
from latentprior.envs.style_reward import JOINT_QPOS, StyleError
from latentprior.experiments.lap import (
    VARIANTS,
    LAPExperiment,
    decoder_reach,
    demonstration_actions,
    gait_of,
    lap_env_fn,
    load_demonstrations,
    measure_gait,
    observation_layout,
    plan_lap_experiment,
    replay_reference_cycle,
    run_lap_experiment,
)
from latentprior.io import ArtifactError, LatentPriorError, read_json
from latentprior.latent.action_prior import ActionPriorConfig, fit_action_prior
from latentprior.rl import load_policy


@pytest.fixture(scope="module")
def cheetah(shared_data):
    """The paper's HalfCheetah demonstration, and a prior fitted on it briefly."""
    path = shared_data / "latent_action_priors" / "HalfCheetah-v4.npy"
    dataset = load_demonstrations(path, allow_pickle=True)
    prior = fit_action_prior(demonstration_actions(dataset), ActionPriorConfig(latent_dim=3, epochs=20), env_id="HalfCheetah-v5")
    return path, dataset, prior


def experiment(path, **fields):
    return LAPExperiment(**{"env_id": "HalfCheetah-v5", "demonstration": str(path), "allow_pickle": True, **fields})


# variant -> (observation size, action size) on HalfCheetah-v5 (17-d observation, 6-d action) with k = 3
SPACES = {
    "ppo": (17, 6),
    "ppo+style": (19, 6),  # + (sin, cos) of the phase
    "ppo+latent": (17, 3 + 6),
    "ppo+latent+style": (19, 3 + 6),
    "ppo+latent-only": (17, 3),
    "ppo+resrl+style": (19, 6),
    "bc": (17, 6),
}


def test_every_variant_is_covered():
    assert set(SPACES) == set(VARIANTS)


@pytest.mark.parametrize("variant", list(SPACES))
def test_variant_builds_its_wrapper_stack(cheetah, variant):
    path, dataset, prior = cheetah
    plan = plan_lap_experiment(experiment(path, variant=variant), dataset)
    envs = lap_env_fn(plan, prior)(1, 0)
    assert (envs.single_observation_space.shape[0], envs.single_action_space.shape[0]) == SPACES[variant]
    env = envs.envs[0]
    styled = "style" in variant
    assert isinstance(env, ReferenceResidual) == (variant == "ppo+resrl+style")
    _, reward, _, _, info = envs.step(np.zeros((1, SPACES[variant][1]), dtype=np.float32))
    assert ("style_reward" in info) == styled
    envs.close()


def test_paper_defaults_resolve_by_robot(cheetah):
    path, dataset, _ = cheetah
    plan = plan_lap_experiment(experiment(path, variant="ppo+latent+style"), dataset)
    assert (plan.total_steps, plan.residual_weight) == (2_000_000, 0.1)
    # The importer records the gait cycle (5 steps); the reference starts at a recorded cycle start.
    assert plan.cycle.length == 5 and plan.cycle.start in dataset.metadata.extra["cycle_starts"]
    humanoid = plan_lap_experiment(LAPExperiment(env_id="Humanoid-v5", variant="ppo"))
    assert (humanoid.total_steps, humanoid.residual_weight, humanoid.dataset) == (5_000_000, 0.5, None)


@pytest.mark.parametrize("stem, env_id", [("HalfCheetah-v4", "HalfCheetah-v5"), ("Ant-v4", "Ant-v5"), ("Humanoid", "Humanoid-v5")])
def test_observation_layout_matches_the_simulator(shared_data, stem, env_id):
    dataset = load_demonstrations(shared_data / "latent_action_priors" / f"{stem}.npy", allow_pickle=True)
    env = gym.make(env_id, **dataset.metadata.env_kwargs)
    layout = observation_layout(env)
    env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(env.action_space.sample())
    data = env.unwrapped.data
    np.testing.assert_allclose(obs[layout.joints], data.qpos[JOINT_QPOS[env_id.split("-")[0]]])
    assert obs[layout.x_velocity] == pytest.approx(data.qvel[0])
    env.close()


def test_replaying_the_reference_cycle_measures_the_demonstrations_reward_level(cheetah):
    path, dataset, _ = cheetah
    plan = plan_lap_experiment(experiment(path, variant="ppo+style"), dataset)
    level = replay_reference_cycle(plan.cycle, "HalfCheetah-v5", episodes=2, env_kwargs={"max_episode_steps": 200})
    assert level["lengths"] == [200, 200] and level["mean"] == pytest.approx(np.mean(level["returns"]))
    # The paper's HalfCheetah demonstration is an open-loop oscillator: replayed, it runs forward.
    speed = dataset[0].observations[:, 8].mean()  # forward velocity, about 2.4 m/s
    assert level["mean"] > 0.5 * speed * 200, (level, speed)
    no_actions = dataclasses.replace(plan.cycle, actions=None)
    with pytest.raises(LatentPriorError, match="no actions"):
        replay_reference_cycle(no_actions, "HalfCheetah-v5")


def test_decoder_reach_replays_the_cycle_through_the_prior_and_bounds_its_actions(cheetah):
    path, dataset, _ = cheetah
    plan = plan_lap_experiment(experiment(path, variant="ppo+style"), dataset)
    cycle_actions = demonstration_actions(dataset)[plan.cycle.start : plan.cycle.start + plan.cycle.length]
    prior = fit_action_prior(cycle_actions, ActionPriorConfig(latent_dim=3, seed=0))  # the paper's 10,000 epochs, ~5 s
    kwargs = {"max_episode_steps": 200}
    reach = decoder_reach(prior, plan.cycle, "HalfCheetah-v5", episodes=2, env_kwargs=kwargs, grid=5)
    plain = replay_reference_cycle(plan.cycle, "HalfCheetah-v5", episodes=2, env_kwargs=kwargs)
    # A prior fitted on the cycle reproduces it: replayed through the decoder, the robot runs as the demonstration does.
    assert reach["reconstruction_max_abs"] < 0.05, reach
    assert reach["replay"]["mean"] == pytest.approx(plain["mean"], rel=0.25), (reach["replay"], plain)
    assert all(-1.2 < lo <= hi < 1.2 for lo, hi in zip(reach["reference_latents"]["min"], reach["reference_latents"]["max"]))
    assert len(reach["coverage"]["min"]) == 6 and all(-1 <= lo < hi <= 1 for lo, hi in zip(reach["coverage"]["min"], reach["coverage"]["max"]))
    with pytest.raises(LatentPriorError, match="no actions"):
        decoder_reach(prior, dataclasses.replace(plan.cycle, actions=None), "HalfCheetah-v5")


def test_transfer_task_tracks_a_multiple_of_the_demonstrations_speed(cheetah):
    path, dataset, _ = cheetah
    plan = plan_lap_experiment(experiment(path, variant="ppo+style", target_speed_factor=2.0), dataset)
    # obs[8] of HalfCheetah is the forward velocity; the expert runs at about 2.4 m/s.
    assert plan.demonstration_speed == pytest.approx(dataset[0].observations[:, 8].mean())
    assert plan.target_speed == pytest.approx(2 * plan.demonstration_speed) and plan.task_reward_normaliser == 1.0
    envs = lap_env_fn(plan)(1, 0)
    _, reward, _, _, info = envs.step(np.zeros((1, 6), dtype=np.float32))
    # The task reward is the tracking reward alone; PPO's reward shapes it with the style term.
    assert info["task_reward"][0] == pytest.approx(np.exp(-5 * abs(info["velocity"][0][0] - plan.target_speed)))
    assert reward[0] == pytest.approx(0.67 * info["task_reward"][0] + 0.33 * info["style_reward"][0])
    envs.close()


def test_bad_input_gives_clear_errors(cheetah, tmp_path):
    path, dataset, prior = cheetah
    with pytest.raises(LatentPriorError, match="unknown variant 'ppo\\+prior'; known variants: ppo, ppo\\+style"):
        LAPExperiment(variant="ppo+prior")
    with pytest.raises(LatentPriorError, match="no field.*speed_factor.*fields: env_id"):
        LAPExperiment.from_dict({"variant": "ppo", "speed_factor": 2.0})
    with pytest.raises(LatentPriorError, match="needs a demonstration"):
        plan_lap_experiment(LAPExperiment(variant="ppo+latent"))
    with pytest.raises(StyleError, match="gait cycle of 500 steps.*longer than the demonstration \\(124 steps\\)"):
        plan_lap_experiment(experiment(path, variant="ppo+style", cycle_length=500), dataset)
    states = Dataset([Episode(observations=dataset[0].observations)], dataset.metadata)
    with pytest.raises(DatasetError, match="no 'actions' field; variant 'ppo\\+latent' needs the expert's actions"):
        plan_lap_experiment(experiment(path, variant="ppo+latent"), states)
    ant = load_demonstrations(path.parent / "Ant-v4.npy", allow_pickle=True)
    ant_plan = plan_lap_experiment(LAPExperiment(env_id="Ant-v5", variant="ppo+latent", prior_data="demonstration"), ant)
    with pytest.raises(ArtifactError, match="decodes 6-d actions for HalfCheetah-v5.*8-d"):
        lap_env_fn(ant_plan, prior)(1, 0)


def test_ppo_latent_end_to_end_writes_result_json(cheetah, tmp_path):
    path, _, _ = cheetah
    exp = experiment(path, variant="ppo+latent", total_steps=2048, prior_epochs=100, eval_episodes=1,
                     ppo={"n_steps": 512, "eval_every": 1024, "eval_envs": 1})
    result = run_lap_experiment(exp, tmp_path, progress=False)
    assert read_json(tmp_path / "result.json") == json.loads(json.dumps(result))
    assert (result["variant"], result["env_id"], result["steps"]) == ("ppo+latent", "HalfCheetah-v5", 2048)
    assert result["curve"]["steps"][-1] == 2048 and np.isfinite(result["final_task_return_mean"])
    assert result["prior"]["action_dim"] == 6 and (tmp_path / "action_prior" / "report.md").is_file()
    # The saved experiment rebuilds it; rerunning continues (here: the run is complete) ...
    assert LAPExperiment.from_dict(read_json(tmp_path / "experiment.json")) == exp
    again = run_lap_experiment(exp, tmp_path, progress=False)
    assert again["curve"] == result["curve"]
    # The trained policy's gait is measured against the demonstration's, and kept.
    gait = measure_gait(tmp_path, episodes=1, skip=900)
    assert gait["demonstration"]["cycle_steps"] == 5 and gait["demonstration"]["frequency_hz"] == pytest.approx(4.0)
    assert np.isfinite(gait["policy"]["speed"]) and read_json(tmp_path / "gait.json") == gait
    assert gait["episode_lengths"] == [1000] and 0 < gait["executed_action"]["mean_abs"] <= gait["executed_action"]["max_abs"] <= 1
    # ... and another experiment in the same folder is refused.
    with pytest.raises(LatentPriorError, match="another experiment.*seed: 0 -> 1"):
        run_lap_experiment(dataclasses.replace(exp, seed=1), tmp_path, progress=False)


def test_gait_measures_frequency_stride_and_likeness_to_the_reference():
    dt, t = 0.05, np.arange(400)
    # Two joints in antiphase, 5 steps per cycle, as the reference.
    def joints(period, lag):
        return np.stack([np.sin(2 * np.pi * t / period), np.sin(2 * np.pi * (t / period - lag))], axis=1)
    reference = joints(5, 0.5)[:5]
    slower = gait_of(joints(8, 0.5), speed=2.0, dt=dt, reference=reference)
    assert (slower.cycle_steps, slower.frequency_hz) == (8, pytest.approx(2.5))
    assert slower.stride_m == pytest.approx(2.0 * 8 * dt) and slower.reference_similarity > 0.95
    # In phase instead of in antiphase: another gait at the same pace.
    other = gait_of(joints(5, 0.0), speed=2.0, dt=dt, reference=reference)
    assert other.cycle_steps == 5 and other.reference_similarity < 0.5
    # No periodic motion: no cycle, the speed still reported.
    still = gait_of(np.random.default_rng(0).normal(size=(400, 2)), speed=0.1, dt=dt, reference=reference)
    assert still.cycle_steps is None and still.speed == 0.1


def test_behaviour_cloning_run(cheetah, tmp_path):
    path, dataset, _ = cheetah
    result = run_lap_experiment(experiment(path, variant="bc", bc_epochs=30, eval_episodes=1), tmp_path, progress=False)
    assert result["steps"] == 0 and len(result["curve"]["steps"]) == 1
    assert np.isfinite(result["final_task_return_mean"])
    policy = load_policy(tmp_path / "run")
    assert policy.algo == "bc" and policy.act(dataset[0].observations[0]).shape == (6,)
