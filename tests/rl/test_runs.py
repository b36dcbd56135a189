"""Run directories: save/load round trip, resume after an interruption, determinism, config checks."""

import csv
import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from latentprior.envs.make import make_vec_env
from latentprior.io import ArtifactError, LatentPriorError
from latentprior.rl import load_policy, ppo, sac
from latentprior.rl.checkpoint import latest_checkpoint, load_checkpoint


class Interrupt(Exception):
    """Stands for a killed process."""


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _learning_columns(rows):
    """Everything but wall-clock measurements, which differ between identical runs."""
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_saved_policy_acts_like_the_trained_one(tmp_path, env_fn, tiny_ppo, tiny_sac, algo):
    learner, config = (ppo, tiny_ppo) if algo == "ppo" else (sac, tiny_sac)
    result = learner.train(env_fn("Pendulum-v1"), config, tmp_path, progress=False)
    loaded = load_policy(tmp_path)
    obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.act(obs), result.policy.act(obs))
    np.testing.assert_allclose(loaded.act(obs[0]), result.policy.act(obs)[0], rtol=1e-5)  # batch of one
    torch.manual_seed(1)
    sampled = loaded.act(obs, deterministic=False)
    torch.manual_seed(1)
    np.testing.assert_array_equal(sampled, result.policy.act(obs, deterministic=False))
    assert np.all(np.abs(sampled) <= 2.0)
    assert loaded.algo == algo and result.paths["policy"].is_dir() and result.paths["eval"].is_file()
    # mean_action is differentiable in raw observations (experts need its Jacobian).
    jac = torch.autograd.functional.jacobian(loaded.mean_action, torch.as_tensor(obs[:1]))
    assert jac.shape == (1, 1, 1, 3) and torch.isfinite(jac).all()


def test_sac_run_continues_after_an_interruption(tmp_path, env_fn, tiny_sac):
    calls = []

    def crash_at_450(obs, actions, step, episode_start):
        calls.append(step)
        if step == 450:
            raise Interrupt
        return actions

    with pytest.raises(Interrupt):
        sac.train(env_fn("Pendulum-v1"), tiny_sac, tmp_path, explore=crash_at_450, progress=False)
    assert latest_checkpoint(tmp_path).name.endswith("400")
    assert not (tmp_path / "policy").exists()
    # A crashed run still has a loadable policy: its latest checkpoint's.
    assert load_policy(tmp_path).act(np.zeros(3, np.float32)).shape == (1,)

    result = sac.train(env_fn("Pendulum-v1"), tiny_sac, tmp_path, progress=False)
    assert result.steps == 600
    steps = [int(r["step"]) for r in _rows(tmp_path)]
    assert steps == [100, 200, 300, 400, 500, 600], "rows past the checkpoint must be dropped, none repeated"
    assert result.metrics["train/n_updates"] == 500  # every step after learning_starts, once
    state, tensors = load_checkpoint(tmp_path)
    assert state["replay"]["size"] == 600 and tensors["replay"]["data"].shape[0] == 600

    # Rerunning a finished run returns it as it is.
    again = sac.train(env_fn("Pendulum-v1"), tiny_sac, tmp_path, progress=False)
    obs = np.zeros((4, 3), np.float32)
    np.testing.assert_array_equal(again.policy.act(obs), result.policy.act(obs))
    assert len(_rows(tmp_path)) == 6


def test_ppo_run_continues_after_an_interruption(tmp_path, env_fn, tiny_ppo):
    updates_per_rollout = tiny_ppo.n_epochs * tiny_ppo.n_steps // tiny_ppo.batch_size
    calls = []

    def crash_in_third_rollout(batch, dist):
        calls.append(1)
        if len(calls) > 2 * updates_per_rollout:
            raise Interrupt
        return batch.obs.new_zeros(()), {}

    with pytest.raises(Interrupt):
        ppo.train(env_fn("Pendulum-v1"), tiny_ppo, tmp_path, extra_loss=crash_in_third_rollout, progress=False)
    assert latest_checkpoint(tmp_path).name.endswith("512")
    result = ppo.train(env_fn("Pendulum-v1"), tiny_ppo, tmp_path, progress=False)
    assert [int(r["step"]) for r in _rows(tmp_path)] == [256, 512, 768, 1024]
    assert result.metrics["train/n_updates"] == 4 * updates_per_rollout
    # Extending total_steps continues the finished run.
    longer = dataclasses.replace(tiny_ppo, total_steps=1536)
    assert ppo.train(env_fn("Pendulum-v1"), longer, tmp_path, progress=False).steps == 1536


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_same_seed_gives_identical_metrics(tmp_path, env_fn, tiny_ppo, tiny_sac, algo):
    learner, config = (ppo, tiny_ppo) if algo == "ppo" else (sac, tiny_sac)
    runs = [learner.train(env_fn("Pendulum-v1"), config, tmp_path / str(i), progress=False) for i in range(2)]
    first, second = (_learning_columns(_rows(tmp_path / str(i))) for i in range(2))
    assert first == second
    other = learner.train(env_fn("Pendulum-v1"), dataclasses.replace(config, seed=1), tmp_path / "other", progress=False)
    assert _learning_columns(_rows(tmp_path / "other")) != first
    assert runs[0].metrics["eval/return_mean"] == runs[1].metrics["eval/return_mean"] != other.metrics["eval/return_mean"]


def test_continuing_with_other_settings_is_refused(tmp_path, env_fn, tiny_ppo):
    ppo.train(env_fn("Pendulum-v1"), tiny_ppo, tmp_path, progress=False)
    with pytest.raises(LatentPriorError, match="learning_rate"):
        ppo.train(env_fn("Pendulum-v1"), dataclasses.replace(tiny_ppo, learning_rate=1e-3), tmp_path, progress=False)
    with pytest.raises(LatentPriorError, match="'ppo' run"):
        sac.train(env_fn("Pendulum-v1"), None, tmp_path, progress=False)


def test_bad_settings_fail_early_with_the_numbers(tmp_path, env_fn, tiny_ppo, tiny_sac):
    with pytest.raises(LatentPriorError, match="batch_size 4096 exceeds"):
        ppo.train(env_fn("Pendulum-v1"), dataclasses.replace(tiny_ppo, batch_size=4096), tmp_path, progress=False)
    with pytest.raises(LatentPriorError, match="tau must be in"):
        sac.train(env_fn("Pendulum-v1"), dataclasses.replace(tiny_sac, tau=2.0), tmp_path, progress=False)
    with pytest.raises(ArtifactError, match="no policy found"):
        load_policy(tmp_path / "nothing-here")


class _FallsAtTheTimeLimit(gym.Wrapper):
    """Pendulum whose every episode terminates on the very step its time limit truncates it."""

    def __init__(self, env, limit=50):
        super().__init__(env)
        self.limit, self.t = limit, 0

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, _, _, info = self.env.step(action)
        self.t += 1
        end = self.t >= self.limit
        return obs, reward, end, end, info


def test_ppo_handles_termination_on_the_time_limit_step(tmp_path, tiny_ppo):
    """Terminated and truncated together is a terminal state (no bootstrap), not a crash."""
    def env_fn(num_envs, seed):
        return make_vec_env(lambda: _FallsAtTheTimeLimit(gym.make("Pendulum-v1")), num_envs=num_envs, seed=seed)

    result = ppo.train(env_fn, dataclasses.replace(tiny_ppo, total_steps=512), tmp_path / "run")
    assert np.isfinite(result.metrics["eval/return_mean"])


def test_ppo_target_kl_stops_the_epochs_early(tmp_path, env_fn, tiny_ppo):
    full = ppo.train(env_fn("Pendulum-v1"), dataclasses.replace(tiny_ppo, total_steps=512, eval_every=0), tmp_path / "a")
    early = ppo.train(env_fn("Pendulum-v1"), dataclasses.replace(tiny_ppo, total_steps=512, eval_every=0, target_kl=1e-9),
                      tmp_path / "b")
    # 2 rollouts of 256 steps, 2 epochs of 4 minibatches each: 16 updates without a KL limit.
    assert full.metrics["train/n_updates"] == 16
    assert early.metrics["train/n_updates"] < 16
    with pytest.raises(LatentPriorError, match="target_kl"):
        ppo.train(env_fn("Pendulum-v1"), dataclasses.replace(tiny_ppo, target_kl=0.0), tmp_path / "c")
