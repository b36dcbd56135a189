"""One-shot imitation with a neural probabilistic motor primitive module (Merel et al. 2019, Sec. 4).

A reference trajectory is encoded into a latent sequence by the module's encoder (posterior
means, each conditioned on the reference's next K states), then the decoder runs closed loop in
state and open loop in latents in the environment: at step ``t`` the action is the mean of
``pi(a | s_t, z_t)`` at the state the environment is actually in. No actions of the reference
are needed, so state-only references (motion capture) can be imitated. Where one-shot imitation
fails, latent optimisation (Eq. 10, :func:`~latentprior.latent.npmp.optimize_latents`) fits the
latents to the reference's actions first, which tells a decoder that cannot express the actions
apart from an encoder that does not find them.

The environment is the reference's (its dataset's ``env_id`` and ``env_kwargs``); a rollout
starts in the reference's initial simulator state when the data holds ``qpos``/``qvel``, else from
a seeded reset. The paper reports the task reward relative to the expert's: here the return
along the rollout over the steps that have a latent, divided by the reference's return over the
same steps. For data from :func:`~latentprior.experts.commanded.collect_skills` both returns are
under each skill's own tracking reward (the rollout's environment is wrapped by the skill's
task), so held-out skills are scored like training skills.

``latentprior imitate MODULE --reference FILE`` runs :func:`imitate_file`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from latentprior.data import Dataset, Episode, load_dataset
from latentprior.experts.commanded import episode_skill
from latentprior.io import atomic_path, atomic_write_json, json_default
from latentprior.latent.npmp import NPMP, NPMPError, _require_expert_actions, optimize_latents

__all__ = ["ImitationResult", "imitate", "summarize_imitation", "imitate_file"]


@dataclasses.dataclass
class ImitationResult:
    """One-shot imitation of one reference episode.

    :param episode: index of the reference episode in its dataset.
    :param skill: the skill the reference came from (data of ``collect_skills``), else ``None``.
    :param start: ``"reference"`` (started in the reference's ``qpos``/``qvel``) or ``"reset"``.
    :param latents: latents the reference encodes into (``L - K`` for ``L`` states).
    :param steps: closed-loop steps taken: ``min(latents, T)``, fewer if the episode terminated.
    :param terminated: the environment ended the episode (the robot fell) before the latents did.
    :param episode_return: return along the rollout.
    :param reference_return: the reference's return over its first ``min(latents, T)`` steps
        (``None`` when the reference has no rewards).
    :param relative_return: ``episode_return / reference_return`` when the reference's return
        is positive, else ``None`` (a ratio to a non-positive return does not rank rollouts).
    :param state_rmse: root mean square of the rollout's states minus the reference's at the same
        steps, in the module's normalised observation units (0 = exact tracking).
    :param action_mse: mean squared error of the decoder's actions at the reference's states with
        these latents against the reference's ``expert_actions``, normalised action units (what
        latent optimisation minimises); ``None`` without expert actions.
    :param observations: the rollout's observations, ``(steps + 1, obs_dim)`` (not in the JSON).
    :param actions: the decoder's actions it executed, ``(steps, act_dim)`` (not in the JSON).
    """

    episode: int
    skill: str | None
    start: str
    latents: int
    steps: int
    terminated: bool
    episode_return: float
    reference_return: float | None
    relative_return: float | None
    state_rmse: float
    action_mse: float | None
    observations: np.ndarray = dataclasses.field(repr=False)
    actions: np.ndarray = dataclasses.field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("observations", "actions")}
        d["return"] = d.pop("episode_return")
        return d


def _check_reference(
    npmp: NPMP, reference: Dataset, indices: Sequence[int], optimize: bool, source: str, env: gym.Env
) -> None:
    """Fail before any rollout, naming the file and the episode."""
    k = npmp.lookahead
    model = getattr(env.unwrapped, "model", None)
    for i in indices:
        episode = reference[i]
        if model is not None and episode.qpos is not None and episode.qvel is not None:
            if episode.qpos.shape[1:] != (model.nq,) or episode.qvel.shape[1:] != (model.nv,):
                raise NPMPError(
                    f"{source}: episode {i} fields 'qpos'/'qvel' have rows of {episode.qpos.shape[1:]}/"
                    f"{episode.qvel.shape[1:]}, the environment's simulator has nq = {model.nq}, nv = {model.nv}"
                )
        states = episode.observations
        if states.ndim != 2 or states.shape[1] != npmp.obs_dim:
            raise NPMPError(
                f"{source}: episode {i} observations have shape {states.shape}, the module takes (L, {npmp.obs_dim})"
            )
        if len(states) < k + 1 or reference[i].num_steps < 1:
            raise NPMPError(
                f"{source}: episode {i} has {reference[i].num_steps} steps ({len(states)} states); one-shot imitation "
                f"needs at least K + 1 = {k + 1} states and one step (the encoder's first latent reads the current "
                f"state and K = {k} future ones)"
            )
    if optimize:
        _require_expert_actions(reference, "latent optimisation (--optimize, Eq. 10 of Merel et al. 2019)")


def _start(env: gym.Env, episode: Episode, seed: int) -> tuple[np.ndarray, str]:
    """Reset, then move the simulator into the reference's first state where it is recorded."""
    obs, _ = env.reset(seed=seed)
    base = env.unwrapped
    if episode.qpos is None or episode.qvel is None or not hasattr(base, "set_state"):
        return obs, "reset"
    base.set_state(episode.qpos[0], episode.qvel[0])
    # The observation of the state just set (MuJoCo environments compute it from the state).
    return (base._get_obs() if hasattr(base, "_get_obs") else episode.observations[0]), "reference"


def _rollout(
    env: gym.Env, npmp: NPMP, latents: np.ndarray, episode: Episode, seed: int, frames: list[np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, float, bool, str]:
    """Decoder closed loop in state, open loop in latents: ``(observations, actions, return, terminated, start)``."""
    obs, start = _start(env, episode, seed)
    low, high = env.action_space.low, env.action_space.high
    observations, actions, total, terminated = [np.asarray(obs)], [], 0.0, False
    if frames is not None:
        frames.append(env.render())
    for z in latents[: episode.num_steps]:
        action = np.clip(npmp.decoder_action(obs, z), low, high).astype(env.action_space.dtype)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(np.asarray(obs))
        actions.append(action)
        total += float(reward)
        if frames is not None:
            frames.append(env.render())
        if terminated or truncated:
            break
    actions_array = np.stack(actions) if actions else np.zeros((0, *env.action_space.shape), env.action_space.dtype)
    return np.stack(observations), actions_array, total, bool(terminated), start


def _make_env(reference: Dataset, max_steps: int, source: str, render: bool) -> gym.Env:
    env_id = reference.metadata.env_id
    if env_id is None:
        raise NPMPError(f"{source}: the reference names no environment (metadata env_id); cannot imitate it in one")
    kwargs = {**reference.metadata.env_kwargs, "max_episode_steps": max_steps}
    try:
        if render:
            from latentprior.experiments.video import make_render_env

            return make_render_env(env_id, **kwargs)
        return gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise NPMPError(f"{source}: cannot make the reference's environment {env_id!r} ({e})") from None


def imitate(
    npmp: NPMP,
    reference: Dataset,
    episodes: int | None = None,
    optimize: bool = False,
    optimize_steps: int = 500,
    optimize_lr: float = 1e-2,
    seed: int = 0,
    video: str | os.PathLike | None = None,
    module_source: str = "NPMP module",
    indices: Sequence[int] | None = None,
) -> list[ImitationResult]:
    """One-shot imitation of the first ``episodes`` reference episodes.

    :param npmp: a fitted module (``latentprior fit npmp``).
    :param reference: reference episodes with ``observations``; ``qpos``/``qvel`` to start from the
        reference's state, ``rewards`` for relative returns, ``expert_actions`` for ``optimize``.
        Its metadata's ``env_id`` and ``env_kwargs`` make the environment.
    :param episodes: how many episodes, from the first (``None``: all).
    :param optimize: optimise the latents against the reference's ``expert_actions`` first (Eq. 10).
    :param optimize_steps: Adam steps of the latent optimisation.
    :param optimize_lr: its step size.
    :param seed: reset seed of episode ``i`` is ``seed + i`` (the reset the reference state
        overrides, or the start itself without ``qpos``/``qvel``).
    :param video: an ``.mp4`` path: the first episode is rendered there (MuJoCo offscreen,
        ``MUJOCO_GL=egl`` unless set).
    :param module_source: the module's name in error messages (its directory).
    :param indices: imitate these episodes, by index, instead of the first ``episodes`` (e.g. the
        references one-shot imitation failed, to optimise their latents).
    :return: one :class:`ImitationResult` per episode.
    """
    source = str(reference.path) if reference.path is not None else "reference"
    if indices is None:
        count = len(reference) if episodes is None else episodes
        if count < 1:
            raise NPMPError(f"{source}: episodes must be >= 1, got {count}")
        indices = list(range(min(count, len(reference))))
    else:
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < len(reference)]
        if not indices or bad:
            raise NPMPError(f"{source}: indices must name episodes 0 .. {len(reference) - 1}, got {indices}")
    env = _make_env(reference, max(1, max(reference[i].num_steps for i in indices)), source, render=False)
    try:
        npmp.check_env(env, module_source)
        reference.check_env(env)
        _check_reference(npmp, reference, indices, optimize, source, env)
        results = []
        for i in indices:
            film = video is not None and i == indices[0]
            results.append(_imitate_episode(npmp, reference, i, env, optimize, optimize_steps, optimize_lr, seed + i, video if film else None))
    finally:
        env.close()
    return results


def _imitate_episode(
    npmp: NPMP,
    reference: Dataset,
    index: int,
    env: gym.Env,
    optimize: bool,
    optimize_steps: int,
    optimize_lr: float,
    seed: int,
    video: str | os.PathLike | None,
) -> ImitationResult:
    episode = reference[index]
    states = episode.observations
    if optimize:
        latents = optimize_latents(npmp, states, episode.expert_actions, steps=optimize_steps, lr=optimize_lr)
    else:
        latents = npmp.encode(states)
    skill = episode_skill(reference.metadata, index)
    wrapped = env
    if skill is not None:
        _, command, task = skill
        wrapped = task.wrapper(command)(env)
    if video is None:
        observations, actions, total, terminated, start = _rollout(wrapped, npmp, latents, episode, seed, None)
    else:
        observations, actions, total, terminated, start = _film(reference, npmp, latents, episode, seed, skill, Path(video))
    n = min(len(latents), episode.num_steps)
    reference_return = None if episode.rewards is None else float(np.sum(episode.rewards[:n], dtype=np.float64))
    relative = total / reference_return if reference_return is not None and reference_return > 0 else None
    std = npmp.network.obs_std.numpy().astype(np.float64)
    deviation = (observations - states[: len(observations)]) / std
    action_mse = None
    if episode.expert_actions is not None:
        with torch.no_grad():
            mean = npmp.decoder_action(states[:n], latents[:n])
            network = npmp.network
            error = network.normalise_actions(torch.as_tensor(mean)) - network.normalise_actions(
                torch.as_tensor(episode.expert_actions[:n], dtype=torch.float32)
            )
        action_mse = float((error**2).mean())
    return ImitationResult(
        episode=index,
        skill=None if skill is None else skill[0],
        start=start,
        latents=len(latents),
        steps=len(observations) - 1,
        terminated=terminated,
        episode_return=total,
        reference_return=reference_return,
        relative_return=relative,
        state_rmse=float(np.sqrt(np.mean(deviation**2))),
        action_mse=action_mse,
        observations=observations,
        actions=actions,
    )


def _film(
    reference: Dataset, npmp: NPMP, latents: np.ndarray, episode: Episode, seed: int, skill: Any, path: Path
) -> tuple[np.ndarray, np.ndarray, float, bool, str]:
    """The rollout of :func:`_rollout` in a rendering environment, written to an MP4."""
    import imageio

    env = _make_env(reference, episode.num_steps, str(reference.path or "reference"), render=True)
    if skill is not None:
        env = skill[2].wrapper(skill[1])(env)
    frames: list[np.ndarray] = []
    try:
        outcome = _rollout(env, npmp, latents, episode, seed, frames)
        with atomic_path(path) as tmp:
            fps = env.metadata.get("render_fps", 30)
            with imageio.get_writer(tmp, format="FFMPEG", fps=fps, macro_block_size=1) as writer:
                for frame in frames:
                    writer.append_data(frame)
    finally:
        # An EGL context left open prints errors when the interpreter exits.
        env.close()
    return outcome


def summarize_imitation(results: Sequence[ImitationResult]) -> dict[str, Any]:
    """Means over episodes, the median relative return (the paper's statistic) and the same per skill."""

    def stats(rs: Sequence[ImitationResult]) -> dict[str, Any]:
        relative = [r.relative_return for r in rs if r.relative_return is not None]
        references = [r.reference_return for r in rs if r.reference_return is not None]
        return {
            "episodes": len(rs),
            "return_mean": float(np.mean([r.episode_return for r in rs])),
            "reference_return_mean": float(np.mean(references)) if references else None,
            "relative_return_mean": float(np.mean(relative)) if relative else None,
            "relative_return_median": float(np.median(relative)) if relative else None,
            "state_rmse_mean": float(np.mean([r.state_rmse for r in rs])),
            "terminated": sum(r.terminated for r in rs),
        }

    summary = stats(results)
    skills = sorted({r.skill for r in results if r.skill is not None})
    if skills:
        summary["by_skill"] = {name: stats([r for r in results if r.skill == name]) for name in skills}
    return summary


def imitate_file(
    module: str | os.PathLike,
    reference: str | os.PathLike,
    out: str | os.PathLike,
    episodes: int | None = None,
    optimize: bool = False,
    optimize_steps: int = 500,
    seed: int = 0,
    video: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Load a module and a reference dataset, run :func:`imitate`, write ``out/imitation.json``.

    :param module: an NPMP artifact directory (``latentprior fit npmp``).
    :param reference: a dataset file (``.h5``).
    :param out: output directory.
    :return: what ``imitation.json`` holds: the inputs, :func:`summarize_imitation`'s statistics
        and ``results``, one :meth:`ImitationResult.to_dict` per episode.
    """
    npmp = NPMP.load(module)
    dataset = load_dataset(reference)
    results = imitate(
        npmp, dataset, episodes, optimize=optimize, optimize_steps=optimize_steps, seed=seed, video=video,
        module_source=str(module),
    )
    report = {
        "module": str(module),
        "reference": str(reference),
        "env_id": dataset.metadata.env_id,
        "env_kwargs": dataset.metadata.env_kwargs,
        "lookahead": npmp.lookahead,
        "optimize": optimize,
        "optimize_steps": optimize_steps if optimize else None,
        "seed": seed,
        "video": None if video is None else str(video),
        **summarize_imitation(results),
        "results": [r.to_dict() for r in results],
    }
    out = Path(out)
    # Round-trip through JSON so the returned report equals the file (numpy scalars become floats).
    report = json.loads(json.dumps(report, default=json_default))
    atomic_write_json(out / "imitation.json", report)
    return report
