"""The ``latentprior`` command line: one verb per step of the pipeline.

    latentprior quickstart --out DIR            the whole pipeline on an embedded default
    latentprior data info FILE                  what a demonstration dataset holds
    latentprior data collect --expert PATH ...  roll an expert (or a skill set: --skills) out into a dataset
    latentprior experts train-commanded --env E one command-conditioned expert: many skills, one RL run
    latentprior fit action-prior --data FILE    latent action prior (autoencoder over actions)
    latentprior fit npmp --data FILE [--lfpc]   motor primitives from expert rollouts
    latentprior imitate MODULE --reference FILE one-shot imitation of reference episodes with a module
    latentprior fit vae / fit prior             latent space priors from state-only data
    latentprior fit low-level --vae DIR ...     the low-level policy that reenacts latents (SAC or --bc)
    latentprior sample PRIOR [--video F.mp4]    motion sampled from a latent space prior, decoded
    latentprior lap --variant ppo+latent ...    one latent action priors experiment
    latentprior lsp --prior DIR --low-level DIR high-level SAC in the latent space with a prior integration
    latentprior train --env ENV --algo ppo|sac  train an agent with the project's PPO or SAC
    latentprior eval RUN_DIR                    evaluate a trained agent, optionally to video

Every verb imports what it needs lazily, so ``latentprior --help`` is instant. Errors the project
raises on purpose (:class:`latentprior.io.LatentPriorError`: bad input, mismatched spaces, missing
files) are printed as one line and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

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
    from latentprior.data.collect import collect, collect_experts
    from latentprior.experts import CommandedExpert, ExpertError, default_expert, load_expert
    from latentprior.experts.base import check_expert_spaces

    if len(args.expert) > 1 and args.skills is not None:
        raise ExpertError("--skills rolls out one command-conditioned expert's skills; give one --expert with it")
    if args.skills is not None:
        args.expert = args.expert[0]
        from latentprior.experts.commanded import collect_skills, load_commanded, shipped_commanded

        if args.expert == "default":
            if shipped_commanded(args.env) is None:
                raise ExpertError(f"no command-conditioned expert ships for {args.env}; train one with "
                                  f"'latentprior experts train-commanded --env {args.env}' and pass its folder")
            args.expert = str(shipped_commanded(args.env))
        commanded = load_commanded(args.expert)
        if commanded.task.env_id != args.env:
            raise ExpertError(f"{args.expert}: the expert's skills are for {commanded.task.env_id}, not --env {args.env}")
        result = collect_skills(
            commanded, args.skills, episodes=args.episodes, noise_std=args.noise, seed=args.seed, num_envs=args.num_envs,
            max_episode_steps=args.max_episode_steps, jacobians=args.jacobians, out=args.out, progress=not args.quiet,
            license=args.license, command=_command_line(),
        )
        print(format_summary(load_dataset(result.path).summary()))
        print(result)
        return
    experts = {}
    for path in args.expert:
        expert = default_expert(args.env) if path == "default" else load_expert(path)
        if isinstance(expert, CommandedExpert):
            raise ExpertError(f"{path}: a command-conditioned expert; collect its skills with --skills train (or held_out)")
        check_expert_spaces(expert, args.env, str(path))
        name = Path(path).stem if path != "default" else "default"
        experts[name if name not in experts else f"{name}_{len(experts)}"] = expert
    options = dict(episodes=args.episodes, noise_std=args.noise, seed=args.seed, num_envs=args.num_envs,
                   max_episode_steps=args.max_episode_steps, jacobians=args.jacobians, out=args.out,
                   progress=not args.quiet, command=_command_line(), license=args.license)
    if len(experts) == 1:
        result = collect(next(iter(experts.values())), args.env, **options)
    else:  # several single-skill experts: one dataset, each expert a skill (extra["skills"])
        sources = dict(zip(experts, args.expert))
        result = collect_experts(experts, args.env, labels={n: {"expert": str(sources[n])} for n in experts}, **options)
    print(format_summary(load_dataset(result.path).summary()))
    print(result)


# ---------------------------------------------------------------------------------------------
# experts


def _experts_train_commanded(args: argparse.Namespace) -> None:
    from latentprior.experiments.train import make_config
    from latentprior.experts.commanded import TRAINING_DEFAULTS, commanded_task, train_commanded

    task = commanded_task(args.env)
    fields = {**TRAINING_DEFAULTS[args.algo], "total_steps": args.steps or task.default_steps, "seed": args.seed}
    if args.num_envs is not None:
        fields["num_envs"] = args.num_envs
    config = make_config(args.algo, {"device": args.device, **_parse_overrides(args.set)}, **fields)
    expert = train_commanded(task, config, args.out, progress=not args.quiet, evaluate_steps=args.eval_steps,
                             metadata={"command": _command_line()})
    print(f"command-conditioned expert for {task.env_id} ({expert.info['steps']:,} steps); mean tracking reward per "
          f"skill set {expert.info.get('task_reward_mean')} (1 = exact); {args.out / 'skills.json'}; written to {args.out}")


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


def _lsp(args: argparse.Namespace) -> None:
    from latentprior.experiments.lsp import run_lsp_experiment
    from latentprior.experiments.low_level import LowLevelPolicy
    from latentprior.experiments.train import config_from_overrides
    from latentprior.io import LatentPriorError
    from latentprior.latent.lsp import LatentPrior, StateVAE
    from latentprior.rl import SACConfig
    from latentprior.rl.prior_integrations import INTEGRATIONS, LSPIntegrationConfig, check_integration
    from latentprior.rl.runtime import resolve_device

    if args.list_integrations:
        for name, summary in INTEGRATIONS.items():
            print(f"{name:11s} {summary}")
        return
    missing = [flag for flag, value in (("--prior", args.prior), ("--low-level", args.low_level), ("--out", args.out)) if value is None]
    if missing:
        raise SystemExit(f"latentprior lsp: {', '.join(missing)} required")
    check_integration(args.integration)
    overrides = _parse_overrides(args.set)
    knobs, sac_knobs = set(LSPIntegrationConfig.__dataclass_fields__), set(SACConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - knobs - sac_knobs)
    if unknown:
        raise LatentPriorError(f"neither LSPIntegrationConfig nor SACConfig has field(s) {', '.join(unknown)}; "
                               f"LSPIntegrationConfig fields: {', '.join(sorted(knobs))}")
    config = config_from_overrides(LSPIntegrationConfig, {k: v for k, v in overrides.items() if k in knobs})
    sac_fields = {"seed": args.seed, "device": args.device, **({"total_steps": args.steps} if args.steps else {})}
    sac_config = config_from_overrides(SACConfig, {k: v for k, v in overrides.items() if k not in knobs}, **sac_fields)
    device = resolve_device(args.device)  # the prior beside SAC's networks: the hooks call it every step
    prior = LatentPrior.load(args.prior, device=device)
    vae_dir = args.vae if args.vae is not None else prior.vae_path
    if vae_dir is None:
        raise SystemExit(f"latentprior lsp: {args.prior} records no VAE path; pass --vae DIR")
    vae = StateVAE.load(vae_dir)
    low_level = LowLevelPolicy.load(args.low_level, vae=vae)
    env_id = args.env or low_level.env_id
    if env_id is None:
        raise SystemExit(f"latentprior lsp: {args.low_level} records no environment; pass --env ID")
    subspace = None
    if args.used_dims is not None:
        from latentprior.data import load_dataset
        from latentprior.latent.lsp import LatentSubspace

        subspace = LatentSubspace.used(vae, load_dataset(args.used_dims))
        print(f"acting in the {subspace.dim} of {subspace.latent_dim} latent dimensions the VAE uses on {args.used_dims}: "
              f"{list(subspace.dims)}")
    result = run_lsp_experiment(env_id, vae, prior, low_level, args.integration, config, sac_config, args.out,
                                env_kwargs={**(low_level.env_kwargs if args.env is None else {}), **_parse_env_kwargs(args.env_kwarg)},
                                subspace=subspace,
                                progress=not args.quiet, metadata={"command": _command_line()})
    metrics = result["metrics"]
    evaluated = (f"evaluation return {metrics['eval/return_mean']:.1f}" if "eval/return_mean" in metrics else "no evaluation")
    planner = f"; planner return {result['planner']['planner/return_mean']:.1f}" if "planner" in result else ""
    print(f"{args.integration} on {env_id}: {evaluated} after {result['steps']:,} steps{planner}; {args.out / 'result.json'}")


def _fit_npmp(args: argparse.Namespace) -> None:
    from latentprior.experiments.train import config_from_overrides
    from latentprior.latent.npmp import NPMPConfig, fit_npmp

    train, held_out = _train_and_held_out(args.data)
    config = config_from_overrides(NPMPConfig, _parse_overrides(args.set))
    npmp = fit_npmp(train, config, lfpc=args.lfpc, held_out=held_out, callback=_print_history(args.quiet), checkpoint_dir=args.out)
    npmp.save(args.out)
    print(f"NPMP ({'LFPC' if args.lfpc else 'BC'}): latent {npmp.latent_dim}, held-out action MSE "
          f"{npmp.held_out_mse if npmp.held_out_mse is not None else 'n/a (fewer than 10 episodes)'}; written to {args.out}")


def _imitate(args: argparse.Namespace) -> None:
    from latentprior.experiments.npmp import imitate_file

    report = imitate_file(args.module, args.reference, args.out, episodes=args.episodes, optimize=args.optimize,
                          optimize_steps=args.optimize_steps, seed=args.seed, video=args.video)
    for r in report["results"]:
        relative = "n/a" if r["relative_return"] is None else f"{r['relative_return']:.3f}"
        print(f"episode {r['episode']:4d}{' ' + r['skill'] if r['skill'] else ''}: return {r['return']:9.2f} "
              f"(reference {r['reference_return'] if r['reference_return'] is None else round(r['reference_return'], 2)}, "
              f"relative {relative}), {r['steps']} steps{' (terminated)' if r['terminated'] else ''}, state RMSE {r['state_rmse']:.3f}")
    print(f"{report['episodes']} episodes: median relative return {report['relative_return_median']}; "
          f"{args.out / 'imitation.json'}" + (f"; video {args.video}" if args.video else ""))


def _fit_vae(args: argparse.Namespace) -> None:
    from latentprior.experiments.train import config_from_overrides
    from latentprior.latent.lsp import VAEConfig, fit_vae

    train, held_out = _train_and_held_out(args.data)
    base = VAEConfig.small() if args.small else VAEConfig()
    config = config_from_overrides(VAEConfig, _parse_overrides(args.set), **vars(base))
    vae = fit_vae(train, config, held_out=held_out, callback=_print_history(args.quiet), checkpoint_dir=args.out)
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
    prior = fit_prior(vae, train, config, held_out=held_out, callback=_print_history(args.quiet), checkpoint_dir=args.out)
    prior.vae_path = str(args.vae.resolve())
    prior.save(args.out)
    nll = prior.nll(vae, held_out or train)
    print(f"latent prior: NLL {nll:.3f} nats per latent step on {'held-out' if held_out else 'training'} episodes; written to {args.out}")


def _fit_low_level(args: argparse.Namespace) -> None:
    from latentprior.experiments.train import config_from_overrides
    from latentprior.envs.reenactment import LowLevelConfig
    from latentprior.experiments.low_level import fit_low_level, fit_low_level_bc
    from latentprior.latent.lsp import StateVAE
    from latentprior.rl import SACConfig

    vae = StateVAE.load(args.vae)
    train, held_out = _train_and_held_out(args.data)
    config = config_from_overrides(LowLevelConfig, _parse_overrides(args.set))
    if args.bc:
        low_level = fit_low_level_bc(vae, train, config, epochs=args.epochs, seed=args.seed, held_out=held_out,
                                     callback=_print_history(args.quiet), latent_targets=args.latent_targets)
    else:
        sac_config = SACConfig(total_steps=args.steps, seed=args.seed)
        low_level = fit_low_level(vae, train, config, sac_config, args.out / "run", held_out=held_out, progress=not args.quiet)
    low_level.save(args.out)
    report = low_level.report
    measured = (f"held-out reenactment: {report['within_tolerance']:.1%} of frames within error {report['tolerance']:g}, "
                f"mean error {({k: round(v, 4) for k, v in report['errors'].items()})}") if report else "no held-out report (fewer than 10 episodes)"
    print(f"low-level policy ({low_level.method}): {measured}; written to {args.out}")


def _sample(args: argparse.Namespace) -> None:
    from latentprior.experiments.lsp import run_sample

    summary = run_sample(args.prior, args.vae, steps=args.steps, samples=args.samples, seed=args.seed, video=args.video,
                         physical=args.physical, low_level_dir=args.low_level, env_id=args.env, out=args.out)
    print(f"sampled {summary['samples']} x {summary['steps']} latents ({summary['latent_dim']}-d), decoded to "
          f"{summary['obs_dim']}-d states" + "".join(f"; {k}: {summary[k]}" for k in ("out", "video", "physical_video") if k in summary))
    if "reenactment" in summary:
        r = summary["reenactment"]
        print(f"physical reenactment: {r['reenacted_frames']}/{r['frames']} frames reenacted before episodes ended early, "
              f"{r['within_tolerance']:.1%} within error {r['tolerance']:g} of the decoded states")


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


def _parse_env_kwargs(pairs: list[str]) -> dict[str, Any]:
    """``--env-kwarg KEY=VALUE`` pairs as keyword arguments of ``gymnasium.make``: a value is read
    as JSON where it parses (``true``, ``0.05``, ``[0.2, 2.0]``), else kept as a string."""
    kwargs: dict[str, Any] = {}
    for key, value in _parse_overrides(pairs).items():
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


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
        env_kwargs=_parse_env_kwargs(args.env_kwarg),
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
    p.add_argument("--expert", required=True, action="append",
                   help="expert artifact directory, an SB3 zoo .zip, or 'default' (the shipped expert of --env; with "
                        "--skills its shipped command-conditioned expert); repeat it to roll out a set of single-skill "
                        "experts into one dataset, --episodes each")
    p.add_argument("--env", required=True, help="Gymnasium environment id, e.g. HalfCheetah-v5")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--noise", type=float, default=0.1, help="action-noise std on the [-1, 1] action scale (Merel et al. 2019 use 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--max-episode-steps", type=int, default=None)
    p.add_argument("--jacobians", action="store_true", help="also log d mu / d s at every visited state (for LFPC)")
    p.add_argument("--out", type=Path, required=True, help="dataset file to write (.h5)")
    p.add_argument("--license", default="", help="license of the data, recorded in its metadata (e.g. MIT)")
    p.add_argument("--skills", default=None, metavar="SET", help="roll out every skill of a command-conditioned expert's skill set (train, held_out) into one dataset; --episodes is per skill")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_data_collect)

    experts = verbs.add_parser("experts", help="experts that produce demonstrations").add_subparsers(dest="experts_verb", required=True, metavar="VERB")
    p = experts.add_parser("train-commanded", help="train a velocity-command-conditioned expert (Ant-v5, HalfCheetah-v5): one RL run, one single-skill expert per command")
    p.add_argument("--env", required=True, help="Ant-v5 or HalfCheetah-v5")
    p.add_argument("--algo", choices=["sac", "ppo"], default="sac")
    p.add_argument("--steps", type=int, default=None, help="environment steps (default: the task's estimate, 1M HalfCheetah, 3M Ant)")
    p.add_argument("--out", type=Path, required=True, help="output directory: the expert, skills.json and the run (rerun to resume)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=None, help="parallel environments (default: the algorithm's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a SACConfig/PPOConfig field")
    p.add_argument("--eval-steps", type=int, default=None, help="time limit of each skill's evaluation episode in skills.json (default: the environment's)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_experts_train_commanded)

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
    p = fit_verb("low-level", "latent space priors' low-level policy (Gehring et al. 2023): reenacts a VAE's latents", "LowLevelConfig", "target_offsets=1,2,3", _fit_low_level)
    p.add_argument("--vae", type=Path, required=True, help="a state VAE written by 'latentprior fit vae'")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--steps", type=int, default=1_000_000, help="SAC environment steps (reinforcement learning, the default; run in OUT/run, rerun to resume)")
    how.add_argument("--bc", action="store_true", help="behavioural cloning of the dataset's actions instead of SAC")
    p.add_argument("--epochs", type=int, default=100, help="behavioural cloning: passes over the data")
    p.add_argument("--latent-targets", choices=["posterior", "mean", "unused-random"], default="posterior",
                   help="behavioural cloning: targets drawn from the VAE's posterior (the default; robust to exploratory "
                        "latents), its means, or its means with noise in the latent dimensions the VAE does not use")
    p.add_argument("--seed", type=int, default=0)

    p = verbs.add_parser("sample", help="sample motion from a latent space prior, decode it, render it (kinematic or --physical)")
    p.add_argument("prior", type=Path, help="a prior written by 'latentprior fit prior'")
    p.add_argument("--vae", type=Path, default=None, help="its state VAE (default: the one the prior was fitted with)")
    p.add_argument("--steps", type=int, default=128, help="latents (frames) per sample")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--video", type=Path, default=None, help="MP4 of the decoded states, poses set directly (needs qpos in the states)")
    p.add_argument("--physical", action="store_true", help="also reenact the samples with the low-level policy in the simulator")
    p.add_argument("--low-level", type=Path, default=None, help="the low-level policy for --physical ('latentprior fit low-level')")
    p.add_argument("--env", default=None, help="robot to render (default: the VAE's environment)")
    p.add_argument("--out", type=Path, default=None, help=".npz file for the sampled latents and decoded states")
    p.set_defaults(func=_sample)

    p = verbs.add_parser("imitate", help="one-shot imitation (Merel et al. 2019): encode reference episodes, run the decoder in the environment")
    p.add_argument("module", type=Path, help="an NPMP module written by 'latentprior fit npmp'")
    p.add_argument("--reference", type=Path, required=True, help="dataset (.h5) of reference episodes; its env_id and env_kwargs make the environment")
    p.add_argument("--episodes", type=int, default=None, help="imitate the first N episodes (default: all)")
    p.add_argument("--optimize", action="store_true", help="optimise the latents against the reference's expert actions first (Eq. 10)")
    p.add_argument("--optimize-steps", type=int, default=500, help="Adam steps of the latent optimisation")
    p.add_argument("--video", type=Path, default=None, help="write an MP4 of the first episode")
    p.add_argument("--out", type=Path, default=Path("runs/imitate"), help="directory for imitation.json")
    p.add_argument("--seed", type=int, default=0, help="reset seed of the first episode (where the reference has no qpos/qvel)")
    p.set_defaults(func=_imitate)

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

    p = verbs.add_parser("lsp", help="a latent space priors experiment (Gehring et al. 2023): high-level SAC in the latent space with the prior integrated")
    p.add_argument("--prior", type=Path, default=None, help="a prior written by 'latentprior fit prior'")
    p.add_argument("--low-level", type=Path, default=None, help="a low-level policy written by 'latentprior fit low-level'")
    p.add_argument("--vae", type=Path, default=None, help="its state VAE (default: the one the prior was fitted with)")
    p.add_argument("--env", default=None, help="Gymnasium id of the task (default: the low-level policy's environment)")
    p.add_argument("--env-kwarg", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword argument of the task's gymnasium.make (value read as JSON where it parses), e.g. "
                        "reward_type=progress or instances=d4rl for latentprior/AntMazeMedium-v0")
    p.add_argument("--integration", default="explore", help="none, explore, regularize, options or plan (see --list-integrations)")
    p.add_argument("--out", type=Path, default=None, help="run directory (rerun to resume)")
    p.add_argument("--steps", type=int, default=None, help="environment steps of high-level SAC (default: SACConfig's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="an LSPIntegrationConfig or SACConfig field, e.g. explore_probability=0.2 or batch_size=128")
    p.add_argument("--used-dims", type=Path, default=None, metavar="DATA",
                   help="act only in the latent dimensions the VAE uses on this dataset's frames (mean KL to N(0, I) of at "
                        "least 0.01 nats per frame), the others held at their mean (default: all, as the paper)")
    p.add_argument("--list-integrations", action="store_true", help="print the integration names and exit")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_lsp)

    p = verbs.add_parser("train", help="train an agent with the project's PPO or SAC")
    p.add_argument("--env", required=True)
    p.add_argument("--algo", choices=["ppo", "sac"], required=True)
    p.add_argument("--steps", type=int, required=True, help="environment steps")
    p.add_argument("--out", type=Path, required=True, help="run directory (rerun to resume)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=None, help="parallel environments (default: the algorithm's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--env-kwarg", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword argument of gymnasium.make (value read as JSON where it parses), e.g. shaped=true")
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
