"""Benchmark: what one step of each model costs on this machine (issues 3-5).

Wall-clock time of one training step of each model, at the paper's size and at the CPU size the
project uses, of the planner's prior sampling, and of the per-environment-step inference of the
frozen low-level modules. Data are synthetic, of the right shapes (HalfCheetah-v5 and Ant-v5
observation and action sizes, read from Gymnasium): costs do not depend on the values.

Every training step runs the library's own fit function (``fit_action_prior``, ``fit_npmp``,
``fit_vae``, ``fit_prior``): it is called with a step count just above what the measurement needs
and a callback that reads each step's time from the fit's history (``log_interval`` 1), stopping
the fit once enough steps are timed. A step is therefore everything the fit does per step:
minibatch sampling, forward, backward, the optimiser, the learning-rate schedule and the
``.item()`` of the logged losses. ``fit_action_prior`` calls back only every 100 epochs, so its
step time is the time of 100 epochs divided by their minibatches (1,000 of 32 actions). Sampling
calls ``LatentPrior.sample`` with the arguments ``LatentPlanner.plan`` passes (1024 rollouts of
one history latent, ``lengths``, temperatures 3 and 9), with and without the key/value cache.

Measurements (``--parts``):

  lap        latent action priors: the autoencoder's training step (authors' architecture, batch 32;
             one size: the paper's is small enough for a CPU) and decoding one latent action.
  npmp       neural probabilistic motor primitives: a BC step and an LFPC step (``--size paper``:
             NPMPConfig's defaults; ``cpu``: ``benchmarks/npmp.py``'s SIZES["cpu"]), and one
             decoder action (one environment step of a high-level policy acting through it).
  vae        latent space priors: a state-VAE step (VAEConfig() and VAEConfig.small()).
  prior      latent space priors: a prior step (PriorConfig() and PriorConfig.small()); the prior
             sees only 32-d latents, so it is measured once, not per robot.
  sample     the planner's prior sampling: 1024 rollouts x 1, 8 and 64 latent steps, cache on/off.
  plan       one planning decision for 4 environments (LatentPlanner.plan, 1024 candidates, critics of
             SAC's size): candidates of 4 latents drawn whole, or first latents only (the critics read
             nothing else: the default with critics), and first latents at the authors' horizon 64.
  low-level  the LSP low-level policy's action for one environment step (fit_low_level_bc's
             network, 2 x 256; the only size the project has).

Each measurement: warm-up (one step or call, or one 1,000-step chunk for the autoencoder), then at
least --min-repeats and at most --repeats timed ones, stopping once they add up to --budget seconds;
median and interquartile range (q75 - q25) over them. The 1-minute load average is recorded before
and after each measurement: the machine may be shared with long benchmark runs, and every timing
is slower by however much CPU the others take. A measurement whose warm-up plus --min-repeats is
estimated to exceed --max-seconds (default 120) is skipped, with the estimate in the results,
unless --include-slow; at the defaults that is sampling 64 latents without the cache at the
paper's prior size (estimated from the 8-step time scaled by the tokens processed).

Results: ``benchmarks/results/model_costs/results.json`` (merged with an earlier file in the same
folder: a rerun of some parts replaces only their rows) and ``REPORT.md``. ``--quick``: the CPU
sizes, HalfCheetah only, two repeats, into ``benchmarks/results/model_costs_quick/`` (git-ignored).

    python benchmarks/model_costs.py                          # everything (minutes)
    python benchmarks/model_costs.py --parts sample --sizes paper --include-slow
    python benchmarks/model_costs.py --threads 2 --results benchmarks/results/model_costs_2threads
    python benchmarks/model_costs.py --quick                  # smoke check
    python benchmarks/model_costs.py --report                 # REPORT.md from results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from common import command_line, csv_list, machine, markdown_table, now
from latentprior.io import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PARTS = ("lap", "npmp", "vae", "prior", "sample", "plan", "low-level")
SIZES = ("paper", "cpu")
ENVS = ("HalfCheetah-v5", "Ant-v5")
#: Latent action sizes of the paper (Hausdörfer et al. 2024): HalfCheetah 3, Ant 4.
LAP_LATENT = {"HalfCheetah-v5": 3, "Ant-v5": 4}
LAP_ACTIONS = 320          # ten minibatches of 32 per epoch: 1,000 steps between fit_action_prior's callbacks
HORIZONS = (1, 8, 64)      # planner sampling: one latent step, a probe for the estimate, the full horizon
INFERENCE_CALLS = 200      # per-environment-step calls per timed repeat
QUICK = {"sizes": "cpu", "envs": "HalfCheetah-v5", "repeats": 2, "min_repeats": 2, "budget": 1.0}


# ===================================================================================== timing
class _Stop(Exception):
    """Enough repeats are timed."""


class _Skip(Exception):
    """The measurement would take longer than --max-seconds."""

    def __init__(self, estimate_s: float):
        super().__init__(estimate_s)
        self.estimate_s = estimate_s


@dataclasses.dataclass
class Plan:
    """How many repeats a measurement times."""

    warmup: int = 1
    min_repeats: int = 5
    repeats: int = 30
    budget: float = 10.0
    max_seconds: float = 120.0
    include_slow: bool = False

    def check(self, estimate_s: float) -> None:
        """Raise :class:`_Skip` if ``estimate_s`` per repeat makes warm-up plus the minimum too long."""
        if not self.include_slow and (self.warmup + self.min_repeats) * estimate_s > self.max_seconds:
            raise _Skip(estimate_s)


class Collector:
    """Seconds per repeat, added one at a time; raises :class:`_Stop` or :class:`_Skip` when due."""

    def __init__(self, plan: Plan):
        self.plan, self.seconds = plan, []

    @property
    def timed(self) -> list[float]:
        return self.seconds[self.plan.warmup :]

    def add(self, seconds: float) -> None:
        self.seconds.append(seconds)
        timed = self.timed
        if len(timed) == 1:
            self.plan.check(timed[0])
        if len(timed) >= self.plan.repeats or (len(timed) >= self.plan.min_repeats and sum(timed) >= self.plan.budget):
            raise _Stop


def fit_step_callback(collector: Collector) -> Callable[[int, dict[str, float]], None]:
    """A fit callback (``log_interval`` 1) that times each step from the history's cumulative ``seconds``."""
    last = [0.0]

    def callback(step: int, metrics: dict[str, float]) -> None:
        seconds = metrics["seconds"]
        collector.add(seconds - last[0])
        last[0] = seconds

    return callback


def time_fit(fit: Callable[[Callable], Any], plan: Plan, per: int = 1) -> dict[str, Any]:
    """Run ``fit(callback)`` until the collector stops it; the timing of one step (``per`` steps a repeat)."""
    collector = Collector(plan)
    try:
        fit(collector)
    except _Stop:
        pass
    except _Skip as skip:
        return {"skipped": True, "estimate_s": skip.estimate_s / per}
    return _summary(collector, per)


def time_calls(fn: Callable[[], Any], plan: Plan, per: int = 1, sync: Callable[[], None] = lambda: None,
               estimate_s: float | None = None) -> dict[str, Any]:
    """Time ``fn()`` (``per`` calls of the measured thing each) until enough repeats; skip if estimated too long."""
    collector = Collector(plan)
    try:
        if estimate_s is not None:
            plan.check(estimate_s * per)
        while True:
            start = time.perf_counter()
            fn()
            sync()
            collector.add(time.perf_counter() - start)
    except _Stop:
        pass
    except _Skip as skip:
        return {"skipped": True, "estimate_s": skip.estimate_s / per}
    result = _summary(collector, per)
    if estimate_s is not None:
        result["estimate_s"] = estimate_s  # what the skip rule expected, to judge its estimates by
    return result


def _summary(collector: Collector, per: int) -> dict[str, Any]:
    ms = np.asarray(collector.timed) * 1e3 / per
    q25, median, q75 = np.percentile(ms, [25, 50, 75])
    return {"skipped": False, "median_ms": float(median), "q25_ms": float(q25), "q75_ms": float(q75),
            "iqr_ms": float(q75 - q25), "repeats": len(ms), "steps_per_repeat": per,
            "warmup_ms": [s * 1e3 / per for s in collector.seconds[: collector.plan.warmup]], "times_ms": ms.tolist()}


def params(*modules) -> int:
    return int(sum(p.numel() for m in modules for p in m.parameters()))


# ================================================================================ synthetic data
def env_sizes(env_id: str) -> tuple[int, int]:
    """Observation and action sizes of a Gymnasium environment at its default arguments."""
    import gymnasium as gym

    with gym.make(env_id) as env:
        return env.observation_space.shape[0], env.action_space.shape[0]


def _trajectories(rng: np.random.Generator, episodes: int, frames: int, dim: int) -> list[np.ndarray]:
    """Smooth state-like sequences: a few sinusoids per dimension plus a slow random walk."""
    t = np.arange(frames)[:, None]
    out = []
    for _ in range(episodes):
        freq, phase = rng.uniform(0.02, 0.3, dim), rng.uniform(0, 2 * np.pi, dim)
        walk = np.cumsum(rng.normal(0, 0.05, (frames, dim)), axis=0)
        out.append((np.sin(freq * t + phase) + walk).astype(np.float32))
    return out


def npmp_dataset(env_id: str, episodes: int = 4, steps: int = 300, seed: int = 0):
    """Episodes with ``observations``, ``expert_actions`` and ``jacobians`` (BC and LFPC both fit on it)."""
    import gymnasium as gym

    from latentprior.data import Dataset, DatasetMetadata, Episode

    obs_dim, act_dim = env_sizes(env_id)
    rng = np.random.default_rng(seed)
    eps = []
    for obs in _trajectories(rng, episodes, steps + 1, obs_dim):
        actions = np.tanh(obs[:-1, :act_dim] + rng.normal(0, 0.1, (steps, act_dim))).astype(np.float32)
        jac = rng.normal(0, 0.1, (steps, act_dim, obs_dim)).astype(np.float32)
        eps.append(Episode(observations=obs, expert_actions=actions, jacobians=jac))
    metadata = DatasetMetadata(env_id=env_id, observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                               action_space=gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32), source="synthetic")
    return Dataset(eps, metadata)


def lsp_dataset(env_id: str, episodes: int = 4, frames: int = 1001, seed: int = 0):
    """State sequences long enough for the paper's 256-frame VAE windows, with actions for the low-level BC fit."""
    import gymnasium as gym

    from latentprior.data import Dataset, DatasetMetadata, Episode

    obs_dim, act_dim = env_sizes(env_id)
    rng = np.random.default_rng(seed + 1)
    eps = [Episode(observations=obs, actions=rng.uniform(-1, 1, (frames - 1, act_dim)).astype(np.float32))
           for obs in _trajectories(rng, episodes, frames, obs_dim)]
    metadata = DatasetMetadata(env_id=env_id, observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                               action_space=gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32), source="synthetic")
    return Dataset(eps, metadata)


def gait_actions(act_dim: int, n: int = LAP_ACTIONS, seed: int = 0) -> np.ndarray:
    """Gait-like actions in [-1, 1]: one sinusoid per joint with its own phase."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    return (0.8 * np.sin(2 * np.pi * t / 40 + rng.uniform(0, 2 * np.pi, act_dim))).astype(np.float32)


# ============================================================================== measurements
def npmp_size(size: str) -> dict[str, Any]:
    from npmp import SIZES as NPMP_SIZES  # benchmarks/npmp.py: the CPU size its runs use

    return dict(NPMP_SIZES[size]["npmp"])


def measure_lap(ctx: "Context", env_id: str) -> None:
    from latentprior.latent.action_prior import ActionAutoencoder, ActionPriorConfig, fit_action_prior

    obs_dim, act_dim = env_sizes(env_id)
    k = LAP_LATENT[env_id]
    actions = gait_actions(act_dim)
    steps_per_chunk = 100 * math.ceil(len(actions) / 32)
    n_params = params(ActionAutoencoder(act_dim, k))
    row = {"model": "LAP action autoencoder", "size": "paper (= cpu)", "env": env_id, "params": n_params,
           "config": {"action_dim": act_dim, "latent_dim": k, "batch_size": 32, "actions": len(actions)}}

    def fit(collector: Collector) -> None:
        last = [None]

        def callback(epoch: int, loss: float) -> None:
            now_ = time.perf_counter()
            if last[0] is not None:
                collector.add(now_ - last[0])
            last[0] = now_

        chunks = collector.plan.warmup + collector.plan.repeats + 1
        fit_action_prior(actions, ActionPriorConfig(latent_dim=k, epochs=100 * chunks + 1), env_id, callback)

    ctx.measure({**row, "what": "train step", "batch": "32 actions"},
                lambda: time_fit(fit, ctx.plan, per=steps_per_chunk), device="cpu",
                note="fit_action_prior has no device option")
    prior = fit_action_prior(actions, ActionPriorConfig(latent_dim=k, epochs=1), env_id)
    z = np.zeros(k, np.float32)
    ctx.measure({**row, "what": "decode 1 latent action (per env step)", "batch": "1",
                 "params": params(prior.autoencoder.decoder)},
                lambda: time_calls(lambda: [prior.decode(z) for _ in range(INFERENCE_CALLS)], ctx.plan, INFERENCE_CALLS),
                device="cpu")


def measure_npmp(ctx: "Context", env_id: str, size: str) -> None:
    from latentprior.latent.npmp import NPMPConfig, NPMPNetwork, fit_npmp

    dataset = npmp_dataset(env_id)
    obs_dim, act_dim = env_sizes(env_id)
    fields = npmp_size(size)
    base = NPMPConfig(**fields)
    n_params = params(NPMPNetwork(obs_dim, act_dim, base))
    row = {"model": "NPMP", "size": size, "env": env_id, "params": n_params, "config": {**dataclasses.asdict(base)}}
    seq, k = base.subsequence_length, base.lookahead
    for lfpc in (False, True):
        batch = (f"{base.lfpc_subsequences} x {base.lfpc_copies} copies x {seq} steps" if lfpc
                 else f"{base.batch_size} x {seq} steps")

        def fit(collector: Collector, lfpc: bool = lfpc) -> None:
            steps = collector.plan.warmup + collector.plan.repeats + 1
            config = NPMPConfig(**{**fields, "steps": steps, "log_interval": 1})
            fit_npmp(dataset, config, lfpc=lfpc, callback=fit_step_callback(collector))

        ctx.measure({**row, "what": f"{'LFPC' if lfpc else 'BC'} train step", "batch": f"{batch} (+K {k})"},
                    lambda fit=fit: time_fit(fit, ctx.plan), device="cpu", note="fit_npmp has no device option")
    npmp = fit_npmp(dataset, NPMPConfig(**{**fields, "steps": 1, "batch_size": 4}))
    obs, z = np.zeros(obs_dim, np.float32), np.zeros(npmp.latent_dim, np.float32)
    ctx.measure({**row, "what": "decoder action (per env step)", "batch": "1", "params": params(npmp.network.decoder)},
                lambda: time_calls(lambda: [npmp.decoder_action(obs, z) for _ in range(INFERENCE_CALLS)], ctx.plan,
                                   INFERENCE_CALLS), device="cpu")


def vae_config(size: str, **overrides):
    from latentprior.latent.lsp import VAEConfig

    return VAEConfig(**overrides) if size == "paper" else VAEConfig.small(**overrides)


def prior_config(size: str, **overrides):
    from latentprior.latent.lsp import PriorConfig

    return PriorConfig(**overrides) if size == "paper" else PriorConfig.small(**overrides)


def measure_vae(ctx: "Context", env_id: str, size: str) -> None:
    from latentprior.latent.lsp import VAENetwork, fit_vae

    dataset = ctx.lsp_dataset(env_id)
    config = vae_config(size, device=ctx.device)
    row = {"model": "LSP state VAE", "size": size, "env": env_id, "what": "train step",
           "batch": f"{config.batch_size} x {config.window} frames", "config": dataclasses.asdict(config),
           "params": params(VAENetwork(dataset[0].observations.shape[1], config))}

    def fit(collector: Collector) -> None:
        steps = collector.plan.warmup + collector.plan.repeats + 1
        fit_vae(dataset, vae_config(size, device=ctx.device, steps=steps, log_interval=1), fit_step_callback(collector))

    ctx.measure(row, lambda: time_fit(fit, ctx.plan), device=ctx.device)


def measure_prior(ctx: "Context", size: str) -> None:
    from latentprior.latent.lsp import PriorNetwork, fit_prior

    vae, dataset = ctx.vae(size), ctx.lsp_dataset(ENVS[0])
    config = prior_config(size, device=ctx.device)
    row = {"model": "LSP prior", "size": size, "env": f"any ({vae.latent_dim}-d latents)", "what": "train step",
           "batch": f"{config.batch_size} x {config.context + 1} latents", "config": dataclasses.asdict(config),
           "params": params(PriorNetwork(vae.latent_dim, config))}

    def fit(collector: Collector) -> None:
        steps = collector.plan.warmup + collector.plan.repeats + 1
        fit_prior(vae, dataset, prior_config(size, device=ctx.device, steps=steps, log_interval=1),
                  fit_step_callback(collector))

    ctx.measure(row, lambda: time_fit(fit, ctx.plan), device=ctx.device)


def measure_sample(ctx: "Context", size: str) -> None:
    import torch

    from latentprior.rl.prior_integrations import LSPIntegrationConfig

    prior = ctx.prior(size)
    plan_config = LSPIntegrationConfig()
    rollouts, device = plan_config.plan_rollouts, prior.device
    # What LatentPlanner.plan passes for one environment scoring whole candidates: its history (context = 1
    # latent), continued once per rollout (the prior encodes the history once for all of them).
    context = (torch.rand(1, plan_config.context, prior.latent_dim, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    lengths = torch.full((1,), plan_config.context, device=device)
    generator = torch.Generator(device).manual_seed(0)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    row = {"model": "LSP prior", "size": size, "env": f"any ({prior.latent_dim}-d latents)",
           "params": params(prior.network), "config": {**dataclasses.asdict(prior.config),
           "plan_rollouts": rollouts, "plan_temperature": plan_config.plan_temperature,
           "plan_mixture_temperature": plan_config.plan_mixture_temperature, "history_latents": plan_config.context}}
    measured: dict[tuple[int, bool], float] = {}
    for horizon in HORIZONS:
        for cache in (True, False):
            def call(horizon=horizon, cache=cache):
                prior.sample(horizon, rollouts, context, generator, lengths=lengths, cache=cache,
                             temperature=plan_config.plan_temperature,
                             mixture_temperature=plan_config.plan_mixture_temperature)

            estimate = None
            shorter = [h for (h, c) in measured if c == cache and h < horizon]
            if shorter:  # scale the longest shorter horizon's time by the tokens the transformer processes
                h0 = max(shorter)
                # (at least one position: a single cached step is the history's, shared by the rollouts, almost free)
                estimate = measured[(h0, cache)] * _tokens(horizon, cache, prior.context) / max(_tokens(h0, cache, prior.context), 1)
            what = f"sample {horizon} latent step{'s' if horizon > 1 else ''}, cache {'on' if cache else 'off'}"
            note = None
            if cache and plan_config.context + horizon - 1 > prior.context:  # latents before the last draw
                note = (f"the prior's context ({prior.context} latents) is shorter than history + horizon: once it "
                        "is full, each step re-encodes the sliding window despite the cache")
            result = ctx.measure({**row, "what": what, "batch": f"{rollouts} rollouts"},
                                 lambda call=call, estimate=estimate: time_calls(call, ctx.plan, sync=sync, estimate_s=estimate),
                                 device=str(device), note=note)
            if not result["skipped"]:
                measured[(horizon, cache)] = result["median_ms"] / 1e3


def measure_plan(ctx: "Context", size: str) -> None:
    """One planning decision (``LatentPlanner.plan``) for the LSP benchmark's 4 environments, scored by
    ``critic_score`` with SAC's critics (``QEnsemble``, 2 x 256 x 256, on Ant's 27-d observation):
    candidates drawn whole (as for a score of whole sequences, e.g. the authors' decoded objective) or
    first latents only (what ``critic_score`` declares)."""
    import types

    import torch

    from latentprior.rl.networks import QEnsemble
    from latentprior.rl.prior_integrations import LatentPlanner, LSPIntegrationConfig, critic_score

    prior, envs, obs_dim = ctx.prior(size), 4, 27
    torch.manual_seed(0)
    critic = QEnsemble(obs_dim, [-1.0] * prior.latent_dim, [1.0] * prior.latent_dim).to(prior.device)
    first = critic_score(types.SimpleNamespace(normalize=lambda obs: obs), critic)

    def whole(obs, candidates):  # the same score, without saying it reads first latents only
        return first(obs, candidates)

    history = torch.rand(envs, 1, prior.latent_dim, generator=torch.Generator().manual_seed(0)).to(prior.device) * 2 - 1
    obs = torch.zeros(envs, obs_dim, device=prior.device)
    sync = (lambda: torch.cuda.synchronize(prior.device)) if prior.device.type == "cuda" else (lambda: None)
    # Whole candidates at the benchmark's horizon only: at the authors' 64 they cost what `sample` measures, x 4.
    for horizon, name, score in ((4, "whole candidates", whole), (4, "first latents", first), (HORIZONS[-1], "first latents", first)):
        config = LSPIntegrationConfig(plan_horizon=horizon)
        planner = LatentPlanner(prior, lambda o: (history, torch.ones(envs, dtype=torch.long, device=prior.device)), config, score)
        row = {"model": "LSP planner", "size": size, "env": f"Ant-v5 ({envs} envs)",
               "what": f"plan: {config.plan_rollouts} x {horizon} latents, {name}", "batch": f"{envs} x {config.plan_rollouts}",
               "params": params(prior.network), "config": {"plan_rollouts": config.plan_rollouts, "plan_horizon": horizon,
                                                           "history_latents": 1, "score": name}}
        with torch.no_grad():
            ctx.measure(row, lambda planner=planner: time_calls(lambda: planner.plan(obs), ctx.plan, sync=sync), device=str(prior.device))


def _tokens(horizon: int, cache: bool, context: int, history: int = 1, rollouts: int = 1024) -> float:
    """Transformer positions processed per rollout to sample ``horizon`` latents continuing one history of
    ``history`` latents ``rollouts`` times (``LatentPrior._continue``). With the cache, what the rollouts
    share (the start token and the history in the window) is encoded once for all of them."""
    total = 0.0
    for step in range(horizon):
        if not cache:
            total += min(history + step, context) + 1  # start token + the window
        elif step == 0:
            total += (min(history, context) + 1) / rollouts
        elif history + step <= context:  # a free position: one new token
            total += 1
        elif step < context:  # the window slides: the history's part once, the generated latents per rollout
            total += (context - step + 1) / rollouts + step
        else:
            total += context + 1
    return total


def measure_low_level(ctx: "Context", env_id: str) -> None:
    from latentprior.experiments.low_level import fit_low_level_bc

    dataset = ctx.lsp_dataset(env_id)
    low_level = fit_low_level_bc(ctx.vae("cpu", env_id), dataset, epochs=1)
    proprio = np.zeros(dataset[0].observations.shape[1], np.float32)
    z = np.zeros(low_level.latent_dim, np.float32)
    row = {"model": "LSP low-level policy", "size": "project (2 x 256)", "env": env_id,
           "what": "action (per env step)", "batch": "1", "params": params(low_level.policy.actor),
           "config": {"hidden_sizes": [256, 256], "target_offsets": list(low_level.config.target_offsets)}}
    ctx.measure(row, lambda: time_calls(lambda: [low_level.act(proprio, z) for _ in range(INFERENCE_CALLS)], ctx.plan,
                                        INFERENCE_CALLS), device="cpu")


class Context:
    """Shared state of one run: the plan, device, cached datasets and models, the rows measured."""

    def __init__(self, plan: Plan, device: str, command: str, save: Callable[[list[dict[str, Any]]], None]):
        self.plan, self.device, self.command, self.save = plan, device, command, save
        self.rows: list[dict[str, Any]] = []
        self._datasets: dict[str, Any] = {}
        self._vaes: dict[str, Any] = {}
        self._priors: dict[str, Any] = {}

    def lsp_dataset(self, env_id: str):
        if env_id not in self._datasets:
            self._datasets[env_id] = lsp_dataset(env_id)
        return self._datasets[env_id]

    def vae(self, size: str, env_id: str = ENVS[0]):
        """A VAE of this size after one step (the latents' values do not matter for cost)."""
        from latentprior.latent.lsp import fit_vae

        if (size, env_id) not in self._vaes:
            self._vaes[size, env_id] = fit_vae(self.lsp_dataset(env_id), vae_config(size, device=self.device, steps=1))
        return self._vaes[size, env_id]

    def prior(self, size: str):
        from latentprior.latent.lsp import fit_prior

        if size not in self._priors:
            self._priors[size] = fit_prior(self.vae(size), self.lsp_dataset(ENVS[0]),
                                           prior_config(size, device=self.device, steps=1))
        return self._priors[size]

    def measure(self, row: dict[str, Any], run: Callable[[], dict[str, Any]], device: str, note: str | None = None
                ) -> dict[str, Any]:
        load_before, started = os.getloadavg()[0], now()
        t0 = time.perf_counter()
        result = run()
        row = {**row, **result, "order": len(self.rows), "device": device, "load_avg_1m_before": load_before,
               "load_avg_1m_after": os.getloadavg()[0], "started": started, "wall_s": time.perf_counter() - t0,
               "command": self.command}
        if note:
            row["note"] = note
        if result["skipped"]:
            row["note"] = (f"skipped: estimated {result['estimate_s']:,.1f} s per repeat, over --max-seconds "
                           f"{self.plan.max_seconds:g} s with warm-up and {self.plan.min_repeats} repeats; "
                           "--include-slow measures it")
        self.rows.append(row)
        self.save(self.rows)  # after every measurement, so an interrupted run keeps what it measured
        if result["skipped"]:
            text = f"skipped (estimated {result['estimate_s'] * 1e3:,.1f} ms)"
        else:
            text = f"{result['median_ms']:,.3f} ms (IQR {result['iqr_ms']:,.3f}, n {result['repeats']})"
        print(f"{row['model']:22s} {row['size']:14s} {row['env']:18s} {row['what']:40s} {text}  "
              f"load {load_before:.1f}->{row['load_avg_1m_after']:.1f}", flush=True)
        return row


# ==================================================================================== results
KEY = ("model", "size", "env", "what")


def _merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    replaced = {tuple(r[k] for k in KEY) for r in new}
    return [r for r in old if tuple(r[k] for k in KEY) not in replaced] + new


_ORDER = {m: i for i, m in enumerate(["LAP action autoencoder", "NPMP", "LSP state VAE", "LSP prior", "LSP low-level policy"])}


def _sort_key(r: dict[str, Any]):
    env = ENVS.index(r["env"]) if r["env"] in ENVS else len(ENVS)
    return (_ORDER.get(r["model"], 99), r["what"].startswith("sample"), not r["size"].startswith("paper"), env,
            r.get("order", 0))


def _ms(v: float) -> str:
    return f"{v:,.3f}" if v < 1 else f"{v:,.2f}" if v < 100 else f"{v:,.0f}"


def report(data: dict[str, Any]) -> str:
    rows = sorted(data["measurements"], key=_sort_key)
    runs = data["runs"]
    facts = runs[-1]["machine"] if runs else {}
    loads = [r[k] for r in rows for k in ("load_avg_1m_before", "load_avg_1m_after")]
    lines = [
        "# Model costs: one training step, prior sampling, per-step inference",
        "",
        f"Machine: {facts.get('cpu', '?')}, {facts.get('cores', '?')} cores; versions "
        f"{json.dumps(facts.get('versions', {}))}. Torch threads: "
        f"{', '.join(sorted({str(r['threads']) for r in runs}))}; device: {', '.join(sorted({r['device'] for r in runs}))}.",
        f"**Load**: the 1-minute load average was {min(loads):.1f} to {max(loads):.1f} during the measurements (before "
        "and after each, in the table): the machine was shared with long benchmark runs, so every time here is that "
        "of one thread competing for the cores, slower than on an idle machine by however much CPU the others took."
        if loads else "No measurements yet.",
        "Runs: " + "; ".join(f"`{r['command']}` ({r['started']} to {r['finished']}"
                             f"{'' if r.get('complete', True) else ', interrupted'})" for r in runs) + ".",
        "",
    ]
    if any(r.get("quick") for r in runs):
        lines += ["**Smoke run (`--quick`): two repeats, CPU sizes only; the numbers are rough.**", ""]
    table = []
    for r in rows:
        if r["skipped"]:
            median, iqr = f"skipped (est. {_ms(r['estimate_s'] * 1e3)})", "-"
        else:
            median, iqr = _ms(r["median_ms"]), _ms(r["iqr_ms"])
        table.append([r["model"], r["size"], r["env"], r["what"], r["batch"], median, iqr, f"{r['params']:,}",
                      "-" if r["skipped"] else r["repeats"], f"{r['load_avg_1m_before']:.1f}→{r['load_avg_1m_after']:.1f}"])
    lines += [markdown_table(["model", "size", "env", "what", "batch", "median ms", "IQR ms", "params", "n",
                              "load 1m"], table), ""]
    notes = [
        "How: every training step is the library's fit function (`fit_action_prior`, `fit_npmp`, `fit_vae`, "
        "`fit_prior`) on synthetic data of the robot's sizes, timed per step from its history (`log_interval` 1) "
        "after one warm-up step and stopped by its callback; a step includes minibatch sampling, forward, backward, "
        "Adam, the schedule and the logged `.item()`s. The autoencoder's callback comes every 100 epochs, so its "
        f"step is 100 epochs / 1,000 minibatches of 32 ({LAP_ACTIONS} actions). Median and IQR (q75 - q25) over n "
        "repeats. Per-env-step rows are single calls with NumPy in and out "
        f"(`ActionPrior.decode`, `NPMP.decoder_action`, `LowLevelPolicy.act`), {INFERENCE_CALLS} per repeat.",
        "Sizes: NPMP `paper` = `NPMPConfig()` (Merel et al.: encoder 2 x 1024, decoder 3 x 1024, latent 60, BC 512 "
        "x 30 steps, LFPC 32 x 5 copies), `cpu` = `benchmarks/npmp.py` SIZES['cpu'] (2 x 256, 3 x 256, BC 64 x 10, "
        "LFPC 16 x 5 x 10). LSP `paper` = `VAEConfig()` / `PriorConfig()` (Gehring et al.), `cpu` = "
        "`VAEConfig.small()` / `PriorConfig.small()`. The LAP autoencoder has one size (the authors'; latent 3 for "
        "HalfCheetah, 4 for Ant). The LSP low-level policy is `fit_low_level_bc`'s 2 x 256 network (the authors' "
        "is not reproduced). Ant-v5 is Gymnasium's default 105-d observation (with contact forces).",
        "Sampling: `LatentPrior.sample` with the arguments `LatentPlanner.plan` passes for one environment "
        "(1024 rollouts continuing one history latent, `lengths`, temperature 3, mixture temperature 9); a planning "
        "decision adds only the scoring. The cached sampler keeps the transformer's keys and values; the `cpu` "
        "prior's context is 32 latents, so beyond that each step re-encodes the 32-latent window even with the "
        "cache. Rows measured before 2026-12-07 passed the history repeated per rollout (the sampler then encoded "
        "it 1024 times; it now encodes it once for all of them).",
        "Planning: one `LatentPlanner.plan` decision for 4 environments (the LSP benchmark's k = 4) with a history of "
        "one latent, 1024 candidates, scored by two 2 x 256 critics on Ant's 27-d observation and the candidate's "
        "first latent. `whole candidates`: a score of whole sequences (as the authors' decoded objective), every "
        "candidate drawn to the horizon; `first latents`: the critics' score declares it reads first latents only, "
        "so the planner draws those and continues the best candidate alone, as far as it runs before the next "
        "decision (4 latents): the same plans in distribution, and the horizon no longer costs anything.",
    ]
    skipped = [r for r in rows if r["skipped"]]
    if skipped:
        notes.append("Skipped (each would take over `--max-seconds` with warm-up and the minimum repeats; "
                     "`--include-slow` measures them): " + "; ".join(
                         f"{r['model']} {r['size']} {r['what']}: estimated {r['estimate_s']:,.0f} s per call" +
                         (" (the next shorter horizon's time scaled by the transformer positions processed)"
                          if r["what"].startswith("sample") else "")
                         for r in skipped) + ".")
        checks = [r for r in rows if not r["skipped"] and r.get("estimate_s") and r["what"].startswith("sample")
                  and r["what"].startswith(f"sample {max(HORIZONS)} ")]
        if checks:
            notes.append("How good such estimates are, where the time was measured too: " + "; ".join(
                f"{r['size']} prior, {r['what']}: estimated {r['estimate_s']:,.1f} s, measured {r['median_ms'] / 1e3:,.1f} s"
                for r in checks) + ".")
    if any(r["device"] != "cpu" for r in runs):
        notes.append("`fit_action_prior` and `fit_npmp` have no device option: their rows run on the CPU whatever "
                     "`--device` says (the `device` field of each row).")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# ======================================================================================= main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    add("--sizes", default=",".join(SIZES), help="paper and/or cpu")
    add("--envs", default=",".join(ENVS), help="robots whose sizes the data take")
    add("--threads", type=int, default=1, help="torch threads (default 1)")
    add("--device", default="cpu", help="cpu (default) or cuda for the fits and sampling that take a device")
    add("--repeats", type=int, default=30, help="most timed repeats per measurement")
    add("--min-repeats", type=int, default=5, help="fewest timed repeats per measurement")
    add("--budget", type=float, default=10.0, help="stop timing once the repeats add up to this many seconds")
    add("--max-seconds", type=float, default=120.0, help="skip a measurement estimated to take longer (warm-up + min repeats)")
    add("--include-slow", action="store_true", help="measure the ones --max-seconds would skip")
    add("--results", type=Path, default=None, help="default: benchmarks/results/model_costs[_quick]")
    add("--quick", action="store_true", help="CPU sizes, HalfCheetah, two repeats, into model_costs_quick (emptied first)")
    add("--report", action="store_true", help="only write REPORT.md from results.json")
    args = parser.parse_args(argv)

    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    parts, sizes, envs = csv_list(args.parts), csv_list(args.sizes), csv_list(args.envs)
    for what, chosen, known in [("parts", parts, PARTS), ("sizes", sizes, SIZES), ("envs", envs, ENVS)]:
        if set(chosen) - set(known):
            parser.error(f"unknown {what} {sorted(set(chosen) - set(known))}; choose from {', '.join(known)}")
    if args.quick and args.results is None:
        shutil.rmtree(RESULTS / "model_costs_quick", ignore_errors=True)
    results = (args.results or RESULTS / ("model_costs_quick" if args.quick else "model_costs")).resolve()
    results.mkdir(parents=True, exist_ok=True)
    path = results / "results.json"
    data = json.loads(path.read_text()) if path.is_file() else {"measurements": [], "runs": []}

    if not args.report:
        import torch

        if args.device.startswith("cuda") and not torch.cuda.is_available():
            parser.error("--device cuda: torch sees no CUDA device here")
        torch.set_num_threads(args.threads)
        plan = Plan(min_repeats=args.min_repeats, repeats=max(args.repeats, args.min_repeats), budget=args.budget,
                    max_seconds=args.max_seconds, include_slow=args.include_slow)
        command = command_line()
        run = {"command": command, "started": now(), "machine": machine(), "threads": torch.get_num_threads(),
               "device": args.device, "quick": args.quick, "plan": dataclasses.asdict(plan),
               "load_avg_1m_before": os.getloadavg()[0]}
        print(f"load average (1 min) {run['load_avg_1m_before']:.2f}; torch threads {run['threads']}; device {args.device}",
              flush=True)
        old = data

        def save(rows: list[dict[str, Any]], finished: bool = False) -> None:
            run.update(finished=now(), load_avg_1m_after=os.getloadavg()[0], complete=finished)
            new = {"measurements": _merge(old["measurements"], rows), "runs": [*old["runs"], run]}
            atomic_write_json(path, new)
            atomic_write_text(results / "REPORT.md", report(new))

        ctx = Context(plan, args.device, command, save)
        for env_id in envs:
            if "lap" in parts:
                measure_lap(ctx, env_id)
            for size in sizes:
                if "npmp" in parts:
                    measure_npmp(ctx, env_id, size)
                if "vae" in parts:
                    measure_vae(ctx, env_id, size)
            if "low-level" in parts:
                measure_low_level(ctx, env_id)
        for size in sizes:
            if "prior" in parts:
                measure_prior(ctx, size)
            if "sample" in parts:
                measure_sample(ctx, size)
            if "plan" in parts:
                measure_plan(ctx, size)
        save(ctx.rows, finished=True)
        data = json.loads(path.read_text())
    text = report(data)
    atomic_write_text(results / "REPORT.md", text)
    print(text)


if __name__ == "__main__":
    main()
