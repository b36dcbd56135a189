"""The on-disk form of a :class:`~latentprior.data.Dataset`: one HDF5 file, versioned.

Layout (schema version 1)::

    /                   attrs: format = "latentprior.dataset", schema_version = 1,
                               env_id, source, license, command, created (strings),
                               observation_space, action_space, extra (JSON strings),
                               num_episodes, num_steps, complete = True (written last)
    /episode_steps      (E,) int64, the number of steps T of each episode
    /data/observations  (sum(T + 1), *obs_shape): all episodes' frames, one after another
    /data/<field>       the other fields present, stacked the same way: frame fields
                        (qpos, qvel) have sum(T + 1) rows, step fields (actions, ...) sum(T)

Fields are stacked over episodes rather than stored one HDF5 dataset per episode: reading an
HDF5 dataset costs about 0.2 ms however small, so per-episode storage made a million steps in
short episodes take tens of seconds to load, and bloated files with per-object headers. Episode
``i`` is recovered from ``episode_steps`` by offsets. ``env_id`` and the spaces are left out when
unknown.

Files are written into a temporary file in the destination folder and renamed into place only
when complete, so a reader never sees a half-written file at the destination; the ``complete``
attribute guards against copies of a temporary file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from latentprior.data.dataset import (
    FIELDS,
    FRAME_FIELDS,
    Dataset,
    DatasetError,
    DatasetMetadata,
    Episode,
    EpisodeValidator,
)
from latentprior.io import ArtifactError, json_default, atomic_path

__all__ = [
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "DatasetWriter",
    "save_dataset",
    "load_dataset",
]

FORMAT_NAME = "latentprior.dataset"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
_STRING_ATTRS = ("env_id", "source", "license", "command", "created")
_JSON_ATTRS = ("observation_space", "action_space", "env_kwargs", "extra")
# Small enough that a tiny dataset stays a small file (HDF5 allocates whole chunks), large enough
# that reading a million steps touches only a few thousand chunks.
_CHUNK_BYTES = 64 * 1024


def _metadata_attrs(metadata: DatasetMetadata, path: Path) -> dict[str, str]:
    try:
        d = metadata.to_dict()
    except ArtifactError as e:
        raise DatasetError(f"{path}: cannot save the metadata ({e})") from None
    attrs = {key: d[key] for key in _STRING_ATTRS if d[key] is not None}
    for key in _JSON_ATTRS:
        if d[key] is not None:
            try:
                attrs[key] = json.dumps(d[key], default=json_default)
            except (TypeError, ValueError) as e:
                raise DatasetError(f"{path}: metadata '{key}' is not JSON-able ({e})") from None
    return attrs


class DatasetWriter:
    """Write a dataset to HDF5 one episode at a time, atomically.

    Episodes go into a temporary file beside ``path`` as they are added, so a collector never holds
    more than one episode in memory. Only a clean :meth:`close` (or leaving the ``with`` block
    without an exception) marks the file complete and renames it to ``path``, replacing any file
    there. An exception inside the ``with`` block deletes the temporary file and leaves ``path``
    untouched; a killed process leaves only a hidden ``.<stem>.*.tmp<suffix>`` file, which is never marked
    complete.

    .. code-block:: python

        with DatasetWriter("demos.h5", DatasetMetadata(env_id="Pendulum-v1")) as writer:
            for _ in range(100):
                writer.add(collect_episode())

    :param path: destination file (conventionally ``*.h5``); its folder is created if needed.
    :param metadata: written into the file header before any episode.
    :param compression: HDF5 filter for the arrays: ``None`` (default; fastest to write and
        load), ``"lzf"`` (fast) or ``"gzip"`` (smallest, slowest). Noisy float data barely
        compresses; smooth or repetitive data (mocap, constant fields) does.
    """

    def __init__(self, path: str | os.PathLike, metadata: DatasetMetadata, compression: str | None = None) -> None:
        if compression not in (None, "lzf", "gzip"):
            raise DatasetError(f"{path}: compression must be None, 'lzf' or 'gzip', got {compression!r}")
        self.path = Path(path)
        self.metadata = metadata
        self.compression = compression
        self._validator = EpisodeValidator(str(self.path), metadata)
        self._num_steps = 0
        self._closed = False
        attrs = _metadata_attrs(metadata, self.path)
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        try:
            self._file = h5py.File(tmp, "w")
            self._file.attrs["format"] = FORMAT_NAME
            self._file.attrs["schema_version"] = SCHEMA_VERSION
            self._file.attrs.update(attrs)
            self._steps = self._file.create_dataset(
                "episode_steps", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(_CHUNK_BYTES // 8,)
            )
            self._data = self._file.create_group("data")
        except BaseException as e:
            self._abort(e)
            raise

    @property
    def num_episodes(self) -> int:
        """Episodes written so far."""
        return self._validator.count

    def add(self, episode: Episode) -> None:
        """Validate an episode (as :func:`load_dataset` would) and append it to the file.

        An invalid episode raises :class:`DatasetError` and is not written; the writer stays usable.
        """
        if self._closed:
            raise DatasetError(f"{self.path}: writer is closed")
        self._validator.add(episode)
        for name, value in episode.as_dict().items():
            if name not in self._data:
                row_shape = value.shape[1:]
                row_bytes = value.dtype.itemsize * math.prod(row_shape)
                self._data.create_dataset(
                    name,
                    shape=(0, *row_shape),
                    maxshape=(None, *row_shape),
                    dtype=value.dtype,
                    chunks=(max(1, _CHUNK_BYTES // max(row_bytes, 1)), *row_shape),
                    compression=self.compression,
                )
            _append(self._data[name], value)
        _append(self._steps, np.array([episode.num_steps]))
        self._num_steps += episode.num_steps

    def close(self) -> None:
        """Mark the file complete and move it to ``path``. Raises if no episode was added.

        Calling it again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._validator.finish()
            self._file.attrs["num_episodes"] = self._validator.count
            self._file.attrs["num_steps"] = self._num_steps
            # Written last: a file holding this attribute was finished by a writer that got this far.
            self._file.attrs["complete"] = True
            self._file.close()
        except BaseException as e:
            self._abort(e)
            raise
        self._stack.close()

    def _abort(self, exc: BaseException) -> None:
        self._closed = True
        if getattr(self, "_file", None) is not None:
            self._file.close()
        # Hands the exception to io.atomic_path, which deletes the temporary file.
        self._stack.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
        elif not self._closed:
            self._abort(exc)


def _append(dataset: h5py.Dataset, rows: np.ndarray) -> None:
    if len(rows):
        start = len(dataset)
        dataset.resize(start + len(rows), axis=0)
        dataset[start:] = rows


def save_dataset(dataset: Dataset, path: str | os.PathLike, compression: str | None = None) -> Path:
    """Write a whole dataset to ``path`` atomically (see :class:`DatasetWriter`).

    :param dataset: the dataset to save.
    :param path: destination HDF5 file; replaced if it exists.
    :param compression: as in :class:`DatasetWriter`.
    :return: ``path`` as a :class:`~pathlib.Path`.
    """
    with DatasetWriter(path, dataset.metadata, compression=compression) as writer:
        for episode in dataset.episodes:
            writer.add(episode)
    return Path(path)


def load_dataset(
    path: str | os.PathLike,
    env: gym.Env | tuple[gym.Space | None, gym.Space | None] | None = None,
) -> Dataset:
    """Load and validate a dataset written by :class:`DatasetWriter` / :func:`save_dataset`.

    Everything is read into memory (about 100 MB per million steps of a 17-dimensional task).

    :param path: the HDF5 file.
    :param env: when given (an environment or ``(observation_space, action_space)``), the dataset's
        spaces are checked against it with :meth:`Dataset.check_env`.
    :raises DatasetError: naming the file (and the episode and field where it applies) when the
        file is missing, not HDF5, not a latentprior dataset, of an unsupported schema version,
        incomplete, empty, or holds misaligned, non-finite or mis-shaped arrays, or when it does not
        fit ``env``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    if not h5py.is_hdf5(path):
        raise DatasetError(f"{path}: not an HDF5 file")
    with h5py.File(path, "r") as f:
        metadata = _read_header(f, path)
        episodes = _read_episodes(f, path)
    dataset = Dataset(episodes, metadata, path)
    if env is not None:
        dataset.check_env(env)
    return dataset


def _read_header(f: h5py.File, path: Path) -> DatasetMetadata:
    attrs = f.attrs
    if attrs.get("format") != FORMAT_NAME:
        raise DatasetError(
            f"{path}: not a latentprior dataset (root attribute 'format' is {attrs.get('format')!r}, "
            f"expected {FORMAT_NAME!r}); for Minari data use latentprior.data.from_minari"
        )
    version = attrs.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        raise DatasetError(
            f"{path}: schema version {version} is not supported (this latentprior reads version {supported}); "
            "a newer file needs a newer latentprior"
        )
    if not attrs.get("complete", False):
        raise DatasetError(
            f"{path}: incomplete file (no 'complete' attribute): the writer did not finish, "
            "e.g. it was killed or raised an error"
        )
    d: dict[str, Any] = {key: str(attrs[key]) for key in _STRING_ATTRS if key in attrs}
    for key in _JSON_ATTRS:
        if key in attrs:
            try:
                d[key] = json.loads(attrs[key])
            except (TypeError, json.JSONDecodeError) as e:
                raise DatasetError(f"{path}: root attribute '{key}' is not valid JSON ({e})") from None
    return DatasetMetadata.from_dict(d, where=str(path))


def _read_episodes(f: h5py.File, path: Path) -> list[Episode]:
    steps_ds = f.get("episode_steps")
    data = f.get("data")
    if not isinstance(steps_ds, h5py.Dataset) or not isinstance(data, h5py.Group):
        raise DatasetError(f"{path}: malformed file, '/episode_steps' or '/data' is missing")
    steps = steps_ds[()]
    if len(steps) == 0:
        raise DatasetError(f"{path}: dataset has no episodes")
    if steps.ndim != 1 or steps.dtype.kind not in "iu" or (steps < 0).any():
        raise DatasetError(f"{path}: malformed file, '/episode_steps' must hold non-negative integers")
    if f.attrs.get("num_episodes") != len(steps):
        raise DatasetError(f"{path}: header says {f.attrs.get('num_episodes')} episodes, file holds {len(steps)}")
    if "observations" not in data:
        raise DatasetError(f"{path}: field 'observations' is missing (it is the one required field)")
    per_episode: dict[str, list[np.ndarray]] = {}
    for name, item in data.items():
        if name not in FIELDS:
            raise DatasetError(
                f"{path}: field '{name}' is unknown (known: {', '.join(FIELDS)}); "
                "was the file written by a newer latentprior?"
            )
        if not isinstance(item, h5py.Dataset):
            raise DatasetError(f"{path}: field '{name}' is a group, expected an HDF5 dataset")
        rows = steps + 1 if name in FRAME_FIELDS else steps
        if item.ndim == 0 or len(item) != rows.sum():
            kind = "T + 1" if name in FRAME_FIELDS else "T"
            raise DatasetError(
                f"{path}: field '{name}': expected {rows.sum()} rows (the sum of {kind} over "
                f"{len(steps)} episodes), got {item.shape[0] if item.ndim else 'a scalar'}"
            )
        per_episode[name] = np.split(item[()], np.cumsum(rows)[:-1])
    return [Episode(**{name: arrays[i] for name, arrays in per_episode.items()}) for i in range(len(steps))]
