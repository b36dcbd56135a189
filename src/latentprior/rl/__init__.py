"""PPO and SAC for Gymnasium vector environments, importable and open to prior integrations.

    from functools import partial
    from latentprior.envs.make import make_vec_env
    from latentprior.rl import ppo, PPOConfig, load_policy

    result = ppo.train(partial(make_vec_env, "HalfCheetah-v5"), PPOConfig(total_steps=1_000_000), "runs/hc")
    policy = load_policy("runs/hc")
    action = policy.act(obs, deterministic=True)         # NumPy in, NumPy out, env units
    mu = policy.mean_action(obs_tensor)                  # torch, differentiable

Each learner is one file that reads top to bottom (``ppo.py``, ``sac.py``); the latent space
priors' integrations that live inside SAC's update are ``prior_integrations.py``; what they share
lives once: ``run.py`` (run directory, resume, logging, evaluation, checkpoints), ``networks.py``,
``normalize.py``, ``policy.py``, ``evaluation.py``, ``metrics.py``, ``checkpoint.py``,
``runtime.py``.
"""

from latentprior.rl import ppo, prior_integrations, sac
from latentprior.rl.evaluation import EvalResult, evaluate_policy
from latentprior.rl.policy import Policy, load_policy
from latentprior.rl.ppo import PPOBatch, PPOConfig
from latentprior.rl.run import EnvFactory, RunConfig, TrainResult
from latentprior.rl.sac import SACConfig

__all__ = [
    "ppo",
    "sac",
    "prior_integrations",
    "PPOConfig",
    "PPOBatch",
    "SACConfig",
    "RunConfig",
    "TrainResult",
    "EnvFactory",
    "Policy",
    "load_policy",
    "EvalResult",
    "evaluate_policy",
]
