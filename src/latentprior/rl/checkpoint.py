"""Training checkpoints: everything needed to continue a run, written so a crash cannot corrupt one.

Layout inside a run directory::

    checkpoints/step_000000100000/
        config.json              kind "checkpoint": step, counters, optimizer settings, RNG values
        <name>.safetensors       weights, optimizer moments, RNG states, replay buffer ...
        policy/                  the policy at that step (a loadable policy artifact)

A checkpoint is written into a hidden temporary directory and renamed into place in one step, so
every ``step_*`` directory is complete; the newest one is the resume point.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from latentprior.io import ArtifactError, load_artifact, save_artifact

__all__ = [
    "save_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "optimizer_to_tensors",
    "optimizer_load",
]

_PREFIX = "step_"


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    tensors: Mapping[str, nn.Module | Mapping[str, torch.Tensor]],
    state: Mapping[str, Any],
    policy: nn.Module,
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/step_<step>/`` atomically and delete all but the newest ``keep``.

    :param tensors: named modules or tensor dicts, each saved as one safetensors file.
    :param state: JSON-able values (counters, optimizer settings); read back as the config.
    :param policy: a :class:`~latentprior.rl.policy.Policy`, saved as ``policy/``.
    """
    root = Path(run_dir) / "checkpoints"
    final = root / f"{_PREFIX}{step:012d}"
    if final.is_dir():
        return final
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_artifact(tmp, tensors, {"kind": "checkpoint", "step": step, **state})
    policy.save(tmp / "policy")
    os.replace(tmp, final)
    for old in _checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(_PREFIX) and (p / "config.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX):]))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory of a run, or ``None``."""
    found = _checkpoints(Path(run_dir) / "checkpoints")
    return found[-1] if found else None


def load_checkpoint(run_dir: str | os.PathLike) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]] | None:
    """``(state, tensors)`` of the newest checkpoint, or ``None`` when the run has none."""
    path = latest_checkpoint(run_dir)
    if path is None:
        return None
    state, tensors, _ = load_artifact(path, kind="checkpoint")
    return state, tensors


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into tensors (moments, step counts) and JSON-able settings."""
    sd = optimizer.state_dict()
    tensors, values = {}, {}
    for index, param_state in sd["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                values[f"{index}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "values": values}


def optimizer_load(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Restore what :func:`optimizer_to_tensors` returned into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["values"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as e:
        raise ArtifactError(f"checkpoint optimizer state does not fit this optimizer ({e})") from None
