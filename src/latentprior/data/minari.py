"""Import from and export to Minari's local dataset format (Minari 0.5).

Minari is optional (``pip install 'latentprior[minari]'``) and imported inside the functions.
Datasets live under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``) as
``<dataset_id>/data/{metadata.json, main_data.hdf5}``.

How our fields map onto Minari's episodes:

- ``observations``, ``actions``, ``rewards``, ``terminations``, ``truncations`` are Minari's own
  fields, with the same alignment (``T + 1`` observations, ``T`` of the rest).
- ``qpos``, ``qvel`` (``T + 1`` rows) go into ``infos``, which Minari also aligns with observations;
  ``expert_actions`` and ``jacobians`` go into ``infos`` with ``T`` rows (not Minari's ``T + 1``
  convention for infos, which has no row for them at reset).
- Our metadata is stored whole under the key ``"latentprior"`` of Minari's ``metadata.json``, so
  a round trip gives back the same metadata. Minari requires rewards, terminations and
  truncations; when a dataset has none they are written as zeros, ``False`` and "truncated at the
  last step", and recorded as filled so that :func:`from_minari` drops them again.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

from latentprior.data.dataset import Dataset, DatasetError, DatasetMetadata, Episode
from latentprior.io import json_default

__all__ = ["to_minari", "from_minari"]

_MINARI_FIELDS = ("rewards", "terminations", "truncations")
_INFO_FRAME_FIELDS = ("qpos", "qvel")
_INFO_STEP_FIELDS = ("expert_actions", "jacobians")
_METADATA_KEY = "latentprior"


def _import_minari() -> ModuleType:
    try:
        import minari
    except ImportError as e:
        raise DatasetError(
            f"Minari is not installed ({e}); install it with: pip install 'latentprior[minari]'"
        ) from None
    return minari


def _filled(episode: Episode, name: str) -> np.ndarray:
    steps = episode.num_steps
    if name == "rewards":
        return np.zeros(steps, dtype=np.float32)
    if name == "terminations":
        return np.zeros(steps, dtype=bool)
    truncations = np.zeros(steps, dtype=bool)
    truncations[-1] = True
    return truncations


def _space_or_inferred(space: gym.Space | None, episode: Episode, field: str) -> gym.Space:
    if space is not None:
        return space
    rows = getattr(episode, field)
    return gym.spaces.Box(-np.inf, np.inf, shape=rows.shape[1:], dtype=rows.dtype)


def _registered_spec(env_id: str | None) -> gym.envs.registration.EnvSpec | None:
    if env_id is None:
        return None
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        return None


def to_minari(
    dataset: Dataset,
    dataset_id: str,
    *,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
    algorithm_name: str | None = None,
    description: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a dataset into Minari's local store, readable with ``minari.load_dataset(dataset_id)``.

    Arrays are stored losslessly (Minari's JPEG encoding of image observations is turned off). The
    environment spec is recorded when ``metadata.env_id`` is registered in Gymnasium (Minari then
    builds the environment once); otherwise only the spaces are. Missing spaces are inferred from
    the data as unbounded ``Box`` spaces.

    :param dataset: must hold ``actions`` in every episode and at least one step per episode
        (Minari has no state-only datasets).
    :param dataset_id: Minari id ``(namespace/)name-v<version>``, e.g. ``"latentprior/pendulum-expert-v0"``.
    :param author: Minari metadata; Minari's warnings about the ones left ``None`` are silenced.
    :param author_email: Minari metadata.
    :param code_permalink: Minari metadata (a versioned link to the code that made the data).
    :param algorithm_name: Minari metadata (e.g. ``"SAC expert + Gaussian noise"``).
    :param description: Minari metadata.
    :param overwrite: replace an existing local Minari dataset of the same id instead of raising.
    :return: the dataset's directory (``$MINARI_DATASETS_PATH/<dataset_id>``).
    """
    minari = _import_minari()
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.storage.datasets_root_dir import get_dataset_path

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise DatasetError(
            f"Minari dataset id {dataset_id!r} must look like '(namespace/)name-v<version>', "
            "e.g. 'latentprior/pendulum-expert-v0'"
        ) from None
    where = f"dataset for Minari id {dataset_id!r}"
    if "actions" not in dataset.fields:
        raise DatasetError(f"{where}: has no 'actions'; Minari cannot store state-only data")
    for index, episode in enumerate(dataset.episodes):
        if episode.num_steps == 0:
            raise DatasetError(f"{where}: episode {index} has no steps; Minari needs at least one per episode")
    filled = [name for name in _MINARI_FIELDS if name not in dataset.fields]

    buffers = []
    for episode in dataset.episodes:
        infos = {
            name: getattr(episode, name)
            for name in _INFO_FRAME_FIELDS + _INFO_STEP_FIELDS
            if getattr(episode, name) is not None
        }
        required = {
            name: _filled(episode, name) if name in filled else getattr(episode, name) for name in _MINARI_FIELDS
        }
        buffers.append(
            minari.data_collector.EpisodeBuffer(
                observations=episode.observations, actions=episode.actions, infos=infos or None, **required
            )
        )

    metadata = dataset.metadata
    ours = {"metadata": metadata.to_dict(), "filled_fields": filled}
    path = get_dataset_path(dataset_id)
    if path.exists():
        if not overwrite:
            raise DatasetError(f"{path}: a Minari dataset {dataset_id!r} already exists (pass overwrite=True)")
        shutil.rmtree(path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`\w+` is set to None", category=UserWarning)
            warnings.filterwarnings("ignore", message="env_spec is None", category=UserWarning)
            created = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=_registered_spec(metadata.env_id),
                observation_space=_space_or_inferred(metadata.observation_space, dataset.episodes[0], "observations"),
                action_space=_space_or_inferred(metadata.action_space, dataset.episodes[0], "actions"),
                author=author,
                author_email=author_email,
                code_permalink=code_permalink,
                algorithm_name=algorithm_name,
                description=description,
                data_format="hdf5",
                jpeg_encoding=False,
            )
        # Round-trip through JSON so numpy scalars in `extra` become what Minari's json.dump accepts.
        created.storage.update_metadata({_METADATA_KEY: json.loads(json.dumps(ours, default=json_default))})
    except BaseException:
        # A half-written Minari dataset would otherwise block the id and be listed by Minari.
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


def _resolve(minari: ModuleType, dataset_id_or_path: str | os.PathLike, download: bool) -> tuple[Path, str]:
    from minari.storage.datasets_root_dir import get_dataset_path

    as_path = Path(dataset_id_or_path)
    for data_path in (as_path / "data", as_path):
        if (data_path / "metadata.json").is_file():
            return data_path, str(as_path)
    dataset_id = str(dataset_id_or_path)
    data_path = get_dataset_path(dataset_id) / "data"
    if not data_path.is_dir():
        if not download:
            raise DatasetError(
                f"{dataset_id}: no Minari dataset at {data_path} (nor a directory of that name); "
                "set MINARI_DATASETS_PATH or pass download=True to fetch it from Minari's servers"
            )
        minari.download_dataset(dataset_id)
    return data_path, dataset_id


def from_minari(dataset_id_or_path: str | os.PathLike, *, download: bool = False) -> Dataset:
    """Read a Minari dataset into a :class:`Dataset`.

    Datasets written by :func:`to_minari` come back with identical arrays and metadata. For other
    Minari datasets: ``qpos``/``qvel`` are taken from ``infos`` when they have one row per
    observation, other ``infos`` are dropped, and the metadata records the Minari id, version and
    authorship in ``extra`` (Minari has no license field: check the dataset's documentation).

    :param dataset_id_or_path: a Minari id looked up under ``$MINARI_DATASETS_PATH``, or a
        dataset directory (the one holding ``data/``, or ``data/`` itself).
    :param download: fetch the id from Minari's remote store when it is not local (network).
    :raises DatasetError: when the dataset is not found, uses observation or action spaces other
        than Box/Discrete, or fails :class:`Dataset` validation.
    """
    minari = _import_minari()
    data_path, name = _resolve(minari, dataset_id_or_path, download)
    try:
        source = minari.MinariDataset(data_path)
    except (ValueError, KeyError, AssertionError) as e:
        raise DatasetError(f"{data_path}: not a readable Minari dataset ({e})") from None
    for what, space in (("observation", source.observation_space), ("action", source.action_space)):
        if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise DatasetError(f"{name}: Minari {what} space {space} is not supported; only Box and Discrete")

    raw = source.storage.metadata
    ours = raw.get(_METADATA_KEY)
    filled = set(ours["filled_fields"]) if ours else set()
    episodes = []
    for data in source.iterate_episodes():
        steps = len(data.rewards)
        arrays: dict[str, Any] = {"observations": data.observations, "actions": data.actions}
        for field in _MINARI_FIELDS:
            if field not in filled:
                value = getattr(data, field)
                arrays[field] = value if field == "rewards" else np.asarray(value).astype(bool)
        for field, rows in [(f, steps + 1) for f in _INFO_FRAME_FIELDS] + [(f, steps) for f in _INFO_STEP_FIELDS]:
            value = (data.infos or {}).get(field)
            if isinstance(value, np.ndarray) and len(value) == rows:
                arrays[field] = value
        episodes.append(Episode(**arrays))

    if ours:
        metadata = DatasetMetadata.from_dict(ours["metadata"], where=f"{data_path}/metadata.json")
    else:
        metadata = DatasetMetadata(
            env_id=source.env_spec.id if source.env_spec is not None else None,
            observation_space=source.observation_space,
            action_space=source.action_space,
            source=f"minari:{raw['dataset_id']}",
            extra={
                f"minari_{key}": sorted(raw[key]) if isinstance(raw[key], set) else raw[key]
                for key in ("dataset_id", "minari_version", "algorithm_name", "author", "code_permalink")
                if key in raw
            },
        )
    return Dataset(episodes, metadata, path=data_path)
