"""Latent space priors (Gehring et al., TMLR 2023) as experiments: look at a prior, then use it in RL.

Sampling the prior without context gives new motion; the authors decode five such latent
sequences with the VAE and show them *kinematically* (poses set directly) and *physically*
(reenacted by the low-level policy in the simulator). Both are the cheapest check of a prior:
motion that looks like the demonstrations and moves between them means the prior learnt them.

- :func:`sample_motions`: latent sequences from the prior, decoded to states (:class:`Motions`).
- :func:`render_kinematic`: decoded states played back by setting the simulator's ``qpos``/``qvel``
  (the states must contain them, see :class:`~latentprior.envs.reenactment.StateLayout`), to MP4.
- :func:`reenact_motions`: the latents followed by the low-level policy in the simulator, with
  the tracking of the decoded states measured (and filmed).
- :func:`run_sample`: what ``latentprior sample`` does, from artifact directories.

Then a high-level SAC policy learns a task in the latent space with the prior integrated, one of
:data:`~latentprior.rl.prior_integrations.INTEGRATIONS` (``none``, ``explore``, ``regularize``,
``options``, ``plan``), every knob in :class:`~latentprior.rl.prior_integrations.LSPIntegrationConfig`:

- :func:`run_lsp_experiment`: one integration, one run directory (``latentprior lsp``).
- :func:`decoded_objective`: the authors' planning score, a task objective on decoded candidates.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
import torch

from latentprior.envs.latent_space import LatentSpaceWrapper, OptionsWrapper, observed_latent_history
from latentprior.envs.make import make_vec_env
from latentprior.envs.reenactment import Reference, require_state_layout
from latentprior.experiments.low_level import LowLevelPolicy, ReenactmentReport, reenact
from latentprior.experiments.video import make_render_env
from latentprior.io import atomic_path, atomic_write_json, read_json
from latentprior.latent.lsp import LatentPrior, LatentSubspace, LSPError, StateVAE, SubspacePrior
from latentprior.rl import SACConfig, evaluate_policy, sac
from latentprior.rl.checkpoint import load_checkpoint
from latentprior.rl.networks import QEnsemble
from latentprior.rl.prior_integrations import (
    LatentPlanner,
    LSPIntegrationConfig,
    PriorExplore,
    PriorRegularizer,
    ScoreFn,
    check_integration,
)
from latentprior.rl.run import eval_seed

__all__ = [
    "Motions",
    "sample_motions",
    "render_kinematic",
    "reenact_motions",
    "run_sample",
    "decoded_objective",
    "run_lsp_experiment",
]


@dataclass
class Motions:
    """Latent sequences and the states the VAE decodes them to.

    :param latents: ``(samples, steps, latent_dim)``, in [-1, 1].
    :param states: ``(samples, steps, obs_dim)``.
    """

    latents: np.ndarray
    states: np.ndarray

    def references(self) -> list[Reference]:
        """Each sequence as a :class:`~latentprior.envs.reenactment.Reference` to reenact."""
        return [Reference(states, latents) for states, latents in zip(self.states, self.latents)]


@torch.no_grad()
def sample_motions(prior: LatentPrior, vae: StateVAE, steps: int, samples: int = 5, seed: int = 0) -> Motions:
    """Sample ``samples`` latent sequences of ``steps`` latents without context and decode them.

    :param prior: the latent space prior (checked against ``vae``).
    :param vae: the VAE whose latents it models.
    :param steps: latents per sequence (frames of motion).
    :param samples: sequences (the authors show 5).
    :param seed: seed of the sampling.
    """
    prior.check_vae(vae)
    if steps < 1:
        raise LSPError(f"sampling needs steps >= 1, got {steps}")
    generator = torch.Generator(prior.device).manual_seed(seed)
    latents = prior.sample(steps, batch=samples, generator=generator)
    states = vae.decode(latents.to(vae.device))
    return Motions(latents.cpu().numpy(), states.cpu().numpy().astype(np.float64))


def _writer(path: Path, env: gym.Env):
    import imageio

    return imageio.get_writer(path, format="FFMPEG", fps=env.metadata.get("render_fps", 30), macro_block_size=1)


def render_kinematic(
    states: np.ndarray, env_id: str, path: str | os.PathLike, env_kwargs: Mapping[str, Any] | None = None
) -> Path:
    """Write an MP4 of state sequences played back kinematically: no physics, poses set from the states.

    Every frame sets the simulator's ``qpos``/``qvel`` from a state (root x/y integrated from its
    velocity, see :class:`~latentprior.envs.reenactment.StateLayout`) and renders; sequences play
    one after another at the environment's real-time frame rate. The file appears only when complete.

    :param states: ``(steps, obs_dim)`` or ``(sequences, steps, obs_dim)``.
    :param env_id: the robot's Gymnasium id (e.g. the VAE's ``env_id``).
    :param path: ``.mp4`` file to write.
    :param env_kwargs: ``gymnasium.make`` keyword arguments.
    :raises LSPError: when the states do not contain the robot's ``qpos`` in a known layout.
    """
    states = np.asarray(states, dtype=np.float64)
    path = Path(path)
    env = make_render_env(env_id, **dict(env_kwargs or {}))
    try:
        layout = require_state_layout(env, states.shape[-1], "kinematic rendering")
        env.reset(seed=0)
        with atomic_path(path) as tmp, _writer(tmp, env) as writer:
            for sequence in states.reshape(-1, *states.shape[-2:]):
                for qpos, qvel in zip(*layout.sim_states(sequence)):
                    env.unwrapped.set_state(qpos, qvel)
                    writer.append_data(env.render())
    finally:
        env.close()
    return path


def reenact_motions(
    low_level: LowLevelPolicy, vae: StateVAE, motions: Motions, video: str | os.PathLike | None = None
) -> ReenactmentReport:
    """Reenact sampled motions physically with the low-level policy, optionally filmed.

    Each sequence starts in its first decoded state (set from the state's ``qpos`` layout when
    known, else the environment's reset state) and the policy follows its latents; the report
    measures how closely the robot tracks the decoded states.

    :param low_level: the low-level policy (fitted on ``vae``'s latents).
    :param vae: the VAE that decoded ``motions``.
    :param motions: from :func:`sample_motions`; each needs more than ``max(target_offsets) + 1`` steps.
    :param video: ``.mp4`` file to write, sequences one after another.
    """
    if low_level.env_id is None:
        raise LSPError("the low-level policy records no environment id, so it cannot reenact motions")
    horizon = low_level.config.horizon
    if motions.latents.shape[1] < horizon + 2:
        raise LSPError(
            f"motions of {motions.latents.shape[1]} steps are too short to reenact: the low-level policy looks "
            f"{horizon} latents ahead, so sample at least {horizon + 2} steps"
        )
    if video is None:
        return reenact(low_level, vae, motions.references(), source="prior samples")
    path = Path(video)
    env = make_render_env(low_level.env_id, **low_level.env_kwargs)
    try:
        with atomic_path(path) as tmp, _writer(tmp, env) as writer:
            return reenact(
                low_level,
                vae,
                motions.references(),
                env,
                on_step=lambda task: writer.append_data(task.render()),
                source="prior samples",
            )
    finally:
        env.close()


def run_sample(
    prior_dir: str | os.PathLike,
    vae_dir: str | os.PathLike | None = None,
    *,
    steps: int = 128,
    samples: int = 5,
    seed: int = 0,
    video: str | os.PathLike | None = None,
    physical: bool = False,
    low_level_dir: str | os.PathLike | None = None,
    env_id: str | None = None,
    out: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Sample a saved prior and show the motion: ``latentprior sample``.

    :param prior_dir: the prior artifact (``latentprior fit prior``).
    :param vae_dir: the VAE artifact; default: the path the prior recorded when it was fitted.
    :param steps: latents per sample.
    :param samples: number of samples.
    :param seed: seed of the sampling.
    :param video: ``.mp4`` of the kinematic playback; with ``physical``, the physical reenactment
        goes beside it as ``<stem>-physical.mp4``.
    :param physical: reenact the samples with the low-level policy and report the tracking.
    :param low_level_dir: the low-level policy artifact (needed for ``physical``).
    :param env_id: the robot to render (default: the VAE's ``env_id``).
    :param out: ``.npz`` file for the latents and decoded states.
    :return: what was done: sizes, files written and, with ``physical``, the reenactment report.
    """
    if physical and low_level_dir is None:
        raise LSPError("physical reenactment needs the low-level policy: pass its directory (--low-level DIR)")
    prior = LatentPrior.load(prior_dir)
    vae_dir = vae_dir if vae_dir is not None else prior.vae_path
    if vae_dir is None:
        raise LSPError(f"{prior_dir}: the prior records no VAE path; pass the VAE's directory (--vae DIR)")
    vae = StateVAE.load(vae_dir)
    prior.check_vae(vae, str(prior_dir))
    motions = sample_motions(prior, vae, steps, samples, seed)
    summary: dict[str, Any] = {"samples": samples, "steps": steps, "latent_dim": vae.latent_dim, "obs_dim": vae.obs_dim}
    if out is not None:
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.savez(f, latents=motions.latents, states=motions.states)
        summary["out"] = str(out)
    if video is not None:
        env_id = env_id or vae.env_id
        if env_id is None:
            raise LSPError(f"{vae_dir}: the VAE records no environment id; name the robot to render (--env ID)")
        summary["video"] = str(render_kinematic(motions.states, env_id, video))
    if physical:
        low_level = LowLevelPolicy.load(low_level_dir, vae=vae)
        low_level.check_prior(prior, str(low_level_dir))
        physical_video = None if video is None else Path(video).with_name(f"{Path(video).stem}-physical.mp4")
        report = reenact_motions(low_level, vae, motions, physical_video)
        summary["reenactment"] = asdict(report)
        if physical_video is not None:
            summary["physical_video"] = str(physical_video)
    return summary


# ------------------------------------------------------------------------------------------------
# High-level RL with the prior integrated
# ------------------------------------------------------------------------------------------------


def decoded_objective(
    vae: StateVAE, objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], subspace: LatentSubspace | None = None
) -> ScoreFn:
    """The authors' planning score: decode each candidate latent sequence and score its states by the task objective.

    :param vae: the VAE whose latents the prior models; each candidate is decoded on its own (the
        authors also prepended the recent states, re-encoded, to give the decoder its past frames).
    :param objective: ``objective(obs, states) -> scores``: observations ``(B, obs_dim)``, decoded
        states ``(B, N, H, vae.obs_dim)``, scores ``(B, N)``, higher is better (e.g. minus the
        distance of the last decoded position to a goal read from the observation).
    :param subspace: the candidates are latents of this subspace (padded to full latents to decode).
    :return: a score for :class:`~latentprior.rl.prior_integrations.LatentPlanner`.
    """

    def score(obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        if subspace is not None:
            candidates = subspace.pad(candidates)
        batch, n, horizon, d = candidates.shape
        states = vae.decode(candidates.reshape(batch * n, horizon, d).to(vae.device))
        return objective(obs, states.view(batch, n, horizon, -1).to(obs.device))

    score.__name__ = getattr(objective, "__name__", "objective")
    return score


class _PlannerActs:
    """The planner as an evaluation policy (``act(obs, deterministic)``); an episode starts where no latent was executed yet."""

    def __init__(self, planner: LatentPlanner, device: torch.device):
        self.planner, self.device = planner, device

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        _, known = self.planner.history(obs_t)
        starts = known == 0 if self.planner.config.context else torch.zeros(len(obs_t), dtype=torch.bool)
        return self.planner.act(obs_t, starts).cpu().numpy()


def _final_critic(run_dir: Path, sac_config: SACConfig, observation_space: gym.spaces.Box, action_space: gym.spaces.Box) -> QEnsemble:
    """The critics of a finished SAC run, from its last checkpoint."""
    _, tensors = load_checkpoint(run_dir)
    critic = QEnsemble(observation_space.shape[0], action_space.low, action_space.high, sac_config.hidden_sizes,
                       sac_config.n_critics, sac_config.activation)
    critic.load_state_dict(tensors["critic"])
    return critic.eval().requires_grad_(False)


def _check_same_subspace(run_dir: Path, subspace: LatentSubspace | None) -> None:
    """Refuse to continue a run whose high level acted in other latent dimensions (its networks would not fit)."""
    path = run_dir / "config.json"
    if not path.is_file() or not (run_dir / "checkpoints").is_dir():
        return
    old = read_json(path).get("metadata", {}).get("subspace")
    new = None if subspace is None else subspace.to_dict()
    old_dims, new_dims = (None if s is None else s["dims"] for s in (old, new))
    if old_dims != new_dims:
        acted = ["all latent dimensions" if d is None else f"latent dimensions {d}" for d in (old_dims, new_dims)]
        raise LSPError(f"{path}: the run's high level acted in {acted[0]}, this call in {acted[1]}; "
                       "use a new run directory or the same subspace to continue it")


def run_lsp_experiment(
    env: str | Callable[[], gym.Env],
    vae: StateVAE,
    prior: LatentPrior,
    low_level: LowLevelPolicy,
    integration: str = "explore",
    config: LSPIntegrationConfig | None = None,
    sac_config: SACConfig | None = None,
    run_dir: str | os.PathLike = "runs/lsp",
    *,
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    proprioception: slice | None = None,
    subspace: LatentSubspace | None = None,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a high-level SAC policy in the latent space on a task, with the prior integrated (Gehring et al. 2023).

    The environment is ``env`` wrapped in :class:`~latentprior.envs.latent_space.LatentSpaceWrapper`
    (the low-level policy executes each latent; the observation carries the last ``config.context``
    latents, the prior's context) and, for ``options``, in
    :class:`~latentprior.envs.latent_space.OptionsWrapper`. The integration enters SAC as its hooks:
    ``explore`` (:class:`~latentprior.rl.prior_integrations.PriorExplore`), ``regularize``
    (:class:`~latentprior.rl.prior_integrations.PriorRegularizer`) or ``plan``
    (:class:`~latentprior.rl.prior_integrations.LatentPlanner` choosing the behaviour's latents; it
    scores with ``objective`` on decoded candidates when given, else with SAC's critics). Rerunning
    the same call continues an interrupted run.

    :param env: a Gymnasium id or a function that makes the task environment.
    :param vae: the state VAE; the prior and the low-level policy must have been fitted on its
        latents (else an :class:`~latentprior.io.ArtifactError` says which differs).
    :param prior: the latent space prior (on any device; the hooks move tensors to it).
    :param low_level: the low-level policy.
    :param integration: one of :data:`~latentprior.rl.prior_integrations.INTEGRATIONS`.
    :param config: the integrations' knobs (the authors' defaults).
    :param sac_config: the high-level learner's settings (``SACConfig()``: SB3's, 1M steps).
    :param run_dir: SAC's run directory; ``result.json`` is written there.
    :param objective: ``plan`` only: ``objective(obs, states) -> scores`` on decoded candidates
        (see :func:`decoded_objective`).
    :param env_kwargs: ``gymnasium.make`` keyword arguments when ``env`` is an id.
    :param proprioception: the slice of the task's observation the low-level policy sees (default: all).
    :param subspace: the high level acts in these latent dimensions only, the others held at its
        fill (default: all, as the authors did); the prior is then seen through it
        (:class:`~latentprior.latent.lsp.SubspacePrior`) by every integration. Build it with
        :meth:`LatentSubspace.used <latentprior.latent.lsp.LatentSubspace.used>` for the dimensions the VAE uses.
    :param progress: show SAC's progress line.
    :param metadata: JSON-able facts kept in the run's ``config.json``.
    :return: what ``result.json`` holds: the integration, the task and its ``env_kwargs``, the final metrics of SAC (``eval/...``),
        for ``explore`` the share of steps taken from the prior, for ``plan`` the planner's own
        evaluation (``planner/return_mean`` ...), and the knobs.
    """
    check_integration(integration)
    config = config or LSPIntegrationConfig()
    sac_config = sac_config or SACConfig()
    prior.check_vae(vae, "run_lsp_experiment")
    low_level.check_vae(vae, "run_lsp_experiment: the low-level policy")
    low_level.check_prior(prior, "run_lsp_experiment: the low-level policy")
    config.check_prior(prior)
    if objective is not None and integration != "plan":
        raise LSPError(f"an objective scores the planner's candidates; integration {integration!r} does not plan")
    high_prior = prior if subspace is None else SubspacePrior(prior, subspace)  # what the high level's latents see
    _check_same_subspace(Path(run_dir), subspace)
    recorded = None if subspace is None else subspace.to_dict()
    make_task = functools.partial(gym.make, env, disable_env_checker=True, **dict(env_kwargs or {})) if isinstance(env, str) else env

    def make_one() -> gym.Env:
        wrapped: gym.Env = LatentSpaceWrapper(make_task(), low_level, observe_latents=config.context,
                                              proprioception=proprioception, subspace=subspace)
        if integration == "options":
            wrapped = OptionsWrapper(wrapped, high_prior, config.option_length, config.option_temperature)
        return wrapped

    make_one().close()  # fail here, with the spaces that differ, rather than inside the learner

    def env_fn(num_envs: int, seed: int) -> gym.vector.VectorEnv:
        return make_vec_env(make_one, num_envs, seed)

    history = functools.partial(observed_latent_history, latent_dim=high_prior.latent_dim, count=config.context)
    hooks: dict[str, Any] = {}
    if integration == "explore":
        hooks["explore"] = PriorExplore(high_prior, history, config, sac_config.learning_starts, sac_config.seed)
    elif integration == "regularize":
        hooks["actor_regularizer"] = PriorRegularizer(high_prior, history, config, sac_config.seed)
    elif integration == "plan":
        score = None if objective is None else decoded_objective(vae, objective, subspace)
        hooks["explore"] = LatentPlanner(high_prior, history, config, score, sac_config.seed)
    env_name = env if isinstance(env, str) else getattr(env, "__name__", repr(env))
    kwargs = dict(env_kwargs or {}) if isinstance(env, str) else {}
    facts = {"method": "lsp", "integration": integration, "env": env_name, "env_kwargs": kwargs, "vae_fingerprint": vae.fingerprint,
             "lsp": asdict(config), "subspace": recorded, **dict(metadata or {})}
    result = sac.train(env_fn, sac_config, run_dir, progress=progress, metadata=facts, **hooks)

    summary: dict[str, Any] = {"integration": integration, "env": env_name, "env_kwargs": kwargs, "steps": result.steps,
                               "metrics": dict(result.metrics), "run_dir": str(run_dir), "config": asdict(config),
                               "subspace": recorded}
    if integration == "explore":
        explore = hooks["explore"]
        summary["explore_fraction"] = explore.followed / explore.steps if explore.steps else None
    if integration == "plan" and sac_config.eval_episodes > 0:
        planner: LatentPlanner = hooks["explore"]
        policy = result.policy
        if planner.score is None:  # the run had finished before this call: its critics come from the last checkpoint
            planner.attach(policy, _final_critic(Path(run_dir), sac_config, policy.observation_space, policy.action_space).to(policy.device))
        planner.reset()
        envs = env_fn(sac_config.eval_envs, eval_seed(sac_config.seed))
        try:
            evaluation = evaluate_policy(_PlannerActs(planner, policy.device), envs, sac_config.eval_episodes, seed=eval_seed(sac_config.seed))
        finally:
            envs.close()
        summary["planner"] = evaluation.metrics("planner/")
    atomic_write_json(Path(run_dir) / "result.json", summary)
    return summary
