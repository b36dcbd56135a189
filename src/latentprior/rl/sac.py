"""Soft Actor-Critic (Haarnoja et al. 2018, with automatic temperature) on Gymnasium vector envs.

``train`` reads top to bottom: set-up, then per vector-env step (1) act (uniformly at random
before ``learning_starts``, then from the policy; the ``explore`` hook may replace actions),
(2) store the transition, (3) ``gradient_steps`` updates, (4) report and checkpoint.

Defaults and maths are stable-baselines3's ``SAC("MlpPolicy")``: 256x256 ReLU actor and twin
critics, tanh-squashed Gaussian rescaled to the action bounds, clipped double-Q target with
the entropy term, Polyak-averaged target critics (tau 0.005), temperature tuned towards
``-act_dim``. One difference in order, for speed: each update computes the critic, actor and
temperature losses from the same parameters and applies them together with one backward pass
and one optimiser step (as Haarnoja et al.'s reference implementation does), where SB3 updates
the critic first and evaluates the actor loss on the updated critic. The critics are one
:class:`~latentprior.rl.networks.QEnsemble` (batched matmuls), and the actor's loss
differentiates through them with their weights detached, so no critic weight gradients are
computed for it.

Extension points for the prior integrations:

- ``explore(obs, actions, step, episode_start) -> actions``: may replace the behaviour
  policy's actions for some sub-environments or steps (e.g. follow a latent sequence sampled
  from a prior). The transition stores the actions actually taken.
- ``actor_regularizer(obs, dist, step) -> (loss, info)``: a term added to the actor loss, e.g.
  an annealed KL from the policy to a prior's next-latent distribution; ``info`` values are
  averaged between logging points and logged as ``train/<name>``.
- A hook with an ``attach(policy, critic)`` method is handed the learner's policy and critics
  once they exist, e.g. a planner that scores candidate actions with the critics.
- The action space may be a latent space (a wrapper's Box): SAC does not know the difference.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np
import torch
from torch import nn

from latentprior.io import LatentPriorError
from latentprior.rl.networks import FlatParameters, QEnsemble, SquashedGaussian, SquashedGaussianActor, flat_dim
from latentprior.rl.normalize import ObservationNormalizer
from latentprior.rl.policy import Policy
from latentprior.rl.run import EnvFactory, Run, RunConfig, TrainResult, final_observations

__all__ = ["SACConfig", "Explore", "ActorRegularizer", "ReplayBuffer", "train"]


@dataclasses.dataclass
class SACConfig(RunConfig):
    """SAC's settings; defaults are stable-baselines3's."""

    buffer_size: int = 1_000_000
    """replay capacity in transitions (all sub-environments together)"""
    learning_starts: int = 100
    """environment steps of uniformly random actions before updates begin (SB3 100; RL zoo 10000 for MuJoCo)"""
    batch_size: int = 256
    """transitions per gradient update"""
    learning_rate: float = 3e-4
    """Adam step size of actor, critics and temperature"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """Polyak averaging rate of the target critics"""
    gradient_steps: int = 1
    """gradient updates per vector-env step (SB3 train_freq 1, gradient_steps 1)"""
    ent_coef_init: float = 1.0
    """initial temperature alpha"""
    autotune_ent_coef: bool = True
    """tune alpha towards the target entropy (SB3 ent_coef="auto"); False keeps it fixed"""
    target_entropy: float | None = None
    """entropy target of the tuning; None: -act_dim"""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """hidden layers of the actor and of each critic"""
    activation: str = "relu"
    """hidden activation: relu, tanh or elu"""
    n_critics: int = 2
    """critics in the ensemble; the target uses their minimum"""
    normalize_obs: bool = False
    """running observation normalisation (raw observations are stored, normalised when sampled)"""
    clip_obs: float = 10.0
    """bound on normalised observations"""
    log_every: int = 1_000
    """environment steps between logged rows (losses averaged over the updates in between)"""
    checkpoint_every: int = 50_000
    """environment steps between checkpoints, replay buffer included; 0: only at the end"""
    matmul_precision: str = "auto"
    """"auto": exact float32 results, fastest kernels (runtime.py); "bf16": bfloat16 autocast of the
    networks' matmuls during updates, ~1.25x more updates/s on a CPU with AVX512-BF16, results
    rounded to 8 bits of mantissa (float32 parameters, optimiser and losses)"""


class Explore(Protocol):
    """``explore(obs, actions, step, episode_start) -> actions`` for one vector-env step.

    :param obs: raw observations, shape ``(num_envs, obs_dim)``.
    :param actions: the behaviour policy's actions in env units, ``(num_envs, act_dim)``.
    :param step: environment steps taken so far (for annealed schedules).
    :param episode_start: bool ``(num_envs,)``, true where ``obs`` begins a new episode.
    :return: the actions to take (in bounds), same shape.
    """

    def __call__(self, obs: torch.Tensor, actions: torch.Tensor, step: int, episode_start: torch.Tensor) -> torch.Tensor: ...


class ActorRegularizer(Protocol):
    """``actor_regularizer(obs, dist, step) -> (loss, info)``, added to the actor loss each update.

    :param obs: the minibatch's raw observations, ``(batch, obs_dim)``.
    :param dist: the policy's :class:`~latentprior.rl.networks.SquashedGaussian` for them (with
        gradients; ``dist.rsample_with_log_prob()`` gives differentiable samples in env units).
    :param step: environment steps so far: the hook owns its weight and its annealing schedule.
    :return: a scalar loss and named scalar tensors to log.
    """

    def __call__(self, obs: torch.Tensor, dist: SquashedGaussian, step: int) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]: ...


class ReplayBuffer:
    """A ring buffer of transitions kept as rows of one tensor, so a minibatch is one gather.

    Row layout: ``obs | next_obs | action | reward | terminated`` (float32). ``next_obs`` is the
    episode's last observation when it ended, and ``terminated`` excludes time limits, whose
    value is bootstrapped like any other state.

    :param capacity: rows kept; the oldest are overwritten.
    :param obs_dim: observation size.
    :param act_dim: action size.
    :param device: where the rows live.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device) -> None:
        self.capacity, self.obs_dim, self.act_dim = capacity, obs_dim, act_dim
        # Uninitialised: only filled rows are ever read, and untouched pages cost no memory.
        self.data = torch.empty((capacity, 2 * obs_dim + act_dim + 2), device=device)
        self.pos = self.size = 0

    def add(self, obs: np.ndarray, next_obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray) -> None:
        """Append one vector step (arrays with a leading ``num_envs`` dimension)."""
        rows = np.concatenate([obs, next_obs, actions, rewards[:, None], terminated[:, None]], axis=1, dtype=np.float32)
        rows_t = torch.from_numpy(rows).to(self.data.device)
        n, end = rows.shape[0], self.pos + rows.shape[0]
        if end <= self.capacity:
            self.data[self.pos:end] = rows_t
        else:  # wrap around
            split = self.capacity - self.pos
            self.data[self.pos:] = rows_t[:split]
            self.data[: end - self.capacity] = rows_t[split:]
        self.pos = end % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """``(obs, next_obs, actions, rewards, terminated)`` of ``batch_size`` rows drawn uniformly."""
        rows = self.data[torch.randint(0, self.size, (batch_size,), device=self.data.device)]
        obs, next_obs, actions, rewards, terminated = rows.split([self.obs_dim, self.obs_dim, self.act_dim, 1, 1], 1)
        return obs, next_obs, actions, rewards.view(-1), terminated.view(-1)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """The filled rows and counters, for a checkpoint."""
        return {"data": self.data[: self.size]}, {"pos": self.pos, "size": self.size}

    def load(self, tensors: Mapping[str, torch.Tensor], counters: Mapping[str, int]) -> None:
        size = int(counters["size"])
        self.data[:size] = tensors["data"].to(self.data.device)
        self.pos, self.size = int(counters["pos"]), size


def _check(config: SACConfig) -> None:
    problems = [
        f"{name} must be {rule}, got {getattr(config, name)!r}"
        for name, ok, rule in [
            ("buffer_size", config.buffer_size >= config.batch_size, f">= batch_size ({config.batch_size})"),
            ("batch_size", config.batch_size >= 1, ">= 1"),
            ("learning_starts", config.learning_starts >= 0, ">= 0"),
            ("gradient_steps", config.gradient_steps >= 0, ">= 0"),
            ("n_critics", config.n_critics >= 1, ">= 1"),
            ("tau", 0 < config.tau <= 1, "in (0, 1]"),
            ("log_every", config.log_every >= 1, ">= 1"),
            ("ent_coef_init", config.ent_coef_init > 0, "> 0"),
        ]
        if not ok
    ]
    if problems:
        raise LatentPriorError("SACConfig: " + "; ".join(problems))


def train(
    env_fn: EnvFactory,
    config: SACConfig | None = None,
    run_dir: str | Path = "runs/sac",
    *,
    explore: Explore | None = None,
    actor_regularizer: ActorRegularizer | None = None,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train a SAC policy; rerun with the same arguments to continue an interrupted run.

    :param env_fn: ``(num_envs, seed) -> VectorEnv`` with same-step autoreset and a bounded Box
        action space, e.g. ``functools.partial(make_vec_env, "HalfCheetah-v5")``.
    :param config: hyper-parameters and run settings (default: ``SACConfig()``).
    :param run_dir: directory for config, metrics, checkpoints and the final policy.
    :param explore: may replace behaviour actions (see :class:`Explore`).
    :param actor_regularizer: a term added to the actor loss (see :class:`ActorRegularizer`).
    :param progress: show a live progress line.
    :param metadata: JSON-able facts stored in ``config.json`` (env id, command line ...).
    :return: the trained policy, the last metrics and the paths of the run's files.
    """
    c = config if config is not None else SACConfig()
    _check(c)
    hooks = {"explore": explore, "actor_regularizer": actor_regularizer}
    with Run(run_dir, "sac", c, env_fn, hooks, metadata, progress) as run:
        if run.finished:
            return run.result()
        envs = run.make_train_envs()
        obs_space, act_space = envs.single_observation_space, envs.single_action_space
        obs_dim, act_dim, n_envs, device = flat_dim(obs_space), flat_dim(act_space), c.num_envs, run.device
        low, high = act_space.low.tolist(), act_space.high.tolist()

        # ------------------------------------------------------------ networks and optimiser
        actor = SquashedGaussianActor(obs_dim, low, high, c.hidden_sizes, c.activation)
        critic = QEnsemble(obs_dim, low, high, c.hidden_sizes, c.n_critics, c.activation).to(device)
        target_critic = copy.deepcopy(critic).requires_grad_(False)
        obs_norm = ObservationNormalizer(obs_space.shape, c.clip_obs) if c.normalize_obs else None
        policy = Policy(actor, obs_space, act_space, obs_norm, algo="sac").to(device)
        log_alpha = torch.tensor(float(np.log(c.ent_coef_init)), device=device, requires_grad=c.autotune_ent_coef)
        target_entropy = -float(act_dim) if c.target_entropy is None else c.target_entropy
        # One Adam over one flat tensor: Adam is per-parameter, so this is SB3's three optimisers.
        flat = FlatParameters([*actor.parameters(), *critic.parameters(), *([log_alpha] if c.autotune_ent_coef else [])])
        optimizer = torch.optim.Adam([flat.param], lr=c.learning_rate, fused=True)
        critic_params, target_params = list(critic.parameters()), list(target_critic.parameters())
        buffer = ReplayBuffer(c.buffer_size, obs_dim, act_dim, device)
        modules: dict[str, nn.Module] = {"actor": actor, "critic": critic, "target_critic": target_critic}
        if obs_norm is not None:
            modules["obs_normalizer"] = obs_norm
        optimizers = {"adam": optimizer}
        state = run.restore(modules, optimizers)
        if state:
            with torch.no_grad():
                log_alpha.copy_(run.checkpoint_tensors["log_alpha"]["log_alpha"])
            buffer.load(run.checkpoint_tensors["replay"], state["replay"])
        n_updates, step = int(state.get("n_updates", 0)), run.start_step
        normalize = policy.normalize
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.matmul_precision == "bf16")
        low_t = torch.as_tensor(act_space.low, dtype=torch.float32, device=device)
        width_t = torch.as_tensor(act_space.high - act_space.low, dtype=torch.float32, device=device)

        def checkpoint_parts() -> tuple[dict[str, Any], dict[str, Any]]:
            replay_tensors, replay_counters = buffer.state()
            extra_tensors = {"log_alpha": {"log_alpha": log_alpha.detach()}, "replay": replay_tensors}
            return {"n_updates": n_updates, "replay": replay_counters}, extra_tensors

        for hook in (explore, actor_regularizer):
            if hasattr(hook, "attach"):
                hook.attach(policy=policy, critic=critic)

        names = ["train/critic_loss", "train/actor_loss", "train/ent_coef", "train/entropy", "train/q_mean"]
        sums, extra_sums, updates_since_log = torch.zeros(len(names), device=device), {}, 0
        run.start()

        obs_np = envs.reset()[0]
        if obs_norm is not None:
            obs_norm.update(obs_np)
        episode_start = torch.ones(n_envs, dtype=torch.bool, device=device)
        while step < c.total_steps:
            # ------------------------------------------------------------------------ act
            obs_t = torch.as_tensor(obs_np, dtype=torch.float32, device=device)
            with torch.no_grad():
                if step < c.learning_starts:
                    actions = low_t + width_t * torch.rand((n_envs, act_dim), device=device)
                else:
                    actions = actor(normalize(obs_t)).sample()
                if explore is not None:
                    actions = explore(obs_t, actions, step, episode_start)
            actions_np = actions.cpu().numpy()
            next_obs_np, rewards, terminated, truncated, info = envs.step(actions_np)
            done = terminated | truncated
            run.episodes.update(rewards, done)

            # ------------------------------------------------------ store the transition
            buffer.add(obs_np, final_observations(next_obs_np, info), actions_np, rewards, terminated)
            if obs_norm is not None:
                obs_norm.update(next_obs_np)
            obs_np = next_obs_np
            episode_start = torch.as_tensor(done, device=device)
            step += n_envs

            # ------------------------------------------------------------------- update
            for _ in range(c.gradient_steps if step > c.learning_starts else 0):
                obs_b, next_b, act_b, rew_b, term_b = buffer.sample(c.batch_size)
                obs_in, next_in = normalize(obs_b), normalize(next_b)
                alpha = log_alpha.detach().exp()
                with autocast:
                    with torch.no_grad():
                        next_actions, next_log_prob = actor(next_in).rsample_with_log_prob()
                        next_q = target_critic(next_in, next_actions).min(0).values - alpha * next_log_prob
                        target_q = rew_b + c.gamma * (1 - term_b) * next_q
                    q = critic(obs_in, act_b)
                    dist = actor(obs_in)
                    pi_actions, log_prob = dist.rsample_with_log_prob()
                    q_pi = critic(obs_in, pi_actions, detach_params=True).min(0).values
                critic_loss = 0.5 * (q - target_q).square().mean(1).sum()
                actor_loss = (alpha * log_prob - q_pi).mean()
                loss = critic_loss + actor_loss
                if c.autotune_ent_coef:
                    loss = loss - (log_alpha * (log_prob.detach() + target_entropy)).mean()
                if actor_regularizer is not None:
                    extra, extra_info = actor_regularizer(obs_b, dist, step)
                    loss = loss + extra
                    for k, v in extra_info.items():
                        extra_sums[k] = extra_sums.get(k, 0.0) + v.detach()
                flat.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    torch._foreach_lerp_(target_params, critic_params, c.tau)
                    sums += torch.stack([critic_loss, actor_loss, alpha, -log_prob.mean(), q.mean()])
                n_updates += 1
                updates_since_log += 1

            # ------------------------------------------------------- report, checkpoint
            if step % c.log_every < n_envs or step >= c.total_steps:
                metrics: dict[str, float] = {"train/n_updates": n_updates}
                if updates_since_log:
                    metrics.update(zip(names, (sums / updates_since_log).tolist()))
                    metrics.update({f"train/{k}": float(v) / updates_since_log for k, v in extra_sums.items()})
                sums.zero_()
                extra_sums, updates_since_log = {}, 0
                run.report(step, metrics, policy, final=step >= c.total_steps)
            if run.checkpoint_due(step) and step < c.total_steps:
                state, extra_tensors = checkpoint_parts()
                run.save_checkpoint(step, policy, modules, optimizers, state, extra_tensors)
        state, extra_tensors = checkpoint_parts()
        return run.finish(step, policy, modules, optimizers, state, extra_tensors)
