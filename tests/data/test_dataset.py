"""The in-memory dataset type: alignment rules, validation messages, splits, env checks, summary."""

import dataclasses
import re

import gymnasium as gym
import numpy as np
import pytest

from latentprior.data import Dataset, DatasetError, DatasetMetadata, Episode, format_summary
from latentprior.io import LatentPriorError


def raises(message: str):
    """Expect a DatasetError whose message contains ``message`` verbatim."""
    return pytest.raises(DatasetError, match=re.escape(message))


def test_episode_follows_minari_alignment(make_ep):
    episode = make_ep(5)
    assert episode.num_steps == 5
    assert episode.observations.shape == (6, 3) and episode.actions.shape == (5, 1)
    assert episode.fields == (
        "observations", "actions", "expert_actions", "jacobians", "rewards",
        "terminations", "truncations", "qpos", "qvel",
    )
    assert episode.episode_return == pytest.approx(episode.rewards.sum())
    assert "steps=5" in repr(episode) and "(6, 3) float32" in repr(episode)


def test_state_only_episode_is_just_frames():
    episode = Episode(observations=np.zeros((1, 4)))
    assert episode.num_steps == 0 and episode.fields == ("observations",)
    with pytest.raises(DatasetError, match="no 'rewards'"):
        episode.episode_return


def test_dataset_accessors(full_dataset):
    assert len(full_dataset) == 4
    assert full_dataset.num_steps == 5 + 8 + 3 + 6
    assert full_dataset.concat("observations").shape == (22 + 4, 3)
    assert full_dataset.concat("jacobians").shape == (22, 1, 3)
    np.testing.assert_allclose(full_dataset.returns(), [e.rewards.sum() for e in full_dataset])
    assert "episodes=4" in repr(full_dataset) and "Pendulum-v1" in repr(full_dataset)
    with pytest.raises(DatasetError, match="no field 'qacc'"):
        full_dataset.concat("qacc")


def test_state_only_dataset(state_only_dataset):
    assert state_only_dataset.fields == ("observations",)
    assert state_only_dataset.num_steps == 11
    with pytest.raises(DatasetError, match="no 'rewards'"):
        state_only_dataset.returns()


def test_split_is_by_episode_disjoint_and_repeatable(full_dataset):
    train, held_out = full_dataset.split(0.75, seed=3)
    assert (len(train), len(held_out)) == (3, 1)
    ids = {id(e) for e in train} | {id(e) for e in held_out}
    assert ids == {id(e) for e in full_dataset}
    again, _ = full_dataset.split(0.75, seed=3)
    assert [id(e) for e in again] == [id(e) for e in train]
    with pytest.raises(DatasetError, match="in \\(0, 1\\)"):
        full_dataset.split(1.0)


def test_error_type():
    assert issubclass(DatasetError, LatentPriorError) and issubclass(DatasetError, ValueError)


@pytest.mark.parametrize(
    "change, field, expected",
    [
        (lambda e: {"actions": e.actions[:-1]}, "actions", "expected 5 rows (T, since 'observations' has 6 rows), got 4"),
        (lambda e: {"qpos": e.qpos[:-1]}, "qpos", "expected 6 rows (T + 1"),
        (lambda e: {"terminations": e.terminations.astype(float)}, "terminations", "dtype bool"),
        (lambda e: {"rewards": e.rewards[:, None]}, "rewards", "expected shape (T,)"),
        (lambda e: {"jacobians": e.jacobians[:, :, :2]}, "jacobians", "obs_dim is 2"),
        (lambda e: {"expert_actions": np.zeros((5, 2), np.float32)}, "expert_actions", "'actions' rows have (1,)"),
        (lambda e: {"observations": np.zeros((0, 3))}, "observations", "at least one row"),
    ],
)
def test_validation_names_episode_and_field(make_ep, change, field, expected):
    good, bad = make_ep(5), make_ep(5, seed=1)
    bad = dataclasses.replace(bad, **change(bad))
    with pytest.raises(DatasetError) as err:
        Dataset([good, bad])
    message = str(err.value)
    assert message.startswith("dataset: episode 1") and f"field '{field}'" in message and expected in message


def test_non_finite_value_reports_first_bad_index(make_ep):
    episode = make_ep(5)
    episode.observations[3, 2] = np.nan
    episode.observations[4, 0] = np.inf
    with raises("episode 0, field 'observations': non-finite value nan at index (3, 2)"):
        Dataset([episode])


def test_episodes_must_share_fields_and_dtypes(make_ep):
    with raises("episode 1: has fields observations, but episode 0 has observations, actions"):
        Dataset([make_ep(3), make_ep(3, state_only=True)])
    other = make_ep(3)
    other = dataclasses.replace(other, observations=other.observations.astype(np.float64))
    with raises("episode 1, field 'observations': rows are (3,) float64, but episode 0 has (3,) float32"):
        Dataset([make_ep(3), other])


def test_empty_dataset_is_rejected():
    with pytest.raises(DatasetError, match="no episodes"):
        Dataset([])


def test_shapes_are_checked_against_the_metadata_spaces(make_ep, pendulum_spaces):
    wide = gym.spaces.Box(-1, 1, (4,))
    with raises("episode 0, field 'observations': rows have shape (3,), but the dataset's observation space has shape (4,)"):
        Dataset([make_ep(3)], DatasetMetadata(observation_space=wide, action_space=pendulum_spaces[1]))


def test_check_env_accepts_the_env_it_was_recorded_in(full_dataset):
    full_dataset.check_env(gym.make("Pendulum-v1"))


def test_check_env_names_the_space_that_differs(make_ep, pendulum_spaces):
    cheetah_obs = gym.spaces.Box(-np.inf, np.inf, (17,), np.float64)
    rng = np.random.default_rng(0)
    episode = Episode(observations=rng.normal(size=(4, 17)), actions=rng.uniform(-1, 1, (3, 1)))
    metadata = DatasetMetadata(observation_space=cheetah_obs, action_space=gym.spaces.Box(-1, 1, (1,)))
    dataset = Dataset([episode], metadata)
    env = gym.make("Pendulum-v1")
    with raises("demos.h5: observation space has shape (17,), environment has (3,)"):
        dataset.check_env(env, source="demos.h5")
    with raises("action space low bound [-1.0] differs from the environment's [-2.0]"):
        dataset.check_env((None, env.action_space))


def test_check_env_without_stored_spaces_compares_data_shapes(state_only_dataset):
    state_only_dataset.check_env(gym.make("Pendulum-v1"))  # state-only data fits any action space
    with raises("dataset: observation rows ('observations') have shape (3,), environment's observation space has shape (2,)"):
        state_only_dataset.check_env(gym.make("MountainCarContinuous-v0"))


def test_summary_and_its_text(full_dataset):
    summary = full_dataset.summary()
    assert summary["episodes"] == 4 and summary["steps"] == 22
    assert summary["episode_length"] == {"mean": 5.5, "min": 3, "max": 8}
    assert summary["fields"]["observations"] == {"shape": [26, 3], "dtype": "float32"}
    assert summary["fields"]["jacobians"] == {"shape": [22, 1, 3], "dtype": "float64"}
    returns = full_dataset.returns()
    assert summary["return"]["mean"] == pytest.approx(returns.mean())
    assert summary["return"]["max"] == pytest.approx(returns.max())
    assert summary["metadata"]["env_id"] == "Pendulum-v1"
    text = format_summary(summary)
    for expected in ("episodes     4", "steps        22", "Pendulum-v1", "CC-BY-4.0", "latentprior collect --env",
                     "Box (1,) float32, [-2, 2]", "mean 5.5, min 3, max 8 steps"):
        assert expected in text, expected
    assert re.search(r"observations\s+26\s+\(3,\)\s+float32", text)
    assert re.search(r"noise_std\s+0\.1\n\s+expert\s+runs/sac/expert", text)


def test_summary_of_state_only_data_has_no_return(state_only_dataset):
    summary = state_only_dataset.summary()
    assert "return" not in summary
    text = format_summary(summary)
    assert "return" not in text and "unknown" in text and "gait_cycle" in text
