"""latentprior: priors from demonstrations, reused to make reinforcement learning faster.

The pipeline is the package layout:

    data/         demonstrations: one episode-based dataset type (HDF5), importers, collectors
    experts/      where demonstrations come from: trained, imported, or open-loop oscillators
    latent/       latent spaces and priors fitted from demonstrations
    envs/         tasks and wrappers through which a prior reaches any RL algorithm
    rl/           PPO and SAC, open to the prior integrations that live inside an update
    experiments/  configs with the papers' defaults, runs, reports
"""

__version__ = "0.1.0"
