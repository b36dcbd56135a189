"""``latentprior quickstart``: the pipeline end to end on an embedded default, no downloads.

    expert (shipped oscillator gait) -> demonstrations (HDF5) -> latent action prior
        -> PPO and PPO+latent side by side on HalfCheetah-v5 -> report.md with curves, table, videos

It is the latent action priors recipe (Hausdörfer et al. 2024) at a budget that finishes in
minutes on two CPU cores; ``benchmarks/latent_action_priors.py`` runs it at the paper's budget.
Everything is written under ``out``; rerunning continues where a previous call stopped
(finished runs are reused, interrupted ones resume from their checkpoints).
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import numpy as np

from latentprior.data import format_summary, load_dataset
from latentprior.data.collect import collect
from latentprior.envs.latent_action import LatentActionWrapper
from latentprior.envs.make import make_vec_env
from latentprior.envs.style_reward import detect_cycle_length
from latentprior.experiments.report import Curve, markdown_table, plot_curves, read_curve, write_report
from latentprior.experiments.video import make_render_env, record_episode
from latentprior.experts import default_expert, evaluate_expert
from latentprior.latent.action_prior import ActionPrior, ActionPriorConfig, fit_action_prior
from latentprior.rl import PPOConfig, load_policy, ppo

ENV_ID = "HalfCheetah-v5"
#: Environment steps per variant: both runs together fit in about 10 minutes on 2 CPU cores.
DEFAULT_PPO_STEPS = 150_000
#: Gait cycles of the demonstration the action prior sees (the paper: as little as one).
PRIOR_CYCLES = 10


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

    # --- 3. latent action prior from a few gait cycles of expert actions ----------------------
    prior_dir = out / "action_prior"
    actions = dataset[0].actions
    cycle = detect_cycle_length(dataset[0].qpos[:, 3:9])
    if (prior_dir / "config.json").exists():
        prior = ActionPrior.load(prior_dir)
    else:
        _say(f"fitting the action prior on {PRIOR_CYCLES} gait cycles ({PRIOR_CYCLES * cycle} actions)", progress)
        prior = fit_action_prior(actions[: PRIOR_CYCLES * cycle], ActionPriorConfig(epochs=2000, seed=seed), env_id=ENV_ID)
        prior.save(prior_dir)
    _say(f"latent size {prior.latent_dim} of {prior.action_dim} (PCA > 97 %), reconstruction MSE {prior.reconstruction_mse.mean():.4f}", progress)

    # --- 4. PPO and PPO+latent, the same budget and seed --------------------------------------
    variants = {
        "PPO": (),
        "PPO+latent": (functools.partial(LatentActionWrapper, prior=prior, residual_weight=0.1),),
    }
    results = {}
    for name, wrappers in variants.items():
        _say(f"training {name} for {ppo_steps:,} steps", progress)
        env_fn = functools.partial(make_vec_env, ENV_ID, wrappers=wrappers, backend="sync")
        config = PPOConfig(total_steps=ppo_steps, seed=seed, eval_every=max(ppo_steps // 10, 2048), eval_episodes=5)
        results[name] = ppo.train(env_fn, config, out / "runs" / name.replace("+", "_"), progress=progress, metadata={"env_id": ENV_ID, "variant": name})

    # --- 5. report: curves, table, videos -----------------------------------------------------
    curves = {name: read_curve(r.paths["metrics"]) for name, r in results.items()}
    plot_curves(curves, out / "learning_curves.png", title=f"{ENV_ID}: PPO with and without a latent action prior", reference={"expert": expert_return})
    record_episode(make_render_env(ENV_ID), expert.act, out / "expert.mp4", seed=seed)
    best = max(results, key=lambda name: curves[name].returns[-1])
    policy = load_policy(results[best].run_dir)
    record_episode(make_render_env(ENV_ID, variants[best]), lambda obs, t: policy.act(obs), out / "best_policy.mp4", seed=seed)

    rows = [[name, ppo_steps, *_final(curves[name]), _steps_to_reach(curves[name], curves["PPO"].returns[-1])] for name in results]
    minutes = (time.time() - started) / 60
    report = write_report(
        out / "report.md",
        "latentprior quickstart: latent action priors on HalfCheetah-v5",
        [
            ("What ran", _what_ran(expert_return, dataset, prior, ppo_steps, seed, minutes)),
            ("Results", markdown_table(["variant", "env steps", "final eval return", "± std", "steps to reach PPO's final return"], rows)
             + "\n\n![learning curves](learning_curves.png)\n\nVideos: [the expert](expert.mp4), "
             f"[the best policy ({best})](best_policy.mp4)."),
            ("Demonstrations", f"```\n{summary_text}\n```"),
            ("Caveats", "One seed at a small budget: a demonstration of the pipeline, not a benchmark. "
             "`benchmarks/latent_action_priors.py` measures the paper's claims at >= 1M steps over 5 seeds."),
        ],
    )
    _say(f"done in {minutes:.1f} min", progress)
    return report


def _final(curve: Curve) -> tuple[float, float]:
    std = float(curve.returns_std[-1]) if curve.returns_std is not None else float("nan")
    return float(curve.returns[-1]), std


def _steps_to_reach(curve: Curve, target: float) -> str:
    reached = np.flatnonzero(curve.returns >= target)
    return f"{int(curve.steps[reached[0]]):,}" if len(reached) else "not reached"


def _what_ran(expert_return, dataset, prior, ppo_steps, seed, minutes) -> str:
    return "\n".join(
        [
            f"1. **Expert**: the oscillator gait shipped with latentprior (open loop, fitted with CMA-ES), "
            f"return {expert_return:.1f} over 1000 steps.",
            f"2. **Demonstrations**: {len(dataset)} episodes, {dataset.num_steps:,} steps, written to `demonstrations.h5`.",
            f"3. **Latent action prior**: autoencoder {prior.action_dim} -> {prior.latent_dim} -> {prior.action_dim} "
            f"(latent size by PCA > 97 % explained variance), mean reconstruction MSE {prior.reconstruction_mse.mean():.4f}; `action_prior/`.",
            f"4. **PPO** (stable-baselines3 defaults, observation normalisation) and **PPO+latent** (actions "
            f"`0.9 dec(a_latent) + 0.1 a_full`), {ppo_steps:,} environment steps each, seed {seed}; runs under `runs/`.",
            f"\nTotal wall-clock: {minutes:.1f} minutes.",
        ]
    )
