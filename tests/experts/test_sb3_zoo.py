"""Importing stable-baselines3 SAC/TQC models without stable-baselines3."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from latentprior.experts import MLPExpert, Sb3ImportError, evaluate_expert, load_expert, load_sb3_zoo
from latentprior.io import ArtifactError


@pytest.fixture
def zoo_zip(shared_data):
    """The SB3 RL Zoo's SAC HalfCheetah-v3 expert from ../shared/data (skips when absent)."""
    return shared_data / "sb3_zoo" / "sac_HalfCheetah-v3.zip"


def test_zoo_halfcheetah_expert_runs_in_gymnasium_v5(zoo_zip):
    expert = load_sb3_zoo(zoo_zip, env="HalfCheetah-v5")
    assert expert.hidden_sizes == [256, 256] and expert.info["algorithm"] == "SAC"
    returns = evaluate_expert(expert, "HalfCheetah-v5", episodes=1, seed=0)
    assert returns[0] >= 8000, f"zoo SAC expert scored {returns[0]:.0f} in HalfCheetah-v5, expected >= 8000"


def test_zoo_expert_saves_in_project_form(zoo_zip, tmp_path):
    expert = load_expert(zoo_zip, env="HalfCheetah-v5")
    expert.save(tmp_path / "cheetah")
    loaded = load_expert(tmp_path / "cheetah", env="HalfCheetah-v5")
    obs = torch.randn(16, 17)
    assert torch.equal(loaded.mu(obs), expert.mu(obs))
    assert loaded.info["sha256"].startswith("63ac27ae0c2ffe04")


def test_zoo_expert_against_wrong_env_names_file_and_space(zoo_zip):
    with pytest.raises(ArtifactError, match=r"sac_HalfCheetah-v3.zip: observation space has shape \(17,\)"):
        load_sb3_zoo(zoo_zip, env="Hopper-v5")


def _rewrite_zip(src, dst, data_patch=None, drop=()):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            content = zin.read(name)
            if name == "data" and data_patch is not None:
                data = json.loads(content)
                data_patch(data)
                content = json.dumps(data).encode()
            zout.writestr(name, content)
    return dst


@pytest.fixture(scope="module")
def sb3_pendulum_zip(tmp_path_factory):
    """A real SB3 SAC model with gSDE, a Tanh activation and a 32-16 actor on [-2, 2] actions."""
    sb3 = pytest.importorskip("stable_baselines3")
    model = sb3.SAC(
        "MlpPolicy",
        "Pendulum-v1",
        buffer_size=100,
        use_sde=True,
        policy_kwargs={"net_arch": [32, 16], "activation_fn": torch.nn.Tanh, "log_std_init": -2},
        seed=0,
        device="cpu",
    )
    # Spread the mean head so that some pre-tanh means exceed gSDE's clip at 2.
    with torch.no_grad():
        model.actor.mu[0].weight.mul_(40.0)
    path = tmp_path_factory.mktemp("sb3") / "sac_pendulum.zip"
    model.save(path)
    return path, model


def test_import_matches_stable_baselines3_predict(sb3_pendulum_zip):
    path, model = sb3_pendulum_zip
    expert = load_sb3_zoo(path, env="Pendulum-v1")
    assert expert.hidden_sizes == [32, 16] and expert.activation == "tanh" and expert.mean_clip == 2.0
    obs = np.random.default_rng(0).uniform(-8, 8, size=(256, 3)).astype(np.float32)
    sb3_action, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(expert.mean_action(obs), sb3_action, atol=1e-5)
    assert np.abs(sb3_action).max() > 1.5  # bounds scaling to [-2, 2] was exercised


def test_tqc_models_import_like_sac(sb3_pendulum_zip, tmp_path):
    path, model = sb3_pendulum_zip

    def as_tqc(data):
        data["policy_class"]["__module__"] = "sb3_contrib.tqc.policies"

    expert = load_sb3_zoo(_rewrite_zip(path, tmp_path / "tqc.zip", as_tqc), env="Pendulum-v1")
    assert expert.info["algorithm"] == "TQC"
    obs = np.random.default_rng(1).uniform(-8, 8, size=(8, 3)).astype(np.float32)
    np.testing.assert_allclose(expert.mean_action(obs), model.predict(obs, deterministic=True)[0], atol=1e-5)


def test_bad_zips_give_clear_errors(sb3_pendulum_zip, tmp_path):
    path, _ = sb3_pendulum_zip
    (tmp_path / "notes.zip").write_text("not a zip")
    with pytest.raises(Sb3ImportError, match="notes.zip: not a zip file"):
        load_expert(tmp_path / "notes.zip")
    with pytest.raises(Sb3ImportError, match="no policy.pth entry"):
        load_sb3_zoo(_rewrite_zip(path, tmp_path / "nopolicy.zip", drop=("policy.pth",)))

    def as_ppo(data):
        data["policy_class"]["__module__"] = "stable_baselines3.common.policies"

    with pytest.raises(Sb3ImportError, match="'stable_baselines3.common.policies'; only SAC"):
        load_sb3_zoo(_rewrite_zip(path, tmp_path / "ppo.zip", as_ppo))
    with zipfile.ZipFile(tmp_path / "random.zip", "w") as z:
        z.writestr("data", json.dumps({"policy_class": {"__module__": "stable_baselines3.sac.policies"}}))
        buffer = io.BytesIO()
        torch.save({"critic.qf0.0.weight": torch.zeros(2, 2)}, buffer)
        z.writestr("policy.pth", buffer.getvalue())
    with pytest.raises(Sb3ImportError, match="no 'actor.\\*' weights"):
        load_sb3_zoo(tmp_path / "random.zip")
    assert isinstance(load_sb3_zoo(path), MLPExpert)
