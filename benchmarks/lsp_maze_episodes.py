"""What happens in AntMaze evaluation episodes: where the ant goes, where it stops, whether it falls (issue 5).

A learning curve says how far a high-level policy gets on average; this says why it gets no
further. It replays the benchmark's 50 evaluation instances (``eval_seed(seed) + i``) with one
policy and records every step's torso position, its "up" axis and the geodesic distance to the
goal, then reports per episode and in aggregate:

* success, the steps it took, the net geodesic progress and the start's distance;
* ``stuck``: the episode ran out of time and the torso moved less than 0.5 m over its last 250
  steps; ``flipped``: the torso's up axis points below the horizon at the end (the ant is on its
  back: AntMaze does not end such an episode);
* ``wall_contact``: the share of steps with a contact between the ant and a wall block;
* the share of instances solved by start distance (under 10 m, 10–20 m, over 20 m).

Policies (``--policy``):

* a run directory of the benchmark's learners (``runs/antmaze-<size>/<run>``): the high level's
  deterministic action through the benchmark's VAE, low-level policy and (``__used`` runs) the same
  latent subspace; the run's own ``config.json`` says which. An ``options`` run's decision executes
  its option (the action, then the prior's continuation) as in training; there the torso position
  and wall contact are sampled once per decision. ``plan`` runs are not replayed;
* ``oracle``: the shipped command-conditioned Ant expert (the demonstrations' source) steered down
  the geodesic distance field: every step its command is ``--oracle-speed`` m/s along the direction
  in which the geodesic distance falls fastest, on paths that keep ``--oracle-clearance`` m from the
  walls (the ant's legs catch on corners that the shortest paths graze), aiming at the point
  ``--oracle-lookahead`` m down that path (pure pursuit). It knows the maze's shortest paths, so it shows
  what the demonstrations' locomotion can do in the task's 1000 steps.

``--instances d4rl`` replays D4RL's fixed task (``AntMaze(instances="d4rl")``, the default for a
run trained on it, ``__d4rl``): the 50 instances then differ only in the +-1 m offsets of the start
and the goal.
Writes ``maze_episodes/<name>.json`` (the summary and each episode's facts) and a plot of the 50
tracks over the maze (``.png``) into the results folder, and the tracks themselves (every 5th
step's torso x, y) to ``runs/maze_episodes/<name>.tracks.json``, which git ignores. A run's maze,
seed and task instances come from its folder and name::

    python benchmarks/lsp_maze_episodes.py --policy oracle
    python benchmarks/lsp_maze_episodes.py --policy benchmarks/results/latent_space_priors/runs/antmaze-medium/none__seed0__progress20__alpha0.01__used
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, now  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "latent_space_priors"
STUCK_WINDOW, STUCK_METRES = 250, 0.5


def lookahead_direction(distance, xy: np.ndarray, lookahead: float, step: float = 0.25) -> np.ndarray:
    """The unit direction from ``xy`` to the point ``lookahead`` metres down the distance field's path (pure pursuit).

    Following the local gradient alone zig-zags where the field's direction changes quickly (near
    walls, at corners); aiming at a point further along the path smooths the steering.
    """
    point = np.asarray(xy, dtype=np.float64).copy()
    for _ in range(max(round(lookahead / step), 1)):
        direction = geodesic_direction(distance, point)
        if not direction.any() or distance(point) < step:
            break
        point = point + step * direction
    offset = point - xy
    norm = np.linalg.norm(offset)
    return offset / norm if norm > 1e-9 else np.zeros(2)


def geodesic_direction(distance, xy: np.ndarray, h: float = 0.25) -> np.ndarray:
    """The unit direction in which ``distance`` (a :class:`~latentprior.envs.antmaze.MazeDistance`) falls fastest at ``xy``."""
    grad = np.array([distance(xy + [h, 0]) - distance(xy - [h, 0]), distance(xy + [0, h]) - distance(xy - [0, h])])
    norm = np.linalg.norm(grad)
    return -grad / norm if norm > 1e-9 else np.zeros(2)


class Oracle:
    """The commanded Ant expert steered down a geodesic distance field whose paths keep ``clearance`` from the walls."""

    def __init__(self, maze, speed: float, clearance: float, lookahead: float):
        from latentprior.envs.antmaze import MazeDistance
        from latentprior.experts.commanded import load_commanded, shipped_commanded

        self.expert = load_commanded(shipped_commanded("Ant-v5"))
        self.speed, self.lookahead = speed, lookahead
        self.distance = MazeDistance(maze.maze_map, maze.maze.maze.maze_size_scaling, maze.maze.maze.cell_rowcol_to_xy,
                                     clearance=clearance)

    def set_goal(self, goal: np.ndarray) -> None:
        self.distance.set_goal(goal)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        import torch

        from latentprior.envs.antmaze import ANT_PROPRIOCEPTION, GOAL_FEATURES
        from latentprior.envs.tasks import command_observation

        features = command_observation(self.speed * lookahead_direction(self.distance, obs[GOAL_FEATURES][:2], self.lookahead))
        x = torch.as_tensor(np.concatenate([obs[ANT_PROPRIOCEPTION], features]), dtype=torch.float32)
        with torch.no_grad():
            return self.expert.mu(x[None])[0].numpy()


def run_settings(run_dir: Path) -> dict:
    """What a benchmark learner's run directory says of itself: its folder ``runs/antmaze-<size>`` and its name
    (``<learner>__seed<s>`` then the variant suffixes of ``latent_space_priors._variant_suffix``) give the maze
    size, the seed, the task instances (``__d4rl``) and the pre-trained artifacts (``Ant-v5``, ``__z<d>``)."""
    folder, name = run_dir.resolve().parent.name, run_dir.name
    size = folder.removeprefix("antmaze-")
    seed = re.search(r"__seed(\d+)", name)
    if size not in ("medium", "large") or seed is None:
        raise SystemExit(f"{run_dir}: not a run of benchmarks/latent_space_priors.py (expected runs/antmaze-<size>/<learner>__seed<s>...)")
    latent_dim = re.search(r"__z(\d+)", name)
    return {"size": size, "seed": int(seed.group(1)), "instances": "d4rl" if "__d4rl" in name else "random",
            "pretrained": "Ant-v5" + (f"__z{latent_dim.group(1)}" if latent_dim else "")}


def run_actor(run_dir: Path, env, results: Path, pretrained: str):
    """``(env wrapped as the run's high level acted, act)`` for a benchmark learner's run directory."""
    import torch

    from latentprior.envs.antmaze import ANT_PROPRIOCEPTION
    from latentprior.envs.latent_space import LatentSpaceWrapper, OptionsWrapper
    from latentprior.io import read_json
    from latentprior.latent.lsp import LatentSubspace, SubspacePrior
    from latentprior.rl.policy import load_policy
    from latent_space_priors import _artifacts  # the benchmark's own VAE, prior and low-level policy

    meta = read_json(run_dir / "config.json").get("metadata", {})
    if meta.get("method") != "lsp":
        raise SystemExit(f"{run_dir}: not a latent space priors run (config.json metadata.method is {meta.get('method')!r})")
    if meta.get("integration") == "plan":
        raise SystemExit(f"{run_dir}: plan acts by the planner; only none/explore/regularize/options runs are replayed")
    _, prior, low_level = _artifacts(results, pretrained)
    subspace = None if meta.get("subspace") is None else LatentSubspace(**meta["subspace"])
    wrapped = LatentSpaceWrapper(env, low_level, observe_latents=meta["lsp"]["context"], proprioception=ANT_PROPRIOCEPTION,
                                 subspace=subspace)
    if meta.get("integration") == "options":  # each decision runs an option of the prior's latents, as in training
        wrapped = OptionsWrapper(wrapped, prior if subspace is None else SubspacePrior(prior, subspace),
                                 meta["lsp"]["option_length"], meta["lsp"]["option_temperature"])
    policy = load_policy(run_dir)

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy.act(obs[None], deterministic=True)[0]

    return wrapped, act


def episode(env, maze, act, seed: int, walls: set[int]) -> dict:
    """One episode's trace and summary; ``maze`` is the unwrapped :class:`AntMaze` under ``env``, ``walls`` its
    wall blocks' geom ids. An options run's decision spans ``info["option_steps"]`` environment steps: steps count
    those, and the torso position and wall contact are sampled once per decision."""
    obs, info = env.reset(seed=seed)
    if hasattr(act, "set_goal"):
        act.set_goal(info["goal"])
    start, track, at = info["geodesic_distance"], [maze.data.body("torso").xpos[:2].copy()], [0]
    contact, decisions, steps, success_step = 0, 0, 0, None
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(act(obs))
        steps += info.get("option_steps", 1)
        decisions += 1
        track.append(maze.data.body("torso").xpos[:2].copy())
        at.append(steps)
        d = maze.data
        contact += any((d.contact[k].geom1 in walls) != (d.contact[k].geom2 in walls) for k in range(d.ncon))
        if info.get("success") and success_step is None:
            success_step = steps
        done = terminated or truncated
    track = np.array(track)
    up = float(maze.data.body("torso").xmat.reshape(3, 3)[2, 2])
    window_start = int(np.searchsorted(at, steps - STUCK_WINDOW))  # the first point within the last STUCK_WINDOW steps
    moved = float(np.linalg.norm(track[-1] - track[window_start]))
    every = max(1, round(5 * decisions / steps))  # about every 5th environment step
    return {
        "seed": seed, "success": success_step is not None, "success_step": success_step, "steps": steps,
        "start_distance": start, "final_distance": info["geodesic_distance"], "progress": start - info["geodesic_distance"],
        "path_length": float(np.linalg.norm(np.diff(track, axis=0), axis=1).sum()),
        "flipped": up < 0, "stuck": success_step is None and moved < STUCK_METRES, "wall_contact": contact / decisions,
        "goal": [float(v) for v in info["goal"]], "track": track[::every].round(3).tolist(),
    }


def summarise(episodes: list[dict]) -> dict:
    def share(key: str) -> float:
        return float(np.mean([e[key] for e in episodes]))

    bins = {"under 10 m": (0, 10), "10-20 m": (10, 20), "over 20 m": (20, np.inf)}
    by_distance = {}
    for name, (lo, hi) in bins.items():
        group = [e for e in episodes if lo <= e["start_distance"] < hi]
        by_distance[name] = {"instances": len(group), "success": float(np.mean([e["success"] for e in group])) if group else None}
    solved = [e["success_step"] for e in episodes if e["success"]]
    return {
        "success": share("success"), "progress_m": share("progress"), "start_distance_m": share("start_distance"),
        "path_length_m": share("path_length"), "flipped": share("flipped"), "stuck": share("stuck"),
        "wall_contact": share("wall_contact"), "success_steps_median": float(np.median(solved)) if solved else None,
        "by_start_distance": by_distance,
    }


def plot(maze, episodes: list[dict], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latentprior.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 6))
    size = maze.maze.maze.maze_size_scaling
    for r, row in enumerate(maze.maze_map):
        for c, cell in enumerate(row):
            if cell == 1:
                x, y = maze.maze.maze.cell_rowcol_to_xy(np.array([r, c]))
                ax.add_patch(plt.Rectangle((x - size / 2, y - size / 2), size, size, color="0.75"))
    for e in episodes:
        track = np.array(e["track"])
        colour = "tab:green" if e["success"] else ("tab:purple" if e["flipped"] else "tab:red")
        ax.plot(track[:, 0], track[:, 1], color=colour, lw=0.8, alpha=0.7)
        ax.plot(*track[0], "o", color=colour, ms=3)
        ax.plot(*e["goal"], "*", color=colour, ms=7)
    rows, cols = len(maze.maze_map), len(maze.maze_map[0])
    ax.set_xlim(-cols * size / 2, cols * size / 2)
    ax.set_ylim(-rows * size / 2, rows * size / 2)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("green: reached the goal (star), red: did not, purple: on its back; dots: starts", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--policy", required=True, help="'oracle' or a learner's run directory")
    p.add_argument("--size", default=None, choices=["medium", "large"], help="default: the run's maze, medium for the oracle")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=None, help="instances are eval_seed(seed) + i (default: the run's seed, 0 for the oracle)")
    p.add_argument("--oracle-speed", type=float, default=1.0, help="m/s commanded to the oracle")
    p.add_argument("--oracle-clearance", type=float, default=1.0, help="metres the oracle's paths keep from the walls")
    p.add_argument("--oracle-lookahead", type=float, default=2.0, help="metres down the path the oracle aims at")
    p.add_argument("--instances", default=None, choices=["random", "d4rl"],
                   help="AntMaze's task instances (default: the run's, random for the oracle)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--name", default=None, help="output name (default: from the policy)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from latentprior.envs.antmaze import AntMaze
    from latentprior.rl.run import eval_seed

    from gymnasium.wrappers import TimeLimit

    from latentprior.envs.antmaze import MAX_EPISODE_STEPS

    run = None if args.policy == "oracle" else run_settings(Path(args.policy))
    defaults = run or {"size": "medium", "seed": 0, "instances": "random"}
    size, seed, instances = (defaults[k] if getattr(args, k) is None else getattr(args, k) for k in ("size", "seed", "instances"))
    maze = AntMaze(size, reward_type="progress", instances=instances)
    env = TimeLimit(maze, MAX_EPISODE_STEPS)
    if run is None:
        act = Oracle(maze, args.oracle_speed, args.oracle_clearance, args.oracle_lookahead)
        name = f"oracle{args.oracle_speed:g}__clearance{args.oracle_clearance:g}__lookahead{args.oracle_lookahead:g}"
        name += "" if instances == "random" else f"__{instances}"
    else:
        env, act = run_actor(Path(args.policy), env, args.results, run["pretrained"])
        name = Path(args.policy).name + ("" if instances == run["instances"] else f"__on_{instances}")
    name = args.name or f"{size}__{name}"
    started = time.time()
    walls = {i for i in range(maze.model.ngeom) if maze.model.geom(i).name.startswith("block_")}
    episodes = [episode(env, maze, act, eval_seed(seed) + i, walls) for i in range(args.episodes)]
    summary = summarise(episodes)
    out = args.results / "maze_episodes"
    out.mkdir(parents=True, exist_ok=True)
    title = f"{name}: {summary['success']:.0%} success, {summary['progress_m']:.1f} of {summary['start_distance_m']:.1f} m"
    plot(maze, episodes, title, out / f"{name}.png")
    from latentprior.io import atomic_write_json

    tracks = args.results / "runs" / "maze_episodes" / f"{name}.tracks.json"
    tracks.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(tracks, [{"seed": e["seed"], "goal": e["goal"], "track": e.pop("track")} for e in episodes])
    atomic_write_json(out / f"{name}.json", {"summary": summary, "policy": args.policy, "size": size, "seed": seed,
                                             "instances": instances, "episodes": episodes, "tracks": str(tracks.relative_to(args.results)),
                                             "command": command_line(), "machine": machine(), "date": now(),
                                             "wall_s": time.time() - started})
    print(json.dumps({"name": name, **summary}, indent=1))


if __name__ == "__main__":
    main()
