"""Benchmark: why the command-conditioned Ant task changes Ant-v5's shaping (issue 4).

The commanded Ant task (``COMMANDED_TASKS["Ant-v5"]``) rewards tracking a commanded velocity with
``exp(-2 ||v - v_cmd||)``, at most 1 per step. This script measures, for Gymnasium's Ant-v5 as it
is and for the commanded task's settings (``env_kwargs``: a tenth of the control cost, healthy
reward 0.2, torso bound 2 m), what exploration noise costs before any learning: zero-mean
Gaussian actions of each std (clipped to the bounds) for up to 1000 steps from --episodes seeded
resets, reporting per step the control cost, the healthy reward and the tracking reward, and the
episode length (Ant-v5 ends an episode when the torso leaves its healthy height range).

    python benchmarks/ant_shaping.py                       # prints a markdown table
    python benchmarks/ant_shaping.py --stds 0,0.37,0.6,1.0 --episodes 5
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

from latentprior.envs.tasks import TargetVelocity
from latentprior.experiments.report import markdown_table
from latentprior.experts.commanded import COMMANDED_TASKS, Command


def measure(env_kwargs: dict, std: float, episodes: int, command: Command) -> dict[str, float]:
    """Mean per-step reward terms and mean episode length under zero-mean action noise ``std``."""
    task = COMMANDED_TASKS["Ant-v5"]
    env = TargetVelocity(gym.make("Ant-v5", **env_kwargs), target_speed=command.speed, direction=command.heading,
                         sharpness=task.sharpness, keep_healthy_reward=True)
    rng = np.random.default_rng(0)
    terms, lengths = [], []
    try:
        for i in range(episodes):
            env.reset(seed=i)
            for t in range(1000):
                action = np.clip(rng.normal(0.0, std, env.action_space.shape), -1.0, 1.0)
                _, _, terminated, truncated, info = env.step(action)
                terms.append((-info["reward_ctrl"], info["reward_survive"], info["task_reward"]))
                if terminated or truncated:
                    break
            lengths.append(t + 1)
    finally:
        env.close()
    ctrl, healthy, tracking = np.mean(terms, axis=0)
    return {"ctrl_cost": ctrl, "healthy": healthy, "tracking": tracking, "length": float(np.mean(lengths)),
            "lengths": lengths}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stds", default="0,0.37,0.6,1.0", help="comma-separated action-noise stds")
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args(argv)
    commanded = COMMANDED_TASKS["Ant-v5"].env_kwargs
    settings = {"Ant-v5 as it is": {k: v for k, v in commanded.items() if k == "include_cfrc_ext_in_observation"},
                "commanded task": commanded}
    command = Command(1.125, 0.0)
    rows = []
    for name, kwargs in settings.items():
        for std in (float(s) for s in args.stds.split(",")):
            m = measure(kwargs, std, args.episodes, command)
            rows.append([name, f"{std:g}", f"{m['ctrl_cost']:.3f}", f"{m['healthy']:.2f}", f"{m['tracking']:.3f}",
                         f"{m['length']:.0f} ({' / '.join(map(str, m['lengths']))})"])
    print(f"Command {command.speed} m/s at heading 0; {args.episodes} episodes per row, reset seeds 0..{args.episodes - 1}.\n")
    print(markdown_table(["setting", "action noise std", "control cost / step", "healthy reward / step",
                          "tracking reward / step", "episode length (per episode)"], rows))


if __name__ == "__main__":
    main()
