"""The one demonstration-dataset type: episodes of aligned arrays plus metadata.

Alignment follows Minari: an episode of ``T`` steps has ``T + 1`` observations (the last one is
the observation after the final step), while per-step fields (``actions``, ``rewards``, ...) have
``T`` rows. ``qpos``/``qvel`` are simulator states and so align with observations (``T + 1``
rows). Only ``observations`` is required: a state-only dataset (motion capture, videos turned into
poses) is a list of frame sequences, and every method here works on it.

Validation lives here, once, so that building a :class:`Dataset` in memory, writing one episode at
a time with :class:`~latentprior.data.hdf5.DatasetWriter` and loading a file all fail with the same
messages, each naming the source (a file or ``"dataset"``), the episode index and the field.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import gymnasium as gym
import numpy as np

from latentprior.io import ArtifactError, LatentPriorError, check_space, space_from_dict, space_to_dict

__all__ = [
    "DatasetError",
    "Episode",
    "DatasetMetadata",
    "Dataset",
    "EpisodeValidator",
    "FRAME_FIELDS",
    "STEP_FIELDS",
    "FIELDS",
    "format_summary",
]

FRAME_FIELDS = ("observations", "qpos", "qvel")
"""Fields with one row per observation (``T + 1`` rows)."""
STEP_FIELDS = ("actions", "expert_actions", "jacobians", "rewards", "terminations", "truncations")
"""Fields with one row per step (``T`` rows)."""
FIELDS = (
    "observations",
    "actions",
    "expert_actions",
    "jacobians",
    "rewards",
    "terminations",
    "truncations",
    "qpos",
    "qvel",
)
"""Every field an episode may hold, in canonical order (that of :class:`Episode`)."""
_ACTION_FIELDS = ("actions", "expert_actions")
_SCALAR_FIELDS = ("rewards", "terminations", "truncations")
_BOOL_FIELDS = ("terminations", "truncations")


class DatasetError(LatentPriorError, ValueError):
    """A dataset (in memory or on disk) is malformed or does not fit where it is being used.

    The message always starts with the source (file path or ``"dataset"``) and, where it applies,
    names the episode and the field.
    """


@dataclasses.dataclass(eq=False, repr=False)
class Episode:
    """One episode of aligned arrays (the Minari convention: ``T + 1`` observations, ``T`` steps).

    Inputs are converted with ``np.asarray`` (no copy when already arrays); dtypes are kept as
    given, except that validation requires ``terminations``/``truncations`` to be boolean.

    :param observations: ``(T + 1, *obs_shape)``, including the observation after the last step.
        The only required field; ``T + 1 >= 1``.
    :param actions: ``(T, *act_shape)`` actions that were executed (with exploration noise, if any).
    :param expert_actions: ``(T, *act_shape)`` the mean action the expert intended at each step
        (equal to ``actions`` for a noise-free expert).
    :param jacobians: ``(T, act_dim, obs_dim)`` derivative of the expert's mean action with respect
        to the observation (used for Jacobian-matching, as in LFPC).
    :param rewards: ``(T,)`` rewards.
    :param terminations: ``(T,)`` bool, the MDP reached a terminal state after the step.
    :param truncations: ``(T,)`` bool, the episode was cut (time limit) after the step.
    :param qpos: ``(T + 1, nq)`` simulator positions aligned with ``observations``.
    :param qvel: ``(T + 1, nv)`` simulator velocities aligned with ``observations``.
    """

    observations: np.ndarray
    actions: np.ndarray | None = None
    expert_actions: np.ndarray | None = None
    jacobians: np.ndarray | None = None
    rewards: np.ndarray | None = None
    terminations: np.ndarray | None = None
    truncations: np.ndarray | None = None
    qpos: np.ndarray | None = None
    qvel: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.asarray(value))

    @property
    def num_steps(self) -> int:
        """Number of steps ``T`` (one less than the number of observations)."""
        return len(self.observations) - 1

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the fields present, in canonical order."""
        return tuple(name for name in FIELDS if getattr(self, name) is not None)

    @property
    def episode_return(self) -> float:
        """Undiscounted sum of rewards. Raises :class:`DatasetError` when there are no rewards."""
        if self.rewards is None:
            raise DatasetError("episode has no 'rewards' field, so it has no return")
        return float(np.sum(self.rewards, dtype=np.float64))

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{field: array}`` for the fields present."""
        return {name: getattr(self, name) for name in self.fields}

    def validate(
        self,
        where: str = "episode",
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
    ) -> None:
        """Check alignment, shapes, dtypes and finiteness; raise :class:`DatasetError` otherwise.

        :param where: prefix of every message, e.g. ``"demos.h5: episode 3"``.
        :param observation_space: when given, each observation must have its shape.
        :param action_space: when given, each row of ``actions``/``expert_actions`` must have its shape.
        """
        obs = self.observations
        if obs.ndim == 0 or len(obs) == 0:
            raise DatasetError(
                f"{where}, field 'observations': needs at least one row (T + 1 >= 1), got shape {obs.shape}"
            )
        num_steps = len(obs) - 1
        for name, value in self.as_dict().items():
            _check_array(value, name, where)
            expected = num_steps + 1 if name in FRAME_FIELDS else num_steps
            if len(value) != expected:
                kind = "T + 1" if name in FRAME_FIELDS else "T"
                raise DatasetError(
                    f"{where}, field '{name}': expected {expected} rows ({kind}, since 'observations' "
                    f"has {num_steps + 1} rows), got {len(value)}"
                )
        for name in _SCALAR_FIELDS:
            value = getattr(self, name)
            if value is not None and value.ndim != 1:
                raise DatasetError(f"{where}, field '{name}': expected shape (T,), got {value.shape}")
        if self.actions is not None and self.expert_actions is not None:
            if self.actions.shape[1:] != self.expert_actions.shape[1:]:
                raise DatasetError(
                    f"{where}, field 'expert_actions': rows have shape {self.expert_actions.shape[1:]}, "
                    f"but 'actions' rows have {self.actions.shape[1:]}"
                )
        if self.jacobians is not None:
            self._check_jacobians(where)
        for space, names, what in (
            (observation_space, ("observations",), "observation"),
            (action_space, _ACTION_FIELDS, "action"),
        ):
            if space is None:
                continue
            row_shape = _row_shape(space, where)
            for name in names:
                value = getattr(self, name)
                if value is not None and value.shape[1:] != row_shape:
                    raise DatasetError(
                        f"{where}, field '{name}': rows have shape {value.shape[1:]}, "
                        f"but the dataset's {what} space has shape {row_shape}"
                    )

    def _check_jacobians(self, where: str) -> None:
        jac = self.jacobians
        if jac.ndim != 3:
            raise DatasetError(f"{where}, field 'jacobians': expected shape (T, act_dim, obs_dim), got {jac.shape}")
        if self.observations.ndim == 2 and jac.shape[2] != self.observations.shape[1]:
            raise DatasetError(
                f"{where}, field 'jacobians': obs_dim is {jac.shape[2]}, "
                f"but observations have {self.observations.shape[1]} dimensions"
            )
        for name in _ACTION_FIELDS:
            act = getattr(self, name)
            if act is not None and act.ndim == 2 and jac.shape[1] != act.shape[1]:
                raise DatasetError(
                    f"{where}, field 'jacobians': act_dim is {jac.shape[1]}, "
                    f"but '{name}' have {act.shape[1]} dimensions"
                )

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={_describe(value)}" for name, value in self.as_dict().items())
        return f"Episode(steps={self.num_steps}, {parts})"


def _check_array(value: np.ndarray, name: str, where: str) -> None:
    if value.ndim == 0:
        raise DatasetError(f"{where}, field '{name}': expected an array with one row per time step, got a scalar")
    if name in _BOOL_FIELDS:
        if value.dtype != np.bool_:
            raise DatasetError(f"{where}, field '{name}': expected dtype bool, got {value.dtype}")
        return
    if value.dtype.kind not in "biuf":
        raise DatasetError(f"{where}, field '{name}': expected a numeric dtype, got {value.dtype}")
    if value.dtype.kind == "f":
        finite = np.isfinite(value)
        if not finite.all():
            index = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise DatasetError(
                f"{where}, field '{name}': non-finite value {value[index]} at index {index} "
                f"(row {index[0]} of {len(value)})"
            )


def _row_shape(space: gym.Space, where: str) -> tuple[int, ...]:
    if isinstance(space, gym.spaces.Box):
        return tuple(space.shape)
    if isinstance(space, gym.spaces.Discrete):
        return ()
    raise DatasetError(f"{where}: space {space} is not supported; only Box and Discrete")


def _describe(value: np.ndarray) -> str:
    return f"{tuple(value.shape)} {value.dtype}"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class DatasetMetadata:
    """Where a dataset came from and which spaces it lives in.

    :param env_id: Gymnasium id of the environment the data was recorded in (``None`` for data
        without one, e.g. motion capture). Not checked against environments: transfer tasks reuse
        demonstrations from a different id with the same spaces.
    :param observation_space: space of ``observations`` (Box or Discrete), or ``None`` if unknown.
    :param action_space: space of ``actions``/``expert_actions`` (Box or Discrete), or ``None``
        (state-only data).
    :param source: free text naming the origin, e.g. ``"sb3_zoo:sac_HalfCheetah-v3.zip"`` or
        ``"latentprior collect"``.
    :param license: license of the data (important for imported third-party data).
    :param command: the command line that created the dataset, for reproduction.
    :param created: ISO 8601 creation time; defaults to now (UTC).
    :param env_kwargs: keyword arguments for ``gymnasium.make(env_id, **env_kwargs)`` that the data
        needs (e.g. ``{"include_cfrc_ext_in_observation": False}`` for a 27-d Ant-v5).
    :param extra: JSON-able values describing how the data was made (noise std, expert path, gait
        cycle length, ...). Checked to be JSON-able when saved.
    """

    env_id: str | None = None
    observation_space: gym.Space | None = None
    action_space: gym.Space | None = None
    source: str = ""
    license: str = ""
    command: str = ""
    created: str = dataclasses.field(default_factory=_now)
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; spaces become :func:`latentprior.io.space_to_dict` dictionaries."""
        d = dataclasses.asdict(self)
        for key in ("observation_space", "action_space"):
            space = getattr(self, key)
            d[key] = None if space is None else space_to_dict(space)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "metadata") -> DatasetMetadata:
        """Inverse of :meth:`to_dict`; ``where`` prefixes error messages."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        try:
            for key in ("observation_space", "action_space"):
                if kwargs.get(key) is not None:
                    kwargs[key] = space_from_dict(kwargs[key], f"{where}: {key}")
        except ArtifactError as e:
            raise DatasetError(str(e)) from None
        return cls(**kwargs)


class Dataset:
    """A list of :class:`Episode` plus :class:`DatasetMetadata`; validated when built.

    Every episode must pass :meth:`Episode.validate` against the metadata's spaces, and all
    episodes must hold the same fields with the same per-row shapes and dtypes (so a field stacks
    into one array, which is also how the file stores it).

    :param episodes: at least one episode.
    :param metadata: defaults to an empty :class:`DatasetMetadata`.
    :param path: file the dataset was loaded from, used to name it in error messages.
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        metadata: DatasetMetadata | None = None,
        path: str | Path | None = None,
    ) -> None:
        self.episodes = list(episodes)
        self.metadata = metadata if metadata is not None else DatasetMetadata()
        self.path = None if path is None else Path(path)
        validator = EpisodeValidator(self._source, self.metadata)
        for episode in self.episodes:
            validator.add(episode)
        validator.finish()

    @property
    def _source(self) -> str:
        return str(self.path) if self.path is not None else "dataset"

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        return iter(self.episodes)

    def __getitem__(self, index: int) -> Episode:
        return self.episodes[index]

    @property
    def num_steps(self) -> int:
        """Total number of steps ``sum(T)`` over episodes (frames minus one per episode)."""
        return sum(episode.num_steps for episode in self.episodes)

    @property
    def fields(self) -> tuple[str, ...]:
        """Fields of the dataset (every episode holds the same ones), in canonical order."""
        return self.episodes[0].fields

    def concat(self, field: str) -> np.ndarray:
        """Stack one field over all episodes along the time axis.

        Frame fields give ``sum(T + 1)`` rows (each episode's final observation included), step
        fields ``sum(T)`` rows, so the two do not align row by row; pair observations with actions
        per episode (``observations[:-1]`` with ``actions``) when that is needed.

        :param field: one of :attr:`fields`.
        """
        if field not in self.fields:
            raise DatasetError(
                f"{self._source}: no field {field!r} in this dataset; it has {', '.join(self.fields)}"
            )
        return np.concatenate([getattr(episode, field) for episode in self.episodes])

    def returns(self) -> np.ndarray:
        """Undiscounted return of each episode, shape ``(len(self),)``, float64."""
        if "rewards" not in self.fields:
            raise DatasetError(f"{self._source}: the dataset has no 'rewards', so returns are undefined")
        return np.array([episode.episode_return for episode in self.episodes], dtype=np.float64)

    def split(self, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Split by whole episodes into ``(train, held_out)``.

        :param fraction: share of episodes that go to ``train``, in (0, 1); rounded, but each part
            keeps at least one episode.
        :param seed: seed of the shuffle, so the same split comes back on the same data.
        :return: two datasets sharing this one's metadata (episode arrays are not copied).
        """
        n = len(self.episodes)
        if not 0.0 < fraction < 1.0:
            raise DatasetError(f"{self._source}: split fraction must be in (0, 1), got {fraction}")
        if n < 2:
            raise DatasetError(f"{self._source}: cannot split {n} episode(s) into two non-empty parts")
        num_train = min(max(int(round(fraction * n)), 1), n - 1)
        order = np.random.default_rng(seed).permutation(n)
        train = sorted(order[:num_train].tolist())
        held_out = sorted(order[num_train:].tolist())
        return (
            Dataset([self.episodes[i] for i in train], self.metadata, self.path),
            Dataset([self.episodes[i] for i in held_out], self.metadata, self.path),
        )

    def check_env(
        self,
        env_or_spaces: gym.Env | tuple[gym.Space | None, gym.Space | None],
        source: str | None = None,
    ) -> None:
        """Raise :class:`DatasetError` if the dataset's spaces do not fit an environment.

        Box spaces must agree in shape and in their finite bounds (see
        :func:`latentprior.io.check_space`). Where the metadata holds no space, the data's row
        shape is compared with the environment's instead. The action space is only checked when
        the dataset has one or holds actions (state-only data fits any action space).

        :param env_or_spaces: a Gymnasium environment, or ``(observation_space, action_space)``
            where either may be ``None`` to skip it.
        :param source: name used in messages; defaults to the file the dataset was loaded from.
        """
        source = source or self._source
        if isinstance(env_or_spaces, tuple):
            env_obs_space, env_act_space = env_or_spaces
        else:
            env_obs_space, env_act_space = env_or_spaces.observation_space, env_or_spaces.action_space
        checks = (
            ("observation", self.metadata.observation_space, env_obs_space, ("observations",)),
            ("action", self.metadata.action_space, env_act_space, _ACTION_FIELDS),
        )
        for what, ours, theirs, names in checks:
            if theirs is None:
                continue
            if ours is not None:
                try:
                    check_space(ours, theirs, what, source)
                except ArtifactError as e:
                    raise DatasetError(str(e)) from None
                continue
            env_shape = _row_shape(theirs, source)
            for name in names:
                value = getattr(self.episodes[0], name)
                if value is not None and value.shape[1:] != env_shape:
                    raise DatasetError(
                        f"{source}: {what} rows ('{name}') have shape {value.shape[1:]}, "
                        f"environment's {what} space has shape {env_shape}"
                    )

    def summary(self) -> dict[str, Any]:
        """JSON-able overview, rendered by :func:`latentprior.data.format_summary`.

        Keys: ``path``, ``episodes``, ``steps``, ``episode_length`` (mean/min/max in steps),
        ``fields`` (for each field: ``shape`` of all episodes stacked, and ``dtype``), ``return``
        (mean/std/min/max, only with rewards) and ``metadata`` (:meth:`DatasetMetadata.to_dict`).
        """
        lengths = np.array([episode.num_steps for episode in self.episodes])
        fields = {}
        for name, first in self.episodes[0].as_dict().items():
            rows = sum(len(getattr(episode, name)) for episode in self.episodes)
            fields[name] = {"shape": [rows, *first.shape[1:]], "dtype": str(first.dtype)}
        summary: dict[str, Any] = {
            "path": None if self.path is None else str(self.path),
            "episodes": len(self.episodes),
            "steps": int(lengths.sum()),
            "episode_length": {"mean": float(lengths.mean()), "min": int(lengths.min()), "max": int(lengths.max())},
            "fields": fields,
        }
        if "rewards" in self.fields:
            returns = self.returns()
            summary["return"] = {
                "mean": float(returns.mean()),
                "std": float(returns.std()),
                "min": float(returns.min()),
                "max": float(returns.max()),
            }
        summary["metadata"] = self.metadata.to_dict()
        return summary

    def __repr__(self) -> str:
        where = f", path='{self.path}'" if self.path is not None else ""
        return (
            f"Dataset(episodes={len(self)}, steps={self.num_steps}, fields={list(self.fields)}, "
            f"env_id={self.metadata.env_id!r}{where})"
        )


class EpisodeValidator:
    """Validates episodes one at a time, as :class:`Dataset` and the streaming writer both need.

    Beyond :meth:`Episode.validate`, it checks that every episode holds the same fields as the
    first, with the same per-row shapes and dtypes.

    :param source: file path or ``"dataset"``, the first word of every message.
    :param metadata: its spaces constrain the shapes of observations and actions.
    """

    def __init__(self, source: str, metadata: DatasetMetadata) -> None:
        self.source = source
        self.metadata = metadata
        self.count = 0
        self._first: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None

    def add(self, episode: Episode) -> None:
        """Validate the next episode (its index is the number validated so far)."""
        if not isinstance(episode, Episode):
            raise DatasetError(
                f"{self.source}: episode {self.count} is a {type(episode).__name__}, expected an Episode"
            )
        where = f"{self.source}: episode {self.count}"
        episode.validate(where, self.metadata.observation_space, self.metadata.action_space)
        layout = {name: (value.shape[1:], value.dtype) for name, value in episode.as_dict().items()}
        if self._first is None:
            self._first = layout
        if layout.keys() != self._first.keys():
            raise DatasetError(
                f"{where}: has fields {', '.join(layout)}, but episode 0 has {', '.join(self._first)}"
            )
        for name, (shape, dtype) in layout.items():
            first_shape, first_dtype = self._first[name]
            if shape != first_shape or dtype != first_dtype:
                raise DatasetError(
                    f"{where}, field '{name}': rows are {shape} {dtype}, but episode 0 has {first_shape} {first_dtype}"
                )
        self.count += 1

    def finish(self) -> None:
        """Raise if no episode was added: an empty dataset is always a mistake upstream."""
        if self.count == 0:
            raise DatasetError(f"{self.source}: dataset has no episodes")


def _format_space(d: Mapping[str, Any] | None) -> str:
    if d is None:
        return "unknown"
    if d["type"] == "Discrete":
        return f"Discrete({d['n']}, start={d['start']})"
    low, high = np.asarray(d["low"], float), np.asarray(d["high"], float)
    if low.size and (low == low.flat[0]).all() and (high == high.flat[0]).all():
        bounds = f"[{low.flat[0]:g}, {high.flat[0]:g}]"
    elif low.size <= 6:
        bounds = f"low {[float(f'{x:g}') for x in low.flat]}, high {[float(f'{x:g}') for x in high.flat]}"
    else:
        bounds = "bounds vary per dimension"
    return f"Box {tuple(d['shape'])} {d['dtype']}, {bounds}"


def _format_value(value: Any) -> str:
    # float32 values saved in `extra` come back as doubles like 0.10000000149011612.
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _table(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def format_summary(summary: Mapping[str, Any]) -> str:
    """Render :meth:`Dataset.summary` as the plain-text report of ``latentprior data info FILE``.

    :param summary: the dictionary returned by :meth:`Dataset.summary`.
    :return: a ready-to-print multi-line string (no trailing newline).
    """
    meta = summary["metadata"]
    length = summary["episode_length"]
    header = [
        ("path", summary.get("path") or "(in memory)"),
        ("env_id", meta.get("env_id") or "none"),
        *([("env_kwargs", json.dumps(meta["env_kwargs"]))] if meta.get("env_kwargs") else []),
        ("source", meta.get("source") or "unknown"),
        ("license", meta.get("license") or "unknown"),
        ("created", meta.get("created") or "unknown"),
        ("command", meta.get("command") or "unknown"),
        ("episodes", f"{summary['episodes']:,}"),
        ("steps", f"{summary['steps']:,}"),
        ("length", f"mean {length['mean']:.1f}, min {length['min']:,}, max {length['max']:,} steps"),
    ]
    if "return" in summary:
        ret = summary["return"]
        header.append(
            ("return", f"mean {ret['mean']:.4g}, std {ret['std']:.4g}, min {ret['min']:.4g}, max {ret['max']:.4g}")
        )
    header.append(("observation", _format_space(meta.get("observation_space"))))
    header.append(("action", _format_space(meta.get("action_space"))))
    lines = _table(header)
    field_rows = [("field", "rows", "row shape", "dtype")]
    for name, info in summary["fields"].items():
        field_rows.append((name, f"{info['shape'][0]:,}", str(tuple(info["shape"][1:])), info["dtype"]))
    lines += ["", *_table(field_rows)]
    if meta.get("extra"):
        extra_rows = [(key, _format_value(value)) for key, value in meta["extra"].items()]
        lines += ["", "extra", *_table(extra_rows, indent="  ")]
    return "\n".join(lines)
