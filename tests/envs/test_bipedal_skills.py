"""Bipedal Skills behind Gymnasium: the new step API, seeding, the observation layout, sparse rewards, falls."""

import importlib.util
import sys

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

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
