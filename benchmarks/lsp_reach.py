"""Where the high level can take the robot through a fitted low-level policy (latent space priors, issue 5).

A high-level policy acts only through the frozen low-level policy, so the robot's reach through it
caps what any high-level learner can achieve. This measures that reach in the open (the robot's own
Gymnasium environment, no maze), acting as :class:`~latentprior.envs.latent_space.LatentSpaceWrapper`
does with ``steps_per_action=1`` (one latent per step, given as the low-level policy's target;
the loop is written out here because ``demo`` and ``hold`` episodes start in a demonstration's
state, which the wrapper cannot set), for latent sequences from
several sources:

* ``demo``: the VAE's latents of each held-out demonstration, frame ``t + offset`` at step ``t``
  (the low-level policy's target offset): the best a high level that had learned to replay a
  demonstration could do. Its displacement is compared with the demonstration's own.
* ``hold``: one latent of a held-out demonstration (a random frame), held for the whole episode:
  a high level that picks a "walk that way" latent and keeps it.
* ``prior``: sequences sampled from the latent space prior without context (what the ``explore``
  integration executes).
* ``uniform``: i.i.d. uniform latents in [-1, 1] (SAC's warm-up actions), a new one every step;
  ``uniform-hold<k>``: a new one every ``k`` steps (``--hold-steps``), as a high level that acts
  every ``k`` steps (``LatentSpaceWrapper(steps_per_action=k)``) explores.
* ``zero``: the latent 0 held throughout.

Per source: how concentrated the episodes' end directions are (1: all the same way, 0: spread
evenly), the net displacement of the torso after ``--steps`` steps (median and mean, metres),
the path length, the fraction of episodes that ended early (unhealthy: fell or flipped), and for
``demo`` the displacement as a fraction of the demonstration's and the cosine between the two
directions (and the same cosine for ``hold``)::

    python benchmarks/lsp_reach.py --artifacts benchmarks/results/latent_space_priors/runs --robot Ant-v5

writes ``reach/<robot>.json`` into the results folder (the benchmark's report shows it) and prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, now  # noqa: E402


def ground_index(env) -> list[int]:
    """Indices of the root's horizontal coordinates in the robot's ``qpos`` (what :func:`position` reads).

    Gymnasium's MuJoCo robots: x, y of a free root joint (Ant) or x of a planar one (slide x first).
    Bipedal Skills robots: the ``rootx`` slide, wherever it is (the Walker's root is z, x, pitch).
    """
    unwrapped = env.unwrapped
    if hasattr(unwrapped, "qpos_names"):
        return [unwrapped.qpos_names.index("rootx:p")]
    return [0, 1] if unwrapped.model.jnt_type[0] == 0 else [0]  # 0: mjJNT_FREE


def ground(qpos: np.ndarray, index: list[int]) -> np.ndarray:
    """The root's ground position (x, y; y = 0 for a planar robot) from a ``qpos``."""
    xy = np.zeros(2)
    xy[: len(index)] = np.asarray(qpos)[index]
    return xy


def position(env, index: list[int]) -> np.ndarray:
    unwrapped = env.unwrapped
    qpos = unwrapped.sim_state()[0] if hasattr(unwrapped, "sim_state") else unwrapped.data.qpos
    return ground(qpos, index)


def rollout(env, low_level, latents: np.ndarray, seed: int, init: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Run ``latents`` (``(steps, latent_dim)``) through the low-level policy; root path and ending."""
    from latentprior.envs.extras import proprioception_slice

    index, seen = ground_index(env), proprioception_slice(env)
    obs, _ = env.reset(seed=seed)
    if init is not None:
        env.unwrapped.set_state(*init)
        obs = env.unwrapped._get_obs()
    path = [position(env, index)]
    ended = False
    for z in latents:
        action = low_level.act(obs[seen], np.clip(z, -1.0, 1.0))
        obs, _, terminated, truncated, _ = env.step(action)
        path.append(position(env, index))
        if terminated:
            ended = True
            break
    path = np.asarray(path)
    return {
        "displacement": path[-1] - path[0],
        "path_length": float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()),
        "steps": len(path) - 1,
        "ended_early": ended,
    }


def summarise(results: list[dict]) -> dict:
    displacement = np.array([r["displacement"] for r in results])
    distance = np.linalg.norm(displacement, axis=1)
    directions = displacement / np.maximum(distance, 1e-9)[:, None]
    return {
        # 1: every episode ends up in the same direction from its start; ~0: directions spread out
        "direction_concentration": float(np.linalg.norm(directions.mean(0))),
        "episodes": len(results),
        "net_displacement_m": {"median": float(np.median(distance)), "mean": float(distance.mean()),
                               "max": float(distance.max())},
        "path_length_m_mean": float(np.mean([r["path_length"] for r in results])),
        "steps_mean": float(np.mean([r["steps"] for r in results])),
        "ended_early": float(np.mean([r["ended_early"] for r in results])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("benchmarks/results/latent_space_priors/runs"),
                        help="folder with demos/, vae/, prior/ and low-level/ of the robot (the LSP benchmark's runs/)")
    parser.add_argument("--robot", default="Ant-v5", help="the sub-folder name of the robot's artifacts")
    parser.add_argument("--held-out", default=None,
                        help="held-out demonstrations inside demos/ROBOT/ (default: skills_held_out.h5, one skill per "
                             "episode, where it exists, else held_out.h5)")
    parser.add_argument("--low-level", type=Path, default=None, help="the low-level policy (default: ARTIFACTS/low-level/ROBOT)")
    parser.add_argument("--steps", type=int, default=500, help="steps per episode (Ant-v5: 25 s of control at 20 Hz)")
    parser.add_argument("--episodes", type=int, default=16, help="episodes per source (demo: at most one per held-out episode, repeated)")
    parser.add_argument("--hold-steps", default="4,16", help="comma-separated k of the uniform-hold<k> sources")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: ARTIFACTS/../reach/ROBOT.json")
    args = parser.parse_args()

    import gymnasium as gym
    import torch

    from latentprior.data import load_dataset
    from latentprior.experiments.low_level import LowLevelPolicy
    from latentprior.io import atomic_write_json
    from latentprior.latent.lsp import LatentPrior, StateVAE

    torch.set_num_threads(1)
    a = args.artifacts
    vae = StateVAE.load(a / "vae" / args.robot)
    prior = LatentPrior.load(a / "prior" / args.robot, vae=vae)
    low_level = LowLevelPolicy.load(args.low_level or a / "low-level" / args.robot, vae=vae)
    demos = a / "demos" / args.robot
    held_out_path = demos / (args.held_out or next((f for f in ("skills_held_out.h5", "held_out.h5")
                                                    if (demos / f).exists()), "held_out.h5"))
    held_out = load_dataset(held_out_path)
    if low_level.env_id and low_level.env_id.startswith("latentprior_benchmark/"):
        from latent_space_priors import _register_bisk_proprioception  # the benchmark's Bipedal Skills robots

        _register_bisk_proprioception()
    offset = max(low_level.config.target_offsets)
    env = gym.make(low_level.env_id, max_episode_steps=args.steps + offset + 1, **low_level.env_kwargs)
    low_level.check_env(env)
    index = ground_index(env)
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()

    holds = [int(k) for k in args.hold_steps.split(",") if k]
    sources: dict[str, list[dict]] = {"demo": [], "hold": [], "prior": [], "uniform": [],
                                      **{f"uniform-hold{k}": [] for k in holds}, "zero": []}
    demo_ratio, demo_cosine, demo_own, hold_cosine = [], [], [], []
    for i in range(args.episodes):
        episode = held_out[i % len(held_out)]
        if episode.num_steps < args.steps + offset:
            raise SystemExit(f"{held_out_path}: episode {i % len(held_out)} has {episode.num_steps} steps, fewer than "
                             f"--steps {args.steps} + the target offset {offset}")
        latents = vae.encode(episode.observations).cpu().numpy()
        init = (episode.qpos[0], episode.qvel[0])
        r = rollout(env, low_level, latents[offset : offset + args.steps], seed=args.seed + i, init=init)
        own = ground(episode.qpos[r["steps"]], index) - ground(episode.qpos[0], index)
        demo_own.append(float(np.linalg.norm(own)))
        demo_ratio.append(float(np.linalg.norm(r["displacement"]) / max(np.linalg.norm(own), 1e-6)))
        demo_cosine.append(float(r["displacement"] @ own / max(np.linalg.norm(r["displacement"]) * np.linalg.norm(own), 1e-9)))
        sources["demo"].append(r)
        held = np.repeat(latents[rng.integers(offset, episode.num_steps)][None], args.steps, axis=0)
        sources["hold"].append(rollout(env, low_level, held, seed=args.seed + i, init=init))
        d = sources["hold"][-1]["displacement"]
        hold_cosine.append(float(d @ own / max(np.linalg.norm(d) * np.linalg.norm(own), 1e-9)))
    sampled = prior.sample(args.steps, batch=args.episodes, generator=generator).cpu().numpy()
    for i in range(args.episodes):
        sources["prior"].append(rollout(env, low_level, sampled[i], seed=args.seed + 1000 + i))
        uniform = rng.uniform(-1.0, 1.0, (args.steps, vae.latent_dim)).astype(np.float32)
        sources["uniform"].append(rollout(env, low_level, uniform, seed=args.seed + 2000 + i))
        for k in holds:
            held = np.repeat(rng.uniform(-1.0, 1.0, (-(-args.steps // k), vae.latent_dim)), k, axis=0)[: args.steps]
            sources[f"uniform-hold{k}"].append(rollout(env, low_level, held.astype(np.float32), seed=args.seed + 3000 + i))
        zero = np.zeros((args.steps, vae.latent_dim), np.float32)
        sources["zero"].append(rollout(env, low_level, zero, seed=args.seed + 4000 + i))
    env.close()

    result = {
        "robot": args.robot,
        "env_id": low_level.env_id,
        "env_kwargs": low_level.env_kwargs,
        "steps": args.steps,
        "target_offset": offset,
        "sources": {name: summarise(rs) for name, rs in sources.items()},
        "demo_vs_demonstration": {
            "demonstration_displacement_m_mean": float(np.mean(demo_own)),
            "displacement_ratio": {"median": float(np.median(demo_ratio)), "mean": float(np.mean(demo_ratio))},
            "direction_cosine": {"median": float(np.median(demo_cosine)), "mean": float(np.mean(demo_cosine))},
            # hold: one latent of the demonstration held; cosine with the demonstration's direction
            "hold_direction_cosine": {"median": float(np.median(hold_cosine)), "mean": float(np.mean(hold_cosine))},
        },
        "wall_s": time.perf_counter() - started,
        "date": now(),
        "machine": machine(),
        "command": command_line(),
    }
    out = args.out or a.parent / "reach" / f"{args.robot}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print(json.dumps({k: result[k] for k in ("sources", "demo_vs_demonstration", "wall_s")}, indent=2))


if __name__ == "__main__":
    main()
