"""The command line as a user meets it: verbs run, bad input is one clear line and exit status 2."""

import numpy as np
import pytest

from latentprior.cli import main
from latentprior.data import Dataset, DatasetMetadata, Episode, save_dataset


@pytest.fixture
def demos(tmp_path):
    import gymnasium as gym

    env = gym.make("HalfCheetah-v5")
    t = np.arange(101)[:, None]
    actions = np.clip(0.8 * np.sin(2 * np.pi * t[:-1] / 10 + np.arange(6)), -1, 1).astype(np.float32)
    episode = Episode(observations=np.random.default_rng(0).normal(size=(101, 17)), actions=actions, rewards=np.ones(100))
    path = tmp_path / "demos.h5"
    save_dataset(Dataset([episode], DatasetMetadata("HalfCheetah-v5", env.observation_space, env.action_space)), path)
    return path


def test_data_info_prints_the_summary(demos, capsys):
    assert main(["data", "info", str(demos)]) == 0
    out = capsys.readouterr().out
    assert "HalfCheetah-v5" in out and "episodes     1" in out and "actions" in out


def test_a_missing_file_is_one_clear_line(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "nope.h5")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latentprior: error:") and "nope.h5" in err and "Traceback" not in err


def test_fit_action_prior_writes_artifact_plot_and_report(demos, tmp_path, capsys):
    out = tmp_path / "prior"
    assert main(["fit", "action-prior", "--data", str(demos), "--out", str(out), "--epochs", "50", "--quiet"]) == 0
    assert {"config.json", "autoencoder.safetensors", "explained_variance.png", "report.md"} <= {p.name for p in out.iterdir()}
    assert "reconstruction MSE per dimension" in capsys.readouterr().out


def test_lap_lists_variants_and_rejects_unknown_ones(tmp_path, capsys):
    assert main(["lap", "--list-variants"]) == 0
    assert "ppo+latent+style" in capsys.readouterr().out
    assert main(["lap", "--out", str(tmp_path / "x"), "--variant", "nope"]) == 2
    assert "known variants" in capsys.readouterr().err


def test_unknown_config_field_is_named(tmp_path, capsys):
    assert main(["train", "--env", "Pendulum-v1", "--algo", "ppo", "--steps", "10", "--out", str(tmp_path / "r"), "--set", "nonsense=1"]) == 2
    assert "no field(s) nonsense" in capsys.readouterr().err


def test_train_passes_environment_keyword_arguments_read_as_json(tmp_path):
    import json

    out = tmp_path / "r"
    assert main(["train", "--env", "Pendulum-v1", "--algo", "ppo", "--steps", "64", "--out", str(out), "--quiet",
                 "--set", "n_steps=64", "--set", "batch_size=64", "--set", "n_epochs=1", "--set", "eval_episodes=1",
                 "--env-kwarg", "g=5", "--env-kwarg", "max_episode_steps=20", "--env-kwarg", "render_mode=rgb_array"]) == 0
    recorded = json.loads((out / "config.json").read_text())["metadata"]["env_kwargs"]
    assert recorded == {"g": 5, "max_episode_steps": 20, "render_mode": "rgb_array"}


def test_data_collect_rolls_a_set_of_experts_into_one_dataset(tmp_path, shared_data):
    from latentprior.data import load_dataset

    zoo = shared_data / "sb3_zoo" / "sac_HalfCheetah-v3.zip"
    out = tmp_path / "set.h5"
    assert main(["data", "collect", "--expert", "default", "--expert", str(zoo), "--env", "HalfCheetah-v5",
                 "--episodes", "2", "--max-episode-steps", "5", "--num-envs", "1", "--out", str(out), "--quiet"]) == 0
    dataset = load_dataset(out)
    skills = dataset.metadata.extra["skills"]
    assert len(dataset) == 4 and [s["name"] for s in skills] == ["default", "sac_HalfCheetah-v3"]
    assert [s["first_episode"] for s in skills] == [0, 2] and skills[1]["expert"] == str(zoo)
    assert dataset[0].expert_actions is not None
    assert main(["data", "collect", "--expert", "default", "--expert", "default", "--env", "HalfCheetah-v5",
                 "--skills", "train", "--out", str(tmp_path / "x.h5")]) == 2


def test_fit_low_level_offers_every_way_to_take_the_latent_targets():
    from latentprior.cli import build_parser
    from latentprior.experiments.low_level import LATENT_TARGETS

    args = build_parser().parse_args(["fit", "low-level", "--data", "d.h5", "--vae", "v", "--out", "o", "--bc"])
    assert args.latent_targets == LATENT_TARGETS[0] == "posterior"
    for choice in LATENT_TARGETS:
        parsed = build_parser().parse_args(["fit", "low-level", "--data", "d.h5", "--vae", "v", "--out", "o", "--bc",
                                            "--latent-targets", choice])
        assert parsed.latent_targets == choice
