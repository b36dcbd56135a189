"""Demonstrations: one episode-based dataset type, its HDF5 form, and Minari import/export.

    from latentprior.data import Dataset, Episode, DatasetMetadata, save_dataset, load_dataset

    dataset = Dataset([Episode(observations=obs, actions=act, rewards=rew)], DatasetMetadata(env_id="Pendulum-v1"))
    save_dataset(dataset, "demos.h5")
    dataset = load_dataset("demos.h5", env=gym.make("Pendulum-v1"))
    print(format_summary(dataset.summary()))

This package imports nothing else of the project except :mod:`latentprior.io`.
"""

from latentprior.data.dataset import Dataset, DatasetError, DatasetMetadata, Episode, format_summary
from latentprior.data.hdf5 import SCHEMA_VERSION, DatasetWriter, load_dataset, save_dataset
from latentprior.data.minari import from_minari, to_minari

__all__ = [
    "Episode",
    "Dataset",
    "DatasetMetadata",
    "DatasetWriter",
    "DatasetError",
    "SCHEMA_VERSION",
    "load_dataset",
    "save_dataset",
    "from_minari",
    "to_minari",
    "format_summary",
]
