"""Command-conditioned experts: one policy, many single-skill experts, one dataset over a skill set."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from latentprior.cli import main
from latentprior.data import load_dataset
from latentprior.envs.tasks import command_observation
from latentprior.experts import ExpertError, load_expert
from latentprior.experts.commanded import (
    shipped_commanded,
    COMMANDED_TASKS,
    Command,
    CommandedExpert,
    SkillExpert,
    collect_skills,
    commanded_task,
    episode_skill,
    evaluate_skills,
    load_commanded,
    train_commanded,
)
from latentprior.rl import Policy, SACConfig
from latentprior.rl.networks import SquashedGaussianActor


def random_commanded(env_id: str, seed: int = 0) -> CommandedExpert:
    """An untrained command-conditioned expert: the mechanics do not depend on training."""
    task = COMMANDED_TASKS[env_id]
    env = task.make_env()
    torch.manual_seed(seed)
    actor = SquashedGaussianActor(env.observation_space.shape[0], env.action_space.low, env.action_space.high, hidden=(16,))
    env.close()
    return CommandedExpert(Policy(actor, env.observation_space, env.action_space, algo="sac"), task, {"source": "test"})


def step_at_velocity(env: gym.Env, velocity) -> dict:
    """One zero-action step after setting the torso's planar velocity."""
    env.reset(seed=0)
    data = env.unwrapped.data
    qpos, qvel = data.qpos.copy(), data.qvel.copy()
    qvel[: len(velocity)] = velocity
    env.unwrapped.set_state(qpos, qvel)
    _, reward, *_, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    return {"reward": reward, **info}


def test_skill_reward_peaks_at_the_commanded_velocity():
    cheetah = COMMANDED_TASKS["HalfCheetah-v5"]
    env = cheetah.make_env(Command(2.0))
    infos = {v: step_at_velocity(env, [v]) for v in (0.0, 1.0, 2.0, 3.0, 4.0)}
    for info in infos.values():
        assert info["task_reward"] == pytest.approx(np.exp(-cheetah.sharpness * abs(info["velocity"][0] - 2.0)))
    assert max(infos, key=lambda v: infos[v]["task_reward"]) == 2.0
    env.close()

    ant = COMMANDED_TASKS["Ant-v5"]
    env = ant.make_env(Command(1.5, math.pi / 2))
    infos = {deg: step_at_velocity(env, 1.5 * np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg))])) for deg in (0, 90, 180, 270)}
    assert max(infos, key=lambda d: infos[d]["task_reward"]) == 90
    # A skill's reward is its tracking reward alone, the score of one-shot imitation.
    assert all(info["reward"] == info["task_reward"] for info in infos.values())
    env.close()
    # Training shapes it: Ant keeps its healthy reward, so a policy far from its command is not paid to fall.
    env = ant.make_env()
    info = step_at_velocity(env, [0.0, 0.0])
    assert info["reward"] == pytest.approx(info["task_reward"] + info["reward_survive"] + info["reward_ctrl"])
    assert info["reward_survive"] == ant.env_kwargs["healthy_reward"] > 0
    env.close()


def test_training_env_samples_commands_in_the_range_and_observes_them():
    for env_id, base_dim in (("HalfCheetah-v5", 17), ("Ant-v5", 27)):
        task = COMMANDED_TASKS[env_id]
        env = task.make_env()
        assert env.observation_space.shape == (base_dim + 3,)
        commands = []
        for seed in range(30):
            obs, _ = env.reset(seed=seed)
            np.testing.assert_allclose(obs[-3:], command_observation(env.command), atol=1e-6)
            commands.append(env.command.copy())
        commands = np.array(commands)
        if env_id == "HalfCheetah-v5":  # a signed speed along x: forward and backward
            assert (commands[:, 1] == 0).all() and commands[:, 0].min() < 0 < commands[:, 0].max()
            assert task.speed_range[0] <= commands[:, 0].min() and commands[:, 0].max() <= task.speed_range[1]
        else:
            speeds = np.linalg.norm(commands, axis=1)
            assert (task.speed_range[0] <= speeds).all() and (speeds <= task.speed_range[1]).all()
            assert commands[:, 1].min() < 0 < commands[:, 1].max()  # headings on both sides of +x
        env.close()


def test_skill_expert_appends_its_command_and_differentiates_through_the_state():
    expert = random_commanded("Ant-v5")
    skill = expert.skill(Command(1.5, math.radians(45)))
    assert skill.observation_space.shape == (27,) and skill.name == "heading45_speed1.5"
    obs = np.random.default_rng(0).normal(size=(4, 27))
    full = np.concatenate([obs, np.tile([1.5, math.cos(math.pi / 4), math.sin(math.pi / 4)], (4, 1))], axis=1)
    np.testing.assert_allclose(skill.mean_action(obs), expert.mean_action(full), atol=1e-6)
    jacobian = skill.jacobian(obs)
    assert jacobian.shape == (4, 8, 27) and jacobian.abs().sum() > 0
    np.testing.assert_allclose(jacobian.numpy(), expert.jacobian(full)[:, :, :27].numpy(), atol=1e-5)

    backward = random_commanded("HalfCheetah-v5").skill(-2.0)
    assert backward.command == Command(2.0, math.pi) and backward.name == "heading180_speed2"
    np.testing.assert_allclose(backward._features.numpy(), [2.0, -1.0, 0.0], atol=1e-6)


def test_skill_sets_are_named_and_held_out_commands_lie_between_the_training_ones():
    ant = commanded_task("Ant-v5")
    train, held_out = ant.skills("train"), ant.skills("held_out")
    assert len(train) == 16 and len(held_out) == 8 and not set(train) & set(held_out)
    headings = sorted({round(math.degrees(c.heading)) % 360 for c in train.values()})
    assert headings == list(range(0, 360, 45)) and sorted({c.speed for c in train.values()}) == [0.75, 1.5]
    for command in held_out.values():
        offset = math.degrees(command.heading) % 45
        assert offset == pytest.approx(22.5) and 0.75 < command.speed < 1.5

    cheetah = commanded_task("HalfCheetah-v5")
    signed = lambda commands: sorted(c.speed * round(math.cos(c.heading)) for c in commands.values())  # noqa: E731
    train_speeds, held_out_speeds = signed(cheetah.skills("train")), signed(cheetah.skills("held_out"))
    assert min(train_speeds) < 0 < max(train_speeds)
    for v in held_out_speeds:
        assert v not in train_speeds and min(train_speeds) < v < max(train_speeds)
    skills = random_commanded("HalfCheetah-v5").skills("held_out")
    assert list(skills) == list(cheetah.skills("held_out")) and all(isinstance(s, SkillExpert) for s in skills.values())


def test_save_load_round_trip(tmp_path):
    expert = random_commanded("Ant-v5")
    expert.save(tmp_path / "commanded")
    loaded = load_expert(tmp_path / "commanded", env=expert.task.make_env())
    assert isinstance(loaded, CommandedExpert) and loaded.task.to_dict() == expert.task.to_dict()
    assert loaded.info == {"source": "test"}
    obs = np.random.default_rng(1).normal(size=(3, 30))
    np.testing.assert_array_equal(loaded.mean_action(obs), expert.mean_action(obs))

    skill = expert.skills("held_out")["heading112.5_speed1.125"]
    skill.save(tmp_path / "skill")
    loaded_skill = load_expert(tmp_path / "skill", env=gym.make("Ant-v5", include_cfrc_ext_in_observation=False))
    assert isinstance(loaded_skill, SkillExpert) and loaded_skill.command == skill.command
    np.testing.assert_array_equal(loaded_skill.mean_action(obs[:, :27]), skill.mean_action(obs[:, :27]))


def test_bad_input_is_a_clear_error(tmp_path):
    cheetah = random_commanded("HalfCheetah-v5")
    with pytest.raises(ExpertError, match="moves along x only"):
        cheetah.skill(Command(1.0, math.pi / 2))
    with pytest.raises(ExpertError, match=r"outside the training range -2.5 .. 4.5 m/s"):
        cheetah.skill(10.0)
    with pytest.raises(ExpertError, match=r"no skill set 'nope'; the sets are \['held_out', 'train'\]"):
        cheetah.skills("nope")
    with pytest.raises(ExpertError, match="no command-conditioned task for 'Hopper-v5'"):
        commanded_task("Hopper-v5")
    with pytest.raises(ExpertError, match="finite"):
        Command(float("nan"))

    cheetah.save(tmp_path / "c")
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    del config["task"]["speed_range"]
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExpertError, match=r"c/config.json: field 'task': missing field\(s\) speed_range"):
        load_expert(tmp_path / "c")

    cheetah.skill(1.0).save(tmp_path / "s")
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    config["command"] = {"speed": "fast"}
    (tmp_path / "s" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExpertError, match=r"s/config.json: field 'command'"):
        load_expert(tmp_path / "s")

    cheetah.policy.save(tmp_path / "plain")
    with pytest.raises(ExpertError, match="not a command-conditioned one"):
        load_commanded(tmp_path / "plain")


def test_collection_over_skills_writes_one_episode_set_per_skill(tmp_path):
    expert = random_commanded("HalfCheetah-v5")
    result = collect_skills(
        expert, [Command(1.0), Command(-1.0)], episodes=2, max_episode_steps=10, num_envs=2, jacobians=True,
        out=tmp_path / "skills.h5", progress=False,
    )
    dataset = load_dataset(result.path, env=gym.make("HalfCheetah-v5"))
    assert len(dataset) == result.episodes == 4 and result.steps == 40
    extra = dataset.metadata.extra
    assert extra["noise_std"] == 0.1 and extra["expert_kind"] == "commanded_skill"
    assert [(s["name"], s["first_episode"], s["episodes"]) for s in extra["skills"]] == [
        ("heading0_speed1", 0, 2), ("heading180_speed1", 2, 2)
    ]
    dt = gym.make("HalfCheetah-v5").unwrapped.dt
    for i, episode in enumerate(dataset):
        name, command, task = episode_skill(dataset.metadata, i)
        assert name == ["heading0_speed1", "heading180_speed1"][i // 2]
        # DART-style: noisy executed actions, the skill expert's mean actions as targets.
        states = episode.observations[:-1]
        np.testing.assert_allclose(episode.expert_actions, expert.skill(command).mean_action(states), atol=1e-5)
        assert not np.allclose(episode.actions, episode.expert_actions)
        assert episode.jacobians.shape == (10, 6, 17) and episode.qpos.shape == (11, 9)
        # Rewards are the skill's own task: tracking its command.
        vx = np.diff(episode.qpos[:, 0]) / dt
        np.testing.assert_allclose(episode.rewards, np.exp(-task.sharpness * np.abs(vx - command.velocity[0])), atol=1e-4)
    assert episode_skill(load_dataset(result.path).metadata, 4) is None


def test_train_commanded_saves_an_expert_and_a_skill_report(tmp_path):
    config = SACConfig(total_steps=200, learning_starts=100, batch_size=32, hidden_sizes=(32, 32), eval_episodes=0,
                       tensorboard=False, checkpoint_every=0, log_every=100, device="cpu")
    expert = train_commanded("HalfCheetah-v5", config, tmp_path / "hc", progress=False, evaluate_steps=5)
    assert {"config.json", "policy", "run", "skills.json"} <= {p.name for p in (tmp_path / "hc").iterdir()}
    report = json.loads((tmp_path / "hc" / "skills.json").read_text())
    assert set(report) == {"train", "held_out"} and len(report["train"]) == 6
    for skill in report["train"].values():
        assert skill["length"] == 5 and 0 < skill["task_reward_mean"] <= 1 and skill["velocity_error"] >= 0
    loaded = load_expert(tmp_path / "hc")
    assert isinstance(loaded, CommandedExpert) and loaded.info["steps"] == 200 and loaded.info["algo"] == "sac"
    obs = np.random.default_rng(0).normal(size=(2, 20))
    np.testing.assert_allclose(loaded.mean_action(obs), expert.mean_action(obs), atol=1e-6)


def test_command_line_trains_then_collects_a_skill_set(tmp_path, capsys):
    out = tmp_path / "ant"
    args = ["experts", "train-commanded", "--env", "Ant-v5", "--steps", "60", "--out", str(out), "--eval-steps", "3",
            "--device", "cpu", "--quiet", "--set", "learning_starts=30", "--set", "batch_size=16", "--set", "eval_episodes=0",
            "--set", "tensorboard=false", "--set", "hidden_sizes=16,16", "--set", "checkpoint_every=0"]
    assert main(args) == 0
    assert "command-conditioned expert for Ant-v5" in capsys.readouterr().out
    data = tmp_path / "held_out.h5"
    assert main(["data", "collect", "--expert", str(out), "--env", "Ant-v5", "--skills", "held_out", "--episodes", "1",
                 "--max-episode-steps", "4", "--num-envs", "1", "--out", str(data), "--quiet"]) == 0
    dataset = load_dataset(data)
    assert len(dataset) == 8 and dataset.metadata.env_kwargs == COMMANDED_TASKS["Ant-v5"].env_kwargs
    assert dataset[0].observations.shape == (5, 27)
    assert [s["name"] for s in dataset.metadata.extra["skills"]] == list(COMMANDED_TASKS["Ant-v5"].skills("held_out"))
    assert main(["data", "collect", "--expert", str(out), "--env", "HalfCheetah-v5", "--skills", "train",
                 "--out", str(tmp_path / "x.h5")]) == 2
    assert "skills are for Ant-v5" in capsys.readouterr().err
    assert main(["data", "collect", "--expert", str(out), "--env", "Ant-v5", "--out", str(tmp_path / "x.h5")]) == 2
    assert "collect its skills with --skills" in capsys.readouterr().err


def test_shipped_halfcheetah_expert_tracks_its_skills():
    folder = shipped_commanded("HalfCheetah-v5")
    assert folder is not None and shipped_commanded("Walker2d-v5") is None
    expert = load_commanded(folder)
    report = evaluate_skills(expert, [2.0, Command(1.0, math.pi)], max_episode_steps=300)
    # Forward at 2 m/s and backward at 1 m/s, each within 0.3 m/s over a 300-step episode.
    assert all(skill["velocity_error"] < 0.3 for skill in report.values()), report
    assert json.loads((folder / "training.json").read_text())["metadata"]["command"].startswith("latentprior experts")


def test_shipped_ant_expert_walks_in_every_commanded_direction():
    expert = load_commanded(shipped_commanded("Ant-v5"))
    commands = [Command(0.75, math.radians(90)), Command(1.5, math.radians(225))]
    report = evaluate_skills(expert, commands, max_episode_steps=300)
    # Sideways at 0.75 m/s and diagonally backwards at 1.5 m/s, each within 0.4 m/s over 300 steps.
    assert all(skill["velocity_error"] < 0.4 for skill in report.values()), report


def test_command_line_collects_the_shipped_experts_skills(tmp_path, capsys):
    data = tmp_path / "skills.h5"
    assert main(["data", "collect", "--expert", "default", "--env", "HalfCheetah-v5", "--skills", "held_out",
                 "--episodes", "1", "--max-episode-steps", "5", "--num-envs", "1", "--out", str(data), "--quiet"]) == 0
    assert len(load_dataset(data)) == len(COMMANDED_TASKS["HalfCheetah-v5"].skills("held_out"))
    assert main(["data", "collect", "--expert", "default", "--env", "Walker2d-v5", "--skills", "train",
                 "--out", str(tmp_path / "x.h5")]) == 2
    assert "no command-conditioned expert ships for Walker2d-v5" in capsys.readouterr().err
