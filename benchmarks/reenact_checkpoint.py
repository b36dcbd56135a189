"""Held-out reenactment of a low-level SAC checkpoint, mid-run (latent space priors, issue 5).

``benchmarks/latent_space_priors.py`` reports ``reenactment_report`` for a finished low-level
policy. This measures the same for one checkpoint of an unfinished (or stopped) SAC run, so that a
run whose learning curve has stalled can be judged, and compared with behavioural cloning, without
training it to the end::

    python benchmarks/reenact_checkpoint.py \\
        benchmarks/results/latent_space_priors/runs/low-level/Ant-v5_run/checkpoints/step_000000200000 \\
        --vae benchmarks/results/latent_space_priors/runs/vae/Ant-v5 \\
        --data benchmarks/results/latent_space_priors/runs/demos/Ant-v5/held_out.h5

It prints the report as JSON (errors per state group in the VAE's normalised units, frames
reenacted before episodes ended early, mean tracking reward). The reenactment task's settings are
``LowLevelConfig``'s defaults, the ones the benchmark trains with.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a SAC checkpoint folder of the low-level run (holds policy/)")
    parser.add_argument("--vae", type=Path, required=True, help="the state VAE the run reenacts the latents of")
    parser.add_argument("--data", type=Path, required=True, help="held-out demonstrations (HDF5)")
    args = parser.parse_args()

    import torch

    from latentprior.data import load_dataset
    from latentprior.envs.reenactment import LowLevelConfig
    from latentprior.experiments.low_level import LowLevelPolicy, reenactment_report
    from latentprior.latent.lsp import StateVAE
    from latentprior.rl.policy import load_policy

    torch.set_num_threads(1)
    vae = StateVAE.load(args.vae)
    held_out = load_dataset(args.data)
    policy = load_policy(args.checkpoint / "policy").eval()
    env_id = held_out.metadata.env_id
    low_level = LowLevelPolicy(policy, LowLevelConfig(), vae.latent_dim, vae.fingerprint, env_id,
                               dict(held_out.metadata.env_kwargs), "sac", {})
    report = asdict(reenactment_report(low_level, vae, held_out))
    print(json.dumps({"checkpoint": str(args.checkpoint), "data": str(args.data), **report}, indent=2))


if __name__ == "__main__":
    main()
