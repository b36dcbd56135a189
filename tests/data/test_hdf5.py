"""The HDF5 form: lossless round trips, atomic writes, and load errors that name file, episode, field."""

import json
import shutil

import gymnasium as gym
import h5py
import numpy as np
import pytest

from latentprior.data import (
    SCHEMA_VERSION,
    Dataset,
    DatasetError,
    DatasetMetadata,
    DatasetWriter,
    load_dataset,
    save_dataset,
)
from latentprior.io import space_to_dict


def assert_same(a: Dataset, b: Dataset) -> None:
    assert len(a) == len(b) and a.fields == b.fields
    for ea, eb in zip(a, b):
        for name, value in ea.as_dict().items():
            other = getattr(eb, name)
            assert other.dtype == value.dtype, name
            np.testing.assert_array_equal(other, value, err_msg=name)
    assert a.metadata == b.metadata


@pytest.mark.parametrize("compression", [None, "lzf", "gzip"])
def test_round_trip_keeps_every_field_dtype_and_metadata(full_dataset, tmp_path, compression):
    path = save_dataset(full_dataset, tmp_path / "demos.h5", compression=compression)
    loaded = load_dataset(path)
    assert_same(full_dataset, loaded)
    assert loaded.path == path
    with h5py.File(path) as f:
        assert f.attrs["format"] == "latentprior.dataset" and f.attrs["schema_version"] == SCHEMA_VERSION == 1


def test_round_trip_state_only(state_only_dataset, tmp_path):
    loaded = load_dataset(save_dataset(state_only_dataset, tmp_path / "mocap.h5"))
    assert_same(state_only_dataset, loaded)
    assert loaded.metadata.observation_space is None and loaded.metadata.env_id is None
    assert [e.num_steps for e in loaded] == [4, 0, 7]


def test_load_checks_env(full_dataset, tmp_path):
    path = save_dataset(full_dataset, tmp_path / "demos.h5")
    load_dataset(path, env=gym.make("Pendulum-v1"))
    with pytest.raises(DatasetError, match=rf"{path}: observation space has shape \(3,\), environment has \(2,\)"):
        load_dataset(path, env=gym.make("MountainCarContinuous-v0"))


def test_writer_streams_into_a_hidden_temporary_file(full_dataset, tmp_path):
    path = tmp_path / "demos.h5"
    with DatasetWriter(path, full_dataset.metadata) as writer:
        for episode in full_dataset:
            writer.add(episode)
        assert not path.exists() and writer.num_episodes == 4
        assert len(list(tmp_path.glob(".demos.*.tmp.h5"))) == 1
    assert_same(full_dataset, load_dataset(path))
    assert list(tmp_path.iterdir()) == [path]


def test_crash_inside_writer_leaves_no_file_and_keeps_the_old_one(full_dataset, make_ep, tmp_path):
    path = tmp_path / "demos.h5"
    with pytest.raises(RuntimeError):
        with DatasetWriter(path, full_dataset.metadata) as writer:
            writer.add(make_ep(4))
            raise RuntimeError("collector crashed")
    assert list(tmp_path.iterdir()) == []
    save_dataset(full_dataset, path)
    with pytest.raises(RuntimeError):
        with DatasetWriter(path, full_dataset.metadata) as writer:
            writer.add(make_ep(4))
            raise RuntimeError("collector crashed")
    assert_same(full_dataset, load_dataset(path))
    assert list(tmp_path.iterdir()) == [path]


def test_a_killed_writers_file_is_rejected_as_incomplete(full_dataset, make_ep, tmp_path):
    """A copy of the temporary file a killed writer leaves behind must not load as a dataset."""
    path = tmp_path / "demos.h5"
    with pytest.raises(RuntimeError):
        with DatasetWriter(path, full_dataset.metadata) as writer:
            writer.add(make_ep(4))
            writer._file.flush()
            shutil.copy(next(tmp_path.glob(".demos.*.tmp.h5")), tmp_path / "copy.h5")
            raise RuntimeError("killed")
    with pytest.raises(DatasetError, match=r"copy\.h5: incomplete file"):
        load_dataset(tmp_path / "copy.h5")


def test_writer_rejects_a_bad_episode_and_stays_usable(full_dataset, make_ep, tmp_path):
    path = tmp_path / "demos.h5"
    bad = make_ep(4)
    bad.rewards[2] = np.nan
    with DatasetWriter(path, full_dataset.metadata) as writer:
        writer.add(make_ep(3))
        with pytest.raises(DatasetError) as err:
            writer.add(bad)
        assert str(err.value) == f"{path}: episode 1, field 'rewards': non-finite value nan at index (2,) (row 2 of 4)"
        writer.add(make_ep(5))
    assert [e.num_steps for e in load_dataset(path)] == [3, 5]


def test_writer_with_no_episodes_raises_and_writes_nothing(tmp_path):
    with pytest.raises(DatasetError, match="no episodes"):
        with DatasetWriter(tmp_path / "empty.h5", DatasetMetadata()):
            pass
    assert list(tmp_path.iterdir()) == []


def test_metadata_extra_must_be_json(tmp_path):
    with pytest.raises(DatasetError, match="metadata 'extra' is not JSON-able"):
        DatasetWriter(tmp_path / "x.h5", DatasetMetadata(extra={"policy": object()}))
    assert list(tmp_path.iterdir()) == []


# Each corruption edits a valid file in place; the loader must name the file and what is wrong.
def _set_attr(name, value):
    def corrupt(f):
        f.attrs[name] = value
    return corrupt


def _replace(field, make):
    def corrupt(f):
        value = make(f["data"][field][()])
        del f["data"][field]
        f["data"].create_dataset(field, data=value)
    return corrupt


def _drop_episodes(f):
    f["episode_steps"].resize((0,))
    f.attrs["num_episodes"] = 0


def _nan_in_third_episode(f):
    # episode 2 starts after episodes of 5 and 8 steps, i.e. at frame 6 + 9 = 15
    f["data"]["observations"][15 + 2, 1] = np.nan


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_set_attr("format", "d4rl"), "not a latentprior dataset (root attribute 'format' is 'd4rl'"),
        (_set_attr("schema_version", 7), "schema version 7 is not supported (this latentprior reads version 1)"),
        (lambda f: f.attrs.__delitem__("complete"), "incomplete file"),
        (lambda f: f["data"].__delitem__("observations"), "field 'observations' is missing"),
        (_replace("actions", lambda a: a[:-1]), "field 'actions': expected 22 rows (the sum of T over 4 episodes), got 21"),
        (_replace("qvel", lambda a: a[:-2]), "field 'qvel': expected 26 rows (the sum of T + 1 over 4 episodes), got 24"),
        (_nan_in_third_episode, "episode 2, field 'observations': non-finite value nan at index (2, 1)"),
        (_drop_episodes, "dataset has no episodes"),
        (lambda f: f["data"].create_dataset("qacc", data=np.zeros(3)),
         "field 'qacc' is unknown"),
        (_set_attr("observation_space", json.dumps(space_to_dict(gym.spaces.Box(-1, 1, (4,))))),
         "episode 0, field 'observations': rows have shape (3,), but the dataset's observation space has shape (4,)"),
        (_set_attr("action_space", '{"type": "Box"}'), "action_space: malformed space description"),
    ],
)
def test_load_errors_name_file_and_what_is_wrong(full_dataset, tmp_path, corrupt, message):
    path = save_dataset(full_dataset, tmp_path / "demos.h5")
    with h5py.File(path, "a") as f:
        corrupt(f)
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_missing_file_and_non_hdf5_file(tmp_path):
    with pytest.raises(DatasetError, match=rf"{tmp_path / 'nope.h5'}: file not found"):
        load_dataset(tmp_path / "nope.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(DatasetError, match=rf"{text}: not an HDF5 file"):
        load_dataset(text)
