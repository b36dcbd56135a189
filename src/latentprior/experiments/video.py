"""Videos of what a policy or expert does, rendered offscreen by MuJoCo.

``MUJOCO_GL=egl`` (set here unless the user chose otherwise) renders headless on machines with
EGL; elsewhere ``apt-get install libosmesa6`` and ``MUJOCO_GL=osmesa``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np

from latentprior.io import atomic_path

#: ``act(obs, t) -> action``: a policy ignores ``t``; an open-loop expert needs it.
ActFn = Callable[[np.ndarray, int], np.ndarray]


def record_episode(env: gym.Env, act: ActFn, path: str | os.PathLike, seed: int = 0, max_steps: int | None = None) -> float:
    """Run one episode of ``act`` in ``env`` (made with ``render_mode="rgb_array"``), write an MP4.

    The environment is closed afterwards: an EGL context left open prints errors when the
    interpreter exits. The file appears only when complete.

    :param env: the environment, wrappers included, so the video shows what the agent acts in.
    :param act: ``act(obs, t) -> action``.
    :param path: ``.mp4`` file to write.
    :param seed: reset seed.
    :param max_steps: stop after this many steps (``None``: at the episode's end).
    :return: the episode's undiscounted return.
    """
    import imageio

    if env.render_mode != "rgb_array":
        raise ValueError("record_episode needs an environment made with render_mode='rgb_array'")
    path = Path(path)
    total = 0.0
    try:
        obs, _ = env.reset(seed=seed)
        with atomic_path(path) as tmp:
            with imageio.get_writer(tmp, format="FFMPEG", fps=env.metadata.get("render_fps", 30), macro_block_size=1) as writer:
                writer.append_data(env.render())
                t, done = 0, False
                while not done and (max_steps is None or t < max_steps):
                    obs, reward, terminated, truncated, _ = env.step(act(obs, t))
                    total += float(reward)
                    writer.append_data(env.render())
                    t, done = t + 1, terminated or truncated
    finally:
        env.close()
    return total


def make_render_env(env_id: str, wrappers=(), **env_kwargs) -> gym.Env:
    """``gymnasium.make(env_id, render_mode="rgb_array")`` with shadows off (faster) and ``wrappers``."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    env = gym.make(env_id, render_mode="rgb_array", **env_kwargs)
    model = getattr(env.unwrapped, "model", None)
    if model is not None:
        # Shadows cost more render time than anything else and show nothing a reader needs.
        for light in range(model.nlight):
            model.light_castshadow[light] = 0
    for wrap in wrappers:
        env = wrap(env)
    return env
