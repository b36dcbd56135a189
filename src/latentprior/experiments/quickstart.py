"""``latentprior quickstart``: the pipeline end to end on an embedded default, no downloads.

    expert (shipped oscillator gait) -> demonstrations (HDF5) -> latent action prior
        -> PPO and PPO+latent side by side on HalfCheetah-v5 -> report.md with curves, table, videos

It is the latent action priors recipe (Hausdörfer et al. 2024) at a budget that finishes in
minutes on two CPU cores; ``benchmarks/latent_action_priors.py`` runs it at the paper's budget.
Everything is written under ``out``; rerunning continues where a previous call stopped
(finished runs are reused, interrupted ones resume from their checkpoints).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from latentprior.data import format_summary, load_dataset
from latentprior.data.collect import collect
from latentprior.experiments.lap import LAPExperiment, lap_wrappers, plan_lap_experiment, run_lap_experiment, steps_to_reach
from latentprior.experiments.report import Curve, markdown_table, plot_curves, write_report
from latentprior.experiments.video import make_render_env, record_episode
from latentprior.experts import default_expert, evaluate_expert
from latentprior.latent.action_prior import ActionPrior
from latentprior.rl import load_policy

ENV_ID = "HalfCheetah-v5"
#: Environment steps per variant: both runs together fit in about 10 minutes on 2 CPU cores.
DEFAULT_PPO_STEPS = 150_000


def _say(message: str, progress: bool) -> None:
    if progress:
        print(f"[quickstart] {message}", flush=True)


def quickstart(out: str | os.PathLike, ppo_steps: int | None = None, seed: int = 0, progress: bool = True) -> Path:
    """Run the demonstration pipeline and write ``out/report.md``; returns its path.

    :param out: output directory (created).
    :param ppo_steps: environment steps per PPO variant (default :data:`DEFAULT_PPO_STEPS`).
    :param seed: seed of the demonstrations, the prior and both PPO runs.
    :param progress: print each stage and show PPO's progress line.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ppo_steps = ppo_steps or DEFAULT_PPO_STEPS
    started = time.time()

    # --- 1. expert: the open-loop oscillator gait shipped with the package --------------------
    expert = default_expert(ENV_ID)
    expert_return = float(evaluate_expert(expert, ENV_ID, episodes=1, seed=seed)[0])
    _say(f"expert: {type(expert).__name__}, return {expert_return:.1f} over 1000 steps", progress)

    # --- 2. demonstrations --------------------------------------------------------------------
    demos_path = out / "demonstrations.h5"
    if not demos_path.exists():
        collect(expert, ENV_ID, episodes=2, noise_std=0.0, seed=seed, num_envs=2, out=demos_path, progress=progress, license="MIT", command="latentprior quickstart")
    dataset = load_dataset(demos_path)
    summary_text = format_summary(dataset.summary())
    if progress:
        print(summary_text, flush=True)

    # --- 3-4. latent action prior, then PPO and PPO+latent with the same budget and seed -------
    results = {}
    for variant in ("ppo", "ppo+latent"):
        experiment = LAPExperiment(env_id=ENV_ID, variant=variant, demonstration=str(demos_path), total_steps=ppo_steps, seed=seed, eval_episodes=5)
        results[variant] = run_lap_experiment(experiment, out / variant.replace("+", "_"), progress=progress, metadata={"command": "latentprior quickstart"})
    prior_dir = out / "ppo_latent" / "action_prior"
    prior = ActionPrior.load(prior_dir)
    _say(f"latent size {prior.latent_dim} of {prior.action_dim} (PCA > 97 %), reconstruction MSE {prior.reconstruction_mse.mean():.4f}", progress)

    # --- 5. report: curves, table, videos -----------------------------------------------------
    curves = {name: Curve(np.array(r["curve"]["steps"]), np.array(r["curve"]["task_return_mean"]),
                          None if r["curve"]["task_return_std"] is None else np.array(r["curve"]["task_return_std"]))
              for name, r in results.items()}
    plot_curves(curves, out / "learning_curves.png", title=f"{ENV_ID}: PPO with and without a latent action prior", reference={"expert": expert_return})
    record_episode(make_render_env(ENV_ID), expert.act, out / "expert.mp4", seed=seed)
    best = max(results, key=lambda name: results[name]["final_task_return_mean"])
    plan = plan_lap_experiment(LAPExperiment(**results[best]["experiment"]))
    policy = load_policy(out / best.replace("+", "_") / "run")
    wrappers = lap_wrappers(plan, prior if plan.variant.needs_prior else None)
    record_episode(make_render_env(ENV_ID, wrappers), lambda obs, t: policy.act(obs), out / "best_policy.mp4", seed=seed)

    ppo_final = results["ppo"]["final_task_return_mean"]
    rows = []
    for name, r in results.items():
        reached = steps_to_reach(curves[name], ppo_final)
        rows.append([name, f"{r['steps']:,}", r["final_task_return_mean"], r["final_task_return_std"] or float("nan"),
                     "not reached" if reached is None else f"{int(reached):,}", f"{r['wall_s'] / 60:.1f}"])
    minutes = (time.time() - started) / 60
    report = write_report(
        out / "report.md",
        "latentprior quickstart: latent action priors on HalfCheetah-v5",
        [
            ("What ran", _what_ran(expert_return, dataset, prior, ppo_steps, seed, minutes)),
            ("Results", markdown_table(["variant", "env steps", "final eval return", "± std", "steps to reach PPO's final return", "minutes"], rows)
             + "\n\n![learning curves](learning_curves.png)\n\nVideos: [the expert](expert.mp4), "
             f"[the best policy ({best})](best_policy.mp4)."),
            ("Demonstrations", f"```\n{summary_text}\n```"),
            ("Caveats", "One seed at a small budget: a demonstration of the pipeline, not a benchmark. "
             "`benchmarks/latent_action_priors.py` measures the paper's claims at >= 1M steps over 5 seeds."),
        ],
    )
    _say(f"done in {minutes:.1f} min", progress)
    return report


def _what_ran(expert_return, dataset, prior, ppo_steps, seed, minutes) -> str:
    return "\n".join(
        [
            f"1. **Expert**: the oscillator gait shipped with latentprior (open loop, fitted with CMA-ES), "
            f"return {expert_return:.1f} over 1000 steps.",
            f"2. **Demonstrations**: {len(dataset)} episodes, {dataset.num_steps:,} steps, written to `demonstrations.h5`.",
            f"3. **Latent action prior**: autoencoder {prior.action_dim} -> {prior.latent_dim} -> {prior.action_dim} "
            f"(latent size by PCA > 97 % explained variance), mean reconstruction MSE {prior.reconstruction_mse.mean():.4f}; `ppo_latent/action_prior/`.",
            f"4. **PPO** (stable-baselines3 defaults, observation normalisation) and **PPO+latent** (actions "
            f"`0.9 dec(a_latent) + 0.1 a_full`), {ppo_steps:,} environment steps each, seed {seed}; runs under `ppo/` and `ppo_latent/`.",
            f"\nTotal wall-clock: {minutes:.1f} minutes.",
        ]
    )
