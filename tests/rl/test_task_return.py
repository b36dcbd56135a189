import functools

import gymnasium as gym
import numpy as np

from latentprior.envs.make import make_vec_env
from latentprior.envs.style_reward import StyleReward
from latentprior.rl import evaluate_policy


class Zero:
    def act(self, obs, deterministic=True):
        return np.zeros((len(obs), 6), dtype=np.float32)


def test_evaluation_sums_the_task_reward_when_the_environment_reports_one():
    q = 0.4 * np.sin(2 * np.pi * np.arange(40)[:, None] / 7 + np.arange(6))
    styled = [functools.partial(gym.wrappers.TimeLimit, max_episode_steps=30), functools.partial(StyleReward, reference_q=q)]
    plain = make_vec_env("HalfCheetah-v5", 2, 0, wrappers=styled[:1])
    shaped = make_vec_env("HalfCheetah-v5", 2, 0, wrappers=styled)
    task = evaluate_policy(Zero(), plain, episodes=3, seed=0)
    both = evaluate_policy(Zero(), shaped, episodes=3, seed=0)
    assert task.task_returns is None and "eval/task_return_mean" not in task.metrics()
    # Same initial states and actions: the task return under the style wrapper is the plain return,
    # the last step of each episode (reported in final_info) included.
    np.testing.assert_allclose(sorted(both.task_returns), sorted(task.returns), rtol=1e-6)
    assert not np.allclose(sorted(both.returns), sorted(task.returns))
    assert both.metrics()["eval/task_return_mean"] == np.mean(both.task_returns)
