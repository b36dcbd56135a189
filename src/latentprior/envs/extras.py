"""What the task environments built on optional packages share: their error, their imports, their ids.

AntMaze (:mod:`latentprior.envs.antmaze`, extra ``antmaze``) and Bipedal Skills
(:mod:`latentprior.envs.bipedal_skills`, extra ``bipedal``) register Gymnasium ids in the
``latentprior/`` namespace when their module is imported; the packages they wrap are imported only
when an environment is made, so importing the modules costs nothing without the extras.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import gymnasium as gym

from latentprior.io import LatentPriorError

__all__ = ["TaskError", "require", "register_task", "proprioception_slice"]


class TaskError(LatentPriorError, ValueError):
    """A task environment was asked for something it does not have (a maze size, a robot), or the
    optional package it wraps is not installed."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise a :class:`TaskError` that names the extra which installs it.

    :param module: the module to import, e.g. ``"gymnasium_robotics"``.
    :param extra: the ``latentprior`` extra that installs it, e.g. ``"antmaze"``.
    :param what: what needs it, for the message, e.g. ``"AntMaze"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise TaskError(f"{what} needs {module}, which is not installed ({e}); install it with: "
                        f"pip install 'latentprior[{extra}]'") from None


def register_task(env_id: str, entry_point: str, kwargs: dict[str, Any], max_episode_steps: int) -> None:
    """Register ``env_id`` with Gymnasium unless it is registered already (a module imported twice)."""
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=entry_point, kwargs=kwargs, max_episode_steps=max_episode_steps)


def proprioception_slice(env: gym.Env, state_dim: int | None = None) -> slice:
    """The part of ``env``'s flat observation that holds the robot's state (what a low-level policy
    or a state VAE sees).

    A task that appends features of its own after the robot's (AntMaze's goal, Bipedal Skills'
    contact forces and targets) names it in ``unwrapped.proprioception``; any other environment's
    whole observation is the robot's. With ``state_dim``, an observation of exactly that size is
    taken whole (a task already reduced to the robot by a wrapper).
    """
    size = env.observation_space.shape[0]
    declared = getattr(env.unwrapped, "proprioception", None)
    if declared is None or size == state_dim:
        return slice(0, size)
    return declared

