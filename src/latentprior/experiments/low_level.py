"""The low-level policy of latent space priors (Gehring et al., TMLR 2023): ``pi_lo(a | s_p, z)``, fitted.

The policy reenacts latent targets (the task is :class:`~latentprior.envs.reenactment.ReenactmentEnv`).
Once trained it turns any latent sequence into motion: the prior's samples (physically reenacted)
and, on new tasks, a high-level policy's latents
(:class:`~latentprior.envs.latent_space.LatentSpaceWrapper`).

Read top to bottom:

1. :class:`LowLevelPolicy`: the fitted policy as an artifact (save, load, checks, ``act``).
2. :func:`fit_low_level` (reinforcement learning with the project's SAC) and
   :func:`fit_low_level_bc` (behavioural cloning from the dataset's actions, as the authors did on
   offline datasets with actions).
3. :class:`ReenactmentReport`, :func:`reenact` and :func:`reenactment_report`: how well a policy
   reenacts held-out demonstrations.

It lives in ``experiments`` because it *is* an RL policy: it is trained by
:func:`latentprior.rl.sac.train` on vector environments of the reenactment task and stored as a
:class:`latentprior.rl.Policy`.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch

from latentprior.data import Dataset, DatasetError
from latentprior.envs.extras import proprioception_slice
from latentprior.envs.make import make_vec_env
from latentprior.envs.reenactment import (
    LowLevelConfig,
    Reference,
    ReenactmentEnv,
    Tracking,
    encode_references,
    low_level_observation,
)
from latentprior.io import ArtifactError, check_space, load_artifact, save_artifact
from latentprior.latent.lsp import (
    UNUSED_KL,
    LatentPrior,
    LSPError,
    StateVAE,
    _observation_space,
    _source,
    _Windows,
    latent_kl,
)
from latentprior.rl import Policy, SACConfig, load_policy, sac
from latentprior.rl.networks import SquashedGaussianActor
from latentprior.rl.normalize import ObservationNormalizer

__all__ = [
    "LowLevelPolicy",
    "fit_low_level",
    "fit_low_level_bc",
    "ReenactmentReport",
    "reenact",
    "reenactment_report",
]

LOW_LEVEL_KIND = "lsp_low_level"
#: where behavioural cloning takes the latent targets from (:func:`fit_low_level_bc`)
LATENT_TARGETS = ("posterior", "mean", "unused-random")


# ------------------------------------------------------------------------------------------------
# 1. The fitted low-level policy
# ------------------------------------------------------------------------------------------------


@dataclass
class LowLevelPolicy:
    """A fitted low-level policy ``pi_lo(a | s_p, z)``: proprioception and latent targets in, actions out.

    Saved as an artifact directory: ``config.json`` (kind ``lsp_low_level``: the task's config,
    the latent size, the VAE's fingerprint, the environment, the spaces) and ``policy/``, an
    ordinary :class:`~latentprior.rl.Policy` artifact over the concatenated observation.

    :param policy: acts on :func:`low_level_observation` of proprioception and targets.
    :param config: the reenactment task it was trained on (``target_offsets`` sets its input).
    :param latent_dim: size of each latent target.
    :param vae_fingerprint: :attr:`StateVAE.fingerprint` of the VAE whose latents it follows.
    :param env_id: Gymnasium id of its environment, if known.
    :param env_kwargs: keyword arguments of ``gymnasium.make`` for it.
    :param method: ``"sac"`` (reinforcement learning) or ``"bc"`` (behavioural cloning).
    :param metrics: final training metrics (SAC: the run's last logged metrics; BC: the loss and,
        unless the targets were the means, ``unused_latent_dims``: the VAE's latent dimensions
        whose mean KL to N(0, I) is under :data:`~latentprior.latent.lsp.UNUSED_KL`).
    :param history: training curves (BC: ``epoch`` and ``loss`` per epoch).
    :param report: :class:`ReenactmentReport` on held-out demonstrations, as a dict, if measured.
    :param latent_targets: BC only: where its targets came from (one of :data:`LATENT_TARGETS`).
    """

    policy: Policy
    config: LowLevelConfig
    latent_dim: int
    vae_fingerprint: str
    env_id: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    method: str = "sac"
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    latent_targets: str | None = None

    @property
    def num_targets(self) -> int:
        return len(self.config.target_offsets)

    @property
    def proprioception_space(self) -> gym.spaces.Box:
        """The environment's observation space: the first part of the policy's input."""
        space = self.policy.observation_space
        p = space.shape[0] - self.num_targets * self.latent_dim
        return gym.spaces.Box(space.low[:p], space.high[:p], dtype=space.dtype)

    @property
    def action_space(self) -> gym.spaces.Box:
        return self.policy.action_space

    @property
    def latent_space(self) -> gym.spaces.Box:
        """The box each latent target lies in (the tanh range of the VAE's latents)."""
        return gym.spaces.Box(-1.0, 1.0, (self.latent_dim,), np.float32)

    def observation(self, proprioception: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The policy's input from proprioception ``(*batch, p)`` and targets.

        :param targets: ``(*batch, num_targets, latent_dim)``, one latent per target offset, or
            ``(*batch, latent_dim)``, one latent repeated for every offset (what a high-level
            policy acting in the latent space supplies).
        """
        proprioception = np.asarray(proprioception)
        targets = np.asarray(targets, dtype=np.float32)
        batch, n, d = proprioception.shape[:-1], self.num_targets, self.latent_dim
        if targets.shape == (*batch, d):
            targets = np.repeat(targets[..., None, :], n, axis=-2)
        if proprioception.shape[-1:] != self.proprioception_space.shape or targets.shape != (*batch, n, d):
            raise LSPError(
                f"low-level policy input: proprioception must be (*batch, {self.proprioception_space.shape[0]}) and "
                f"targets (*batch, {n}, {d}) or (*batch, {d}); got {proprioception.shape} and {targets.shape}"
            )
        return low_level_observation(proprioception, targets)

    def act(self, proprioception: np.ndarray, targets: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions (environment units, in bounds) for proprioception and latent targets (see :meth:`observation`)."""
        return self.policy.act(self.observation(proprioception, targets), deterministic=deterministic)

    def check_env(self, env: gym.Env, source: str = "low-level policy") -> None:
        """Raise :class:`~latentprior.io.ArtifactError` unless ``env`` observes the policy's proprioception and takes its actions.

        The proprioception is ``env``'s whole observation, or, for a task that appends features of
        its own after the robot's (Bipedal Skills, AntMaze), the slice its ``unwrapped.proprioception`` names.
        """
        space = env.observation_space
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            seen = proprioception_slice(env, self.proprioception_space.shape[0])
            space = gym.spaces.Box(space.low[seen], space.high[seen], dtype=space.dtype)
        check_space(self.proprioception_space, space, "observation (proprioception)", source)
        check_space(self.action_space, env.action_space, "action", source)

    def check_vae(self, vae: StateVAE, source: str = "low-level policy") -> None:
        """Raise :class:`~latentprior.io.ArtifactError` unless ``vae`` made the latents the policy follows."""
        if vae.latent_dim != self.latent_dim:
            raise ArtifactError(
                f"{source}: field 'latent_dim' is {self.latent_dim}, but the VAE encodes {vae.latent_dim}-d latents; "
                f"fit the low-level policy on this VAE's latents"
            )
        if vae.fingerprint != self.vae_fingerprint:
            raise ArtifactError(
                f"{source}: field 'vae_fingerprint' is {self.vae_fingerprint}, but this VAE is {vae.fingerprint}; "
                f"its latents mean something else, so fit the low-level policy on this VAE's latents"
            )

    def check_prior(self, prior: LatentPrior, source: str = "low-level policy") -> None:
        """Raise :class:`~latentprior.io.ArtifactError` unless ``prior`` models the latents the policy follows."""
        if prior.latent_dim != self.latent_dim or prior.vae_fingerprint != self.vae_fingerprint:
            raise ArtifactError(
                f"{source}: fields 'latent_dim' and 'vae_fingerprint' are {self.latent_dim} and {self.vae_fingerprint}, "
                f"but the prior models {prior.latent_dim}-d latents of VAE {prior.vae_fingerprint}; use a prior and a "
                f"low-level policy fitted on the same VAE"
            )

    def save(self, directory: str | os.PathLike) -> Path:
        """Save as an artifact directory (``policy/`` first, ``config.json`` last, each atomically)."""
        directory = Path(directory)
        self.policy.save(directory / "policy")
        return save_artifact(
            directory,
            {},
            {
                "kind": LOW_LEVEL_KIND,
                "latent_dim": self.latent_dim,
                "vae_fingerprint": self.vae_fingerprint,
                "env_id": self.env_id,
                "env_kwargs": self.env_kwargs,
                "method": self.method,
                "config": asdict(self.config),
                "metrics": self.metrics,
                "history": self.history,
                "report": self.report,
                "latent_targets": self.latent_targets,
            },
            {"proprioception": self.proprioception_space, "latent": self.latent_space, "action": self.action_space},
        )

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        vae: StateVAE | None = None,
        env: gym.Env | None = None,
        device: str | torch.device = "cpu",
    ) -> "LowLevelPolicy":
        """Load a saved low-level policy; with ``vae`` and ``env``, first check that they fit it.

        Every mismatch is an :class:`~latentprior.io.ArtifactError` naming the file and the field.
        """
        directory = Path(directory)
        where = directory / "config.json"
        config, _, spaces = load_artifact(directory, LOW_LEVEL_KIND)
        try:
            low_level = cls(
                load_policy(directory / "policy", device=device),
                LowLevelConfig(**config["config"]),
                int(config["latent_dim"]),
                str(config["vae_fingerprint"]),
                config.get("env_id"),
                dict(config.get("env_kwargs") or {}),
                str(config.get("method", "sac")),
                dict(config.get("metrics") or {}),
                {k: list(v) for k, v in (config.get("history") or {}).items()},
                config.get("report"),
                config.get("latent_targets"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{where}: low-level policy does not match its config ({e})") from None
        inputs = low_level.policy.observation_space.shape[0]
        proprioception = spaces["proprioception"].shape[0]
        expected = proprioception + low_level.num_targets * low_level.latent_dim
        if inputs != expected:
            raise ArtifactError(
                f"{where}: fields 'latent_dim' ({low_level.latent_dim}), 'config.target_offsets' "
                f"({low_level.num_targets} targets) and spaces.proprioception ({proprioception}-d) make {expected}-d "
                f"inputs, but {directory / 'policy'} takes {inputs}-d observations"
            )
        check_space(spaces["action"], low_level.action_space, "action", f"{where}: spaces.action")
        if vae is not None:
            low_level.check_vae(vae, str(where))
        if env is not None:
            low_level.check_env(env, str(where))
        return low_level


# ------------------------------------------------------------------------------------------------
# 2. Fitting: reinforcement learning (SAC) or behavioural cloning
# ------------------------------------------------------------------------------------------------


def _environment(dataset: Dataset, env_id: str | None, env_kwargs: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    env_id = env_id or dataset.metadata.env_id
    if env_id is None:
        raise DatasetError(f"{_source(dataset)}: the dataset records no environment id; pass env_id")
    return env_id, dict(dataset.metadata.env_kwargs if env_kwargs is None else env_kwargs)


def _make_reenactment_env(
    env_id: str, env_kwargs: Mapping[str, Any], references: Sequence[Reference], tracking: Tracking, config: LowLevelConfig, source: str
) -> ReenactmentEnv:
    return ReenactmentEnv(gym.make(env_id, disable_env_checker=True, **env_kwargs), references, tracking, config, True, source)


def fit_low_level(
    vae: StateVAE,
    dataset: Dataset,
    config: LowLevelConfig | None = None,
    sac_config: SACConfig | None = None,
    run_dir: str | os.PathLike = "runs/low_level",
    *,
    env_id: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    held_out: Dataset | None = None,
    progress: bool = True,
) -> LowLevelPolicy:
    """Train the low-level policy with reinforcement learning to reenact demonstrations (Gehring et al. 2023).

    The project's SAC (:func:`latentprior.rl.sac.train`) runs on :class:`ReenactmentEnv` around
    ``gymnasium.make(env_id)`` with the demonstrations as references and their latents from the
    frozen ``vae``; the authors trained with V-MPO on 160 environments at a time, for up to 1e10
    steps (``lcs2_policy_lo.yaml``), far beyond a CPU budget. The run
    directory holds SAC's metrics, checkpoints and evaluations (of the tracking return); rerunning
    the same call continues an interrupted run.

    :param vae: the fitted, frozen state VAE.
    :param dataset: demonstrations in the environment's observation space; ``qpos``/``qvel``
        give exact start states, else the observation's layout does (:class:`StateLayout`).
    :param config: the reenactment task (:class:`LowLevelConfig`).
    :param sac_config: SAC's settings; ``SACConfig()`` (SB3's defaults, 1M steps) by default.
    :param run_dir: SAC's run directory.
    :param env_id: environment (default: the dataset's ``metadata.env_id``).
    :param env_kwargs: ``gymnasium.make`` keyword arguments (default: the dataset's).
    :param held_out: demonstrations to measure :func:`reenactment_report` on afterwards.
    :param progress: show SAC's progress line.
    """
    config = config or LowLevelConfig()
    env_id, env_kwargs = _environment(dataset, env_id, env_kwargs)
    source = _source(dataset)
    references = encode_references(vae, dataset)
    make_one = functools.partial(
        _make_reenactment_env, env_id, env_kwargs, references, Tracking(vae, config.reward_scale), config, source
    )
    make_one().close()  # fail here, with the dataset's name, rather than inside the learner

    def env_fn(num_envs: int, seed: int) -> gym.vector.VectorEnv:
        return make_vec_env(make_one, num_envs, seed)

    metadata = {"method": "lsp low-level policy", "env_id": env_id, "vae_fingerprint": vae.fingerprint, "dataset": source}
    result = sac.train(env_fn, sac_config or SACConfig(), run_dir, progress=progress, metadata=metadata)
    low_level = LowLevelPolicy(
        result.policy.eval(), config, vae.latent_dim, vae.fingerprint, env_id, env_kwargs, "sac", dict(result.metrics)
    )
    if held_out is not None:
        low_level.report = asdict(reenactment_report(low_level, vae, held_out))
    return low_level


def fit_low_level_bc(
    vae: StateVAE,
    dataset: Dataset,
    config: LowLevelConfig | None = None,
    *,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    hidden_sizes: Sequence[int] = (256, 256),
    seed: int = 0,
    env_id: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    held_out: Dataset | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    latent_targets: str = "posterior",
) -> LowLevelPolicy:
    """Fit the low-level policy by behavioural cloning of the dataset's actions (Gehring et al. 2023, offline data).

    Each step ``t`` that has targets (``t + max(target_offsets)`` within the episode) is one pair:
    input :func:`low_level_observation` of ``observations[t]`` and the latents at ``t +
    target_offsets``, target ``actions[t]`` clipped to the action space. The network is SAC's
    actor (:class:`~latentprior.rl.networks.SquashedGaussianActor`) behind an observation
    normaliser with the data's statistics; its mode is regressed onto the actions (mean squared
    error in [-1, 1] action units). The result acts, saves and loads like the SAC path's.

    :param vae: the fitted, frozen state VAE.
    :param dataset: demonstrations with ``actions``; every episode needs ``max(target_offsets) + 2``
        frames.
    :param config: the reenactment task; its ``target_offsets`` set the input.
    :param epochs: passes over the pairs.
    :param batch_size: pairs per minibatch.
    :param learning_rate: Adam step size.
    :param hidden_sizes: hidden layers of the actor.
    :param seed: initialisation and minibatch order.
    :param env_id: environment (default: the dataset's), recorded with the policy.
    :param env_kwargs: ``gymnasium.make`` keyword arguments (default: the dataset's).
    :param held_out: demonstrations to measure :func:`reenactment_report` on afterwards (needs the
        environment).
    :param callback: ``callback(epoch, {"loss": ...})`` after every epoch.
    :param latent_targets: ``"posterior"`` (the default): every minibatch draws the targets from
        the VAE's posterior, ``tanh(mean + std * noise)``, as its decoder was trained on them;
        ``"mean"``: the posterior means, the latents :meth:`StateVAE.encode` gives. The posterior
        matters where the VAE left latent dimensions unused (posterior ~ its N(0, I) prior, a
        near-constant mean): trained on the means, the policy never sees those dimensions move and
        a high level's exploratory latents, which do move them, topple the robot
        (``benchmarks/lsp_reach.py`` measures this; ``docs/BENCHMARKS.md``); trained on posterior
        samples, it learns that they carry nothing. ``"unused-random"``: the means in the dimensions
        the VAE uses, uniform noise in [-1, 1] in those it does not (mean KL to N(0, I) under
        :data:`~latentprior.latent.lsp.UNUSED_KL` nats per frame): robust to what a high level puts in the unused
        dimensions without blurring the used ones.
    """
    config = config or LowLevelConfig()
    source = _source(dataset)
    if latent_targets not in LATENT_TARGETS:
        raise LSPError(f"unknown latent_targets {latent_targets!r}; use one of {', '.join(LATENT_TARGETS)}")
    if "actions" not in dataset.fields:
        raise DatasetError(
            f"{source}: behavioural cloning needs the dataset's 'actions' (it has {', '.join(dataset.fields)}); "
            "train the low-level policy with reinforcement learning instead (fit_low_level)"
        )
    env_id = env_id or dataset.metadata.env_id
    env_kwargs = dict(dataset.metadata.env_kwargs if env_kwargs is None else env_kwargs)
    action_space = dataset.metadata.action_space
    if action_space is None and env_id is not None:
        with gym.make(env_id, **env_kwargs) as env:
            action_space = env.action_space
    if not isinstance(action_space, gym.spaces.Box):
        raise DatasetError(f"{source}: behavioural cloning needs a Box action space (metadata or env id), got {action_space}")
    horizon = config.horizon
    frames = [torch.arange(len(e.observations)) for e in dataset]
    _Windows(frames, horizon + 2, source, ("max(LowLevelConfig.target_offsets)", 2))
    references = encode_references(vae, dataset)
    offsets = np.asarray(config.target_offsets)
    inputs, targets, means, stds = [], [], [], []
    for reference, episode in zip(references, dataset):
        steps = np.arange(min(episode.num_steps, episode.num_steps + 1 - horizon))
        inputs.append(low_level_observation(reference.states[steps], reference.latents[steps[:, None] + offsets]))
        targets.append(episode.actions[steps])
        if latent_targets != "mean":
            with torch.no_grad():
                mean, std = (v.cpu().numpy() for v in vae.posterior(episode.observations))
            means.append(mean[steps[:, None] + offsets].reshape(len(steps), -1))
            stds.append(std[steps[:, None] + offsets].reshape(len(steps), -1))
    x = np.concatenate(inputs)
    n = len(offsets) * vae.latent_dim
    posterior, unused = None, torch.zeros(n, dtype=torch.bool)
    if latent_targets != "mean":
        posterior = torch.from_numpy(np.concatenate(means)).float(), torch.from_numpy(np.concatenate(stds)).float()
        unused = torch.from_numpy(latent_kl(vae, dataset) < UNUSED_KL).repeat(len(offsets))
    low, high = action_space.low.astype(np.float64), action_space.high.astype(np.float64)
    y = (np.clip(np.concatenate(targets), low, high) - (high + low) / 2) / ((high - low) / 2)

    proprioception = _observation_space(dataset)
    observation_space = gym.spaces.Box(
        np.concatenate([proprioception.low, -np.ones(n)]).astype(proprioception.dtype),
        np.concatenate([proprioception.high, np.ones(n)]).astype(proprioception.dtype),
        dtype=proprioception.dtype,
    )
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_t = torch.from_numpy(x).float()

    def draw(index: torch.Tensor) -> torch.Tensor:
        """Raw inputs of pairs ``index``, their latent targets drawn from the posterior when asked."""
        if posterior is None:
            return x_t[index]
        if latent_targets == "posterior":
            mean, std = posterior[0][index], posterior[1][index]
            z = torch.tanh(mean + std * torch.randn(mean.shape, generator=generator))
        else:  # "unused-random"
            z = x_t[index, x.shape[1] - n :].clone()
            z[:, unused] = torch.rand((len(index), int(unused.sum())), generator=generator) * 2 - 1
        return torch.cat([x_t[index, : x.shape[1] - n], z], dim=1)

    normalizer = ObservationNormalizer(observation_space.shape)
    normalizer.update(draw(torch.arange(len(x_t))).double().numpy())
    actor = SquashedGaussianActor(x.shape[1], low.tolist(), high.tolist(), tuple(hidden_sizes))
    policy = Policy(actor, observation_space, action_space, normalizer, algo="bc")
    optimizer = torch.optim.Adam(actor.parameters(), lr=learning_rate)
    inputs_t, targets_t = policy.normalize(x_t), torch.from_numpy(y).float()
    history: dict[str, list[float]] = {"epoch": [], "loss": [], "seconds": []}
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order, total = torch.randperm(len(inputs_t), generator=generator), 0.0
        for first in range(0, len(order), batch_size):
            batch = order[first : first + batch_size]
            batch_inputs = inputs_t[batch] if posterior is None else policy.normalize(draw(batch))
            loss = torch.nn.functional.mse_loss(torch.tanh(actor(batch_inputs).mean), targets_t[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        for key, value in (("epoch", epoch), ("loss", total / len(order)), ("seconds", time.perf_counter() - start)):
            history[key].append(value)
        if callback is not None:
            callback(epoch, {"loss": history["loss"][-1]})
    metrics = {"loss": history["loss"][-1]} if history["loss"] else {}
    if posterior is not None:
        metrics["unused_latent_dims"] = float(unused.sum()) / len(offsets)
    low_level = LowLevelPolicy(
        policy.eval(), config, vae.latent_dim, vae.fingerprint, env_id, env_kwargs, "bc", metrics, history,
        latent_targets=latent_targets,
    )
    if held_out is not None:
        low_level.report = asdict(reenactment_report(low_level, vae, held_out))
    return low_level


# ------------------------------------------------------------------------------------------------
# 3. How well a policy reenacts
# ------------------------------------------------------------------------------------------------


@dataclass
class ReenactmentReport:
    """How closely a low-level policy follows references, started in each one's first state.

    :param errors: mean squared tracking error per state group of the VAE, plus ``"all"``
        (normalised units, see :class:`Tracking`), over the frames reenacted.
    :param within_tolerance: share of the frames to reenact whose error over all dimensions was at
        most ``tolerance``; frames after an episode ended early count as missed.
    :param tolerance: the threshold used (normalised units).
    :param frames: frames to reenact, summed over references (each one's frames after the first
        that still have targets).
    :param reenacted_frames: frames reached before episodes ended early (the robot fell or lost
        the reference).
    :param references: number of references.
    :param reward_mean: mean reenactment reward per step.
    """

    errors: dict[str, float]
    within_tolerance: float
    tolerance: float
    frames: int
    reenacted_frames: int
    references: int
    reward_mean: float

    def __str__(self) -> str:
        errors = ", ".join(f"{k} {v:.4f}" for k, v in self.errors.items())
        return (
            f"reenacted {self.reenacted_frames}/{self.frames} frames of {self.references} references; "
            f"{100 * self.within_tolerance:.1f}% within error {self.tolerance:g}; mean error {errors}; "
            f"reward {self.reward_mean:.3f} per step"
        )


def reenact(
    low_level: LowLevelPolicy,
    vae: StateVAE,
    references: Sequence[Reference],
    env: gym.Env | None = None,
    *,
    tolerance: float | None = None,
    deterministic: bool = True,
    on_step: Callable[[gym.Env], None] | None = None,
    source: str = "references",
) -> ReenactmentReport:
    """Reenact each reference from its first frame to its last with targets, and measure the tracking.

    :param low_level: the policy (checked against ``vae`` and ``env``).
    :param vae: the VAE whose latents the references hold; its normalisation and groups measure errors.
    :param references: motions to reenact (:func:`encode_references`, or decoded prior samples).
    :param env: the environment (default: ``gymnasium.make`` of the policy's env id, closed
        afterwards); one made with ``render_mode="rgb_array"`` can be filmed through ``on_step``.
    :param tolerance: threshold of :attr:`ReenactmentReport.within_tolerance` (default: the
        policy's ``config.tolerance``).
    :param deterministic: the policy's mean action (else samples).
    :param on_step: called with the reenactment environment after each reset and each step.
    :param source: name of the references for error messages.
    """
    config = low_level.config
    tolerance = config.tolerance if tolerance is None else float(tolerance)
    own_env = env is None
    if own_env:
        if low_level.env_id is None:
            raise LSPError("the low-level policy records no environment id; pass env")
        env = gym.make(low_level.env_id, disable_env_checker=True, **low_level.env_kwargs)
    try:
        low_level.check_vae(vae)
        low_level.check_env(env)
        task = ReenactmentEnv(env, references, Tracking(vae, config.reward_scale), config, False, source)
        sums: dict[str, float] = {}
        frames = reenacted = within = 0
        rewards = 0.0
        for index in range(len(references)):
            obs, _ = task.reset(seed=index, options={"reference": index})
            frames += task.last_frame - task.frame
            if on_step is not None:
                on_step(task)
            done = False
            while not done:
                obs, reward, terminated, truncated, info = task.step(low_level.policy.act(obs, deterministic))
                if on_step is not None:
                    on_step(task)
                errors = info["tracking_error"]
                for name, value in errors.items():
                    sums[name] = sums.get(name, 0.0) + value
                reenacted += 1
                within += errors["all"] <= tolerance
                rewards += reward
                done = terminated or truncated
    finally:
        if own_env:
            env.close()
    return ReenactmentReport(
        {name: total / reenacted for name, total in sums.items()},
        within / frames,
        tolerance,
        frames,
        reenacted,
        len(references),
        rewards / reenacted,
    )


def reenactment_report(
    low_level: LowLevelPolicy,
    vae: StateVAE,
    dataset: Dataset,
    env: gym.Env | None = None,
    tolerance: float | None = None,
) -> ReenactmentReport:
    """How well ``low_level`` reenacts the demonstrations of ``dataset`` (held-out ones, to measure generalisation).

    Every episode is reenacted whole, from its first frame (set from ``qpos``/``qvel`` or the
    observation) to its last with targets, with the demonstration's latents; see :func:`reenact`.
    """
    return reenact(low_level, vae, encode_references(vae, dataset), env, tolerance=tolerance, source=_source(dataset))
