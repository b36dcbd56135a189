"""The ``latentprior`` command line: one verb per step of the pipeline.

    latentprior quickstart --out DIR            the whole pipeline on an embedded default
    latentprior data info FILE                  what a demonstration dataset holds
    latentprior data collect --expert PATH ...  roll an expert out into a dataset
    latentprior fit action-prior --data FILE    latent action prior (autoencoder over actions)
    latentprior fit npmp --data FILE [--lfpc]   motor primitives from expert rollouts
    latentprior fit vae / fit prior             latent space priors from state-only data
    latentprior lap --variant ppo+latent ...    one latent action priors experiment
    latentprior train --env ENV --algo ppo|sac  train an agent with the project's PPO or SAC
    latentprior eval RUN_DIR                    evaluate a trained agent, optionally to video

Every verb imports what it needs lazily, so ``latentprior --help`` is instant. Errors the project
raises on purpose (:class:`latentprior.io.LatentPriorError`: bad input, mismatched spaces, missing
files) are printed as one line and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from latentprior import __version__


def _command_line() -> str:
    return "latentprior " + " ".join(shlex.quote(a) for a in sys.argv[1:])


# ---------------------------------------------------------------------------------------------
# data


def _data_info(args: argparse.Namespace) -> None:
    from latentprior.data import format_summary, load_dataset

    print(format_summary(load_dataset(args.file).summary()))


def _data_collect(args: argparse.Namespace) -> None:
    from latentprior.data import format_summary, load_dataset
    from latentprior.data.collect import collect
    from latentprior.experts import default_expert, load_expert

    expert = default_expert(args.env) if args.expert == "default" else load_expert(args.expert, env=args.env)
    result = collect(
        expert,
        args.env,
        episodes=args.episodes,
        noise_std=args.noise,
        seed=args.seed,
        num_envs=args.num_envs,
        max_episode_steps=args.max_episode_steps,
        jacobians=args.jacobians,
        out=args.out,
        progress=not args.quiet,
        command=_command_line(),
        license=args.license,
    )
    print(format_summary(load_dataset(result.path).summary()))
    print(result)


# ---------------------------------------------------------------------------------------------
# fit


def _fit_action_prior(args: argparse.Namespace) -> None:
    from latentprior.experiments.lap import fit_action_prior_from_file
    from latentprior.latent.action_prior import ActionPriorConfig

    config = ActionPriorConfig(latent_dim=args.latent_dim, variance_threshold=args.variance, epochs=args.epochs, seed=args.seed)
    prior = fit_action_prior_from_file(args.data, args.out, config, allow_pickle=args.allow_pickle, progress=not args.quiet)
    print(f"action prior: {prior.action_dim} -> {prior.latent_dim} latent dims, reconstruction MSE per dimension "
          f"{[round(float(m), 5) for m in prior.reconstruction_mse]}; written to {args.out}")


def _lap(args: argparse.Namespace) -> None:
    import json

    from latentprior.experiments.lap import VARIANTS, LAPExperiment, run_lap_experiment
    from latentprior.experiments.train import config_from_overrides

    if args.list_variants:
        for name, variant in VARIANTS.items():
            print(f"{name:18s} {variant.summary}")
        return
    if args.out is None:
        raise SystemExit("latentprior lap: --out is required")
    values: dict = json.loads(args.config.read_text()) if args.config else {}
    flags = {"env_id": args.env, "variant": args.variant, "demonstration": args.demonstration,
             "total_steps": args.steps, "seed": args.seed, "allow_pickle": args.allow_pickle or None}
    values.update({k: str(v) if isinstance(v, Path) else v for k, v in flags.items() if v is not None})
    experiment = config_from_overrides(LAPExperiment, _parse_overrides(args.set), **values)
    result = run_lap_experiment(experiment, args.out, progress=not args.quiet, metadata={"command": _command_line()})
    print(f"{result['variant']} on {result['env_id']}: final task return {result['final_task_return_mean']:.1f} "
          f"after {result['steps']:,} steps; {args.out / 'result.json'}")


def _fit_npmp(args: argparse.Namespace) -> None:
    from latentprior.experiments.train import config_from_overrides
    from latentprior.latent.npmp import NPMPConfig, fit_npmp

    train, held_out = _train_and_held_out(args.data)
    config = config_from_overrides(NPMPConfig, _parse_overrides(args.set))
    npmp = fit_npmp(train, config, lfpc=args.lfpc, held_out=held_out, callback=_print_history(args.quiet))
    npmp.save(args.out)
    print(f"NPMP ({'LFPC' if args.lfpc else 'BC'}): latent {npmp.latent_dim}, held-out action MSE "
          f"{npmp.held_out_mse if npmp.held_out_mse is not None else 'n/a (fewer than 10 episodes)'}; written to {args.out}")


def _fit_vae(args: argparse.Namespace) -> None:
    from latentprior.experiments.train import config_from_overrides
    from latentprior.latent.lsp import VAEConfig, fit_vae

    train, held_out = _train_and_held_out(args.data)
    base = VAEConfig.small() if args.small else VAEConfig()
    config = config_from_overrides(VAEConfig, _parse_overrides(args.set), **vars(base))
    vae = fit_vae(train, config, held_out=held_out, callback=_print_history(args.quiet))
    vae.save(args.out)
    errors = vae.reconstruction_error(held_out or train)
    print(f"state VAE: latent {vae.latent_dim}; reconstruction MSE ({'held-out' if held_out else 'training'} episodes, "
          f"normalised units) {({k: round(v, 4) for k, v in errors.items()})}; written to {args.out}")


def _fit_prior(args: argparse.Namespace) -> None:
    from latentprior.experiments.train import config_from_overrides
    from latentprior.latent.lsp import PriorConfig, StateVAE, fit_prior

    vae = StateVAE.load(args.vae)
    train, held_out = _train_and_held_out(args.data)
    base = PriorConfig.small() if args.small else PriorConfig()
    config = config_from_overrides(PriorConfig, _parse_overrides(args.set), **vars(base))
    prior = fit_prior(vae, train, config, held_out=held_out, callback=_print_history(args.quiet))
    prior.save(args.out)
    nll = prior.nll(vae, held_out or train)
    print(f"latent prior: NLL {nll:.3f} nats per latent step on {'held-out' if held_out else 'training'} episodes; written to {args.out}")


def _train_and_held_out(path: Path):
    """The dataset split 90/10 by episode when it has >= 10 episodes, else all of it for training."""
    from latentprior.data import load_dataset

    dataset = load_dataset(path)
    return dataset.split(0.9, seed=0) if len(dataset) >= 10 else (dataset, None)


def _print_history(quiet: bool):
    def show(step: int, metrics) -> None:
        if not quiet:
            print(f"step {step:8d}  " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)), flush=True)

    return show


# ---------------------------------------------------------------------------------------------
# rl


def _parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def _train(args: argparse.Namespace) -> None:
    from latentprior.experiments.train import train

    result = train(
        args.env,
        args.algo,
        steps=args.steps,
        out=args.out,
        seed=args.seed,
        num_envs=args.num_envs,
        config_overrides={"device": args.device, **_parse_overrides(args.set)},
        progress=not args.quiet,
    )
    print(f"run directory: {args.out}")
    if getattr(result, "metrics", None):
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in result.metrics.items()})


def _eval(args: argparse.Namespace) -> None:
    from latentprior.experiments.train import evaluate

    result = evaluate(args.run_dir, episodes=args.episodes, video=args.video, seed=args.seed)
    print(result)


# ---------------------------------------------------------------------------------------------
# quickstart


def _quickstart(args: argparse.Namespace) -> None:
    from latentprior.experiments.quickstart import quickstart

    report = quickstart(args.out, ppo_steps=args.ppo_steps, seed=args.seed, progress=not args.quiet)
    print(f"report: {report}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentprior",
        description="Learn priors from demonstrations and reuse them to make RL faster.",
    )
    parser.add_argument("--version", action="version", version=f"latentprior {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("quickstart", help="the pipeline end to end on an embedded default (no downloads)")
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output directory")
    p.add_argument("--ppo-steps", type=int, default=None, help="PPO environment steps (default: the quickstart budget)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=_quickstart)

    data = verbs.add_parser("data", help="demonstration datasets").add_subparsers(dest="data_verb", required=True, metavar="VERB")
    p = data.add_parser("info", help="print episodes, steps, fields, return statistics and metadata")
    p.add_argument("file", type=Path)
    p.set_defaults(func=_data_info)
    p = data.add_parser("collect", help="roll an expert out with action noise into a dataset")
    p.add_argument("--expert", required=True, help="expert artifact directory, an SB3 zoo .zip, or 'default'")
    p.add_argument("--env", required=True, help="Gymnasium environment id, e.g. HalfCheetah-v5")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--noise", type=float, default=0.1, help="action-noise std on the [-1, 1] action scale (Merel et al. 2019 use 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--max-episode-steps", type=int, default=None)
    p.add_argument("--jacobians", action="store_true", help="also log d mu / d s at every visited state (for LFPC)")
    p.add_argument("--out", type=Path, required=True, help="dataset file to write (.h5)")
    p.add_argument("--license", default="", help="license of the data, recorded in its metadata (e.g. MIT)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_data_collect)

    fit = verbs.add_parser("fit", help="fit a latent space or prior from demonstrations").add_subparsers(dest="fit_verb", required=True, metavar="WHAT")
    p = fit.add_parser("action-prior", help="latent action prior (Hausdörfer et al. 2024): an autoencoder over expert actions")
    p.add_argument("--data", type=Path, required=True, help="dataset (.h5), or one of the paper's .npy files with --allow-pickle")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--latent-dim", type=int, default=None, help="latent size (default: PCA, smallest k above --variance)")
    p.add_argument("--variance", type=float, default=0.97, help="cumulative explained variance the PCA latent size must exceed")
    p.add_argument("--epochs", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-pickle", action="store_true", help="allow loading a pickled .npy file; only for files you trust (unpickling can run code)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_fit_action_prior)

    def fit_verb(name: str, help: str, config: str, example: str, func) -> argparse.ArgumentParser:
        """A ``fit`` sub-verb with the options every fitted model shares."""
        p = fit.add_parser(name, help=help)
        p.add_argument("--data", type=Path, required=True, help="demonstration dataset (.h5)")
        p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help=f"{config} field, e.g. {example}")
        p.add_argument("--quiet", action="store_true")
        p.set_defaults(func=func)
        return p

    p = fit_verb("npmp", "neural probabilistic motor primitives (Merel et al. 2019) from expert rollouts", "NPMPConfig", "latent_dim=20", _fit_npmp)
    p.add_argument("--lfpc", action="store_true", help="linear-feedback policy cloning from nominal rollouts + Jacobians (the dataset needs jacobians)")
    p = fit_verb("vae", "latent space priors' state autoencoder (Gehring et al. 2023) from state-only data", "VAEConfig", "window=128", _fit_vae)
    p.add_argument("--small", action="store_true", help="the CPU preset instead of the authors' sizes")
    p = fit_verb("prior", "causal transformer prior over a VAE's latent sequences (Gehring et al. 2023)", "PriorConfig", "context=32", _fit_prior)
    p.add_argument("--vae", type=Path, required=True, help="a state VAE written by 'latentprior fit vae'")
    p.add_argument("--small", action="store_true", help="the CPU preset instead of the authors' sizes")

    p = verbs.add_parser("lap", help="a latent action priors experiment (Hausdörfer et al. 2024): one variant, one seed")
    p.add_argument("--out", type=Path, default=None, help="output directory (rerun to resume)")
    p.add_argument("--config", type=Path, default=None, help="experiment JSON (the experiment.json a run writes)")
    p.add_argument("--env", default=None, help="Gymnasium id (default HalfCheetah-v5)")
    p.add_argument("--variant", default=None, help="see --list-variants (default ppo+latent+style)")
    p.add_argument("--demonstration", type=Path, default=None, help="dataset (.h5) or one of the paper's .npy files")
    p.add_argument("--allow-pickle", action="store_true", help="allow reading the paper's pickled .npy files; only for files you trust")
    p.add_argument("--steps", type=int, default=None, help="environment steps (default: the paper's, 2M; 5M for humanoids)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="any other LAPExperiment field, e.g. residual_weight=0.5")
    p.add_argument("--list-variants", action="store_true", help="print the variant names and exit")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_lap)

    p = verbs.add_parser("train", help="train an agent with the project's PPO or SAC")
    p.add_argument("--env", required=True)
    p.add_argument("--algo", choices=["ppo", "sac"], required=True)
    p.add_argument("--steps", type=int, required=True, help="environment steps")
    p.add_argument("--out", type=Path, required=True, help="run directory (rerun to resume)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=None, help="parallel environments (default: the algorithm's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_train)

    p = verbs.add_parser("eval", help="evaluate a trained agent")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--video", type=Path, default=None, help="write an MP4 of the first episode")
    p.add_argument("--seed", type=int, default=10_000)
    p.set_defaults(func=_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Offscreen MuJoCo rendering works headless with EGL; respect a user's own choice.
    os.environ.setdefault("MUJOCO_GL", "egl")
    args = build_parser().parse_args(argv)
    import torch

    # One torch thread is fastest beside environment stepping on a small machine (measured: a
    # 2000-step zoo-expert rollout takes 0.2 s with 1 thread, 15 s with 2 on 2 busy cores).
    torch.set_num_threads(int(os.environ.get("LATENTPRIOR_TORCH_THREADS", "1")))
    from latentprior.io import LatentPriorError

    try:
        args.func(args)
    except LatentPriorError as e:
        print(f"latentprior: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latentprior: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
