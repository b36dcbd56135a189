"""AntMaze, the navigation task of the latent space priors' offline experiments (Gehring et al., TMLR 2023).

The authors pre-trained the low-level policy and the prior on D4RL's AntMaze data and trained the
high-level policy in the medium maze, then transferred the prior to the large maze. This module is
that task on Gymnasium-Robotics' port of D4RL's AntMaze (``AntMaze_*-v5``, extra ``antmaze``),
behind a flat observation whose first part is exactly what an ``Ant-v5`` low-level policy sees.

Observation (``float64``, 31 values; :data:`ANT_PROPRIOCEPTION` and :data:`GOAL_FEATURES`):

    [0:27]   Ant-v5's observation without contact forces: qpos[2:] (torso z, torso quaternion
             w x y z, 8 joint angles) then qvel (14): ``gym.make("Ant-v5",
             include_cfrc_ext_in_observation=False)`` of the same physical state gives the same
             27 values. Pass ``proprioception=ANT_PROPRIOCEPTION`` to
             :class:`~latentprior.envs.latent_space.LatentSpaceWrapper`.
    [27:29]  the torso's (x, y) in the maze (world frame): where the ant is relative to the walls,
             which a relative goal alone does not say.
    [29:31]  the goal's offset from the torso, in the torso's heading frame (x ahead, y to the
             left; ``egocentric=False``: the world-frame offset), as body-centric policies see
             targets (Bipedal Skills' GoToTargets and :class:`~latentprior.envs.tasks.GoToTarget`
             do the same).

The robot is Gymnasium's Ant (its ``ant.xml``, the model of ``Ant-v5``) with the maze's walls added
(4 m cells, 2 m high): its physics equals ``Ant-v5``'s away from the walls. What differs from
``Ant-v5`` as a task: no reset noise (the start is placed at a random point of a random cell instead),
no termination when the ant flips or leaves ``healthy_z_range``, and the reward below. D4RL's own
AntMaze (the authors' data) had its own ant model and a 29-value observation with x and y, so its
datasets do not fit this layout: demonstrations for this task are ``Ant-v5`` demonstrations.

Reward, success, termination (Gymnasium-Robotics' rules): ``info["success"]`` is true when the
torso's (x, y) is within :data:`SUCCESS_RADIUS` (0.45 m) of the goal; the ``"sparse"`` reward is 1
there and 0 elsewhere, ``"dense"`` is ``exp(-distance)``. By default (``continuing_task=False``)
an episode ends, terminated, at the first success, so a sparse return is the success indicator;
episodes are truncated after 1000 steps (20 Hz control: 50 s), as D4RL's medium and large mazes.
The authors' project page reports its AntMaze runs "in a dense-reward setting"; the form of that
reward is not given there, so the sparse reward (success, what D4RL scores AntMaze by) is the default.

Task instances: each ``reset(seed=s)`` draws the goal cell and then a start cell (at least one cell
away) among the maze's free cells, and puts both at a uniform offset of up to +-1 m in x and y from
their cells' centres, so distinct seeds give distinct instances (for the 50-instance protocol).
``reset(options={"goal_cell": (i, j), "reset_cell": (i, j)})`` fixes the cells (row, column of
:attr:`AntMaze.maze_map`), e.g. D4RL's fixed evaluation goal.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import gymnasium as gym
import numpy as np

from latentprior.envs.extras import TaskError, register_task, require

__all__ = [
    "AntMaze",
    "make_antmaze",
    "antmaze_id",
    "MAZE_SIZES",
    "ANT_PROPRIOCEPTION",
    "GOAL_FEATURES",
    "SUCCESS_RADIUS",
]

#: Maze sizes and Gymnasium-Robotics' map of each (every free cell can hold the start or the goal).
MAZE_SIZES = {"medium": "MEDIUM_MAZE", "large": "LARGE_MAZE"}

#: The observation slice an ``Ant-v5`` low-level policy sees: qpos[2:] and qvel, no contact forces.
ANT_PROPRIOCEPTION = slice(0, 27)

#: The task's features after the proprioception: torso (x, y), goal offset (dx, dy).
GOAL_FEATURES = slice(27, 31)

#: Metres between torso and goal within which Gymnasium-Robotics counts the goal as reached.
SUCCESS_RADIUS = 0.45

MAX_EPISODE_STEPS = 1000


def antmaze_id(size: str) -> str:
    """The registered Gymnasium id of the ``size`` maze (``"latentprior/AntMazeMedium-v0"``)."""
    _check_size(size)
    return f"latentprior/AntMaze{size.capitalize()}-v0"


def make_antmaze(size: str = "medium", **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` of :func:`antmaze_id` (``size``): an :class:`AntMaze` with its 1000-step limit.

    :param size: ``"medium"`` (the authors' training maze) or ``"large"`` (their transfer maze).
    :param kwargs: :class:`AntMaze` arguments and ``gymnasium.make`` options
        (``max_episode_steps``, ``disable_env_checker``).
    """
    return gym.make(antmaze_id(size), **kwargs)


def _check_size(size: str) -> None:
    if size not in MAZE_SIZES:
        raise TaskError(f"unknown AntMaze size {size!r}; known: {', '.join(MAZE_SIZES)}")


class AntMaze(gym.Env):
    """Gymnasium-Robotics' AntMaze with a flat observation that starts with Ant-v5's (module docstring).

    :param size: ``"medium"`` or ``"large"``.
    :param reward_type: ``"sparse"`` (1 within :data:`SUCCESS_RADIUS` of the goal, else 0) or
        ``"dense"`` (``exp(-distance)``).
    :param egocentric: observe the goal's offset in the torso's heading frame; ``False``: in the
        world frame.
    :param continuing_task: ``False`` ends the episode at the first success; ``True`` keeps the
        goal where it is and runs until the time limit (reward every step spent there).
    :param render_mode: ``"rgb_array"``, ``"depth_array"`` or ``"human"``.

    ``info`` holds Gymnasium-Robotics' ``success`` plus ``goal`` (world x, y) and ``distance``;
    :attr:`maze` is the wrapped Gymnasium-Robotics environment.
    """

    #: the robot's part of the observation (what a low-level policy sees); the task's features follow
    proprioception = ANT_PROPRIOCEPTION

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 20}

    def __init__(
        self,
        size: str = "medium",
        reward_type: str = "sparse",
        egocentric: bool = True,
        continuing_task: bool = False,
        render_mode: str | None = None,
    ):
        _check_size(size)
        if reward_type not in ("sparse", "dense"):
            raise TaskError(f"unknown AntMaze reward_type {reward_type!r}; use 'sparse' or 'dense'")
        require("gymnasium_robotics", "antmaze", "AntMaze")
        from gymnasium_robotics.envs.maze import maps
        from gymnasium_robotics.envs.maze.ant_maze_v5 import AntMazeEnv

        self.size, self.egocentric, self.render_mode = size, egocentric, render_mode
        self.maze = AntMazeEnv(
            render_mode=render_mode,
            maze_map=getattr(maps, MAZE_SIZES[size]),
            reward_type=reward_type,
            continuing_task=continuing_task,
            reset_target=False,
            include_cfrc_ext_in_observation=False,
        )
        # The maze's MJCF goes to a temporary file that Gymnasium-Robotics never deletes; the model
        # has been compiled from it by now.
        with contextlib.suppress(OSError):
            os.remove(self.maze.tmp_xml_file_path)
        proprioception = self.maze.observation_space["observation"].shape[0]
        if proprioception != ANT_PROPRIOCEPTION.stop:
            raise TaskError(f"AntMaze: the ant observes {proprioception} values, expected Ant-v5's {ANT_PROPRIOCEPTION.stop}")
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (GOAL_FEATURES.stop,), np.float64)
        self.action_space = self.maze.action_space

    @property
    def maze_map(self) -> list[list[Any]]:
        """The maze's cells, rows first: 1 is a wall, anything else free."""
        return self.maze.maze.maze_map

    @property
    def goal(self) -> np.ndarray:
        """The goal's world (x, y)."""
        return self.maze.goal.copy()

    @property
    def model(self) -> Any:
        return self.maze.ant_env.model

    @property
    def data(self) -> Any:
        return self.maze.ant_env.data

    @property
    def dt(self) -> float:
        return float(self.maze.ant_env.dt)

    def _observe(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        position = obs["achieved_goal"]
        offset = obs["desired_goal"] - position
        if self.egocentric:
            # Heading of the torso's x axis projected on the ground.
            xmat = self.data.body("torso").xmat.reshape(3, 3)
            yaw = np.arctan2(xmat[1, 0], xmat[0, 0])
            c, s = np.cos(yaw), np.sin(yaw)
            offset = np.array([c * offset[0] + s * offset[1], -s * offset[0] + c * offset[1]])
        return np.concatenate([obs["observation"], position, offset]).astype(np.float64)

    def _info(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> dict[str, Any]:
        distance = float(np.linalg.norm(obs["desired_goal"] - obs["achieved_goal"]))
        return {**info, "goal": obs["desired_goal"].copy(), "distance": distance}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self.maze.reset(seed=seed, options=options)
        return self._observe(obs), self._info(obs, info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.maze.step(action)
        return self._observe(obs), float(reward), bool(terminated), bool(truncated), self._info(obs, info)

    def render(self):
        return self.maze.render()

    def close(self) -> None:
        self.maze.close()


for _size in MAZE_SIZES:
    register_task(antmaze_id(_size), "latentprior.envs.antmaze:AntMaze", {"size": _size}, MAX_EPISODE_STEPS)
