import gymnasium as gym
import numpy as np
import pytest

from latentprior.envs.tasks import ChangingTargetSpeed, GoToTarget


def _ant(**kwargs) -> GoToTarget:
    return GoToTarget(gym.make("Ant-v5", include_cfrc_ext_in_observation=False), **kwargs)


def _teleport(env: gym.Env, xy: np.ndarray, yaw: float = 0.0) -> None:
    base = env.unwrapped
    qpos, qvel = base.data.qpos.copy(), np.zeros_like(base.data.qvel)
    qpos[:2] = xy
    qpos[3:7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
    base.set_state(qpos, qvel)


def test_go_to_target_observes_the_target_and_rewards_only_near_it():
    env = _ant(distance_range=(2.0, 2.0), radius=0.5, hold_steps=3)
    obs, info = env.reset(seed=0)
    assert obs.shape == (27 + 2,)
    assert np.linalg.norm(info["target"] - env.unwrapped.data.qpos[:2]) == pytest.approx(2.0)
    _, reward, *_ = env.step(np.zeros(8, dtype=np.float32))
    assert reward == 0.0
    target = env.target.copy()
    for step in range(3):
        _teleport(env, target)
        _, reward, _, _, info = env.step(np.zeros(8, dtype=np.float32))
        assert reward == 1.0 and info["task_reward"] == 1.0
    # Reached for hold_steps steps: the target has moved to a new point 2 m from the robot.
    assert info["targets_reached"] == 1
    assert not np.allclose(env.target, target)
    assert np.linalg.norm(env.target - env.unwrapped.data.qpos[:2]) == pytest.approx(2.0)
    env.close()


def test_go_to_target_offset_is_in_the_torso_frame():
    env = _ant(distance_range=(2.0, 2.0))
    env.reset(seed=1)
    env.target = np.array([0.0, 1.0])
    _teleport(env, np.zeros(2), yaw=np.pi / 2)  # facing +y: the target is straight ahead
    obs = env._observe(np.zeros(27))
    np.testing.assert_allclose(obs[-2:], [1.0, 0.0], atol=1e-9)
    world = GoToTarget(gym.make("Ant-v5", include_cfrc_ext_in_observation=False), egocentric=False)
    world.reset(seed=1)
    world.target = np.array([0.0, 1.0])
    _teleport(world, np.zeros(2), yaw=np.pi / 2)
    np.testing.assert_allclose(world._observe(np.zeros(27))[-2:], [0.0, 1.0], atol=1e-9)
    env.close()
    world.close()


def test_go_to_target_rejects_a_robot_that_moves_along_x_only():
    with pytest.raises(ValueError, match="moves in the plane"):
        GoToTarget(gym.make("HalfCheetah-v5"))


def test_changing_target_speed_rewards_a_gaussian_around_a_target_that_changes():
    env = ChangingTargetSpeed(gym.make("HalfCheetah-v5"), speed_range=(1.0, 4.0), change_every=(5, 5), reward_std=0.5)
    obs, info = env.reset(seed=0)
    assert obs.shape == (17 + 1,) and obs[-1] == info["target_speed"]
    targets = []
    for _ in range(12):
        obs, reward, _, _, info = env.step(env.action_space.sample())
        targets.append(info["target_speed"])
        assert 1.0 <= info["target_speed"] <= 4.0
        assert reward == pytest.approx(np.exp(-0.5 * ((info["x_velocity"] - info["target_speed"]) / 0.5) ** 2))
    # A new target every 5 steps, constant in between.
    assert len(set(targets[:5])) == 1 and targets[5] != targets[4] and targets[10] != targets[9]
    # Seeded resets repeat the targets.
    assert env.reset(seed=0)[1]["target_speed"] == targets[0]
    env.close()


def test_changing_target_speed_rejects_a_sideways_direction_for_a_robot_that_moves_along_x():
    with pytest.raises(ValueError, match="along x only"):
        ChangingTargetSpeed(gym.make("HalfCheetah-v5"), direction=np.pi / 2)
