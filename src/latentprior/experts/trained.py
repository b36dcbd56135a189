"""A policy trained with the project's own PPO or SAC (:mod:`latentprior.rl`) as an :class:`Expert`.

The policy normalises observations inside its differentiable ``mean_action`` (running statistics
saved with it), so :meth:`PolicyExpert.mu` takes raw environment states and the Jacobians used by
linear-feedback policy cloning (Merel et al. 2019, Eq. 8) are with respect to raw states, the
space in which the perturbations ``ds`` of the collected data live.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

from latentprior.experts.base import Expert

if TYPE_CHECKING:
    from latentprior.rl.policy import Policy

__all__ = ["PolicyExpert"]


class PolicyExpert(Expert):
    """Adapter from :class:`latentprior.rl.Policy` to the :class:`Expert` interface.

    ``mu`` is the policy's deterministic action clipped to the bounds: SAC's tanh mode, or PPO's
    Gaussian mean clipped as PPO's actions are in the environment (so the Jacobian row of a
    clipped dimension is zero).

    :param policy: a policy returned by :func:`latentprior.rl.load_policy` or a learner; it is
        moved to the CPU, put in eval mode and frozen (experts are not trained further)
    :param info: provenance saved with the expert (the source run, the learner)
    """

    kind = "policy"  # the artifact kind latentprior.rl saves policies under

    def __init__(self, policy: "Policy", info: Mapping[str, Any] | None = None):
        super().__init__(policy.observation_space, policy.action_space, info)
        self.policy = policy.cpu().eval().requires_grad_(False)

    def mu(self, obs: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """The policy's mean action for raw observations; ``t`` is ignored (closed-loop expert)."""
        return self.policy.mean_action(obs)

    def save(self, directory: str | os.PathLike) -> Path:
        """Save the policy as a :mod:`latentprior.rl` policy artifact (``info`` is not kept)."""
        return self.policy.save(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "PolicyExpert":
        """Load a policy artifact, or a run directory's final policy (else its latest checkpoint's)."""
        from latentprior.rl import load_policy

        policy = load_policy(directory)
        return cls(policy, info={"source": str(directory), "algo": policy.algo})
