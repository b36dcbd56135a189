"""The learners must actually learn small tasks (SB3's standard of a real test)."""

import warnings

import numpy as np
import pytest
import torch

from latentprior.rl import PPOConfig, SACConfig, ppo, sac
from latentprior.rl.runtime import native_bf16


EMULATED_BF16 = pytest.mark.skipif(
    not native_bf16(torch.device("cpu")),
    reason="this CPU has no native bfloat16 (no AVX512-BF16 or AMX): the bf16 autocast is emulated, 4x slower than "
           "float32 (about 5 minutes for this test); test_sac_runs_under_bf16_and_says_when_it_is_emulated covers the path here",
)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["auto", pytest.param("bf16", marks=EMULATED_BF16)])
def test_sac_learns_pendulum(tmp_path, env_fn, precision):
    # SB3 defaults except 64-unit networks (4x faster here, same learning on this task).
    config = SACConfig(
        total_steps=7500, hidden_sizes=(64, 64), eval_every=0, eval_episodes=10, tensorboard=False,
        matmul_precision=precision,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the emulated-bf16 warning, where it applies
        result = sac.train(env_fn("Pendulum-v1"), config, tmp_path / "sac", progress=False)
    assert result.metrics["eval/return_mean"] > -300, result.metrics


def test_sac_runs_under_bf16_and_says_when_it_is_emulated(tmp_path, env_fn):
    config = SACConfig(total_steps=600, learning_starts=200, hidden_sizes=(64, 64), eval_every=0, eval_episodes=1,
                       tensorboard=False, matmul_precision="bf16")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sac.train(env_fn("Pendulum-v1"), config, tmp_path / "sac", progress=False)
    assert all(np.isfinite(v) for k, v in result.metrics.items() if isinstance(v, float)), result.metrics
    emulated = [w for w in caught if "no native bfloat16" in str(w.message)]
    assert bool(emulated) == (not native_bf16(torch.device("cpu")))


@pytest.mark.slow
def test_ppo_learns_inverted_pendulum(tmp_path, env_fn):
    config = PPOConfig(total_steps=20480, eval_every=0, eval_episodes=10, tensorboard=False)
    result = ppo.train(env_fn("InvertedPendulum-v5"), config, tmp_path / "ppo", progress=False)
    assert result.metrics["eval/return_mean"] >= 500, result.metrics
