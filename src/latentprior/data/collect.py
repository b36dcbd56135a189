"""Collect demonstrations by rolling an expert out, with action noise, into a dataset file.

Noisy rollouts are how Merel et al. 2019 ("Neural probabilistic motor primitives for humanoid
control", Sec. 3) gather data to clone experts, in the spirit of DART (Laskey et al. 2017): the
*executed* action is the expert's mean action plus Gaussian noise, so the data visits states
around the expert's trajectory, while the *logged target* is the expert's mean action ``mu_E(s)``
at each visited state, i.e. what the expert would do to recover. Both are stored: ``actions``
(executed) and ``expert_actions`` (mean). Optionally the Jacobian ``d mu_E / d s`` at each visited
state is stored too, for linear-feedback policy cloning (LFPC, Merel et al. 2019, Eq. 8-9); with
``noise_std = 0`` and one episode that is exactly LFPC's "one nominal rollout plus Jacobians".

The expert is anything with the :class:`latentprior.experts.Expert` interface (this module does not
import :mod:`latentprior.experts`: ``data`` depends on nothing else of the project but ``io``). It
needs ``observation_space``, ``action_space``, ``mean_action(obs, t)``, ``perturb(action,
noise_std, rng)`` and, for ``jacobians=True``, ``jacobian(obs, t)``.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np

from latentprior.data.dataset import FIELDS, DatasetError, DatasetMetadata, Episode
from latentprior.data.hdf5 import DatasetWriter
from latentprior.io import check_space

__all__ = ["collect", "collect_experts", "CollectResult", "sim_state"]


@dataclasses.dataclass(frozen=True)
class CollectResult:
    """What :func:`collect` wrote.

    :param path: the dataset file
    :param episodes: number of episodes written
    :param steps: total environment steps recorded (sum of episode lengths)
    :param returns: undiscounted return of each episode, in file order, shape ``(episodes,)``
    :param seconds: wall-clock time of the collection
    """

    path: Path
    episodes: int
    steps: int
    returns: np.ndarray
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.episodes} episodes, {self.steps} steps, return "
            f"{self.returns.mean():.1f} +- {self.returns.std():.1f}, {self.seconds:.1f} s"
        )


class _EpisodeRecorder:
    """Resets ``env`` for episode ``index`` and gathers its rows; ``t`` is its current time step.

    The reset seed and the noise generator's seed both derive from ``(seed, index)`` (unlike
    ``seed + index``, distinct for every pair) and differ from each other, so the reset noise and
    the action noise are independent streams.
    """

    def __init__(self, env: gym.Env, index: int, seed: int):
        reset_seed, noise_seed = np.random.SeedSequence([seed, index]).generate_state(2)
        self.index, self.t = index, 0
        self.rng = np.random.default_rng(int(noise_seed))
        self.obs, _ = env.reset(seed=int(reset_seed))
        self.rows: dict[str, list[np.ndarray]] = {name: [] for name in FIELDS}
        self.record_frame(env, self.obs)

    def record_frame(self, env: gym.Env, obs: np.ndarray) -> None:
        self.rows["observations"].append(obs)
        state = sim_state(env)
        if state is not None:
            self.rows["qpos"].append(state[0])
            self.rows["qvel"].append(state[1])

    def episode(self) -> Episode:
        return Episode(**{name: np.stack(rows) for name, rows in self.rows.items() if rows})


def sim_state(env: gym.Env) -> tuple[np.ndarray, np.ndarray] | None:
    """``(qpos, qvel)`` of a MuJoCo environment (an adapter's ``sim_state()``, as Bipedal Skills'
    robot state, else ``unwrapped.data``), None for any other simulator."""
    own = getattr(env.unwrapped, "sim_state", None)
    if callable(own):
        return own()
    data = getattr(env.unwrapped, "data", None)
    if data is None or not hasattr(data, "qpos") or not hasattr(data, "qvel"):
        return None
    return data.qpos.copy(), data.qvel.copy()


def collect(
    expert: Any,
    env_id: str,
    episodes: int,
    noise_std: float = 0.0,
    seed: int = 0,
    num_envs: int = 8,
    max_episode_steps: int | None = None,
    jacobians: bool = False,
    out: str | os.PathLike = "demos.h5",
    progress: bool = True,
    metadata_extra: Mapping[str, Any] | None = None,
    license: str = "",
    command: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
) -> CollectResult:
    """Roll ``expert`` out for ``episodes`` episodes in ``env_id`` and write them to ``out``.

    Each step, the expert's mean action is computed for all running environments in one batch
    (``expert_actions``), Gaussian noise of std ``noise_std`` in normalised [-1, 1] action units is
    added and the result clipped to the bounds (``actions``, executed), and the environments step.
    Every episode is recorded with ``observations`` and ``qpos``/``qvel`` (``T + 1`` rows; the
    latter only for MuJoCo environments, read from ``env.unwrapped.data``), ``actions``,
    ``expert_actions``, ``rewards``, ``terminations``, ``truncations`` (``T`` rows), and
    ``jacobians`` (``T, act_dim, obs_dim``) if asked.

    ``num_envs`` environments run side by side, each holding one episode at a time; only those
    with an episode in progress are stepped, so no steps are wasted at the end. Episode ``i``
    resets with a seed derived from ``(seed, i)`` and draws its noise from its own generator, so
    initial states and noise do not depend on ``num_envs``. Trajectories repeat exactly for the
    same ``num_envs``; with another, a closed-loop expert evaluated in a batch of another size
    can round differently in float32, and chaotic dynamics amplify that over an episode. Episodes
    are written in index order, one at a time, through :class:`~latentprior.data.DatasetWriter`:
    the file appears only when collection finishes.

    :param expert: a :class:`latentprior.experts.Expert`; its spaces must match the environment's
    :param env_id: Gymnasium environment id
    :param episodes: number of episodes to record (Merel et al. 2019 found 100 noisy rollouts
        per expert best for cloning)
    :param noise_std: action noise std in normalised action units; 0.1 in Merel et al. 2019
        (0.05 also tested); 0 records the expert's own trajectory (``actions == expert_actions``)
    :param seed: base seed of the resets and the noise
    :param num_envs: environments stepped side by side (the expert runs on all of them in one
        batch); they all live in this process, which on MuJoCo tasks beats subprocesses. Torch's
        intra-op threads only slow such small batches down, badly on a busy machine (2000 steps
        of the SB3 zoo expert: 0.2 s with ``torch.set_num_threads(1)``, 15 s with 2 threads on
        2 loaded cores), so set one thread before calling this
    :param max_episode_steps: time limit per episode; None keeps the environment's registered
        limit (an environment without one needs it)
    :param jacobians: also store ``d mu / d s`` at every visited state (for LFPC); costs one
        backward pass per action dimension per step
    :param out: the dataset file to write (HDF5, see :func:`latentprior.data.load_dataset`)
    :param progress: print a line about every 10 % of the episodes (steps/s, mean return, ETA)
    :param metadata_extra: more JSON-able values for the dataset's ``metadata.extra``; the
        noise, seeds, expert kind and the expert's ``info`` are recorded there already
    :param license: license of the data, recorded in the metadata (e.g. that of the expert)
    :param command: the command line to record in the metadata; defaults to this process's
    :param env_kwargs: keyword arguments for ``gymnasium.make(env_id, ...)`` (e.g.
        ``{"include_cfrc_ext_in_observation": False}`` for a 27-d Ant-v5), recorded in the
        metadata so that the data's environment can be made again
    :param wrappers: callables ``env -> env`` applied in order to each environment, e.g. a task
        whose reward the episodes should record (a single-skill expert's own task); they must
        keep the observation and action spaces
    :return: a :class:`CollectResult` (path, episode and step counts, returns, time)
    """
    if episodes < 1:
        raise DatasetError(f"{out}: episodes must be >= 1, got {episodes}")
    if noise_std < 0:
        raise DatasetError(f"{out}: noise_std must be >= 0, got {noise_std}")
    env_kwargs = dict(env_kwargs or {})
    envs = []
    for _ in range(min(num_envs, episodes)):
        env = gym.make(env_id, max_episode_steps=max_episode_steps, **env_kwargs)
        for wrap in wrappers:
            env = wrap(env)
        envs.append(env)
    try:
        if envs[0].spec is None or envs[0].spec.max_episode_steps is None:
            raise DatasetError(f"{env_id} has no time limit; pass max_episode_steps so episodes end")
        check_space(expert.observation_space, envs[0].observation_space, "observation", f"expert for {out}")
        check_space(expert.action_space, envs[0].action_space, "action", f"expert for {out}")
        metadata = DatasetMetadata(
            env_id=env_id,
            observation_space=envs[0].observation_space,
            action_space=envs[0].action_space,
            source=f"latentprior.data.collect: {getattr(expert, 'kind', type(expert).__name__)} expert",
            license=license,
            command=command if command is not None else shlex.join(sys.argv),
            env_kwargs=env_kwargs,
            extra={
                "noise_std": noise_std,
                "seed": seed,
                "num_envs": len(envs),
                "max_episode_steps": envs[0].spec.max_episode_steps,
                "jacobians": jacobians,
                "expert_kind": getattr(expert, "kind", type(expert).__name__),
                "expert_info": dict(getattr(expert, "info", {})),
                **dict(metadata_extra or {}),
            },
        )
        with DatasetWriter(out, metadata) as writer:
            returns, steps, seconds = _rollouts(expert, envs, episodes, noise_std, seed, jacobians, writer, progress)
    finally:
        for env in envs:
            env.close()
    return CollectResult(Path(out), episodes, steps, returns, seconds)


def _rollouts(
    expert: Any,
    envs: list[gym.Env],
    episodes: int,
    noise_std: float,
    seed: int,
    jacobians: bool,
    writer: DatasetWriter,
    progress: bool,
) -> tuple[np.ndarray, int, float]:
    start = time.perf_counter()
    slots: list[_EpisodeRecorder | None] = [_EpisodeRecorder(env, i, seed) for i, env in enumerate(envs)]
    next_index, steps, written = len(envs), 0, 0
    finished: dict[int, Episode] = {}
    returns = np.zeros(episodes)
    report_every = max(1, episodes // 10)
    while written < episodes:
        running = [i for i, slot in enumerate(slots) if slot is not None]
        obs_batch = np.stack([slots[i].obs for i in running])
        t_batch = np.array([slots[i].t for i in running])
        mean = expert.mean_action(obs_batch, t_batch)
        jac = expert.jacobian(obs_batch, t_batch).numpy() if jacobians else None
        for k, i in enumerate(running):
            slot, env = slots[i], envs[i]
            action = expert.perturb(mean[k], noise_std, slot.rng)
            slot.obs, reward, terminated, truncated, _ = env.step(action)
            rows = slot.rows
            rows["actions"].append(action)
            rows["expert_actions"].append(mean[k])
            rows["rewards"].append(np.float64(reward))
            rows["terminations"].append(np.bool_(terminated))
            rows["truncations"].append(np.bool_(truncated))
            if jac is not None:
                rows["jacobians"].append(jac[k])
            slot.record_frame(env, slot.obs)
            slot.t += 1
            steps += 1
            if terminated or truncated:
                finished[slot.index] = slot.episode()
                slots[i] = _EpisodeRecorder(env, next_index, seed) if next_index < episodes else None
                next_index += 1
        # Write in index order so the file does not depend on which environment finished first.
        while written in finished:
            episode = finished.pop(written)
            returns[written] = episode.episode_return
            writer.add(episode)
            written += 1
            if progress and (written % report_every == 0 or written == episodes):
                elapsed = time.perf_counter() - start
                print(
                    f"[collect] episodes {written}/{episodes}  mean return {returns[:written].mean():9.1f}"
                    f"  {steps / elapsed:7.0f} steps/s  {elapsed:6.1f} s"
                    f"  ETA {elapsed * (episodes - written) / written:6.1f} s",
                    flush=True,
                )
    return returns, steps, time.perf_counter() - start


def collect_experts(
    experts: Mapping[str, Any],
    env_id: str,
    episodes: int,
    noise_std: float = 0.1,
    seed: int = 0,
    num_envs: int = 8,
    max_episode_steps: int | None = None,
    jacobians: bool = False,
    out: str | os.PathLike = "experts.h5",
    progress: bool = True,
    license: str = "",
    command: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    wrappers: Mapping[str, Sequence[Callable[[gym.Env], gym.Env]]] | None = None,
    labels: Mapping[str, Mapping[str, Any]] | None = None,
    source: str = "latentprior.data.collect_experts",
    extra: Mapping[str, Any] | None = None,
) -> CollectResult:
    """Roll out a set of single-skill experts into one dataset: the NPMP paper's training data.

    Each expert is rolled out ``episodes`` times with :func:`collect` (noisy executed ``actions``,
    the expert's mean ``expert_actions``, ``jacobians`` if asked); expert ``k`` (in the mapping's
    order) owns episodes ``k * episodes`` to ``(k + 1) * episodes - 1``, and its resets and noise
    derive from ``(seed, k)``. The metadata's ``extra["skills"]`` lists each expert's ``name``,
    ``first_episode`` and ``episodes`` plus its ``labels`` (a command, a source file, ...).

    :param experts: skill name -> expert; every expert must fit ``env_id``'s spaces.
    :param env_id: Gymnasium environment id shared by the experts.
    :param episodes: episodes per expert (Merel et al. 2019: 100 noisy rollouts for cloning; one
        noise-free rollout with ``jacobians=True`` for LFPC).
    :param wrappers: per skill name, the wrappers of its environment (a skill's own task reward,
        say); ``None`` for none.
    :param labels: per skill name, JSON-able facts added to its ``extra["skills"]`` entry.
    :param source: the metadata's ``source``.
    :param extra: further JSON-able metadata for ``extra``.
    Other parameters as :func:`collect`.
    :return: the :class:`CollectResult` of the whole file (written only when all experts are done).
    """
    from latentprior.data.hdf5 import load_dataset

    if not experts:
        raise DatasetError("collect_experts needs at least one expert")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    command = command if command is not None else shlex.join(sys.argv)
    listing, returns, steps = [], [], 0
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.experts.", dir=out.parent) as tmp:
        parts = []
        for k, (name, expert) in enumerate(experts.items()):
            result = collect(
                expert, env_id, episodes, noise_std=noise_std, seed=int(np.random.SeedSequence([seed, k]).generate_state(1)[0]),
                num_envs=num_envs, max_episode_steps=max_episode_steps, jacobians=jacobians, out=Path(tmp) / f"{k}.h5",
                progress=False, license=license, command=command, env_kwargs=env_kwargs, wrappers=(wrappers or {}).get(name, ()),
            )
            parts.append(result.path)
            listing.append({"name": name, **dict((labels or {}).get(name, {})), "first_episode": k * episodes, "episodes": episodes})
            returns.append(result.returns)
            steps += result.steps
            if progress:
                print(f"[collect] skill {k + 1}/{len(experts)} {name}: return {result.returns.mean():8.1f}  {result.steps} steps"
                      f"  {time.perf_counter() - start:6.1f} s", flush=True)
        first = load_dataset(parts[0])
        kept = {key: first.metadata.extra[key] for key in ("noise_std", "num_envs", "max_episode_steps", "jacobians")}
        metadata = DatasetMetadata(
            env_id=env_id, observation_space=first.metadata.observation_space, action_space=first.metadata.action_space,
            source=source, license=license, command=command, env_kwargs=dict(env_kwargs or {}),
            extra={**kept, "seed": seed, **dict(extra or {}), "skills": listing},
        )
        with DatasetWriter(out, metadata) as writer:
            for k, part in enumerate(parts):
                for episode in first if k == 0 else load_dataset(part):
                    writer.add(episode)
    all_returns = np.concatenate(returns)
    return CollectResult(out, len(all_returns), steps, all_returns, time.perf_counter() - start)
