"""Minari import/export: a lossless round trip, filled fields, foreign datasets, missing Minari."""

import dataclasses
import importlib.util
import sys

import numpy as np
import pytest

from latentprior.data import Dataset, DatasetError, from_minari, to_minari

needs_minari = pytest.mark.skipif(
    importlib.util.find_spec("minari") is None, reason="minari is not installed (pip install 'latentprior[minari]')"
)


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def assert_same(a: Dataset, b: Dataset) -> None:
    assert len(a) == len(b) and a.fields == b.fields
    for ea, eb in zip(a, b):
        for name, value in ea.as_dict().items():
            assert getattr(eb, name).dtype == value.dtype, name
            np.testing.assert_array_equal(getattr(eb, name), value, err_msg=name)
    assert a.metadata == b.metadata


@needs_minari
def test_round_trip_gives_identical_arrays_and_metadata(full_dataset, minari_root):
    import minari

    path = to_minari(full_dataset, "latentprior/pendulum-test-v0", author="tests")
    assert path == minari_root / "latentprior/pendulum-test-v0"
    native = minari.load_dataset("latentprior/pendulum-test-v0")
    assert native.total_episodes == 4 and native.total_steps == 22
    assert native.env_spec.id == "Pendulum-v1"
    assert_same(full_dataset, from_minari("latentprior/pendulum-test-v0"))
    assert_same(full_dataset, from_minari(path))


@needs_minari
def test_fields_minari_requires_are_filled_then_dropped(full_dataset):
    bare = Dataset(
        [dataclasses.replace(e, rewards=None, terminations=None, truncations=None) for e in full_dataset],
        full_dataset.metadata,
    )
    to_minari(bare, "bare-v0")
    import minari

    first = minari.load_dataset("bare-v0")[0]
    assert not first.rewards.any() and first.truncations[-1] and not first.terminations.any()
    assert_same(bare, from_minari("bare-v0"))


@needs_minari
def test_existing_id_needs_overwrite(full_dataset):
    to_minari(full_dataset, "demo-v0")
    with pytest.raises(DatasetError, match="already exists"):
        to_minari(full_dataset, "demo-v0")
    to_minari(full_dataset, "demo-v0", overwrite=True)


@needs_minari
def test_export_errors(full_dataset, state_only_dataset):
    with pytest.raises(DatasetError, match="state-only"):
        to_minari(state_only_dataset, "mocap-v0")
    with pytest.raises(DatasetError, match="must look like"):
        to_minari(full_dataset, "no-version")


@needs_minari
def test_foreign_minari_dataset(pendulum_spaces):
    import minari
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(0)
    steps = 6
    infos = {"qpos": rng.normal(size=(steps + 1, 1)), "x_velocity": rng.normal(size=steps + 1)}
    buffer = EpisodeBuffer(
        observations=rng.uniform(-1, 1, (steps + 1, 3)).astype(np.float32),
        actions=rng.uniform(-2, 2, (steps, 1)).astype(np.float32),
        rewards=rng.normal(size=steps),
        terminations=np.zeros(steps, dtype=bool),
        truncations=np.eye(steps, dtype=bool)[-1],
        infos=infos,
    )
    with pytest.warns(UserWarning):
        minari.create_dataset_from_buffers("foreign-v1", [buffer], env="Pendulum-v1", algorithm_name="random")
    dataset = from_minari("foreign-v1")
    assert dataset.fields == ("observations", "actions", "rewards", "terminations", "truncations", "qpos")
    np.testing.assert_array_equal(dataset[0].qpos, infos["qpos"])
    meta = dataset.metadata
    assert meta.env_id == "Pendulum-v1" and meta.source == "minari:foreign-v1"
    assert meta.extra["minari_algorithm_name"] == "random"
    assert meta.observation_space == pendulum_spaces[0]


@needs_minari
def test_unknown_id_says_where_it_looked(minari_root):
    with pytest.raises(DatasetError, match="no Minari dataset at .*MINARI_DATASETS_PATH"):
        from_minari("nothing/here-v0")


def test_missing_minari_says_how_to_install(full_dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(DatasetError, match=r"pip install 'latentprior\[minari\]'"):
        to_minari(full_dataset, "x-v0")
    with pytest.raises(DatasetError, match=r"pip install 'latentprior\[minari\]'"):
        from_minari("x-v0")
