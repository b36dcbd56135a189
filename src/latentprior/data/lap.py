"""Import the expert demonstrations released with the latent action priors paper
(Hausdörfer et al. 2024, github.com/OliEfr/latent-action-priors, ``expert_demonstrations/``).

Each file is a pickled ``dict`` saved with ``numpy.save``. Unpickling can run code, so loading
one requires ``allow_pickle=True``: pass it only for files you trust (the released files reference
numpy globals alone). Keys met in the released files:

    recorded_actions_eps (T, d)     actions of a demonstration episode
    recorded_obs_eps (T + 1, o)     its observations (HalfCheetah, Ant)
    recorded_actions_single_cycle   one gait cycle of actions
    recorded_obs_single_cycle / recorded_obs_cycle   one gait cycle of observations
    cycle_indx                      step indices where cycles start

The importer maps them to Gymnasium v5 environments:

- ``HalfCheetah-v4`` file -> ``HalfCheetah-v5`` (same 17-d observation).
- ``Ant-v4`` file -> ``Ant-v5`` with ``include_cfrc_ext_in_observation=False`` (the 27-d
  observation without contact forces, recorded as the metadata's ``env_kwargs``).
- ``Humanoid`` file (Humanoid-v4, 376-d) -> ``Humanoid-v5`` (348-d): v5 drops the world body's
  rows of ``cinert``, ``cvel`` and ``cfrc_ext`` and the six root entries of ``qfrc_actuator``.
  The Humanoid file holds observations for one gait cycle only, so its dataset is that cycle
  (22 steps, observations and actions); the longer action-only episode has no observations to
  align with and is left out (its length is recorded in ``extra``).

Actions are stored clipped to the environment's bounds, i.e. as executed (the HalfCheetah
oscillator's raw outputs reach -1.9); the raw range is recorded in ``extra``.
"""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np

from latentprior.data.dataset import Dataset, DatasetError, DatasetMetadata, Episode

SOURCE = "OliEfr/latent-action-priors expert_demonstrations"
LICENSE = "MIT"

#: file stem -> (Gymnasium id, env kwargs, observation index map from the file's layout or None)
_HUMANOID_V4_TO_V5 = np.r_[0:45, 55:185, 191:269, 275:292, 298:376]
TARGETS = {
    "HalfCheetah-v4": ("HalfCheetah-v5", {}, None),
    "Ant-v4": ("Ant-v5", {"include_cfrc_ext_in_observation": False}, None),
    "Humanoid": ("Humanoid-v5", {}, _HUMANOID_V4_TO_V5),
}
#: The latent sizes the authors released, for reference and tests.
PAPER_LATENT_SIZES = {"HalfCheetah-v5": 3, "Ant-v5": 4, "Humanoid-v5": 9, "UnitreeA1": 6, "UnitreeH1": 6}


def _read(path: Path, allow_pickle: bool) -> dict:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    if not allow_pickle:
        raise DatasetError(
            f"{path}: the latent-action-priors demonstrations are pickled dicts, and unpickling a file can run "
            "code. Pass allow_pickle=True (CLI: --allow-pickle) only for files you trust."
        )
    try:
        data = np.load(path, allow_pickle=True).item()
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(f"{path}: not a numpy-saved dict ({e})") from None
    if not isinstance(data, dict) or "recorded_actions_eps" not in data:
        raise DatasetError(f"{path}: expected a dict with 'recorded_actions_eps', got {type(data).__name__}")
    return data


def import_lap_demonstration(
    path: str | os.PathLike, allow_pickle: bool = False, env_id: str | None = None
) -> Dataset:
    """Read one of the paper's ``.npy`` demonstrations into a :class:`Dataset` for a v5 env.

    :param path: e.g. ``../shared/data/latent_action_priors/HalfCheetah-v4.npy``.
    :param allow_pickle: must be ``True``; the file is a pickle (see the module docstring).
    :param env_id: target Gymnasium id; inferred from the file name for HalfCheetah, Ant, Humanoid.
        Other files (Unitree A1/H1) import as action-and-state data with ``env_id=None``.
    :returns: a dataset whose first episode is the recorded demonstration (observations when the
        file has them, actions always); ``extra`` holds the single gait cycle's length and the
        cycle start indices.
    """
    path = Path(path)
    data = _read(path, allow_pickle)
    target_id, env_kwargs, obs_map = TARGETS.get(path.stem, (env_id, {}, None))
    target_id = env_id or target_id
    actions = np.asarray(data["recorded_actions_eps"], dtype=np.float32)
    obs = data.get("recorded_obs_eps", data.get("recorded_states_eps"))
    cycle_actions = np.asarray(data.get("recorded_actions_single_cycle", actions[:0]))
    extra = {
        "lap_file": path.name,
        "cycle_length": int(len(cycle_actions)) if len(cycle_actions) else None,
        "raw_action_range": [float(actions.min()), float(actions.max())],
    }
    if "cycle_indx" in data:
        extra["cycle_starts"] = np.asarray(data["cycle_indx"]).astype(int).tolist()
    # Where the single cycle (the authors' style reference and prior data) sits in the episode.
    L = len(cycle_actions)
    extra["cycle_start"] = next((s for s in range(len(actions) - L + 1) if L and np.allclose(actions[s : s + L], cycle_actions)), None)

    observation_space = action_space = None
    if target_id is not None:
        env = gym.make(target_id, **env_kwargs)
        observation_space, action_space = env.observation_space, env.action_space
        env.close()
        if action_space.shape != actions.shape[1:]:
            raise DatasetError(f"{path}: actions are {actions.shape[1]}-d, {target_id} has {action_space.shape[0]}-d actions")
        actions = np.clip(actions, action_space.low, action_space.high)

    if obs is None:
        # Humanoid ships observations for one cycle only: the episode is that cycle, with its actions.
        obs = np.asarray(data["recorded_obs_cycle"])
        actions = np.clip(cycle_actions, action_space.low, action_space.high) if action_space is not None else cycle_actions
        obs = np.concatenate([obs, obs[:1]])  # the cycle closes: the frame after the last is the first
        extra["actions_episode_steps"] = int(len(data["recorded_actions_eps"]))
        extra["cycle_start"] = 0
    obs = np.asarray(obs, dtype=np.float64)
    if obs_map is not None:
        obs = obs[:, obs_map]
    if len(obs) == len(actions):
        obs = np.concatenate([obs, obs[-1:]])  # files without the final observation repeat the last
    if observation_space is not None and obs.shape[1:] != observation_space.shape:
        raise DatasetError(f"{path}: observations are {obs.shape[1]}-d, {target_id} has {observation_space.shape[0]}-d")

    metadata = DatasetMetadata(
        env_id=target_id,
        observation_space=observation_space,
        action_space=action_space,
        source=f"{SOURCE}: {path.name}",
        license=LICENSE,
        env_kwargs=env_kwargs,
        command=f"import_lap_demonstration({path.name!r})",
        extra=extra,
    )
    return Dataset([Episode(observations=obs.astype(np.float32), actions=actions.astype(np.float32))], metadata)
