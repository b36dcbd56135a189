"""What every training run does around its learner: files, resume, seeds, logging, evaluation, checkpoints.

A learner (``ppo.train``, ``sac.train``) opens a :class:`Run` on a run directory and calls it at
its logging points and checkpoint boundaries; the run directory then holds::

    config.json        the learner, its resolved config, hook names, caller's metadata
    metrics.csv        one row per logging point (train, rollout, time and eval/ metrics)
    tensorboard/       the same metrics as TensorBoard events
    checkpoints/       the newest checkpoints (see latentprior.rl.checkpoint)
    policy/            the final policy (latentprior.rl.load_policy reads it)
    eval.json          the final evaluation, episode by episode

Running the same call again on the same directory continues from the newest checkpoint (or
returns at once if the run is complete). A continued run is repeatable but not identical to an
uninterrupted one: environments cannot be checkpointed, so they start new episodes, seeded from
the config's seed and the checkpoint's step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

import latentprior
from latentprior.io import LatentPriorError, atomic_write_json, read_json
from latentprior.rl.checkpoint import load_checkpoint, optimizer_load, optimizer_to_tensors, save_checkpoint
from latentprior.rl.evaluation import EvalResult, evaluate_policy
from latentprior.rl.metrics import EpisodeStats, MetricsLogger, ProgressDisplay
from latentprior.rl.policy import Policy, load_policy
from latentprior.rl.runtime import derive_seed, get_rng_state, resolve_device, seed_everything, set_rng_state, torch_settings

__all__ = ["EnvFactory", "RunConfig", "TrainResult", "Run", "eval_seed", "final_observations"]

EnvFactory = Callable[[int, int], gym.vector.VectorEnv]
"""``(num_envs, seed) -> vector env`` with same-step autoreset, e.g.
``functools.partial(latentprior.envs.make.make_vec_env, "HalfCheetah-v5")``."""

_TRAIN_ENVS, _EVAL_ENVS = 0, 1  # purposes, mixed into derived seeds


@dataclasses.dataclass
class RunConfig:
    """Settings every learner shares; ``PPOConfig`` and ``SACConfig`` extend it."""

    total_steps: int = 1_000_000
    """environment steps to train for, counted over all sub-environments"""
    seed: int = 0
    """seeds torch, NumPy, Python and (derived) the environments; same seed, same machine -> same run"""
    num_envs: int = 1
    """sub-environments stepped together"""
    device: str = "auto"
    """"auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N\""""
    torch_threads: int = 1
    """torch intra-op threads; 1 is fastest beside environment stepping on a small machine"""
    matmul_precision: str = "auto"
    """float32 matmul precision: "auto" picks the fastest setting that measures exact (runtime.py),
    or "highest", "high", "medium" (torch.set_float32_matmul_precision)"""
    eval_every: int = 25_000
    """environment steps between evaluations (at the next logging point); 0: only at the end"""
    eval_episodes: int = 10
    """episodes per evaluation, deterministic actions; 0 disables evaluation"""
    eval_envs: int = 5
    """sub-environments used for evaluation"""
    checkpoint_every: int = 100_000
    """environment steps between checkpoints (at the next learner boundary); 0: only at the end"""
    tensorboard: bool = True
    """also write metrics as TensorBoard events"""


# Settings that may differ between an interrupted run and the call that continues it.
_RESUMABLE = {"total_steps", "eval_every", "eval_episodes", "eval_envs", "checkpoint_every", "tensorboard", "device", "torch_threads"}


@dataclasses.dataclass
class TrainResult:
    """What a learner returns: the trained policy, its last metrics, and where everything is."""

    policy: Policy
    """the trained policy, ready to ``act`` (also saved under ``paths["policy"]``)"""
    metrics: dict[str, float]
    """the last value of every metric logged, including the final evaluation"""
    steps: int
    """environment steps trained"""
    run_dir: Path
    """the run directory"""
    paths: dict[str, Path]
    """config, metrics, tensorboard, checkpoints, policy and eval files in the run directory"""


def eval_seed(seed: int) -> int:
    """The seed evaluation environments are reset with at every evaluation of a run with ``seed``."""
    return derive_seed(seed, _EVAL_ENVS)


def final_observations(next_obs: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
    """``next_obs`` with each finished sub-environment's row replaced by its episode's last observation.

    Same-step autoreset returns the *new* episode's first observation for a finished
    sub-environment; bootstrapping needs the old episode's last one (``info["final_obs"]``).
    """
    if "_final_obs" not in info:
        return next_obs
    real = next_obs.copy()
    for i in np.flatnonzero(info["_final_obs"]):
        real[i] = info["final_obs"][i]
    return real


def _check_config(config: RunConfig) -> None:
    problems = [
        f"{name} must be {rule}, got {getattr(config, name)!r}"
        for name, ok, rule in [
            ("total_steps", config.total_steps >= 1, ">= 1"),
            ("num_envs", config.num_envs >= 1, ">= 1"),
            ("eval_every", config.eval_every >= 0, ">= 0"),
            ("eval_episodes", config.eval_episodes >= 0, ">= 0"),
            ("eval_envs", config.eval_envs >= 1, ">= 1"),
            ("checkpoint_every", config.checkpoint_every >= 0, ">= 0"),
        ]
        if not ok
    ]
    if problems:
        raise LatentPriorError(f"{type(config).__name__}: " + "; ".join(problems))


class Run:
    """One training run in one directory; a context manager that restores torch's settings on exit.

    :param run_dir: the run directory (created if missing).
    :param algo: learner name written to ``config.json`` (``"ppo"``, ``"sac"``).
    :param config: the learner's config (a :class:`RunConfig` subclass).
    :param env_fn: builds the training and evaluation environments.
    :param hooks: the learner's hooks by name; their ``repr`` goes to ``config.json``.
    :param metadata: JSON-able facts the caller wants kept with the run (env id, command ...).
    :param progress: show a live progress line.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        algo: str,
        config: RunConfig,
        env_fn: EnvFactory,
        hooks: Mapping[str, object | None],
        metadata: Mapping[str, Any] | None,
        progress: bool,
    ) -> None:
        _check_config(config)
        self.dir, self.algo, self.config, self._env_fn = Path(run_dir), algo, config, env_fn
        self.dir.mkdir(parents=True, exist_ok=True)
        resolved = json.loads(json.dumps(dataclasses.asdict(config)))  # as config.json holds it
        self._check_resumable(resolved)
        atomic_write_json(self.dir / "config.json", {
            "algo": algo,
            "config": resolved,
            "hooks": {k: repr(v) for k, v in hooks.items() if v is not None},
            "metadata": dict(metadata or {}),
            "latentprior_version": latentprior.__version__,
        })
        self.device = resolve_device(config.device)
        seed_everything(config.seed)
        checkpoint = load_checkpoint(self.dir)
        self._state, self._tensors = checkpoint if checkpoint is not None else ({}, {})
        self.start_step = int(self._state.get("step", 0))
        self.finished = self.start_step >= config.total_steps and (self.dir / "policy" / "config.json").is_file()
        self.episodes = EpisodeStats(config.num_envs)
        if self._state:
            self.episodes.restore(**self._state["episodes"])
        self._elapsed = float(self._state.get("elapsed_s", 0.0))
        self._train_time = float(self._state.get("train_s", 0.0))
        self.metrics: dict[str, float] = dict(self._state.get("metrics", {}))
        self._eval_result: EvalResult | None = None
        self._last_eval_step = self._last_checkpoint_step = self._last_report_step = self.start_step
        self._logger: MetricsLogger | None = None
        self._progress: ProgressDisplay | None = None
        self._train_envs: gym.vector.VectorEnv | None = None
        self._eval_envs: gym.vector.VectorEnv | None = None
        self._show_progress = progress
        self.step = self.start_step
        self._t_open = self._t_report = time.perf_counter()
        # Last, so that nothing above can fail with torch's global settings changed.
        self._stack = contextlib.ExitStack()
        self.matmul_precision = self._stack.enter_context(
            torch_settings(config.torch_threads, config.matmul_precision, self.device)
        )

    # ----------------------------------------------------------------------------------- set-up
    def _check_resumable(self, resolved: dict[str, Any]) -> None:
        path = self.dir / "config.json"
        if not path.is_file() or not (self.dir / "checkpoints").is_dir():
            return
        old = read_json(path)
        if old.get("algo") != self.algo:
            raise LatentPriorError(f"{self.dir} holds a {old.get('algo')!r} run; cannot continue it with {self.algo!r}")
        changed = {
            k: (old["config"].get(k), v) for k, v in resolved.items()
            if k not in _RESUMABLE and old["config"].get(k) != v
        }
        if changed:
            listing = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
            raise LatentPriorError(
                f"{self.dir} holds a run with other settings ({listing}); use a new run directory "
                "or the same settings to continue it"
            )

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        for envs in (self._train_envs, self._eval_envs):
            if envs is not None:
                envs.close()
        if self._logger is not None:
            self._logger.close()
        if self._progress is not None:
            self._progress.close()
        self._stack.close()

    def make_train_envs(self) -> gym.vector.VectorEnv:
        """The training environments (seeded from the config's seed and the resume step)."""
        envs = self._env_fn(self.config.num_envs, derive_seed(self.config.seed, _TRAIN_ENVS, self.start_step))
        self._check_envs(envs, self.config.num_envs)
        self._train_envs = envs
        return envs

    @staticmethod
    def _check_envs(envs: gym.vector.VectorEnv, num_envs: int) -> None:
        if not isinstance(envs, gym.vector.VectorEnv):
            raise LatentPriorError(f"env_fn must return a gymnasium VectorEnv, got {type(envs).__name__}")
        if envs.num_envs != num_envs:
            raise LatentPriorError(f"env_fn made {envs.num_envs} sub-environments, asked for {num_envs}")
        mode = envs.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise LatentPriorError(
                f"env_fn made a vector env with autoreset mode {mode}; the learners need SAME_STEP "
                "(use latentprior.envs.make.make_vec_env)"
            )
        for what, space in (("observation", envs.single_observation_space), ("action", envs.single_action_space)):
            if not isinstance(space, gym.spaces.Box) or (what == "observation" and len(space.shape) != 1):
                raise LatentPriorError(f"the learners need a flat Box {what} space, got {space}")

    def start(self) -> None:
        """Open the metric files and the progress display (after the learner has restored its state)."""
        self._logger = MetricsLogger(self.dir, self.start_step if self._state else None, self.config.tensorboard)
        self._progress = ProgressDisplay(self.config.total_steps, self.start_step, self._show_progress, self.algo.upper())
        self._t_report = time.perf_counter()

    # ---------------------------------------------------------------------------- checkpoints
    def restore(self, modules: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer]) -> dict[str, Any]:
        """Load a checkpoint's weights and optimizer states (if resuming) and set the RNGs.

        :return: the checkpoint's JSON state (``{}`` on a fresh run); its saved tensors are in
            :attr:`checkpoint_tensors`.
        """
        if not self._state:
            return {}
        for name, module in modules.items():
            module.load_state_dict(self._tensors[name])
        for name, optimizer in optimizers.items():
            optimizer_load(optimizer, self._tensors[f"optim_{name}"], self._state["optimizers"][name])
        set_rng_state(self._tensors["rng"], self._state["rng"])
        return self._state

    @property
    def checkpoint_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        return self._tensors

    def checkpoint_due(self, step: int) -> bool:
        every = self.config.checkpoint_every
        return every > 0 and step // every > self._last_checkpoint_step // every

    def save_checkpoint(
        self,
        step: int,
        policy: Policy,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        state: Mapping[str, Any] | None = None,
        tensors: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    ) -> None:
        """Checkpoint the learner at ``step``: modules, optimizers, RNGs, counters, episode window."""
        t0 = time.perf_counter()
        rng_tensors, rng_values = get_rng_state()
        all_tensors: dict[str, Any] = {**modules, "rng": rng_tensors, **(tensors or {})}
        optimizer_meta = {}
        for name, optimizer in optimizers.items():
            all_tensors[f"optim_{name}"], optimizer_meta[name] = optimizer_to_tensors(optimizer)
        full_state = {
            **(state or {}),
            "optimizers": optimizer_meta,
            "rng": rng_values,
            "episodes": {
                "returns": list(self.episodes.returns),
                "lengths": list(self.episodes.lengths),
                "episodes": self.episodes.episodes,
            },
            "elapsed_s": self._elapsed_now(),
            "train_s": self._train_time,
            "metrics": self.metrics,
        }
        save_checkpoint(self.dir, step, all_tensors, full_state, policy)
        self._last_checkpoint_step = step
        self._t_report += time.perf_counter() - t0  # not training time

    # ------------------------------------------------------------------------------- reporting
    def _elapsed_now(self) -> float:
        return self._elapsed + (time.perf_counter() - self._t_open)

    def evaluate(self, policy: Policy) -> EvalResult:
        """Evaluate on the evaluation environments, always from the same initial states."""
        if self._eval_envs is None:
            self._eval_envs = self._env_fn(self.config.eval_envs, 0)
            self._check_envs(self._eval_envs, self.config.eval_envs)
            policy.check_env(self._eval_envs, source=str(self.dir))
        return evaluate_policy(policy, self._eval_envs, self.config.eval_episodes, seed=eval_seed(self.config.seed))

    def report(self, step: int, metrics: Mapping[str, float], policy: Policy, final: bool = False) -> None:
        """Log one row at ``step``: the learner's metrics, episode returns, speed, and an evaluation if due.

        :param final: this is the run's last row; it always carries an evaluation (if enabled).
        """
        now = time.perf_counter()
        interval = now - self._t_report
        self._train_time += interval
        row = {
            **metrics,
            **self.episodes.metrics(),
            "time/steps_per_s": (step - self._last_report_step) / max(interval, 1e-9),
            "time/train_s": self._train_time,
        }
        if "train/n_updates" in metrics:
            done = metrics["train/n_updates"] - self.metrics.get("train/n_updates", 0)
            row["time/updates_per_s"] = done / max(interval, 1e-9)
        every = self.config.eval_every
        if self.config.eval_episodes and (final or (every and step // every > self._last_eval_step // every)):
            self._eval_result = self.evaluate(policy)
            row.update(self._eval_result.metrics())
            self._last_eval_step = step
        row["time/elapsed_s"] = self._elapsed_now()
        self._logger.log(step, row)
        self.metrics.update(row)
        self._progress.update(step, row.get("rollout/ep_return_mean"))
        self._last_report_step = self.step = step
        self._t_report = time.perf_counter()

    def finish(
        self,
        step: int,
        policy: Policy,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        state: Mapping[str, Any] | None = None,
        tensors: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    ) -> TrainResult:
        """Final checkpoint, evaluation file and policy (after a ``report(..., final=True)``)."""
        self.step = step
        self.save_checkpoint(step, policy, modules, optimizers, state, tensors)
        if self._eval_result is not None:
            atomic_write_json(self.dir / "eval.json", {"step": step, **self._eval_result.to_dict()})
        self._write_policy(policy)
        return self.result(policy)

    def _write_policy(self, policy: Policy) -> None:
        """Replace ``policy/`` by the final policy; ``load_policy`` falls back to the checkpoint meanwhile."""
        final, tmp, old = self.dir / "policy", self.dir / ".policy.tmp", self.dir / ".policy.old"
        for path in (tmp, old):
            shutil.rmtree(path, ignore_errors=True)
        policy.save(tmp)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def result(self, policy: Policy | None = None, actor: nn.Module | None = None) -> TrainResult:
        """The :class:`TrainResult` of this run (loading the saved policy when none is given)."""
        if policy is None:
            policy = load_policy(self.dir, actor=actor, device=self.device)
        names = {"config": "config.json", "metrics": "metrics.csv", "tensorboard": "tensorboard",
                 "checkpoints": "checkpoints", "policy": "policy", "eval": "eval.json"}
        return TrainResult(
            policy=policy,
            metrics=dict(self.metrics),
            steps=self.step,
            run_dir=self.dir,
            paths={k: self.dir / v for k, v in names.items()},
        )
