"""Benchmark of latentprior's RL core against stable-baselines3 on HalfCheetah-v5.

Parts (each (method, seed) run is one child process writing one JSON under the results folder;
a run whose JSON exists is skipped, so rerunning the same command continues the benchmark):

  ppo        SB3 PPO vs ours at SB3's defaults, 1 env, observation normalisation on both sides
             (SB3: VecNormalize(norm_reward=False)); env steps/s including training, eval returns.
  ppo-tuned  ours with more environments (EnvPool) and larger batches: how soon does it reach
             SB3's final 1M-step return, against SB3's wall-clock (goal: <= 1/4)?
  sac        SB3 SAC vs ours at SB3's defaults (learning_starts 100, 1 update per step);
             gradient updates/s and eval returns; also ours with bfloat16 matmuls (opt-in).
  ceiling    raw simulation speed with random actions (Gymnasium sync, EnvPool), and the
             fraction of it each training run reaches.

Both sides are evaluated the same way: deterministic actions, 10 episodes on 5 separate
environments, reset with the same seeds, every ``--eval-every`` steps; evaluation time is
excluded from the training speeds (and included in the wall-clock). torch uses one thread on
both sides (the fastest setting for both on a small, shared machine).

    python benchmarks/rl_core.py                     # everything, seeds 0..2 (hours)
    python benchmarks/rl_core.py --parts sac --seeds 0
    python benchmarks/rl_core.py --quick             # smoke check: tiny budgets, separate folder
    python benchmarks/rl_core.py --report            # markdown table from the JSONs
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np

from common import Job, command_line, csv_list, mean_std, results_folder, run_child, run_then_report

ENV_ID = "HalfCheetah-v5"
PARTS = ("ppo", "ppo-tuned", "sac", "ceiling")
EVAL_EPISODES, EVAL_ENVS = 10, 5
#: Speed ratios use only runs that finished at a 1-minute load average at most this (2 cores).
QUIET_LOAD = 3.0

# The tuned preset: 16 EnvPool sub-environments, rollouts of 16 x 128 = 2048 steps as SB3's,
# minibatches of 256 (8 per epoch instead of 32), and a smaller initial action noise (log std -1,
# SB3's default 0): with std 1 PPO often settles in HalfCheetah's flipped-over gait (returns
# 1,400-1,800 on two of three seeds in the first full run); with std 0.37 every seed ran upright.
# Otherwise SB3's defaults.
PPO_TUNED = {"num_envs": 16, "n_steps": 128, "batch_size": 256, "n_epochs": 10, "log_std_init": -1.0}


# ----------------------------------------------------------------------------------- SB3 runs
class _SB3Policy:
    """Adapter giving an SB3 model (and its VecNormalize statistics) the ``act`` of our policies."""

    def __init__(self, model, vecnorm=None):
        self.model, self.vecnorm = model, vecnorm

    def act(self, obs, deterministic=True):
        if self.vecnorm is not None:
            obs = self.vecnorm.normalize_obs(obs)
        return self.model.predict(obs, deterministic=deterministic)[0]


def _sb3_run(algo: str, seed: int, steps: int, eval_every: int) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from latentprior.envs.make import make_vec_env
    from latentprior.rl import evaluate_policy
    from latentprior.rl.run import eval_seed

    torch.set_num_threads(1)
    eval_envs = make_vec_env(ENV_ID, EVAL_ENVS, 0)
    t_start = time.perf_counter()
    if algo == "ppo":
        env = VecNormalize(sb3_make_vec_env(ENV_ID, n_envs=1, seed=seed), norm_obs=True, norm_reward=False)
        model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0)
        adapter = _SB3Policy(model, env)
    else:
        model = SAC("MlpPolicy", gym.make(ENV_ID), seed=seed, device="cpu", verbose=0)
        adapter = _SB3Policy(model)
    curve, eval_time = [], [0.0]

    def evaluate(step):
        t0 = time.perf_counter()
        result = evaluate_policy(adapter, eval_envs, EVAL_EPISODES, seed=eval_seed(seed))
        curve.append({"step": step, "return_mean": result.return_mean, "return_std": result.return_std})
        eval_time[0] += time.perf_counter() - t0

    class EvalEvery(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                evaluate(self.num_timesteps)
            return True

    t_learn = time.perf_counter()
    model.learn(steps, callback=EvalEvery())
    if not curve or curve[-1]["step"] != steps:
        evaluate(steps)
    train_s = time.perf_counter() - t_learn - eval_time[0]
    eval_envs.close()
    updates = steps - model.learning_starts if algo == "sac" else None
    return {
        "train_s": train_s,
        "wall_s": time.perf_counter() - t_start,
        "steps_per_s": steps / train_s,
        "updates_per_s": updates / train_s if updates else None,
        "curve": curve,
    }


# ----------------------------------------------------------------------------------- our runs
def _ours_run(part: str, method: str, seed: int, steps: int, eval_every: int, run_dir: Path) -> dict:
    import csv

    from latentprior.envs.make import make_vec_env
    from latentprior.rl import PPOConfig, SACConfig, ppo, sac

    common = dict(total_steps=steps, seed=seed, eval_every=eval_every, eval_episodes=EVAL_EPISODES,
                  eval_envs=EVAL_ENVS, tensorboard=False)
    t_start = time.perf_counter()
    if part == "sac":
        precision = "bf16" if method == "ours-bf16" else "auto"
        config = SACConfig(**common, matmul_precision=precision)
        result = sac.train(functools.partial(make_vec_env, ENV_ID), config, run_dir, progress=False)
    elif part == "ppo":
        result = ppo.train(functools.partial(make_vec_env, ENV_ID), PPOConfig(**common), run_dir, progress=False)
    else:
        env_fn = functools.partial(make_vec_env, ENV_ID, backend="auto")
        result = ppo.train(env_fn, PPOConfig(**common, **PPO_TUNED), run_dir, progress=False)
    with open(result.paths["metrics"], newline="") as f:
        rows = list(csv.DictReader(f))
    curve = [
        {"step": int(r["step"]), "return_mean": float(r["eval/return_mean"]), "return_std": float(r["eval/return_std"]),
         "train_s": float(r["time/train_s"])}
        for r in rows if r.get("eval/return_mean")
    ]
    train_s = result.metrics["time/train_s"]
    updates = result.metrics.get("train/n_updates")
    return {
        "train_s": train_s,
        "wall_s": time.perf_counter() - t_start,
        "wall_s_including_earlier_attempts": result.metrics["time/elapsed_s"],
        "steps_per_s": steps / train_s,
        "updates_per_s": updates / train_s if part == "sac" else None,
        "curve": curve,
    }


#: Matmuls of SAC's 256x256 hidden layers per update (batch 256, twin critics): forward 2 target
#: critics + 2 critics on replayed actions + 2 on the policy's actions + 2 actor passes = 8;
#: backward 2 x 2 critic (input and weight gradients) + 2 x 1 critic on the policy's actions
#: (input gradients only, weights detached) + 2 actor = 8. The 17->256 and 256->1 layers are
#: small next to these.
SAC_HIDDEN_MATMULS = 16


def _matmul_ceiling(dtype_name: str, seconds: float = 5.0) -> dict:
    """Single-thread throughput of one 256x256 @ 256x256 matmul (SAC's hidden layer at batch 256)
    and the SAC updates/s it would allow if those matmuls were all an update did."""
    import torch

    torch.set_num_threads(1)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(256, 256, dtype=dtype), torch.randn(256, 256, dtype=dtype)
    for _ in range(50):
        a @ b
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            a @ b
        count += 100
    elapsed = time.perf_counter() - t0
    gflops = 2 * 256**3 * count / elapsed / 1e9
    return {"train_s": elapsed, "wall_s": elapsed, "steps_per_s": None, "gflops": gflops,
            "sac_updates_per_s_bound": count / elapsed / SAC_HIDDEN_MATMULS, "curve": []}


def _ceiling(backend: str, num_envs: int, steps: int) -> dict:
    from latentprior.envs.make import make_vec_env

    envs = make_vec_env(ENV_ID, num_envs, 0, backend=backend)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (256, num_envs, envs.single_action_space.shape[0]))
    envs.reset()
    t0 = time.perf_counter()
    for i in range(steps // num_envs):
        envs.step(actions[i % 256])
    seconds = time.perf_counter() - t0
    envs.close()
    return {"train_s": seconds, "wall_s": seconds, "steps_per_s": steps / seconds, "curve": []}


# ------------------------------------------------------------------------------------ driving
def _jobs(args) -> list[Job]:
    """One job per (part, method, seed), named ``<part>__<method>__seed<seed>`` (its result's file name)."""
    runs = []
    for part in args.parts:
        if part == "ceiling":
            runs += [(part, f"{backend}-{n}", 0, args.ceiling_steps) for backend, n in [("sync", 1), ("sync", 16), ("envpool", 16)]]
            runs += [(part, f"matmul-{dtype}", 0, 0) for dtype in ("fp32", "bf16")]
            continue
        steps = args.sac_steps if part == "sac" else args.ppo_steps
        for seed in args.seeds:
            if part != "ppo-tuned" and seed in (args.sb3_sac_seeds if part == "sac" else args.seeds):
                runs.append((part, "sb3", seed, steps))
            runs.append((part, "ours", seed, steps))
            if part == "sac":  # the opt-in bfloat16 matmuls, to weigh their speed against learning
                runs.append((part, "ours-bf16", seed, steps))
    return [Job(f"{part}__{method}__seed{seed}", part,
                {"method": method, "seed": seed, "steps": steps, "eval_every": args.eval_every or max(steps // 10, 1)})
            for part, method, seed, steps in runs]


def _handle(job: dict, results: Path) -> dict:
    """The child's entry: one (part, method, seed) run in this process (``common.run_child`` writes the result).

    The result keeps ``method``, ``seed`` and ``steps`` at its top level, as the results written
    before ``common.Job`` have them, so :func:`report` reads both.
    """
    part, spec = job["part"], job["spec"]
    method, seed, steps, eval_every = spec["method"], spec["seed"], spec["steps"], spec["eval_every"]
    if part == "ceiling" and method.startswith("matmul-"):
        outcome = _matmul_ceiling(method.removeprefix("matmul-"))
    elif part == "ceiling":
        backend, n = method.split("-")
        outcome = _ceiling(backend, int(n), steps)
    elif method == "sb3":
        outcome = _sb3_run("sac" if part == "sac" else "ppo", seed, steps, eval_every)
    else:
        outcome = _ours_run(part, method, seed, steps, eval_every, results / "runs" / job["name"])
    final = outcome["curve"][-1] if outcome["curve"] else {}
    return {"method": method, "seed": seed, "steps": steps, **outcome, "final_return_mean": final.get("return_mean"),
            "final_return_std": final.get("return_std"), "env_id": ENV_ID}


# ------------------------------------------------------------------------------------- report
def _quiet(run: dict) -> bool:
    """Whether the run finished on a machine quiet enough for its speed to be compared."""
    return run["machine"].get("load_avg_1m", 0.0) <= QUIET_LOAD


def _time_to_reach(curve: list[dict], target: float) -> float | None:
    """Training seconds until the evaluation return first reaches ``target`` (None if never)."""
    return next((p["train_s"] for p in curve if p["return_mean"] >= target and "train_s" in p), None)


def report(results: Path) -> str:
    runs = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    if not runs:
        return f"no results in {results}"
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["part"], r["method"]), []).append(r)
    lines = [
        f"# RL core benchmark: {ENV_ID}",
        "",
        f"Machine: {runs[0]['machine']['cpu']}, {runs[0]['machine']['cores']} cores; "
        f"versions {json.dumps(runs[0]['machine']['versions'])}",
        f"Runs from {min(r['started'] for r in runs)} to {max(r['finished'] for r in runs)}; "
        f"command: `{runs[0]['command']}`",
        "",
        "Final eval return: mean over seeds of each run's last evaluation (10 deterministic episodes); "
        "train time excludes evaluation; wall-clock includes set-up and evaluation.",
        "",
        "| part | method | seeds | steps | final eval return | train time (s) | wall-clock (s) | env steps/s | updates/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (part, method), rs in sorted(groups.items()):
        lines.append(
            f"| {part} | {method} | {','.join(str(r['seed']) for r in rs)} | {rs[0]['steps']:,} | "
            f"{mean_std([r['final_return_mean'] for r in rs])} | {mean_std([r['train_s'] for r in rs])} | "
            f"{mean_std([r['wall_s'] for r in rs])} | {mean_std([r['steps_per_s'] for r in rs])} | "
            f"{mean_std([r.get('updates_per_s') for r in rs])} |"
        )
    lines += ["", f"Speed ratios (ours / SB3): means over the seeds both ran with the machine's 1-minute load "
              f"average <= {QUIET_LOAD} when the run finished (2 cores: more than ~2 runnable jobs means each run "
              "gets a varying share of a core, which the ratio would mix in):", ""]
    def quiet_or_all(runs):
        return [r for r in runs if _quiet(r)] or runs

    speed = {k: np.mean([r["steps_per_s"] for r in quiet_or_all(rs)]) for k, rs in groups.items() if rs[0]["steps_per_s"]}
    for part, method, key, what in [("ppo", "ours", "steps_per_s", "PPO env steps/s incl. training"),
                                    ("sac", "ours", "updates_per_s", "SAC gradient updates/s"),
                                    ("sac", "ours-bf16", "updates_per_s", "SAC gradient updates/s, bf16 matmuls")]:
        if (part, method) in groups and (part, "sb3") in groups:
            paired = ({r["seed"] for r in groups[(part, "sb3")] if _quiet(r)}
                      & {r["seed"] for r in groups[(part, method)] if _quiet(r)})
            if not paired:
                continue
            ours = np.mean([r[key] for r in groups[(part, method)] if r["seed"] in paired])
            sb3 = np.mean([r[key] for r in groups[(part, "sb3")] if r["seed"] in paired])
            lines.append(f"- {what}, seeds {sorted(paired)}: {ours:,.1f} / {sb3:,.1f} = **{ours / sb3:.2f}x**")
    if ("ppo-tuned", "ours") in groups and ("ppo", "sb3") in groups:
        sb3 = groups[("ppo", "sb3")]
        target = float(np.mean([r["final_return_mean"] for r in sb3]))
        # SB3's wall-clock from its runs on a quiet machine (a loaded one would flatter the preset)
        sb3_time = float(np.mean([r["train_s"] for r in sb3 if _quiet(r)]))
        reach = [_time_to_reach(r["curve"], target) for r in groups[("ppo-tuned", "ours")]]
        shown = ", ".join("never" if t is None else f"{t:,.0f} s ({t / sb3_time:.2f} of SB3's {sb3_time:,.0f} s)" for t in reach)
        lines.append(f"- PPO tuned preset {PPO_TUNED}: time to SB3's final return {target:,.0f}, per seed: {shown}")
    ceilings = {m: speed[("ceiling", m)] for (p, m) in groups if p == "ceiling" and ("ceiling", m) in speed}
    if ceilings:
        lines += ["", "Simulation ceiling (random actions) and the fraction of it training reaches:", ""]
        lines += [f"- {m}: {v:,.0f} steps/s" for m, v in sorted(ceilings.items())]
        pairs = [(("ppo", "ours"), "sync-1"), (("ppo", "sb3"), "sync-1"), (("sac", "ours"), "sync-1"),
                 (("sac", "ours-bf16"), "sync-1"), (("sac", "sb3"), "sync-1"), (("ppo-tuned", "ours"), "envpool-16")]
        for key, ceiling in pairs:
            if key in speed and ceiling in ceilings:
                lines.append(f"- {key[0]} {key[1]}: {speed[key] / ceilings[ceiling]:.1%} of {ceiling}")
    for method in ("matmul-fp32", "matmul-bf16"):
        if ("ceiling", method) in groups:
            r = groups[("ceiling", method)][0]
            lines.append(f"- {method}: one thread multiplies 256x256 matrices at {r['gflops']:,.0f} GFLOP/s; SAC's "
                         f"{SAC_HIDDEN_MATMULS} hidden-layer matmuls per update alone then cap updates/s at "
                         f"{r['sac_updates_per_s_bound']:,.0f}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--sb3-sac-seeds", default="0", help="seeds SB3 SAC runs for (it is slow)")
    parser.add_argument("--ppo-steps", type=int, default=1_000_000)
    parser.add_argument("--sac-steps", type=int, default=100_000)
    parser.add_argument("--ceiling-steps", type=int, default=200_000)
    parser.add_argument("--eval-every", type=int, default=None, help="default: steps / 10")
    parser.add_argument("--results", type=Path, default=None, help="default: benchmarks/results/rl_core[_quick]")
    parser.add_argument("--quick", action="store_true", help="tiny budgets into a fresh separate folder, then --report")
    parser.add_argument("--report", action="store_true", help="write REPORT.md from the JSONs and print it")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # a child process's single run
    parser.add_argument("--parent-command", help=argparse.SUPPRESS)  # the command that launched it
    args = parser.parse_args(argv)
    if args.job:
        run_child(json.loads(args.job), args.results, args.parent_command or command_line(), _handle)
        return
    args.parts, args.seeds, args.sb3_sac_seeds = csv_list(args.parts), csv_list(args.seeds, int), csv_list(args.sb3_sac_seeds, int)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    if args.quick:
        args.ppo_steps, args.sac_steps, args.ceiling_steps, args.seeds, args.sb3_sac_seeds = 4096, 600, 4000, [0], [0]
    results = results_folder(args.results, "rl_core", args.quick)
    # One job at a time: the speeds measured are the point, and parallel runs would share the cores.
    run_then_report(lambda: _jobs(args), __file__, results, 1, report,
                    run=not args.report or args.quick, write_report=args.report or args.quick)


if __name__ == "__main__":
    main()
