"""Latent action priors (Hausdörfer et al. 2024) as experiments: fitting from a file, with plots."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from latentprior.data import Dataset, DatasetError, load_dataset
from latentprior.data.lap import import_lap_demonstration
from latentprior.experiments.report import markdown_table, write_report
from latentprior.io import atomic_path
from latentprior.latent.action_prior import ActionPrior, ActionPriorConfig, fit_action_prior


def load_demonstrations(path: str | os.PathLike, allow_pickle: bool = False) -> Dataset:
    """A project dataset (``.h5``) or one of the paper's ``.npy`` files (needs ``allow_pickle``)."""
    path = Path(path)
    if path.suffix == ".npy":
        return import_lap_demonstration(path, allow_pickle=allow_pickle)
    return load_dataset(path)


def demonstration_actions(dataset: Dataset) -> np.ndarray:
    """Expert actions normalised to [-1, 1] by the dataset's action bounds.

    The autoencoder works in normalised actions so that one latent range suits every robot
    (Humanoid's actions lie in [-0.4, 0.4]); :class:`~latentprior.envs.latent_action.LatentActionWrapper`
    maps decoded actions back to the bounds.
    """
    source = dataset.path or "dataset"
    if "actions" not in dataset.fields:
        raise DatasetError(f"{source}: has no 'actions' field; a latent action prior is fitted from expert actions")
    actions = dataset.concat("expert_actions" if "expert_actions" in dataset.fields else "actions").astype(np.float64)
    space = dataset.metadata.action_space
    if space is not None and np.isfinite(space.low).all() and np.isfinite(space.high).all():
        actions = 2.0 * (actions - space.low) / (space.high - space.low) - 1.0
    return np.clip(actions, -1.0, 1.0).astype(np.float32)


def fit_action_prior_from_file(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: ActionPriorConfig | None = None,
    allow_pickle: bool = False,
    progress: bool = True,
) -> ActionPrior:
    """``latentprior fit action-prior``: fit, save, and write the PCA plot and per-dimension errors.

    Writes ``out/`` (the artifact), ``out/explained_variance.png`` and ``out/report.md``.
    """
    dataset = load_demonstrations(data, allow_pickle)
    actions = demonstration_actions(dataset)

    def show(epoch: int, loss: float) -> None:
        if progress and epoch % 1000 == 0:
            print(f"epoch {epoch:6d}  loss {loss:.5f}", flush=True)

    prior = fit_action_prior(actions, config, env_id=dataset.metadata.env_id, callback=show)
    out = Path(out)
    prior.save(out)
    plot_explained_variance(prior.explained_variance, prior.latent_dim, out / "explained_variance.png", prior.config.variance_threshold)
    rows = [[f"a[{i}]", f"{m:.5f}"] for i, m in enumerate(prior.reconstruction_mse)]
    write_report(
        out / "report.md",
        f"Latent action prior for {dataset.metadata.env_id or 'unknown environment'}",
        [
            ("Data", f"`{data}`: {len(actions)} actions of dimension {prior.action_dim}."),
            ("Latent size", f"{prior.latent_dim} (cumulative explained variance "
             f"{np.cumsum(prior.explained_variance)[prior.latent_dim - 1]:.3f}).\n\n![PCA](explained_variance.png)"),
            ("Reconstruction error per action dimension (MSE, normalised units)", markdown_table(["dimension", "MSE"], rows)),
        ],
    )
    return prior


def plot_explained_variance(ratio: np.ndarray, k: int, path: Path, threshold: float) -> Path:
    """Bar plot of each principal component's explained variance, cumulative line, chosen ``k`` (Fig. 3 of the paper)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=120)
    components = np.arange(1, len(ratio) + 1)
    ax.bar(components, ratio, color="tab:blue", label="explained variance")
    ax.plot(components, np.cumsum(ratio), "k.-", label="cumulative")
    ax.axvline(k + 0.5, color="tab:red", label=f"k = {k} (> {threshold:.0%})")
    ax.set_xlabel("principal component")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
