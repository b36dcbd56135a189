"""AntMaze: Ant-v5's proprioception first, one task instance per seed, success at the goal."""

import functools
import importlib.util
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from latentprior.envs.antmaze import ANT_PROPRIOCEPTION, GOAL_FEATURES, AntMaze, MazeDistance, antmaze_id, make_antmaze
from latentprior.envs.extras import TaskError
from latentprior.envs.latent_space import LatentSpaceWrapper
from latentprior.envs.make import make_vec_env

needs_robotics = pytest.mark.skipif(
    importlib.util.find_spec("gymnasium_robotics") is None,
    reason="AntMaze needs gymnasium-robotics: pip install 'latentprior[antmaze]'",
)


def _ant_v5():
    return gym.make("Ant-v5", include_cfrc_ext_in_observation=False).unwrapped


def _cell(env, xy):
    return tuple(int(v) for v in env.unwrapped.maze.maze.cell_xy_to_rowcol(np.asarray(xy)))


@needs_robotics
@pytest.mark.filterwarnings("ignore:.*infinity")
def test_passes_gymnasiums_environment_checker():
    env = AntMaze("medium")
    check_env(env, skip_render_check=True)
    env.close()


@needs_robotics
def test_proprioception_is_the_ant_v5_observation_of_the_same_state_and_steps_like_it():
    env, ant = AntMaze("medium", egocentric=False), _ant_v5()
    obs, _ = env.reset(seed=3)
    ant.reset(seed=0)
    ant.set_state(env.data.qpos.copy(), env.data.qvel.copy())
    np.testing.assert_array_equal(obs[ANT_PROPRIOCEPTION], ant._get_obs())
    # Same model and frame skip: away from the walls the two simulations are the same.
    rng = np.random.default_rng(0)
    for _ in range(10):
        action = rng.uniform(-1, 1, 8)
        obs, *_ = env.step(action)
        np.testing.assert_allclose(obs[ANT_PROPRIOCEPTION], ant.step(action)[0], atol=1e-9)
    position = env.data.qpos[:2]
    np.testing.assert_allclose(obs[GOAL_FEATURES], np.concatenate([position, env.goal - position]))
    env.close()


@needs_robotics
def test_goal_offset_is_in_the_torsos_heading_frame():
    env = AntMaze("medium")
    env.reset(seed=5)
    qpos = env.data.qpos.copy()
    qpos[3:7] = [np.cos(1.0), 0.0, 0.0, np.sin(1.0)]  # turned 2 rad to the left
    env.maze.ant_env.set_state(qpos, np.zeros_like(env.data.qvel))
    obs, *_, info = env.step(np.zeros(8))
    w, x, y, z = env.data.qpos[3:7]
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    assert yaw == pytest.approx(2.0, abs=0.05)
    offset = env.goal - env.data.qpos[:2]
    ahead, left = np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])
    np.testing.assert_allclose(obs[29:31], [offset @ ahead, offset @ left], atol=1e-2)
    assert np.linalg.norm(obs[29:31]) == pytest.approx(info["distance"])
    env.close()


@needs_robotics
def test_fifty_seeds_give_fifty_distinct_instances_and_a_seed_repeats_its_instance():
    env = AntMaze("medium")
    goals, starts = [], []
    for seed in range(50):
        env.reset(seed=seed)
        goals.append(env.goal)
        starts.append(env.data.qpos[:2].copy())
    assert len({tuple(g.round(6)) for g in goals}) == 50
    assert len({_cell(env, g) for g in goals}) > 5 and len({_cell(env, s) for s in starts}) > 5
    assert all(_cell(env, g) != _cell(env, s) for g, s in zip(goals, starts))
    env.reset(seed=7)
    np.testing.assert_array_equal(env.goal, goals[7])
    np.testing.assert_array_equal(env.data.qpos[:2], starts[7])
    env.close()


@needs_robotics
@pytest.mark.parametrize("size", ["medium", "large"])
def test_sparse_reward_and_success_fire_when_the_torso_is_at_the_goal(size):
    env = make_antmaze(size)
    assert env.spec.id == antmaze_id(size) and env.spec.max_episode_steps == 1000
    env.reset(seed=1)
    _, reward, terminated, _, info = env.step(np.zeros(8))
    assert reward == 0.0 and not info["success"] and not terminated and info["distance"] > 1.0
    maze = env.unwrapped
    qpos, qvel = maze.data.qpos.copy(), np.zeros_like(maze.data.qvel)
    qpos[:2] = maze.goal
    maze.maze.ant_env.set_state(qpos, qvel)
    _, reward, terminated, _, info = env.step(np.zeros(8))
    assert reward == 1.0 and info["success"] and terminated and info["distance"] < 0.45
    env.close()


@needs_robotics
def test_continuing_task_and_dense_reward():
    env = AntMaze("medium", reward_type="dense", continuing_task=True)
    env.reset(seed=1)
    qpos = env.data.qpos.copy()
    qpos[:2] = env.goal
    env.maze.ant_env.set_state(qpos, np.zeros_like(env.data.qvel))
    _, reward, terminated, _, info = env.step(np.zeros(8))
    assert info["success"] and not terminated and reward == pytest.approx(np.exp(-info["distance"]))
    env.close()


def test_maze_distance_goes_around_walls():
    # A U-shaped corridor around a wall 2 cells deep; cells of 4 m, column c at x = 4c + 2, row r at y = -(4r + 2).
    maze = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 1, 0, 1], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]]
    centre = lambda rc: np.array([4.0 * rc[1] + 2, -(4.0 * rc[0] + 2)])  # noqa: E731
    distance = MazeDistance(maze, 4.0, centre, resolution=0.5)
    distance.set_goal(centre((3, 1)))
    assert distance(centre((3, 1))) == pytest.approx(0.0, abs=1e-9)
    assert distance(centre((1, 1))) == pytest.approx(8.0, abs=0.3)  # straight up the corridor
    # Around the wall's two top corners: 6.32 + 4 + 6.32 = 16.65 m (straight line: 8 m); grid paths are
    # at most 2.7 % longer and keep a quarter metre (half a grid step) from the corners.
    assert 16.6 <= distance(centre((3, 3))) <= 1.08 * 16.65  # measured: 17.78
    # Continuous: a small step changes the distance by at most the step's length (plus the grid's bias).
    a, b = centre((1, 2)), centre((1, 2)) + np.array([0.05, 0.0])
    assert abs(distance(a) - distance(b)) <= 0.05 * 1.03 + 1e-9


def test_maze_distance_with_clearance_keeps_paths_off_the_corners():
    maze = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 1, 0, 1], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]]
    centre = lambda rc: np.array([4.0 * rc[1] + 2, -(4.0 * rc[0] + 2)])  # noqa: E731
    tight, clear = MazeDistance(maze, 4.0, centre), MazeDistance(maze, 4.0, centre, clearance=1.5)
    for distance in (tight, clear):
        distance.set_goal(centre((3, 1)))
    # Straight down the corridor's middle (2 m from either wall) nothing changes.
    assert clear(centre((1, 1))) == pytest.approx(tight(centre((1, 1))), abs=0.05)
    # Around the wall the path keeps 1.5 m from its corners: longer than the corner-grazing one (16.65 m)
    # but not by more than the detour (straight legs 1.5 m further out: <= 16.65 + 4 * 1.5).
    around = centre((3, 3))
    assert tight(around) + 1.0 < clear(around) <= tight(around) + 6.0
    # A point closer to a wall than the clearance is measured through the nearest point that is not:
    # moving away from the wall, towards the corridor's middle, lowers the distance.
    near_wall = centre((1, 1)) + np.array([-1.7, 0.0])
    assert clear(near_wall + np.array([0.5, 0.0])) < clear(near_wall)
    with pytest.raises(TaskError, match=r"clearance must be in \[0, 2.0\) m"):
        MazeDistance(maze, 4.0, centre, clearance=2.0)


@needs_robotics
def test_d4rl_instances_fix_the_cells_and_vary_the_offsets():
    env = AntMaze("medium", reward_type="progress", instances="d4rl")
    starts, goals = [], []
    for seed in range(4):
        env.reset(seed=seed)
        starts.append(env.data.qpos[:2].copy())
        goals.append(env.goal)
        assert _cell(env, starts[-1]) == (1, 1) and _cell(env, goals[-1]) == (6, 6)
    assert len({tuple(np.round(g, 3)) for g in goals}) == 4  # distinct instances: the +-1 m offsets
    _, info = env.reset(seed=0, options={"goal_cell": (1, 2)})  # cells in the options still win
    assert _cell(env, info["goal"]) == (1, 2)
    env.close()
    with pytest.raises(TaskError, match="unknown AntMaze instances 'fixed'; use one of random, d4rl"):
        AntMaze("medium", instances="fixed")


@needs_robotics
def test_progress_reward_pays_geodesic_progress_and_reports_the_sparse_score():
    env = AntMaze("medium", reward_type="progress", progress_weight=2.0)
    _, info = env.reset(seed=3)
    start = info["geodesic_distance"]
    assert start >= info["distance"] - 0.5  # never shorter than the straight line (up to the grid)
    rng = np.random.default_rng(0)
    shaping = 0.0
    for _ in range(40):
        _, reward, terminated, _, info = env.step(rng.uniform(-1, 1, 8))
        assert info["task_reward"] == 0.0 and not terminated
        shaping += reward - info["task_reward"]
    assert shaping == pytest.approx(2.0 * (start - info["geodesic_distance"]), abs=1e-9)  # telescopes
    before = info["geodesic_distance"]
    qpos = env.data.qpos.copy()
    qpos[:2] = env.goal
    env.maze.ant_env.set_state(qpos, np.zeros_like(env.data.qvel))
    _, reward, terminated, _, info = env.step(np.zeros(8))
    assert terminated and info["success"] and info["task_reward"] == 1.0
    assert reward == pytest.approx(1.0 + 2.0 * (before - info["geodesic_distance"]))
    env.close()


@needs_robotics
def test_vector_envs_from_the_id_or_the_factory_seed_each_instance():
    envs = make_vec_env(antmaze_id("medium"), num_envs=2, seed=0)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 31) and not np.allclose(obs[0, GOAL_FEATURES], obs[1, GOAL_FEATURES])
    envs.close()
    envs = make_vec_env(functools.partial(make_antmaze, "large"), num_envs=1, seed=4)
    assert envs.single_observation_space.shape == (31,)
    envs.close()


class _ZeroLowLevel:
    """A low-level policy of Ant-v5 that records what it is shown."""

    latent_dim = 4

    def __init__(self):
        ant = _ant_v5()
        self.proprioception_space, self.action_space, self.seen = ant.observation_space, ant.action_space, []

    def act(self, proprioception, targets, deterministic=True):
        self.seen.append(proprioception)
        return np.zeros(8)


@needs_robotics
def test_an_ant_v5_low_level_policy_runs_on_the_proprioception_slice():
    for explicit in (ANT_PROPRIOCEPTION, None):  # None: the task's own `proprioception` attribute
        low_level = _ZeroLowLevel()
        env = LatentSpaceWrapper(gym.make(antmaze_id("medium")), low_level, proprioception=explicit)
        obs, _ = env.reset(seed=0)
        env.step(np.zeros(4))
        np.testing.assert_array_equal(low_level.seen[0], obs[ANT_PROPRIOCEPTION])
        env.close()


def test_unknown_sizes_and_rewards_are_errors_that_name_the_known_ones():
    with pytest.raises(TaskError, match="unknown AntMaze size 'huge'; known: medium, large"):
        AntMaze("huge")
    with pytest.raises(TaskError, match="unknown AntMaze size"):
        antmaze_id("umaze")
    with pytest.raises(TaskError, match="reward_type 'shaped'"):
        AntMaze("medium", reward_type="shaped")


def test_a_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)
    with pytest.raises(TaskError, match=r"pip install 'latentprior\[antmaze\]'"):
        AntMaze("medium")
