"""Train and evaluate entry points: an environment id in, a run directory out.

``train`` resolves an algorithm's config (its defaults, then the caller's overrides), builds the
environments with :func:`latentprior.envs.make.make_vec_env` and runs the learner; rerunning the
same call on the same directory continues an interrupted run. ``evaluate`` loads a run's policy,
evaluates it on fresh environments and can film an episode. The command line wires these to
``latentprior train`` and ``latentprior eval``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from latentprior.envs.make import make_vec_env
from latentprior.io import LatentPriorError, atomic_write_json, read_json
from latentprior.rl import PPOConfig, SACConfig, TrainResult, evaluate_policy, load_policy, ppo, sac

__all__ = ["ALGOS", "config_from_overrides", "make_config", "train", "evaluate"]

ALGOS = {"ppo": (ppo.train, PPOConfig), "sac": (sac.train, SACConfig)}


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """Convert a command-line string to a config field's type (other values pass through)."""
    if not isinstance(value, str):
        return value
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value.lower() == "none" and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if hint in (int, float):
            return hint(float(value)) if hint is int and "e" in value.lower() else hint(value)
        if hint is dict or typing.get_origin(hint) is dict:
            return json.loads(value)
        if typing.get_origin(hint) is tuple:
            parsed = json.loads(value if value.startswith("[") else f"[{value}]")
            return tuple(parsed)
    except (ValueError, json.JSONDecodeError):
        raise LatentPriorError(f"config override {name}={value!r} is not a valid {hint}") from None
    return value


def config_from_overrides(cls: type, overrides: Mapping[str, Any] | None = None, **fields: Any) -> Any:
    """Build the config dataclass ``cls`` from its defaults, ``fields``, then ``overrides``.

    :param cls: a config dataclass (``PPOConfig``, ``NPMPConfig``, ``LAPExperiment`` ...).
    :param overrides: field values; strings are converted to the field's type (``"3e-4"``,
        ``"true"``, ``"256,256"``, JSON for dict fields), so ``key=value`` pairs from a command
        line can be passed as is. An unknown field is an error that lists the known ones.
    :param fields: fields set by the caller before the overrides (``total_steps``, ``seed`` ...).
    """
    hints = typing.get_type_hints(cls)
    merged = {**fields, **(overrides or {})}
    unknown = sorted(set(merged) - set(hints))
    if unknown:
        raise LatentPriorError(f"{cls.__name__} has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(hints))}")
    return cls(**{k: _coerce(k, hints[k], v) for k, v in merged.items()})


def make_config(algo: str, overrides: Mapping[str, Any] | None = None, **fields: Any) -> PPOConfig | SACConfig:
    """The config of ``algo`` (``"ppo"`` or ``"sac"``); see :func:`config_from_overrides`."""
    if algo not in ALGOS:
        raise LatentPriorError(f"unknown algorithm {algo!r}; choose from {sorted(ALGOS)}")
    return config_from_overrides(ALGOS[algo][1], overrides, **fields)


def train(
    env_id: str,
    algo: str,
    steps: int,
    out: str | os.PathLike,
    seed: int = 0,
    num_envs: int | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    backend: str = "auto",
    env_kwargs: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``algo`` on ``env_id`` for ``steps`` environment steps into run directory ``out``.

    :param env_id: a Gymnasium id, e.g. ``"HalfCheetah-v5"``.
    :param algo: ``"ppo"`` or ``"sac"`` (SB3's defaults, see :class:`~latentprior.rl.PPOConfig`).
    :param steps: environment steps, over all sub-environments.
    :param out: the run directory; rerunning on it continues the run.
    :param seed: run seed (same seed, same machine, same result).
    :param num_envs: sub-environments; ``None`` keeps the config's default (1).
    :param config_overrides: further config fields, see :func:`make_config`.
    :param progress: show a live progress line.
    :param backend: environment backend for :func:`~latentprior.envs.make.make_vec_env`
        (``"auto"``: EnvPool for 4+ sub-environments of a task it provides, else Gymnasium).
    :param env_kwargs: keyword arguments of ``gymnasium.make(env_id, ...)``, e.g.
        ``{"shaped": True}`` for a Bipedal Skills task; recorded in the run's ``config.json``, so
        :func:`evaluate` and experts loaded from the run make the same environment.
    :return: the learner's :class:`~latentprior.rl.TrainResult`.
    """
    fields: dict[str, Any] = {"total_steps": steps, "seed": seed}
    if num_envs is not None:
        fields["num_envs"] = num_envs
    config = make_config(algo, config_overrides, **fields)
    learner = ALGOS[algo][0]
    env_kwargs = dict(env_kwargs or {})
    env_fn = functools.partial(make_vec_env, env_id, backend=backend, env_kwargs=env_kwargs)
    metadata = {"env_id": env_id, "env_kwargs": env_kwargs, "backend": backend, "command": " ".join(sys.argv)}
    return learner(env_fn, config, out, progress=progress, metadata=metadata)


def evaluate(
    run_dir: str | os.PathLike,
    episodes: int = 10,
    video: str | os.PathLike | None = None,
    seed: int = 12345,
    num_envs: int = 5,
) -> dict[str, Any]:
    """Evaluate a run's policy with deterministic actions; optionally film one episode.

    Writes ``<run_dir>/evaluation.json`` (returns per episode, mean, std), separate from the
    ``eval.json`` that training writes.

    :param run_dir: a run directory written by :func:`train`.
    :param episodes: episodes to run (>= 1).
    :param video: an ``.mp4`` path: one more episode (environment seeded with ``seed``) is
        rendered offscreen (``MUJOCO_GL=egl`` unless set) and written there.
    :param seed: seed of the evaluation environments.
    :param num_envs: evaluation sub-environments.
    :return: the evaluation as written to ``evaluation.json``.
    """
    run_dir = Path(run_dir)
    run = read_json(run_dir / "config.json")
    env_id = run.get("metadata", {}).get("env_id")
    if env_id is None:
        raise LatentPriorError(f"{run_dir / 'config.json'}: no env_id recorded; was this run made by experiments.train?")
    env_kwargs = run["metadata"].get("env_kwargs") or {}
    policy = load_policy(run_dir)
    envs = make_vec_env(env_id, min(num_envs, episodes), seed, backend=run["metadata"].get("backend", "auto"),
                        env_kwargs=env_kwargs)
    try:
        policy.check_env(envs, source=str(run_dir))
        result = evaluate_policy(policy, envs, episodes, seed=seed)
    finally:
        envs.close()
    summary = {"env_id": env_id, "seed": seed, **result.to_dict()}
    if video is not None:
        summary["video"] = str(video)
        summary["video_return"] = _film(policy, env_id, seed, Path(video), env_kwargs)
    atomic_write_json(run_dir / "evaluation.json", summary)
    return summary


def _film(policy: Any, env_id: str, seed: int, path: Path, env_kwargs: Mapping[str, Any]) -> float:
    """Render one deterministic episode to an MP4; returns its return."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import gymnasium as gym
    import imageio

    env = gym.make(env_id, render_mode="rgb_array", **env_kwargs)
    total = 0.0
    try:
        obs, _ = env.reset(seed=seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        with imageio.get_writer(path, fps=env.metadata.get("render_fps", 30), macro_block_size=1) as writer:
            writer.append_data(env.render())
            done = False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
                total += float(reward)
                writer.append_data(env.render())
                done = terminated or truncated
    finally:
        # An EGL context left open prints errors when the interpreter exits.
        env.close()
    return total
