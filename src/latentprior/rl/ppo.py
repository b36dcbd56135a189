"""Proximal Policy Optimization (Schulman et al. 2017) on Gymnasium vector envs, with SB3's defaults.

``train`` reads top to bottom: set-up, then a loop of (1) collect a rollout with the current
policy, (2) GAE advantages (Schulman et al. 2016), (3) ``n_epochs`` of minibatch steps on the
clipped surrogate (Eq. 7 of the PPO paper) plus value loss, (4) report and checkpoint.

Equivalence with stable-baselines3 ``PPO("MlpPolicy")`` + ``VecNormalize(norm_reward=False)``:
same networks and init, same observation normalisation (updated at every step, clipped at 10),
unclipped Gaussian actions stored and clipped only for the environment, truncated episodes
bootstrapped with ``gamma * V(final_obs)``, per-minibatch advantage normalisation, Adam with
eps 1e-5, gradient norm clipped at 0.5. Two things are computed differently, with the same
result: values and old log-probabilities of a rollout are computed in one batch after it (the
networks do not change during a rollout), and the minibatch tensors are gathered with one index.

Extension points for the prior integrations:

- ``actor``: any module mapping normalised observations to a distribution with ``sample``,
  ``log_prob``, ``entropy`` and ``mode`` (see :mod:`latentprior.rl.networks`), e.g. a head with
  other dimensions or a mixture. A latent action space is an environment wrapper, not an actor.
- ``extra_loss(batch, dist) -> (loss, info)``: a term added to every minibatch loss, e.g. a KL
  from the policy to a prior's action distribution; ``info`` values are averaged per rollout
  and logged as ``train/<name>``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentprior.io import LatentPriorError
from latentprior.rl.networks import MLP, FlatParameters, GaussianActor, flat_dim
from latentprior.rl.normalize import ObservationNormalizer, RewardScaler
from latentprior.rl.policy import Policy
from latentprior.rl.run import EnvFactory, Run, RunConfig, TrainResult

__all__ = ["PPOConfig", "PPOBatch", "ExtraLoss", "train", "gae"]


@dataclasses.dataclass
class PPOConfig(RunConfig):
    """PPO's settings; defaults are stable-baselines3's (plus observation normalisation)."""

    n_steps: int = 2048
    """environment steps per sub-environment in each rollout"""
    batch_size: int = 64
    """minibatch size (transitions) of each gradient step"""
    n_epochs: int = 10
    """passes over each rollout"""
    learning_rate: float = 3e-4
    """Adam step size (constant)"""
    adam_eps: float = 1e-5
    """Adam epsilon (SB3 uses 1e-5 for PPO)"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE bias/variance trade-off"""
    clip_range: float = 0.2
    """probability-ratio clipping of the surrogate objective"""
    normalize_advantage: bool = True
    """standardise advantages within each minibatch"""
    ent_coef: float = 0.0
    """weight of the entropy bonus"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping"""
    target_kl: float | None = None
    """stop a rollout's remaining epochs once a minibatch's approximate KL divergence from the
    rollout's policy exceeds ``1.5 * target_kl`` (SB3's ``target_kl``); ``None``: never. Keeps
    updates small once the policy's std has shrunk, where a few gradient steps move it far."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """hidden layers of the actor and of the critic (separate networks)"""
    activation: str = "tanh"
    """hidden activation: tanh, relu or elu"""
    log_std_init: float = 0.0
    """initial log std of the state-independent Gaussian"""
    ortho_init: bool = True
    """SB3's orthogonal initialisation"""
    normalize_obs: bool = True
    """running observation normalisation (SB3 VecNormalize), saved with the policy"""
    clip_obs: float = 10.0
    """bound on normalised observations"""
    normalize_reward: bool = False
    """divide rewards by the running std of the discounted return (VecNormalize norm_reward)"""
    clip_reward: float = 10.0
    """bound on scaled rewards"""
    checkpoint_every: int = 100_000
    """environment steps between checkpoints (at the next rollout end); 0: only at the end"""
    matmul_precision: str = "highest"
    """float32 matmul precision; "highest" because at 64 units the split-bf16 kernels cost more than they save"""


class PPOBatch(NamedTuple):
    """One minibatch, as the ``extra_loss`` hook sees it (all tensors batch first)."""

    obs: torch.Tensor
    """normalised observations, the actor's input"""
    raw_obs: torch.Tensor
    """the environment's observations (float32)"""
    actions: torch.Tensor
    """actions taken, unclipped, in env units"""
    old_log_prob: torch.Tensor
    """log-probability of the actions under the rollout's policy"""
    advantages: torch.Tensor
    """GAE advantages (normalised if ``normalize_advantage``)"""
    returns: torch.Tensor
    """value targets"""
    old_values: torch.Tensor
    """values predicted during the rollout"""


class ExtraLoss(Protocol):
    """``extra_loss(batch, dist) -> (loss, info)``: a scalar added to the minibatch loss.

    ``dist`` is the current actor's distribution for ``batch.obs`` (with gradients). ``info``
    maps names to scalar tensors that are averaged per rollout and logged as ``train/<name>``.
    """

    def __call__(self, batch: PPOBatch, dist: Any) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]: ...


def gae(
    rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_values: np.ndarray, gamma: float, lam: float
) -> np.ndarray:
    """Generalised advantage estimates (Eq. 11-16 of Schulman et al. 2016), arrays ``(T, num_envs)``.

    ``dones[t]`` means the episode ended at step ``t`` (truncations were already bootstrapped
    into the reward); ``last_values`` are the values of the observations after the last step.
    """
    advantages = np.zeros_like(rewards)
    running = np.zeros_like(last_values)
    next_values = last_values
    for t in reversed(range(rewards.shape[0])):
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_values * live - values[t]
        running = delta + gamma * lam * live * running
        advantages[t] = running
        next_values = values[t]
    return advantages


def _check(config: PPOConfig) -> None:
    rollout = config.n_steps * config.num_envs
    if config.n_steps < 1 or config.batch_size < 1 or config.n_epochs < 1:
        raise LatentPriorError(
            f"PPOConfig: n_steps, batch_size and n_epochs must be >= 1, got "
            f"{config.n_steps}, {config.batch_size}, {config.n_epochs}"
        )
    if config.matmul_precision == "bf16":
        raise LatentPriorError("PPOConfig: matmul_precision 'bf16' is for SAC's wide networks; PPO's are call-bound")
    if config.target_kl is not None and not config.target_kl > 0:
        raise LatentPriorError(f"PPOConfig: target_kl must be > 0 or None, got {config.target_kl}")
    if config.batch_size > rollout:
        raise LatentPriorError(
            f"PPOConfig: batch_size {config.batch_size} exceeds the rollout of n_steps * num_envs = {rollout}"
        )


def train(
    env_fn: EnvFactory,
    config: PPOConfig | None = None,
    run_dir: str | Path = "runs/ppo",
    *,
    actor: nn.Module | None = None,
    extra_loss: ExtraLoss | None = None,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train a PPO policy; rerun with the same arguments to continue an interrupted run.

    :param env_fn: ``(num_envs, seed) -> VectorEnv`` with same-step autoreset, e.g.
        ``functools.partial(make_vec_env, "HalfCheetah-v5")``; called for training and evaluation.
    :param config: hyper-parameters and run settings (default: ``PPOConfig()``).
    :param run_dir: directory for config, metrics, checkpoints and the final policy.
    :param actor: replaces the default :class:`~latentprior.rl.networks.GaussianActor`.
    :param extra_loss: a term added to each minibatch loss (see :class:`ExtraLoss`).
    :param progress: show a live progress line.
    :param metadata: JSON-able facts stored in ``config.json`` (env id, command line ...).
    :return: the trained policy, the last metrics and the paths of the run's files.
    """
    c = config if config is not None else PPOConfig()
    _check(c)
    with Run(run_dir, "ppo", c, env_fn, {"actor": actor, "extra_loss": extra_loss}, metadata, progress) as run:
        if run.finished:
            return run.result(actor=actor)
        envs = run.make_train_envs()
        obs_space, act_space = envs.single_observation_space, envs.single_action_space
        obs_dim, act_dim, n_envs, T, device = flat_dim(obs_space), flat_dim(act_space), c.num_envs, c.n_steps, run.device

        # ------------------------------------------------------------ networks and optimiser
        if actor is None:
            actor = GaussianActor(obs_dim, act_dim, c.hidden_sizes, c.activation, c.log_std_init, c.ortho_init)
        critic = MLP(obs_dim, c.hidden_sizes, 1, c.activation, ortho_gain=1.0 if c.ortho_init else None).to(device)
        obs_norm = ObservationNormalizer(obs_space.shape, c.clip_obs) if c.normalize_obs else None
        reward_scaler = RewardScaler(n_envs, c.gamma, c.clip_reward) if c.normalize_reward else None
        policy = Policy(actor, obs_space, act_space, obs_norm, algo="ppo").to(device)
        flat = FlatParameters([*actor.parameters(), *critic.parameters()])
        optimizer = torch.optim.Adam([flat.param], lr=c.learning_rate, eps=c.adam_eps, fused=True)
        modules: dict[str, nn.Module] = {"actor": actor, "critic": critic}
        if obs_norm is not None:
            modules["obs_normalizer"] = obs_norm
        if reward_scaler is not None:
            modules["reward_scaler"] = reward_scaler
        optimizers = {"adam": optimizer}
        state = run.restore(modules, optimizers)
        n_updates, step = int(state.get("n_updates", 0)), run.start_step
        run.start()

        # ---------------------------------------------------------------- rollout storage
        obs_buf = torch.zeros((T, n_envs, obs_dim), device=device)
        act_buf = torch.zeros((T, n_envs, act_dim), device=device)
        raw_obs = np.zeros((T, n_envs, obs_dim), dtype=np.float32)
        rewards = np.zeros((T, n_envs))
        dones = np.zeros((T, n_envs))
        low, high = act_space.low, act_space.high
        normalize = policy.normalize

        def observe(obs_np: np.ndarray) -> torch.Tensor:
            """The actor's input for new observations; the statistics include them first (as VecNormalize)."""
            if obs_norm is not None:
                obs_norm.update(obs_np)
            return normalize(torch.as_tensor(obs_np, device=device))

        obs_np = envs.reset()[0]
        obs = observe(obs_np)
        while step < c.total_steps:
            # -------------------------------------------- collect a rollout with the current policy
            bootstraps = []  # (step index, sub-envs, normalised final obs) of truncated episodes
            with torch.inference_mode():
                for t in range(T):
                    obs_buf[t] = obs
                    raw_obs[t] = obs_np
                    action = actor(obs).sample()
                    act_buf[t] = action
                    obs_np, reward, terminated, truncated, info = envs.step(np.clip(action.cpu().numpy(), low, high))
                    done = terminated | truncated
                    run.episodes.update(reward, done)
                    if reward_scaler is not None:
                        reward = reward_scaler(reward, done)
                    rewards[t], dones[t] = reward, done
                    # A time limit is not a terminal state: its value is bootstrapped from the
                    # last observation, normalised with the statistics of this step.
                    # (An episode that terminates on its last allowed step is terminal, not a timeout.)
                    timeouts = np.flatnonzero(truncated & ~terminated)
                    if len(timeouts):
                        final = torch.as_tensor(np.stack([info["final_obs"][i] for i in timeouts]), device=device)
                        bootstraps.append((t, timeouts, normalize(final)))
                    obs = observe(obs_np)
                step += T * n_envs

            # --------------------------------------- values, old log-probs, GAE (one batch each)
            with torch.no_grad():
                flat_obs = obs_buf.view(T * n_envs, obs_dim)
                flat_act = act_buf.view(T * n_envs, act_dim)
                values = critic(flat_obs).view(T, n_envs)
                old_log_prob = actor(flat_obs).log_prob(flat_act)
                last_values = critic(obs).view(n_envs).cpu().numpy()
                for t, envs_idx, final in bootstraps:
                    rewards[t, envs_idx] += c.gamma * critic(final).view(-1).cpu().numpy()
            values_np = values.cpu().numpy()
            advantages_np = gae(rewards, values_np, dones, last_values, c.gamma, c.gae_lambda)
            advantages = torch.as_tensor(advantages_np, dtype=torch.float32, device=device).view(-1)
            returns = advantages + values.view(-1)
            # One tensor per rollout, shuffled once per epoch: a minibatch is then a slice.
            data = torch.cat([
                flat_obs, torch.as_tensor(raw_obs, device=device).view(T * n_envs, obs_dim), flat_act, old_log_prob[:, None],
                advantages[:, None], returns[:, None], values.view(-1, 1),
            ], dim=1)
            widths = [obs_dim, obs_dim, act_dim, 1, 1, 1, 1]

            # ------------------------------------------------ optimise the clipped surrogate
            stats, log_ratios, extra_stats = [], [], {}
            kl_stop = False
            for _ in range(c.n_epochs):
                if kl_stop:
                    break
                shuffled = data[torch.randperm(T * n_envs, device=device)]
                for start in range(0, T * n_envs, c.batch_size):
                    mb_obs, mb_raw, mb_act, mb_logp, mb_adv, mb_ret, mb_val = shuffled[start:start + c.batch_size].split(widths, 1)
                    mb_logp, mb_adv, mb_ret, mb_val = mb_logp.view(-1), mb_adv.view(-1), mb_ret.view(-1), mb_val.view(-1)
                    if c.normalize_advantage and mb_adv.numel() > 1:
                        mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                    dist = actor(mb_obs)
                    log_ratio = dist.log_prob(mb_act) - mb_logp
                    if c.target_kl is not None:
                        with torch.no_grad():
                            kl_stop = float(((log_ratio.exp() - 1) - log_ratio).mean()) > 1.5 * c.target_kl
                        if kl_stop:
                            break
                    ratio = log_ratio.exp()
                    policy_loss = -torch.min(mb_adv * ratio, mb_adv * ratio.clamp(1 - c.clip_range, 1 + c.clip_range)).mean()
                    value_loss = F.mse_loss(critic(mb_obs).view(-1), mb_ret)
                    entropy = dist.entropy().mean()
                    loss = policy_loss + c.vf_coef * value_loss
                    if c.ent_coef:
                        loss = loss - c.ent_coef * entropy
                    if extra_loss is not None:
                        batch = PPOBatch(mb_obs, mb_raw, mb_act, mb_logp, mb_adv, mb_ret, mb_val)
                        extra, extra_info = extra_loss(batch, dist)
                        loss = loss + extra
                        for k, v in extra_info.items():
                            extra_stats.setdefault(k, []).append(v.detach())
                    flat.zero_grad()
                    loss.backward()
                    flat.clip_grad_norm_(c.max_grad_norm)
                    optimizer.step()
                    with torch.no_grad():
                        stats.append(torch.stack([policy_loss, value_loss, entropy]))
                        log_ratios.append(log_ratio)
                    n_updates += 1

            # ------------------------------------------------------------ report, checkpoint
            with torch.no_grad():
                log_ratio = torch.cat(log_ratios)
                approx_kl = float(((log_ratio.exp() - 1) - log_ratio).mean())  # Schulman's k3 estimator
                clip_fraction = float(((log_ratio.exp() - 1).abs() > c.clip_range).float().mean())
            var_returns = float(returns.var())
            metrics = {
                **dict(zip(["train/policy_loss", "train/value_loss", "train/entropy"], torch.stack(stats).mean(0).tolist())),
                "train/approx_kl": approx_kl,
                "train/clip_fraction": clip_fraction,
                "train/explained_variance": 1 - float((returns - values.view(-1)).var()) / var_returns
                if var_returns > 0 else float("nan"),
                "train/n_updates": n_updates,
                **{f"train/{k}": float(torch.stack(v).mean()) for k, v in extra_stats.items()},
            }
            run.report(step, metrics, policy, final=step >= c.total_steps)
            if run.checkpoint_due(step) and step < c.total_steps:
                run.save_checkpoint(step, policy, modules, optimizers, {"n_updates": n_updates})
        return run.finish(step, policy, modules, optimizers, {"n_updates": n_updates})
