"""One factory for vectorised environments, with one reset convention whatever runs the physics.

Every vector environment made here resets a finished sub-environment *in the same step*
(Gymnasium's ``AutoresetMode.SAME_STEP``): the observation returned for a finished
sub-environment is already the first one of its next episode, and the last observation of the
finished episode is in ``info["final_obs"][i]`` (with ``info["_final_obs"][i]`` true). That last
observation is what a learner needs to bootstrap the value of a truncated episode.

Two backends:

- ``"sync"``: Gymnasium's :class:`~gymnasium.vector.SyncVectorEnv`, stepping the sub-environments
  one after the other in this process. Works with any Gymnasium id, any callable that builds an
  environment, and any wrappers. On a machine with few cores it is faster than Gymnasium's
  ``AsyncVectorEnv``, whose inter-process traffic costs more than the physics of a MuJoCo step.
- ``"envpool"``: `EnvPool <https://github.com/sail-sg/envpool>`_ steps the sub-environments in C++
  threads. It ships its own ports of the Gymnasium MuJoCo tasks under the same ids (``-v5`` and
  the older ``-v4``/``-v3``). Measured against Gymnasium 1.4 + MuJoCo 3.17 with the reset noise
  switched off and identical random actions (EnvPool 1.2.5): the ``-v5`` ports in
  :data:`ENVPOOL_MATCHED` agree to float32 rounding of the reward (~5e-8) over the first 50 steps
  or whole episodes (Hopper, Ant and InvertedPendulum to ~1e-15 over whole episodes);
  HalfCheetah then drifts apart after ~100 steps, the chaotic growth of round-off between two
  MuJoCo builds, not a different model. Humanoid-v5 and HumanoidStandup-v5 differ by 4e-3 and
  8e-2 within 20-50 steps (contact forces in the observation), so ``"auto"`` does not pick EnvPool
  for them. Rewards come back as float32. EnvPool fixes its seeds when it is created, so
  ``reset(seed=s)`` rebuilds the pool with seed ``s``; it cannot apply Python wrappers or render.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import batch_space

from latentprior.io import LatentPriorError

__all__ = ["make_vec_env", "EnvPoolVectorEnv", "envpool_task_ids", "ENVPOOL_MATCHED", "ENVPOOL_MIN_ENVS"]

EnvFn = Callable[[], gym.Env]
Wrapper = Callable[[gym.Env], gym.Env]

ENVPOOL_MATCHED = frozenset({
    "Ant-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "InvertedPendulum-v5",
    "InvertedDoublePendulum-v5",
})
"""EnvPool tasks measured to step like their Gymnasium namesakes (see the module docstring);
``backend="auto"`` uses EnvPool only for these."""

ENVPOOL_MIN_ENVS = 4
"""``backend="auto"`` picks EnvPool from this many sub-environments on: with fewer its thread
hand-off costs more than it saves (measured on HalfCheetah-v5, 2-core VM: 1 env 54 us/step with
EnvPool vs 39 us with ``"sync"``; 16 envs 34k steps/s vs 21k)."""


@functools.cache
def envpool_task_ids() -> frozenset[str]:
    """The task ids the installed EnvPool provides (empty when EnvPool is not installed)."""
    try:
        import envpool
    except ImportError:
        return frozenset()
    return frozenset(envpool.list_all_envs())


def make_vec_env(
    env_id_or_fn: str | EnvFn,
    num_envs: int = 1,
    seed: int = 0,
    backend: str = "sync",
    wrappers: Sequence[Wrapper] = (),
    env_kwargs: dict[str, Any] | None = None,
) -> gym.vector.VectorEnv:
    """Make ``num_envs`` copies of an environment as one seeded, same-step-autoreset vector env.

    :param env_id_or_fn: a Gymnasium id (``"HalfCheetah-v5"``) or a callable that returns a new
        :class:`gymnasium.Env` each time it is called (``"envpool"`` needs an id).
    :param num_envs: number of sub-environments stepped together (>= 1).
    :param seed: sub-environment ``i`` is seeded with ``seed + i``. The returned env has already
        been reset with this seed, so the caller's first ``reset()`` (without a seed) starts a
        repeatable sequence of episodes.
    :param backend: ``"sync"``, ``"envpool"`` or ``"auto"`` (EnvPool when it is installed, the id
        is in :data:`ENVPOOL_MATCHED`, no wrappers or rendering are asked for and
        ``num_envs >= ENVPOOL_MIN_ENVS``; otherwise sync).
    :param wrappers: callables ``env -> env`` applied in order to each sub-environment (sync only).
    :param env_kwargs: keyword arguments for ``gymnasium.make`` (or ``envpool.make_gymnasium``),
        e.g. ``{"render_mode": "rgb_array"}`` or ``{"reset_noise_scale": 0.0}``; ids only.
    :return: a :class:`gymnasium.vector.VectorEnv` whose ``metadata["autoreset_mode"]`` is
        ``AutoresetMode.SAME_STEP``.
    """
    if num_envs < 1:
        raise LatentPriorError(f"num_envs must be >= 1, got {num_envs}")
    env_kwargs = dict(env_kwargs or {})
    if not isinstance(env_id_or_fn, str) and env_kwargs:
        raise LatentPriorError("env_kwargs only apply to an environment id; bake them into the callable")
    if backend == "auto":
        usable = (
            isinstance(env_id_or_fn, str)
            and env_id_or_fn in ENVPOOL_MATCHED
            and env_id_or_fn in envpool_task_ids()
            and not wrappers
            and "render_mode" not in env_kwargs
        )
        backend = "envpool" if usable and num_envs >= ENVPOOL_MIN_ENVS else "sync"
    if backend == "envpool":
        if not isinstance(env_id_or_fn, str):
            raise LatentPriorError("backend 'envpool' needs an environment id, not a callable")
        if wrappers:
            raise LatentPriorError("backend 'envpool' cannot apply Python wrappers; use backend 'sync'")
        envs: gym.vector.VectorEnv = EnvPoolVectorEnv(env_id_or_fn, num_envs, seed, **env_kwargs)
    elif backend == "sync":
        def make_one() -> gym.Env:
            if isinstance(env_id_or_fn, str):
                # The checker only validates the first steps, but its wrapper costs on every step.
                env = gym.make(env_id_or_fn, disable_env_checker=True, **env_kwargs)
            else:
                env = env_id_or_fn()
            for wrap in wrappers:
                env = wrap(env)
            return env

        envs = SyncVectorEnv([make_one] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    else:
        raise LatentPriorError(f"unknown backend {backend!r}; use 'sync', 'envpool' or 'auto'")
    envs.reset(seed=seed)
    return envs


class EnvPoolVectorEnv(gym.vector.VectorEnv):
    """An EnvPool task behind Gymnasium's vector-env interface, with same-step autoreset.

    EnvPool itself resets a finished sub-environment on the *next* call to ``step`` (ignoring the
    action given there). This adapter resets finished sub-environments right away instead, so its
    transitions line up with :class:`~gymnasium.vector.SyncVectorEnv` in ``SAME_STEP`` mode:
    ``info["final_obs"]`` holds the last observation of each finished episode.

    :param task_id: an EnvPool task id, see :func:`envpool_task_ids`.
    :param num_envs: number of sub-environments (all are stepped in every call).
    :param seed: sub-environment ``i`` is seeded with ``seed + i``.
    :param kwargs: task options passed to ``envpool.make_gymnasium`` (e.g. ``reset_noise_scale``).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, task_id: str, num_envs: int, seed: int = 0, **kwargs: Any) -> None:
        if task_id not in envpool_task_ids():
            raise LatentPriorError(
                f"EnvPool has no task {task_id!r}"
                + ("" if envpool_task_ids() else " (EnvPool is not installed: pip install envpool)")
            )
        self._task_id, self._kwargs = task_id, kwargs
        self.num_envs = num_envs
        self._pool = self._make_pool(seed)
        self.single_observation_space = self._pool.observation_space
        self.single_action_space = self._pool.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._seed, self._fresh = seed, True

    def _make_pool(self, seed: int) -> Any:
        import envpool

        # With batch_size == num_envs EnvPool answers every call for all sub-environments, in
        # sub-environment order, so rows need no reordering (checked in tests/envs).
        return envpool.make_gymnasium(
            self._task_id, num_envs=self.num_envs, batch_size=self.num_envs, seed=seed, **self._kwargs
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None and not (self._fresh and seed == self._seed):
            self._pool.close()
            self._pool, self._seed = self._make_pool(seed), seed
        self._fresh = False
        return self._pool.reset()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, reward, terminated, truncated, info = self._pool.step(np.asarray(actions))
        done = terminated | truncated
        if done.any():
            ids = np.flatnonzero(done)
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in ids:
                final_obs[i] = obs[i].copy()
            obs = obs.copy()
            obs[ids], _ = self._pool.reset(ids.astype(np.int32))
            info["final_obs"], info["_final_obs"] = final_obs, done
        return obs, reward.astype(np.float64), terminated, truncated, info

    def close(self, **kwargs: Any) -> None:
        self._pool.close()
