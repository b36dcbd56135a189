"""Import stable-baselines3 SAC / sb3-contrib TQC models (e.g. the RL Zoo's experts) without SB3.

A model ``.zip`` saved by stable-baselines3 holds a ``data`` JSON file, ``policy.pth`` (a torch
state dict) and optimiser states. Python objects in ``data`` (the spaces, schedules, the policy
class) are pickled by SB3 under ``":serialized:"`` keys; unpickling them could run arbitrary code
and needs SB3 (and old ``gym``) installed, so this importer never does. Instead:

- the architecture comes from the weight shapes in ``policy.pth``, read with
  ``torch.load(..., weights_only=True)``;
- the algorithm comes from the policy class's ``__module__``, which SB3 writes as plain JSON;
- action bounds come from the plain-text ``low`` / ``high`` fields SB3 writes next to the pickled
  spaces, or from ``env`` when those are missing;
- a non-default activation, only ever stored pickled inside ``policy_kwargs``, is recognised by
  listing the pickle's opcodes (:mod:`pickletools`), which reads names without running anything.

The actor is the same for SAC and TQC (the critics differ and are not needed): ``obs -> latent_pi
(Linear + activation, usually 256 x 256 ReLU) -> mu``, deterministic action ``tanh(mu)`` scaled to
the bounds. Caveats: models trained with ``VecNormalize`` keep their observation statistics in a
separate ``vecnormalize.pkl`` that this importer does not read, so such experts act on
unnormalised observations and perform poorly; dict observations and image feature extractors are
rejected with an error.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from latentprior.experts.base import ExpertError, check_expert_spaces
from latentprior.experts.mlp import MLPExpert

__all__ = ["load_sb3_zoo", "Sb3ImportError"]

# policy class module (plain JSON in ``data``) -> algorithm name
_ALGORITHMS = {"stable_baselines3.sac.policies": "SAC", "sb3_contrib.tqc.policies": "TQC"}
# torch.nn activation class name -> key of latentprior.experts.mlp.ACTIVATIONS
_TORCH_ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "ELU": "elu", "LeakyReLU": "leaky_relu", "GELU": "gelu", "SiLU": "silu"}
# SB3's default clip on the pre-tanh mean when the policy uses gSDE (``clip_mean`` in SACPolicy)
_SB3_DEFAULT_CLIP_MEAN = 2.0


class Sb3ImportError(ExpertError):
    """The file is not a stable-baselines3 SAC/TQC model this importer can read."""


def load_sb3_zoo(path: str | os.PathLike, env: gym.Env | str | None = None) -> MLPExpert:
    """Import the deterministic actor of a stable-baselines3 SAC or sb3-contrib TQC ``.zip``.

    Works without stable-baselines3 installed and never unpickles anything (see the module
    docstring for how the model is read).

    :param path: the model ``.zip``, e.g. ``sac/HalfCheetah-v3_1/HalfCheetah-v3.zip`` from
        DLR-RM/rl-trained-agents
    :param env: an environment or environment id to check the spaces against (an
        :class:`~latentprior.io.ArtifactError` names the file and the space that differs); its
        action space is also used when the zip lacks readable action bounds. Zoo experts for
        gym ``-v3`` MuJoCo tasks run in Gymnasium ``-v5`` (same observations and actions).
    :return: an :class:`~latentprior.experts.mlp.MLPExpert` whose ``info`` records the source
        file, its sha256, the algorithm and the SB3 version; ``save()`` writes it in the
        project's own artifact form
    """
    path = Path(path)
    data, state, sb3_version, digest = _read_zip(path)
    module = data.get("policy_class", {}).get("__module__") if isinstance(data.get("policy_class"), dict) else None
    if module not in _ALGORITHMS:
        raise Sb3ImportError(
            f"{path}: policy class module is {module!r}; only SAC ('stable_baselines3.sac.policies') "
            "and TQC ('sb3_contrib.tqc.policies') models can be imported"
        )
    hidden_sizes, weights, uses_sde = _actor_weights(state, path)
    obs_dim, act_dim = weights["0.weight"].shape[1], weights[f"{2 * len(hidden_sizes)}.weight"].shape[0]
    policy_kwargs = data.get("policy_kwargs", {})
    mean_clip = _clip_mean(policy_kwargs) if uses_sde else None
    expert = MLPExpert(
        _observation_space(data.get("observation_space"), obs_dim, path),
        _action_space(data.get("action_space"), act_dim, env, path),
        hidden_sizes=hidden_sizes,
        activation=_activation(policy_kwargs, path),
        mean_clip=mean_clip,
        state_dict=weights,
        info={"source": str(path), "sha256": digest, "algorithm": _ALGORITHMS[module], "sb3_version": sb3_version},
    )
    if env is not None:
        check_expert_spaces(expert, env, str(path))
    return expert


def _read_zip(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], str, str]:
    if not path.is_file():
        raise Sb3ImportError(f"{path}: file not found")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = {"data", "policy.pth"} - names
            if missing:
                raise Sb3ImportError(
                    f"{path}: not a stable-baselines3 model: no {' or '.join(sorted(missing))} entry "
                    f"(entries: {sorted(names)[:10]})"
                )
            raw_data, raw_policy = z.read("data"), z.read("policy.pth")
            version = z.read("_stable_baselines3_version").decode().strip() if "_stable_baselines3_version" in names else "unknown"
    except zipfile.BadZipFile:
        raise Sb3ImportError(f"{path}: not a zip file, so not a stable-baselines3 model") from None
    try:
        data = json.loads(raw_data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise Sb3ImportError(f"{path}: the 'data' entry is not JSON ({e})") from None
    try:
        state = torch.load(io.BytesIO(raw_policy), weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises several types for corrupt or unsafe pickles
        raise Sb3ImportError(f"{path}: 'policy.pth' is not a plain torch state dict ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or not isinstance(state, dict):
        raise Sb3ImportError(f"{path}: unexpected layout of 'data' or 'policy.pth'")
    return data, state, version, hashlib.sha256(path.read_bytes()).hexdigest()


def _actor_weights(state: dict[str, torch.Tensor], path: Path) -> tuple[list[int], dict[str, torch.Tensor], bool]:
    """Map SB3's ``actor.latent_pi.{i}`` / ``actor.mu`` weights onto MLPExpert's ``net.{i}``."""
    actor = {k[len("actor."):]: v for k, v in state.items() if k.startswith("actor.")}
    if not actor:
        raise Sb3ImportError(f"{path}: 'policy.pth' has no 'actor.*' weights (keys: {sorted(state)[:8]})")
    unexpected = [k for k in actor if not re.fullmatch(r"latent_pi\.\d+\.(weight|bias)|mu(\.0)?\.(weight|bias)|log_std(\.(weight|bias))?", k)]
    if unexpected:
        raise Sb3ImportError(
            f"{path}: actor has weights this importer does not know ({unexpected[:4]}); only MLP "
            "actors on flat Box observations are supported (no feature extractors)"
        )
    indices = sorted({int(k.split(".")[1]) for k in actor if k.startswith("latent_pi.")})
    # gSDE wraps the mean head as Sequential(Linear, Hardtanh), which renames mu.* to mu.0.*
    uses_sde = "mu.0.weight" in actor
    head = "mu.0" if uses_sde else "mu"
    if f"{head}.weight" not in actor:
        raise Sb3ImportError(f"{path}: actor has no mean head 'actor.mu'")
    weights: dict[str, torch.Tensor] = {}
    for layer, i in enumerate(indices):
        weights[f"{2 * layer}.weight"] = actor[f"latent_pi.{i}.weight"]
        weights[f"{2 * layer}.bias"] = actor[f"latent_pi.{i}.bias"]
    weights[f"{2 * len(indices)}.weight"] = actor[f"{head}.weight"]
    weights[f"{2 * len(indices)}.bias"] = actor[f"{head}.bias"]
    hidden_sizes = [int(actor[f"latent_pi.{i}.weight"].shape[0]) for i in indices]
    return hidden_sizes, weights, uses_sde


def _pickled_names(entry: dict[str, Any]) -> set[str]:
    """Names referenced by a pickled SB3 ``data`` entry, read from its opcodes without loading it."""
    names: set[str] = set()
    try:
        for _, arg, _ in pickletools.genops(base64.b64decode(entry[":serialized:"])):
            if isinstance(arg, str):
                names.update(arg.split(" "))
    except Exception:  # a corrupt pickle: the caller treats unknown content conservatively
        return names
    return names


def _activation(policy_kwargs: Any, path: Path) -> str:
    if isinstance(policy_kwargs, dict) and ":serialized:" in policy_kwargs:
        names = _pickled_names(policy_kwargs)
        if "activation_fn" not in names:
            return "relu"
        found = [_TORCH_ACTIVATIONS[n] for n in names if n in _TORCH_ACTIVATIONS]
        if len(found) != 1:
            raise Sb3ImportError(
                f"{path}: cannot tell the actor's activation from the pickled policy_kwargs "
                f"(supported: {sorted(_TORCH_ACTIVATIONS)})"
            )
        return found[0]
    return "relu"


def _clip_mean(policy_kwargs: Any) -> float:
    if isinstance(policy_kwargs, dict) and ":serialized:" not in policy_kwargs:
        return float(policy_kwargs.get("clip_mean", _SB3_DEFAULT_CLIP_MEAN))
    # Inside a pickle a non-default clip_mean cannot be read without unpickling; SB3's default
    # is what nearly every zoo config uses.
    return _SB3_DEFAULT_CLIP_MEAN


def _parse_numpy_repr(text: Any, size: int) -> np.ndarray | None:
    """Parse SB3's ``str(ndarray)`` fields, e.g. ``'[-1. -1. -1.]'``; None if absent or truncated."""
    if not isinstance(text, str) or "..." in text:
        return None
    try:
        values = np.array(text.replace("[", " ").replace("]", " ").split(), dtype=np.float64)
    except ValueError:
        return None
    return values if values.size == size else None


def _observation_space(entry: Any, obs_dim: int, path: Path) -> gym.spaces.Box:
    entry = entry if isinstance(entry, dict) else {}
    shape = tuple(entry.get("shape", (obs_dim,)))
    if int(np.prod(shape)) != obs_dim:
        raise Sb3ImportError(f"{path}: observation shape {shape} disagrees with the actor's {obs_dim} inputs")
    low, high = _parse_numpy_repr(entry.get("low"), obs_dim), _parse_numpy_repr(entry.get("high"), obs_dim)
    if low is None or high is None:
        low, high = np.full(obs_dim, -np.inf), np.full(obs_dim, np.inf)
    dtype = np.dtype(entry.get("dtype", "float32"))
    return gym.spaces.Box(low.reshape(shape).astype(dtype), high.reshape(shape).astype(dtype), dtype=dtype)


def _action_space(entry: Any, act_dim: int, env: gym.Env | str | None, path: Path) -> gym.spaces.Box:
    entry = entry if isinstance(entry, dict) else {}
    low, high = _parse_numpy_repr(entry.get("low"), act_dim), _parse_numpy_repr(entry.get("high"), act_dim)
    if low is not None and high is not None:
        return gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
    if env is None:
        raise Sb3ImportError(f"{path}: the action bounds are not stored in plain text; pass env= to take them from the environment")
    if isinstance(env, str):
        env = gym.make(env)
        env.close()
    space = env.action_space
    if not isinstance(space, gym.spaces.Box) or space.shape != (act_dim,):
        raise Sb3ImportError(f"{path}: the actor has {act_dim} actions, the environment's action space is {space}")
    return space
