"""Safe, atomic file I/O shared by every stage of the pipeline.

Every fitted artifact (expert, autoencoder, NPMP module, VAE, prior, policy) is one directory:

    DIR/
      config.json     what built it (class name, hyper-parameters) plus the spaces it expects
      <name>.safetensors   one weights file per torch module (or a single ``weights.safetensors``)

Weights are written with ``safetensors`` (no pickle, so nothing in a file can run code) and every
write goes to a temporary file in the same folder first, then ``os.replace`` moves it into place:
a killed process leaves the old file or no file, never a half-written one that looks complete.

This module is a leaf: it imports nothing else of the project, so ``data`` may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import gymnasium as gym
import numpy as np
import torch

__all__ = [
    "LatentPriorError",
    "ArtifactError",
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "json_default",
    "read_json",
    "save_weights",
    "load_weights",
    "save_artifact",
    "load_artifact",
    "space_to_dict",
    "space_from_dict",
    "check_space",
]


class LatentPriorError(Exception):
    """Base class of every error the project raises on purpose (bad input, mismatched spaces).

    The command line prints these as one clear message instead of a traceback.
    """


class ArtifactError(LatentPriorError, ValueError):
    """A saved artifact is missing, malformed, or does not fit where it is being used."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the extension last: writers such as imageio pick their format from it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates files private (0600); give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook for numpy arrays, numpy scalars and paths."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from None


def save_weights(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Write a torch state dict as safetensors, atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file written by :func:`save_weights` (no pickle involved)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ArtifactError(f"{path}: not a readable safetensors file ({e})") from None


def save_artifact(
    directory: str | os.PathLike,
    modules: Mapping[str, torch.nn.Module | Mapping[str, torch.Tensor]],
    config: Mapping[str, Any],
    spaces: Mapping[str, gym.Space] | None = None,
) -> Path:
    """Save torch modules plus their config and expected spaces as one artifact directory.

    ``config`` must hold a ``"kind"`` entry naming what the artifact is (e.g. ``"sac_expert"``),
    which :func:`load_artifact` checks. The config is written last, so a directory with a
    ``config.json`` is a complete artifact.
    """
    if "kind" not in config:
        raise ValueError("artifact config needs a 'kind' entry")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        state = module.state_dict() if isinstance(module, torch.nn.Module) else module
        save_weights(directory / f"{name}.safetensors", state)
    full = dict(config)
    full["weights"] = sorted(modules)
    full["spaces"] = {k: space_to_dict(v) for k, v in (spaces or {}).items()}
    atomic_write_json(directory / "config.json", full)
    return directory


def load_artifact(
    directory: str | os.PathLike, kind: str | tuple[str, ...] | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]], dict[str, gym.Space]]:
    """Load ``(config, {module name: state dict}, {space name: space})`` from an artifact directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: artifact directory not found")
    config = read_json(directory / "config.json")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and config.get("kind") not in kinds:
        raise ArtifactError(
            f"{directory}: holds a {config.get('kind')!r} artifact, expected {' or '.join(kinds)}"
        )
    weights = {name: load_weights(directory / f"{name}.safetensors") for name in config.get("weights", [])}
    spaces = {k: space_from_dict(v, f"{directory / 'config.json'}: spaces.{k}") for k, v in config.get("spaces", {}).items()}
    return config, weights, spaces


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """JSON form of a Box or Discrete space (the only kinds the project's methods use)."""
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": np.asarray(space.low).tolist(),
            "high": np.asarray(space.high).tolist(),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise ArtifactError(f"cannot save a space of type {type(space).__name__}; only Box and Discrete")


def space_from_dict(d: Mapping[str, Any], where: str = "space") -> gym.Space:
    try:
        if d["type"] == "Box":
            low = np.array(d["low"], dtype=np.dtype(d["dtype"]))
            high = np.array(d["high"], dtype=np.dtype(d["dtype"]))
            return gym.spaces.Box(low=low, high=high, shape=tuple(d["shape"]), dtype=np.dtype(d["dtype"]))
        if d["type"] == "Discrete":
            return gym.spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{where}: malformed space description ({e})") from None
    raise ArtifactError(f"{where}: unknown space type {d.get('type')!r}")


def check_space(expected: gym.Space, actual: gym.Space, what: str, source: str) -> None:
    """Raise an :class:`ArtifactError` naming ``source`` and ``what`` if two spaces differ.

    Box spaces must agree in shape; bounds must agree where both are finite (a policy trained
    for actions in [-1, 1] would act wrongly in [-2, 2]).
    """
    if type(expected) is not type(actual):
        raise ArtifactError(
            f"{source}: {what} space is {type(expected).__name__}, environment has {type(actual).__name__}"
        )
    if isinstance(expected, gym.spaces.Box):
        if expected.shape != actual.shape:
            raise ArtifactError(
                f"{source}: {what} space has shape {expected.shape}, environment has {actual.shape}"
            )
        for bound in ("low", "high"):
            a, b = np.asarray(getattr(expected, bound), float), np.asarray(getattr(actual, bound), float)
            both = np.isfinite(a) & np.isfinite(b)
            if not np.allclose(a[both], b[both], atol=1e-5):
                raise ArtifactError(
                    f"{source}: {what} space {bound} bound {a.tolist()} differs from the environment's {b.tolist()}"
                )
    elif isinstance(expected, gym.spaces.Discrete) and expected.n != actual.n:
        raise ArtifactError(f"{source}: {what} space has {expected.n} actions, environment has {actual.n}")
