import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from latentprior.envs.latent_space import LatentSpaceWrapper, OptionsWrapper, observed_latent_history
from latentprior.envs.make import make_vec_env
from latentprior.envs.reenactment import LowLevelConfig
from latentprior.experiments.low_level import LowLevelPolicy
from latentprior.io import ArtifactError
from latentprior.latent.lsp import LatentSubspace, LSPError
from latentprior.rl import Policy, SACConfig, sac
from latentprior.rl.networks import SquashedGaussianActor

ENV_ID, LATENT_DIM = "HalfCheetah-v5", 4


class CountSteps(gym.Wrapper):
    """Counts the environment steps taken through it and remembers the last action."""

    def __init__(self, env):
        super().__init__(env)
        self.steps, self.last_action = 0, None

    def step(self, action):
        self.steps, self.last_action = self.steps + 1, action
        return self.env.step(action)


@pytest.fixture(scope="module")
def low_level() -> LowLevelPolicy:
    """An untrained low-level policy: the wrapper's mechanics do not depend on its weights."""
    env = gym.make(ENV_ID)
    space = env.observation_space
    observation_space = gym.spaces.Box(
        np.concatenate([space.low, -np.ones(LATENT_DIM)]), np.concatenate([space.high, np.ones(LATENT_DIM)]), dtype=space.dtype
    )
    torch.manual_seed(0)
    actor = SquashedGaussianActor(observation_space.shape[0], env.action_space.low, env.action_space.high, (32, 32))
    env.close()
    return LowLevelPolicy(Policy(actor, observation_space, env.action_space), LowLevelConfig(), LATENT_DIM, "0" * 16, ENV_ID)


def test_the_action_space_is_the_latent_box_and_each_latent_runs_the_low_level_policy(low_level):
    counted = CountSteps(gym.make(ENV_ID))
    env = LatentSpaceWrapper(counted, low_level, steps_per_action=3)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (LATENT_DIM,), np.float32)
    assert env.observation_space == counted.observation_space
    obs, _ = env.reset(seed=0)
    assert env.latent_history.shape == (0, LATENT_DIM) and env.latent_context(8).shape == (1, 0, LATENT_DIM)

    z = np.array([0.5, -0.5, 2.0, -3.0], np.float32)
    expected_first = low_level.act(obs, np.clip(z, -1, 1))
    obs, reward, terminated, truncated, info = env.step(z)
    assert counted.steps == 3 and info["low_level_steps"] == 3
    np.testing.assert_array_equal(info["latent"], [0.5, -0.5, 1.0, -1.0])  # clipped to the box
    assert np.isfinite(reward) and not (terminated or truncated)
    env.step(np.zeros(LATENT_DIM))
    assert counted.steps == 6
    np.testing.assert_array_equal(env.latent_history, [[0.5, -0.5, 1.0, -1.0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(env.latent_context(1), [[[0, 0, 0, 0]]])
    env.reset(seed=1)
    assert env.latent_history.shape == (0, LATENT_DIM)

    # The first low-level action is the policy's for the task's observation and the latent target.
    again = LatentSpaceWrapper(CountSteps(gym.make(ENV_ID)), low_level, steps_per_action=1)
    again.reset(seed=0)
    again.step(z)
    np.testing.assert_allclose(again.env.last_action, expected_first, atol=1e-6)
    env.close()
    again.close()


def test_a_subspace_acts_in_some_latent_dimensions_and_holds_the_others(low_level):
    subspace = LatentSubspace((1, 3), (0.1, 0.2, -0.3, 0.4))
    env = LatentSpaceWrapper(gym.make(ENV_ID), low_level, observe_latents=2, subspace=subspace)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32) and env.latent_dim == 2
    assert env.observation_space.shape == (17 + 2 * 3,)
    obs, _ = env.reset(seed=0)
    expected = low_level.act(obs[:17], np.array([0.1, 0.5, -0.3, -1.0], np.float32))
    again = LatentSpaceWrapper(CountSteps(gym.make(ENV_ID)), low_level, subspace=subspace)
    again.reset(seed=0)
    _, _, _, _, info = again.step(np.array([0.5, -2.0], np.float32))
    np.testing.assert_allclose(again.env.last_action, expected, atol=1e-6)  # the low level saw the padded latent
    np.testing.assert_array_equal(info["latent"], np.array([0.1, 0.5, -0.3, -1.0], np.float32))
    obs = env.step(np.array([0.5, -2.0], np.float32))[0]
    np.testing.assert_array_equal(env.latent_history, [[0.5, -1.0]])  # the subspace's coordinates
    history, lengths = observed_latent_history(torch.as_tensor(obs[None]), 2, 2)
    np.testing.assert_array_equal(history[0, :1], [[0.5, -1.0]])
    with pytest.raises(LSPError, match="does not fit a low-level policy of 4-d"):
        LatentSpaceWrapper(gym.make(ENV_ID), low_level, subspace=LatentSubspace((0,), (0.0, 0.0)))
    env.close(), again.close()


def test_a_latent_stops_when_the_episode_ends(low_level):
    env = LatentSpaceWrapper(gym.make(ENV_ID, max_episode_steps=5), low_level, steps_per_action=3)
    env.reset(seed=0)
    assert env.step(np.zeros(LATENT_DIM))[4]["low_level_steps"] == 3
    _, _, _, truncated, info = env.step(np.zeros(LATENT_DIM))
    assert truncated and info["low_level_steps"] == 2
    env.close()


def test_a_wrong_environment_or_step_count_is_a_clear_error(low_level):
    with pytest.raises(ArtifactError, match="observation"):
        LatentSpaceWrapper(gym.make("Hopper-v5"), low_level)
    with pytest.raises(LSPError, match="steps_per_action"):
        LatentSpaceWrapper(gym.make(ENV_ID), low_level, steps_per_action=0)


@pytest.mark.filterwarnings("ignore:.*infinity", "ignore:.*different from the unwrapped")  # checking a wrapper on purpose
def test_gymnasium_checks_the_wrapper(low_level):
    check_env(LatentSpaceWrapper(gym.make(ENV_ID).unwrapped, low_level, steps_per_action=2), skip_render_check=True)


def test_our_sac_learns_in_the_latent_space(low_level, tmp_path):
    def env_fn(num_envs, seed):
        return make_vec_env(lambda: LatentSpaceWrapper(gym.make(ENV_ID), low_level), num_envs, seed)

    config = SACConfig(
        total_steps=120, learning_starts=40, batch_size=32, hidden_sizes=(32, 32), eval_episodes=0,
        tensorboard=False, checkpoint_every=0, log_every=60, device="cpu",
    )
    result = sac.train(env_fn, config, tmp_path / "run", progress=False)
    assert result.policy.action_space.shape == (LATENT_DIM,) and result.metrics["train/n_updates"] == 80


def test_stable_baselines3_learns_in_the_latent_space(low_level):
    sb3 = pytest.importorskip("stable_baselines3")
    model = sb3.SAC("MlpPolicy", LatentSpaceWrapper(gym.make(ENV_ID), low_level), learning_starts=40, batch_size=32,
                    policy_kwargs={"net_arch": [32, 32]}, device="cpu", seed=0)
    model.learn(80)
    assert model.action_space.shape == (LATENT_DIM,)


class Constant:
    """A low-level controller of the protocol alone (no artifact): the same action whatever the target."""

    latent_dim = LATENT_DIM
    proprioception_space = gym.spaces.Box(-np.inf, np.inf, (17,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)

    def __init__(self):
        self.seen = []

    def act(self, proprioception, targets, deterministic=True):
        self.seen.append((np.array(proprioception), np.array(targets)))
        return np.full(6, 0.5, np.float32)


def test_any_controller_with_act_and_spaces_will_do_and_task_features_can_follow_the_proprioception():
    class WithGoal(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            low, high = env.observation_space.low, env.observation_space.high
            self.observation_space = gym.spaces.Box(np.append(low, -1.0), np.append(high, 1.0), dtype=np.float64)

        def observation(self, obs):
            return np.append(obs, 0.25)

    controller = Constant()
    env = LatentSpaceWrapper(WithGoal(gym.make(ENV_ID)), controller, proprioception=slice(0, 17))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (18,) and obs[-1] == 0.25
    env.step(np.zeros(LATENT_DIM))
    assert controller.seen[0][0].shape == (17,)
    np.testing.assert_array_equal(controller.seen[0][0], obs[:17])
    with pytest.raises(ArtifactError, match="observation"):
        LatentSpaceWrapper(WithGoal(gym.make(ENV_ID)), controller)
    env.close()


def test_the_last_latents_can_be_observed_and_read_back():
    env = LatentSpaceWrapper(gym.make(ENV_ID), Constant(), observe_latents=3)
    assert env.observation_space.shape == (17 + 3 * (LATENT_DIM + 1),)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[17:], 0.0)
    rows = [obs]
    latents = np.linspace(-0.8, 0.8, 4 * LATENT_DIM, dtype=np.float32).reshape(4, LATENT_DIM)
    for z in latents:
        rows.append(env.step(z)[0])
    assert env.observation_space.contains(rows[-1].astype(env.observation_space.dtype))
    history, lengths = observed_latent_history(torch.as_tensor(np.array(rows)), LATENT_DIM, 3)
    assert lengths.tolist() == [0, 1, 2, 3, 3]
    for t, (row, n) in enumerate(zip(history.numpy(), lengths.tolist())):
        np.testing.assert_allclose(row[:n], latents[max(t - 3, 0) : t])  # left-aligned, oldest first
        np.testing.assert_array_equal(row[n:], 0.0)
    env.close()


class Counting:
    """A prior stand-in whose continuation of ``z`` is ``z + 0.1, z + 0.2, ...``."""

    latent_dim = LATENT_DIM
    device = torch.device("cpu")

    def sample(self, num_steps, batch=1, context=None, generator=None, *, temperature=1.0):
        steps = 0.1 * torch.arange(1, num_steps + 1)[None, :, None]
        return (context[:, -1:] + steps).expand(batch, -1, -1)


def test_options_execute_the_action_then_the_priors_continuation():
    inner = LatentSpaceWrapper(CountSteps(gym.make(ENV_ID, max_episode_steps=7)), Constant())
    env = OptionsWrapper(inner, Counting(), option_length=3)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.full(LATENT_DIM, 0.2, np.float32))
    assert info["option_steps"] == 3 and inner.env.steps == 3 and np.isfinite(reward)
    np.testing.assert_allclose(inner.latent_history, [[0.2] * 4, [0.3] * 4, [0.4] * 4], atol=1e-6)
    env.step(np.zeros(LATENT_DIM))
    _, _, _, truncated, info = env.step(np.zeros(LATENT_DIM))
    assert truncated and info["option_steps"] == 1  # the episode ended after 7 steps
    with pytest.raises(LSPError, match="option_length"):
        OptionsWrapper(inner, Counting(), option_length=0)
    env.close()


class ScoredSteps(gym.Wrapper):
    """Reports a score of 1 per step as ``info["task_reward"]``, apart from the reward."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "task_reward": 1.0}


def test_the_task_reward_of_every_low_level_step_is_summed_like_the_reward(low_level):
    # A shaped task reports its score in info["task_reward"]; evaluations read it through the wrapper.
    env = LatentSpaceWrapper(ScoredSteps(gym.make(ENV_ID)), low_level, steps_per_action=3)
    env.reset(seed=0)
    assert env.step(np.zeros(LATENT_DIM))[4]["task_reward"] == 3.0
    plain = LatentSpaceWrapper(gym.make(ENV_ID), low_level, steps_per_action=3)
    plain.reset(seed=0)
    assert "task_reward" not in plain.step(np.zeros(LATENT_DIM))[4]
    env.close(), plain.close()


def test_an_option_hands_on_the_summed_task_reward_of_its_latents():
    inner = LatentSpaceWrapper(ScoredSteps(gym.make(ENV_ID)), Constant(), steps_per_action=2)
    env = OptionsWrapper(inner, Counting(), option_length=3)
    env.reset(seed=0)
    assert env.step(np.zeros(LATENT_DIM, np.float32))[4]["task_reward"] == 6.0  # 3 latents x 2 steps
    env.close()
