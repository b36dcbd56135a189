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

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from latentprior.io import ArtifactError, load_artifact, save_artifact

__all__ = [
    "FitCheckpoint",
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
    policy: nn.Module | None,
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/step_<step>/`` atomically and delete all but the newest ``keep``.

    :param tensors: named modules or tensor dicts, each saved as one safetensors file.
    :param state: JSON-able values (counters, optimizer settings); read back as the config.
    :param policy: a :class:`~latentprior.rl.policy.Policy`, saved as ``policy/``; ``None``: none.
    """
    root = Path(run_dir) / "checkpoints"
    final = root / f"{_PREFIX}{step:012d}"
    if final.is_dir():
        return final
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_artifact(tmp, tensors, {"kind": "checkpoint", "step": step, **state})
    if policy is not None:
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


class FitCheckpoint:
    """Resumable checkpoints of a supervised fit (the NPMP module, the state VAE, the latent prior).

    A fit calls :meth:`resume` (or :meth:`restore`) once before its first step and :meth:`save`
    after each history entry; every ``every`` steps (and at the last step) the modules, the optimizers' moments, the
    learning-rate schedules, the random generators and the history are written with
    :func:`save_checkpoint` under ``directory/checkpoints/``. A rerun of the same fit continues
    from the newest one and ends with the same weights as an uninterrupted fit; a rerun with a
    larger step budget continues a finished fit.

    :param directory: where the checkpoints go (e.g. the folder the fitted artifact is saved to).
    :param identity: what makes two fits the same (JSON-able: the config without the step budget,
        the data's source and size): a checkpoint of another fit is refused, naming what differs.
    :param every: steps between checkpoints.
    """

    def __init__(self, directory: str | os.PathLike, identity: Mapping[str, Any], every: int = 5000):
        if every < 1:
            raise ValueError(f"FitCheckpoint: every must be >= 1, got {every}")
        self.directory = Path(directory)
        self.identity = json.loads(json.dumps(dict(identity)))  # tuples as a file holds them: lists
        self.every = every
        self.saved_step = 0

    def restore(
        self,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        schedulers: Mapping[str, Any] | None = None,
        generators: Mapping[str, torch.Generator] | None = None,
    ) -> tuple[int, dict[str, list[float]] | None]:
        """Load the newest checkpoint into the given objects: ``(step, history)``, or ``(0, None)`` without one."""
        loaded = load_checkpoint(self.directory)
        if loaded is None:
            return 0, None
        state, tensors = loaded
        where = latest_checkpoint(self.directory)
        schedulers, generators = schedulers or {}, generators or {}
        old = state.get("identity", {})
        changed = {k: (old.get(k), v) for k, v in self.identity.items() if old.get(k) != v}
        if changed:
            listing = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
            raise ArtifactError(f"{where}: a checkpoint of another fit ({listing}); delete {self.directory / 'checkpoints'} "
                                "or fit into another folder")
        try:
            for name, module in modules.items():
                module.load_state_dict(tensors[f"module.{name}"])
            for name, optimizer in optimizers.items():
                optimizer_load(optimizer, tensors[f"optimizer.{name}"], state["optimizers"][name])
            for name, scheduler in schedulers.items():
                scheduler.load_state_dict(state["schedulers"][name])
            for name, generator in generators.items():
                generator.set_state(tensors["rng"][name])
        except (KeyError, RuntimeError) as e:
            raise ArtifactError(f"{where}: checkpoint does not fit this fit ({e})") from None
        torch.set_rng_state(tensors["rng"]["torch"])
        self.saved_step = int(state["step"])
        return self.saved_step, {k: list(v) for k, v in state["history"].items()}

    def resume(self, history: dict[str, list[float]], **state: Any) -> int:
        """:meth:`restore` into ``state`` (its keyword arguments) and ``history`` (in place): the first step to run."""
        done, restored = self.restore(**state)
        if restored is not None:
            history.clear()
            history.update(restored)
        return done + 1

    def save(
        self,
        step: int,
        history: Mapping[str, list[float]],
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        schedulers: Mapping[str, Any] | None = None,
        generators: Mapping[str, torch.Generator] | None = None,
        last: bool = False,
    ) -> Path | None:
        """Checkpoint at ``step`` when ``every`` steps have passed since the last one, or when ``last``."""
        if not last and step - self.saved_step < self.every:
            return None
        schedulers, generators = schedulers or {}, generators or {}
        tensors: dict[str, Any] = {f"module.{name}": module for name, module in modules.items()}
        meta = {}
        for name, optimizer in optimizers.items():
            tensors[f"optimizer.{name}"], meta[name] = optimizer_to_tensors(optimizer)
        tensors["rng"] = {"torch": torch.get_rng_state(), **{name: g.get_state() for name, g in generators.items()}}
        state = {"identity": self.identity, "history": {k: list(v) for k, v in history.items()}, "optimizers": meta,
                 "schedulers": {name: s.state_dict() for name, s in schedulers.items()}}
        path = save_checkpoint(self.directory, step, tensors, state, policy=None)
        self.saved_step = step
        return path
