"""experiments.train / evaluate: an env id in, a run directory (and a video) out."""

import json

import pytest

from latentprior.experiments.train import evaluate, make_config, train
from latentprior.io import LatentPriorError


def test_train_then_evaluate_with_video(tmp_path):
    overrides = {"n_steps": "128", "batch_size": "64", "n_epochs": "1", "eval_episodes": "2", "hidden_sizes": "16,16"}
    result = train("InvertedPendulum-v5", "ppo", 256, tmp_path / "run", config_overrides=overrides, progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["algo"] == "ppo" and saved["metadata"]["env_id"] == "InvertedPendulum-v5"
    assert saved["config"]["hidden_sizes"] == [16, 16] and saved["config"]["total_steps"] == 256
    assert result.paths["metrics"].is_file() and any(result.paths["tensorboard"].iterdir())

    summary = evaluate(tmp_path / "run", episodes=3, video=tmp_path / "episode.mp4")
    assert summary["episodes"] == 3 and len(summary["returns"]) == 3
    assert (tmp_path / "episode.mp4").stat().st_size > 1000
    assert json.loads((tmp_path / "run" / "evaluation.json").read_text())["return_mean"] == summary["return_mean"]


def test_config_overrides_are_checked_and_typed():
    config = make_config("sac", {"learning_rate": "1e-3", "target_entropy": "none", "autotune_ent_coef": "false"}, total_steps=5)
    assert config.learning_rate == 1e-3 and config.target_entropy is None and config.autotune_ent_coef is False
    assert make_config("ppo", {"total_steps": "1e6"}).total_steps == 1_000_000
    with pytest.raises(LatentPriorError, match="no field.*learning_rat\\b"):
        make_config("ppo", {"learning_rat": 1})
    with pytest.raises(LatentPriorError, match="not a valid"):
        make_config("ppo", {"normalize_obs": "maybe"})
    with pytest.raises(LatentPriorError, match="unknown algorithm"):
        make_config("dqn")


def test_environment_keyword_arguments_are_recorded_and_reused_by_evaluate(tmp_path):
    overrides = {"n_steps": "64", "batch_size": "64", "n_epochs": "1", "eval_episodes": "1", "hidden_sizes": "8"}
    train("Pendulum-v1", "ppo", 64, tmp_path / "run", config_overrides=overrides, progress=False,
          env_kwargs={"max_episode_steps": 37, "g": 5.0})
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["metadata"]["env_kwargs"] == {"max_episode_steps": 37, "g": 5.0}
    summary = evaluate(tmp_path / "run", episodes=2)
    assert summary["length_mean"] == 37  # the 200-step default would mean the kwargs were dropped
