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

``"progress"`` is a dense reward that does not pay for hovering near the goal: the sparse reward
plus ``progress_weight`` times the step's decrease of the *geodesic* distance to the goal (the
shortest path around the walls, :class:`MazeDistance`, in metres). Over an episode the progress
terms sum to the start's distance minus the end's, so circling, standing near the goal or walking
into a wall towards it earn nothing; it is potential-based shaping (Ng et al. 1999) with the
negative geodesic distance as the potential, undiscounted. ``info["task_reward"]`` keeps the
sparse reward, so an evaluation still reports the success rate (``eval/task_return_mean``).

Task instances: each ``reset(seed=s)`` draws the goal cell and then a start cell (at least one cell
away) among the maze's free cells, and puts both at a uniform offset of up to +-1 m in x and y from
their cells' centres, so distinct seeds give distinct instances (for the 50-instance protocol).
``reset(options={"goal_cell": (i, j), "reset_cell": (i, j)})`` fixes the cells (row, column of
:attr:`AntMaze.maze_map`). ``AntMaze(instances="d4rl")`` fixes them to D4RL's task
(:data:`D4RL_CELLS`: the start in the top-left corner, the goal in the far corner, about 30 m of
geodesic path in the medium maze, about 42 m in the large one), which is the task the latent space
priors paper solved ("reach the goal reliably"): its instances differ only in the +-1 m offsets.
The default, ``"random"``, is the harder goal-conditioned task over every pair of cells.
"""

from __future__ import annotations

import contextlib
import math
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
    "MazeDistance",
    "D4RL_CELLS",
]

#: Maze sizes and Gymnasium-Robotics' map of each (every free cell can hold the start or the goal).
MAZE_SIZES = {"medium": "MEDIUM_MAZE", "large": "LARGE_MAZE"}

#: The observation slice an ``Ant-v5`` low-level policy sees: qpos[2:] and qvel, no contact forces.
ANT_PROPRIOCEPTION = slice(0, 27)

#: The task's features after the proprioception: torso (x, y), goal offset (dx, dy).
GOAL_FEATURES = slice(27, 31)

#: D4RL's fixed start and goal cells (row, column) per maze size (``antmaze-medium-*`` and ``antmaze-large-*``).
D4RL_CELLS = {"medium": {"reset_cell": (1, 1), "goal_cell": (6, 6)}, "large": {"reset_cell": (1, 1), "goal_cell": (7, 9)}}

#: Task instance distributions: every pair of free cells, or D4RL's fixed pair.
INSTANCES = ("random", "d4rl")

#: Reward types: Gymnasium-Robotics' two and the geodesic progress reward (module docstring).
REWARD_TYPES = ("sparse", "dense", "progress")

#: Metres between torso and goal within which Gymnasium-Robotics counts the goal as reached.
SUCCESS_RADIUS = 0.45

MAX_EPISODE_STEPS = 1000


class MazeDistance:
    """Geodesic distance to a goal through a grid maze: the shortest path that avoids the wall cells.

    The free space (the union of the free cells) is sampled on a grid of ``resolution`` metres
    (points at the centres of ``cell_size / resolution`` sub-cells per cell); distances to the
    goal's cell follow 16-connected moves (neighbours and knight's moves, each only where the
    grid points of its bounding box are free, so paths do not cut a wall's corner), computed by a
    vectorised wavefront from the goal cell's points, which hold their straight distances to the
    goal. A position in the goal's cell is its straight distance (exact: a cell is convex);
    elsewhere the bilinear interpolation of its 4 surrounding grid points (those in walls left
    out). Grid paths are at most 2.7 % longer than straight ones and keep half a grid step from
    the walls, so progress is measured in metres to within a few per cent.

    :param maze_map: rows of cells, 1 for a wall (Gymnasium-Robotics' ``maze_map``).
    :param cell_size: metres per cell (``maze_size_scaling``, 4 for AntMaze).
    :param to_xy: the cell ``(row, col)`` -> its centre's world ``(x, y)``.
    :param resolution: grid spacing in metres; ``cell_size`` must be a multiple of it.
    :param clearance: paths keep at least this many metres from the walls (0: half a grid step).
        A legged robot is wider than a point: the ant's legs reach about 0.9 m from its torso, so
        a path that grazes a corner catches them there. Positions closer to a wall than
        ``clearance`` are measured through the nearest point that is not.
    """

    def __init__(self, maze_map: list[list[Any]], cell_size: float, to_xy: Any, resolution: float = 0.5,
                 clearance: float = 0.0):
        per_cell = round(cell_size / resolution)
        if per_cell < 1 or abs(per_cell * resolution - cell_size) > 1e-9:
            raise TaskError(f"MazeDistance: cell_size {cell_size} is not a multiple of resolution {resolution}")
        if not 0 <= clearance < cell_size / 2:
            raise TaskError(f"MazeDistance: clearance must be in [0, {cell_size / 2}) m (half a cell), got {clearance}")
        walls = np.array([[cell == 1 for cell in row] for row in maze_map], dtype=bool)
        self.free = ~np.kron(walls, np.ones((per_cell, per_cell), dtype=bool))
        if clearance > 0:
            self.free &= self._wall_distance(walls, per_cell) * resolution >= clearance
        self.clearance = float(clearance)
        self.resolution, self.per_cell = resolution, per_cell
        # World coordinates of grid point (0, 0): row r runs towards -y, column c towards +x.
        centre = np.asarray(to_xy(np.array([0, 0])), dtype=np.float64)
        self.origin = centre + np.array([-cell_size / 2 + resolution / 2, cell_size / 2 - resolution / 2])
        self._free_points = np.nonzero(self.free)
        self._moves = self._allowed_moves()
        self.field = np.full(self.free.shape, np.inf)

    @staticmethod
    def _wall_distance(walls: np.ndarray, per_cell: int) -> np.ndarray:
        """Each grid point's distance to the nearest wall cell, in grid steps."""
        rows, cols = walls.shape[0] * per_cell, walls.shape[1] * per_cell
        i, j = np.mgrid[:rows, :cols] + 0.5  # grid points at the centres of their sub-cells
        best = np.full((rows, cols), np.inf)
        for r, c in zip(*np.nonzero(walls)):
            dr = np.maximum.reduce([r * per_cell - i, np.zeros_like(i), i - (r + 1) * per_cell])
            dc = np.maximum.reduce([c * per_cell - j, np.zeros_like(j), j - (c + 1) * per_cell])
            best = np.minimum(best, np.hypot(dr, dc))
        return best

    def _allowed_moves(self) -> list[tuple[int, int, float, np.ndarray]]:
        """``(dr, dc, length, allowed)`` of the 16-connected moves (8 neighbours and 8 knight's
        moves: grid paths at most 2.7 % longer than straight ones). ``allowed[i, j]``: the move from
        ``(i - dr, j - dc)`` to ``(i, j)`` stays in free space, its bounding box free (no corner cut)."""
        rows, cols = self.free.shape
        padded_free = np.pad(self.free, 2, constant_values=False)
        moves = []
        for dr in range(-2, 3):
            for dc in range(-2, 3):
                if not (dr or dc) or math.gcd(abs(dr), abs(dc)) != 1:
                    continue
                ok = self.free.copy()
                for er in range(min(0, -dr), max(0, -dr) + 1):
                    for ec in range(min(0, -dc), max(0, -dc) + 1):
                        ok &= padded_free[2 + er:2 + er + rows, 2 + ec:2 + ec + cols]
                moves.append((dr, dc, self.resolution * math.hypot(dr, dc), ok))
        return moves

    def _grid(self, xy: np.ndarray) -> np.ndarray:
        """Fractional (row, col) grid coordinates of world ``xy``."""
        return np.array([(self.origin[1] - xy[1]) / self.resolution, (xy[0] - self.origin[0]) / self.resolution])

    def _nearest_free(self, xy: np.ndarray) -> tuple[int, int]:
        rc = self._grid(xy)
        rows, cols = self._free_points
        k = int(np.argmin((rows - rc[0]) ** 2 + (cols - rc[1]) ** 2))
        return int(rows[k]), int(cols[k])

    def set_goal(self, goal_xy: np.ndarray) -> None:
        """Compute the distance field to ``goal_xy`` (world x, y)."""
        goal_xy = np.asarray(goal_xy, dtype=np.float64)
        r, c = self._nearest_free(goal_xy)
        self.goal, self.goal_cell = goal_xy, (r // self.per_cell, c // self.per_cell)
        # Within the goal's cell (free and convex) the straight distance is the geodesic one.
        field = np.full(self.free.shape, np.inf)
        cell = np.s_[self.goal_cell[0] * self.per_cell:(self.goal_cell[0] + 1) * self.per_cell,
                     self.goal_cell[1] * self.per_cell:(self.goal_cell[1] + 1) * self.per_cell]
        rows, cols = np.mgrid[cell]
        points = self.origin + np.stack([cols * self.resolution, -rows * self.resolution], axis=-1)
        field[cell] = np.linalg.norm(points - goal_xy, axis=-1)
        rows, cols = self.free.shape
        while True:
            padded = np.pad(field, 2, constant_values=np.inf)
            best = field
            for dr, dc, cost, ok in self._moves:
                candidate = np.where(ok, padded[2 - dr:2 - dr + rows, 2 - dc:2 - dc + cols] + cost, np.inf)
                best = np.minimum(best, candidate)
            if np.array_equal(best, field):
                break
            field = best
        self.field = field

    def _world(self, r: int, c: int) -> np.ndarray:
        return self.origin + np.array([c * self.resolution, -r * self.resolution])

    def __call__(self, xy: np.ndarray) -> float:
        """The geodesic distance in metres from world ``xy`` to the goal of :meth:`set_goal`."""
        xy = np.asarray(xy, dtype=np.float64)
        rc = self._grid(xy)
        if (int(np.floor(rc[0] + 0.5)) // self.per_cell, int(np.floor(rc[1] + 0.5)) // self.per_cell) == self.goal_cell:
            return float(np.linalg.norm(xy - self.goal))
        r0, c0 = int(np.floor(rc[0])), int(np.floor(rc[1]))
        total, weight = 0.0, 0.0
        for r, c in ((r0, c0), (r0 + 1, c0), (r0, c0 + 1), (r0 + 1, c0 + 1)):
            if 0 <= r < self.field.shape[0] and 0 <= c < self.field.shape[1] and np.isfinite(self.field[r, c]):
                w = (1 - abs(rc[0] - r)) * (1 - abs(rc[1] - c))
                total, weight = total + w * self.field[r, c], weight + w
        if weight <= 1e-9:  # off the free grid (inside a wall's margin): the nearest free point's value
            r, c = self._nearest_free(xy)
            return float(self.field[r, c] + np.linalg.norm(xy - self._world(r, c)))
        return float(total / weight)


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
    :param reward_type: ``"sparse"`` (1 within :data:`SUCCESS_RADIUS` of the goal, else 0),
        ``"dense"`` (``exp(-distance)``) or ``"progress"`` (sparse plus the decrease of the
        geodesic distance, module docstring).
    :param progress_weight: reward per metre of geodesic progress (``"progress"`` only).
    :param progress_clearance: the geodesic distance's paths keep this many metres from the walls
        (:class:`MazeDistance`'s ``clearance``; ``"progress"`` only; 0: the shortest paths, which
        graze the corners).
    :param egocentric: observe the goal's offset in the torso's heading frame; ``False``: in the
        world frame.
    :param continuing_task: ``False`` ends the episode at the first success; ``True`` keeps the
        goal where it is and runs until the time limit (reward every step spent there).
    :param render_mode: ``"rgb_array"``, ``"depth_array"`` or ``"human"``.
    :param instances: ``"random"`` (start and goal cells drawn per reset) or ``"d4rl"`` (D4RL's fixed
        cells, :data:`D4RL_CELLS`; cells given in ``reset``'s options still win).

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
        progress_weight: float = 1.0,
        progress_clearance: float = 0.0,
        instances: str = "random",
    ):
        _check_size(size)
        if instances not in INSTANCES:
            raise TaskError(f"unknown AntMaze instances {instances!r}; use one of {', '.join(INSTANCES)}")
        self.instances = instances
        if reward_type not in REWARD_TYPES:
            raise TaskError(f"unknown AntMaze reward_type {reward_type!r}; use one of {', '.join(REWARD_TYPES)}")
        require("gymnasium_robotics", "antmaze", "AntMaze")
        from gymnasium_robotics.envs.maze import maps
        from gymnasium_robotics.envs.maze.ant_maze_v5 import AntMazeEnv

        self.size, self.egocentric, self.render_mode = size, egocentric, render_mode
        self.maze = AntMazeEnv(
            render_mode=render_mode,
            maze_map=getattr(maps, MAZE_SIZES[size]),
            reward_type="dense" if reward_type == "dense" else "sparse",
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
        self.reward_type, self.progress_weight = reward_type, float(progress_weight)
        #: the geodesic distance to the goal (``"progress"`` reward only, else ``None``)
        self.geodesic = (MazeDistance(self.maze_map, self.maze.maze.maze_size_scaling, self.maze.maze.cell_rowcol_to_xy,
                                      clearance=progress_clearance)
                         if reward_type == "progress" else None)
        self._distance = 0.0

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
        if self.instances == "d4rl":
            options = {**D4RL_CELLS[self.size], **dict(options or {})}
        obs, info = self.maze.reset(seed=seed, options=options)
        info = self._info(obs, info)
        if self.reward_type == "progress":
            self.geodesic.set_goal(obs["desired_goal"])
            self._distance = self.geodesic(obs["achieved_goal"])
            info["geodesic_distance"] = self._distance
        return self._observe(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.maze.step(action)
        info = self._info(obs, info)
        if self.reward_type == "progress":
            distance = self.geodesic(obs["achieved_goal"])
            info = {**info, "task_reward": float(reward), "geodesic_distance": distance}
            reward = float(reward) + self.progress_weight * (self._distance - distance)
            self._distance = distance
        return self._observe(obs), float(reward), bool(terminated), bool(truncated), info

    def render(self):
        return self.maze.render()

    def close(self) -> None:
        self.maze.close()


for _size in MAZE_SIZES:
    register_task(antmaze_id(_size), "latentprior.envs.antmaze:AntMaze", {"size": _size}, MAX_EPISODE_STEPS)
