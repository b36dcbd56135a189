"""Bipedal Skills behind Gymnasium: the new step API, seeding, the observation layout, sparse rewards, falls,
and simulator states set from the proprioception (reenactment, kinematic rendering)."""

import importlib.util
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from latentprior.data import Dataset, DatasetMetadata, Episode
from latentprior.data.collect import sim_state
from latentprior.envs.bipedal_skills import (
    PROPRIOCEPTION,
    ROBOTS,
    TASKS,
    BipedalSkills,
    bipedal_skills_id,
    make_bipedal_skills,
)
from latentprior.envs.extras import TaskError
from latentprior.envs.latent_space import LatentSpaceWrapper
from latentprior.envs.make import make_vec_env
from latentprior.envs.reenactment import LowLevelConfig, ReenactmentEnv, StateLayout, Tracking, encode_references
from latentprior.latent.lsp import VAEConfig, default_state_groups, fit_vae

needs_bisk = pytest.mark.skipif(
    importlib.util.find_spec("bisk") is None,
    reason="Bipedal Skills needs bipedal-skills: pip install 'latentprior[bipedal]'",
)


@needs_bisk
@pytest.mark.filterwarnings("ignore:.*infinity")
@pytest.mark.parametrize("task, robot", [("Gaps", "Walker"), ("GoToTargets", "HalfCheetah")])
def test_passes_gymnasiums_environment_checker(task, robot):
    env = BipedalSkills(task, robot)
    check_env(env, skip_render_check=True)
    env.close()


@needs_bisk
@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("task", TASKS)
def test_every_task_steps_with_the_new_api_and_is_truncated_at_its_time_limit(task, robot):
    env = make_bipedal_skills(task, robot, max_episode_steps=5, allow_fallover=True)
    assert env.spec.id == bipedal_skills_id(task, robot)
    obs, info = env.reset()  # no seed: the benchmark itself needs one, the adapter draws it
    assert env.observation_space.contains(obs) and isinstance(info, dict)
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and isinstance(reward, float)
        assert isinstance(terminated, bool) and isinstance(truncated, bool) and "x_velocity" in info
    assert truncated and not terminated
    env.close()


@needs_bisk
def test_proprioception_is_joint_positions_without_root_x_then_velocities():
    env = BipedalSkills("GoToTargets", "Walker")
    obs, _ = env.reset(seed=0)
    names = env.observation_names
    assert names[PROPRIOCEPTION] == (
        "rootz:p", "rooty:p", "right_hip:p", "right_knee:p", "right_ankle:p", "left_hip:p", "left_knee:p", "left_ankle:p",
        "rootz:v", "rootx:v", "rooty:v", "right_hip:v", "right_knee:v", "right_ankle:v", "left_hip:v", "left_knee:v",
        "left_ankle:v",
    )
    assert "rootx:p" not in names and names[59:] == ("targets[0]", "targets[1]") and len(obs) == 61
    data = env.bisk.p.data  # the Walker's qpos is (rootz, rootx, rooty, legs)
    np.testing.assert_allclose(obs[PROPRIOCEPTION], np.concatenate([data.qpos[[0, 2, 3, 4, 5, 6, 7, 8]], data.qvel]), rtol=1e-6)
    assert np.all(np.abs(obs[17:59]) <= 1.0)
    np.testing.assert_allclose(obs[59:], env.bisk.goals[:, 0] - env.bisk.robot_pos[0], rtol=1e-5)
    cheetah = BipedalSkills("Hurdles", "HalfCheetah")
    assert cheetah.observation_names[:2] == ("rootz:p", "rooty:p") and cheetah.observation_names[59:] == (
        "next_hurdle[0]", "next_hurdle[1]", "next_hurdle[2]")
    env.close()
    cheetah.close()


@needs_bisk
def test_a_seed_repeats_its_instance_and_distinct_seeds_give_distinct_ones():
    env = BipedalSkills("Hurdles", "Walker")
    first = [env.reset(seed=seed)[0][59:] for seed in range(5)]
    assert len({tuple(f) for f in first}) == 5
    np.testing.assert_array_equal(env.reset(seed=3)[0], env.reset(seed=3)[0])
    env.close()


@needs_bisk
def test_the_sparse_reward_fires_when_the_torso_reaches_the_target():
    env = BipedalSkills("GoToTargets", "Walker")
    env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros(6))
    assert reward == 0.0
    env.bisk.p.data.qpos[1] = env.bisk.goals[0, 0]  # root x onto the target
    _, reward, terminated, _, info = env.step(np.zeros(6))
    assert reward == 1.0 and info["score"] == 1 and not terminated
    env.close()


def _tipped_over(env):
    env.reset(seed=0)
    env.bisk.p.data.qpos[2] = 1.5  # the Walker's pitch: beyond the benchmark's 1.4 rad fall limit
    return env.step(np.zeros(6))


@needs_bisk
def test_falls_end_gaps_as_the_benchmark_does_unless_allowed():
    _, reward, terminated, _, info = _tipped_over(BipedalSkills("Gaps", "Walker"))
    assert terminated and reward == -1.0 and info["fell_over"]
    _, _, terminated, _, _ = _tipped_over(BipedalSkills("Gaps", "Walker", allow_fallover=True))
    assert not terminated
    _, _, terminated, _, _ = _tipped_over(BipedalSkills("Hurdles", "Walker"))
    assert not terminated
    _, reward, terminated, _, _ = _tipped_over(BipedalSkills("Hurdles", "Walker", allow_fallover=False))
    assert terminated and reward == -1.0


@needs_bisk
def test_vector_env_seeds_each_instance():
    envs = make_vec_env(bipedal_skills_id("Hurdles", "Walker"), num_envs=2, seed=0)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 62) and not np.allclose(obs[0, 59:], obs[1, 59:])
    envs.step(np.zeros((2, 6), np.float32))
    envs.close()


class _ZeroLowLevel:
    """A low-level policy of a Bipedal Skills robot that records what it is shown."""

    latent_dim = 4

    def __init__(self, env):
        space = env.observation_space
        self.proprioception_space = type(space)(space.low[PROPRIOCEPTION], space.high[PROPRIOCEPTION], dtype=space.dtype)
        self.action_space, self.seen = env.action_space, []

    def act(self, proprioception, targets, deterministic=True):
        self.seen.append(proprioception)
        return np.zeros(6, np.float32)


@needs_bisk
def test_a_low_level_policy_runs_on_the_proprioception_slice():
    task = BipedalSkills("Stairs", "HalfCheetah")
    low_level = _ZeroLowLevel(task)
    env = LatentSpaceWrapper(task, low_level, proprioception=PROPRIOCEPTION)
    obs, _ = env.reset(seed=0)
    env.step(np.zeros(4))
    np.testing.assert_array_equal(low_level.seen[0], obs[PROPRIOCEPTION])
    env.close()


def _rollout(env, seed: int, steps: int) -> Episode:
    """Random actions from a seeded reset: the observations (all of them) and the actions."""
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    observations, actions = [obs], []
    for _ in range(steps):
        actions.append(env.action_space.sample())
        observations.append(env.step(actions[-1])[0])
    return Episode(observations=np.array(observations), actions=np.array(actions))


def test_the_proprioception_is_positions_then_velocities_for_every_robot():
    for robot in ROBOTS:
        assert default_state_groups(bipedal_skills_id("Gaps", robot), 17) == {"positions": slice(0, 8), "velocities": slice(8, 17)}
        assert default_state_groups(bipedal_skills_id("Gaps", robot), 61) == {}  # the whole observation is no state
        # A task registered elsewhere around the same robot (the benchmark's proprioception-only one).
        assert default_state_groups(f"latentprior_benchmark/BiskProprioception{robot}-v0", 17)["velocities"] == slice(8, 17)


@needs_bisk
@pytest.mark.parametrize("robot, omitted", [("Walker", 1), ("HalfCheetah", 0)])
def test_a_state_set_from_the_proprioception_is_observed_back_with_the_root_x_at_zero(robot, omitted):
    env = gym.make(bipedal_skills_id("VelocityControl", robot), allow_fallover=True)
    recorded = _rollout(env, seed=0, steps=20).observations[-1]
    moved = env.unwrapped.bisk.p.data.qpos.copy()
    layout = StateLayout.of(env, 17)
    assert layout.omitted_qpos == (omitted,) and layout.dt == env.unwrapped.dt == 1 / env.metadata["render_fps"]
    assert env.unwrapped.qpos_names[omitted] == "rootx:p"

    env.reset(seed=1)
    qpos, qvel = (a[0] for a in layout.sim_states(recorded[None, PROPRIOCEPTION]))
    env.unwrapped.set_state(qpos, qvel)
    observed = env.unwrapped._get_obs()
    np.testing.assert_array_equal(observed[PROPRIOCEPTION], recorded[PROPRIOCEPTION])
    data = env.unwrapped.bisk.p.data
    assert data.qpos[omitted] == 0.0
    np.testing.assert_allclose(np.delete(data.qpos, omitted), np.delete(moved, omitted), rtol=1e-6)
    with pytest.raises(TaskError, match=r"set_state takes 9 joint positions \(.*rootx:p.*\) and 9 velocities"):
        env.unwrapped.set_state(qpos[1:], qvel)
    env.close()


@needs_bisk
def test_datasets_record_the_robots_joint_state_and_it_sets_the_robot_back():
    env = gym.make(bipedal_skills_id("VelocityControl", "Walker"), allow_fallover=True)
    recorded = _rollout(env, seed=0, steps=15).observations[-1]
    qpos, qvel = sim_state(env)  # what data collection records
    assert qpos.shape == qvel.shape == (9,) and qpos[1] != 0.0  # the root's x, which the observation leaves out
    env.reset(seed=3)
    env.unwrapped.set_state(qpos, qvel)
    np.testing.assert_array_equal(env.unwrapped._get_obs()[PROPRIOCEPTION], recorded[PROPRIOCEPTION])
    np.testing.assert_array_equal(env.unwrapped.sim_state()[0], qpos)
    env.close()


@needs_bisk
def test_a_walker_reenacts_a_reference_of_its_proprioception():
    env_id = bipedal_skills_id("VelocityControl", "Walker")
    env = gym.make(env_id, allow_fallover=True)
    episodes = [_rollout(env, seed, steps=40) for seed in range(2)]
    space = env.observation_space
    env.close()
    proprioception = [Episode(observations=e.observations[:, PROPRIOCEPTION], actions=e.actions) for e in episodes]
    metadata = DatasetMetadata(
        env_id=env_id, env_kwargs={"allow_fallover": True},
        observation_space=gym.spaces.Box(space.low[PROPRIOCEPTION], space.high[PROPRIOCEPTION]), action_space=env.action_space,
    )
    dataset = Dataset(proprioception, metadata)
    vae = fit_vae(dataset, VAEConfig(latent_dim=4, width=16, blocks=1, window=16, batch_size=4, steps=20, log_interval=10))
    assert set(vae.groups) == {"positions", "velocities"}

    config = LowLevelConfig(target_offsets=(2,), episode_steps=8)
    references = encode_references(vae, dataset)
    task = ReenactmentEnv(gym.make(env_id, allow_fallover=True), references, Tracking(vae, config.reward_scale), config)
    assert task.proprioception == PROPRIOCEPTION and task.observation_space.shape == (17 + 4,)
    obs, _ = task.reset(seed=0, options={"reference": 1, "start": 10, "steps": 5})
    np.testing.assert_array_equal(obs[:17], dataset[1].observations[10])
    np.testing.assert_allclose(obs[17:], references[1].latents[12])
    assert task.unwrapped.bisk.p.data.qpos[1] == 0.0  # the root's x is not in the proprioception

    # Replaying the recorded actions from the recorded state reenacts it: the maximal reward.
    for k in range(5):
        obs, reward, terminated, truncated, info = task.step(dataset[1].actions[10 + k])
        assert reward == pytest.approx(1.0) and info["tracking_error"]["all"] < 1e-9
        assert info["frame"] == 11 + k and not terminated and obs.shape == (17 + 4,)
    assert truncated
    task.reset(seed=0)  # a random window of a random reference
    task.step(task.action_space.sample())
    task.close()


def test_unsupported_tasks_and_robots_are_errors_that_name_the_supported_ones():
    with pytest.raises(TaskError, match="Butterflies needs a humanoid"):
        BipedalSkills("Butterflies", "Walker")
    with pytest.raises(TaskError, match="unknown Bipedal Skills task 'Parkour'; known: GoToTargets, Gaps"):
        BipedalSkills("Parkour")
    with pytest.raises(TaskError, match="robot 'HumanoidCMUPC' is not supported; supported: Walker, HalfCheetah"):
        bipedal_skills_id("Gaps", "HumanoidCMUPC")


def test_a_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "bisk", None)
    with pytest.raises(TaskError, match=r"pip install 'latentprior\[bipedal\]'"):
        BipedalSkills("Gaps", "Walker")


@needs_bisk
def test_a_diverged_simulation_ends_the_episode_instead_of_crashing(monkeypatch):
    # bisk 2.0 returns an old-API 4-tuple on dm_control's PhysicsError; the adapter patches that.
    from dm_control.rl.control import PhysicsError

    env = BipedalSkills("VelocityControl", "Walker", shaped=True)
    env.reset(seed=0)

    def diverge():
        raise PhysicsError("simulated divergence")

    monkeypatch.setattr(env.bisk, "step_simulation", diverge)
    obs, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert terminated and not truncated and info["physics_error"] and np.isfinite(reward)
    assert env.observation_space.shape == obs.shape
    monkeypatch.undo()
    env.reset(seed=1)
    assert len(env.step(np.zeros(env.action_space.shape, np.float32))) == 5
    env.close()


@needs_bisk
@pytest.mark.parametrize("robot", ROBOTS)
def test_observed_contact_forces_are_those_of_the_state_reached(robot):
    # bisk 2.0 computes them from the previous step's constraint forces (NaN where contacts changed).
    env, probe = BipedalSkills("VelocityControl", robot, shaped=True), BipedalSkills("VelocityControl", robot, shaped=True)
    env.reset(seed=3), probe.reset(seed=3)
    rng = np.random.default_rng(0)
    contacts = slice(17, 59)
    touched = 0
    for t in range(150):
        obs, *_ = env.step(rng.choice([-1.0, 1.0], size=env.action_space.shape).astype(np.float32))
        assert np.all(np.isfinite(obs)), f"step {t}: non-finite observation"
        probe.bisk.p.data.ctrl[:] = env.bisk.p.data.ctrl  # the contact forces depend on the motors' torques
        probe.set_state(*env.sim_state())
        np.testing.assert_allclose(obs[contacts], probe._get_obs()[contacts], atol=1e-3, err_msg=f"step {t}")
        touched += np.any(obs[contacts] != 0)
    assert touched > 30  # the feet were on the ground for most steps: the comparison had forces to compare
    env.close(), probe.close()
