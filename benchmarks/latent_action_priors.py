"""Benchmark: latent action priors (Hausdörfer et al. 2024) with the paper's demonstrations.

Parts (each (env, variant, seed[, task]) run is one ``common.Job``: a child process writing
``<results>/<name>/result.json`` last, its output in ``<results>/runs/logs/<name>.log``; a run whose
result.json exists is skipped, and an interrupted run resumes from its checkpoints, so rerunning
the same command continues; see ``benchmarks/common.py``):

  main      HalfCheetah-v5 and Ant-v5, every variant (ppo, ppo+style, ppo+latent, ppo+latent+style,
            ppo+latent-only, ppo+resrl+style, bc), --steps per run, 5 seeds.
  transfer  the same robots tracking --speed-factor x the demonstration's mean forward speed
            (Ant: heading --direction), with and without the prior (--transfer-variants). As in
            the paper ("the style rewards and action priors are the same for all experiments"),
            the default variants keep the style reward: without it, the tracking reward
            exp(-5 |v - v_des|) at 2x the demonstration's speed is ~1e-10 at rest, so PPO gets
            no gradient (measured, HalfCheetah: PPO 1.1 of 1000, PPO+latent 61).
  humanoid  Humanoid-v5, PPO vs PPO+latent at --humanoid-steps (the paper: 5M).

The demonstrations are the authors' released ``.npy`` files (github.com/OliEfr/latent-action-priors,
MIT), by default from ``../shared/data/latent_action_priors``. They are pickled dicts and
unpickling can run code, so reading them needs ``--allow-pickle``: pass it only for files you trust.

Returns are task returns (the environment's reward, or the tracking reward of the transfer
task) of 10 deterministic evaluation episodes, the paper's measure; see
``latentprior.experiments.lap``. Goals checked by ``--report`` (per robot): PPO+latent's final
task return >= 1.2x PPO's, and PPO+latent reaches PPO's final return in <= 60 % of the steps.

    python benchmarks/latent_action_priors.py --allow-pickle --workers 2            # everything (days on 2 cores)
    python benchmarks/latent_action_priors.py --allow-pickle --parts main --envs HalfCheetah-v5 --seeds 0
    python benchmarks/latent_action_priors.py --allow-pickle --quick                # smoke check, minutes
    python benchmarks/latent_action_priors.py --report                              # REPORT.md from the results
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from common import Job, command_line, csv_list, mean_curve, results_folder, run_jobs
from latentprior.experiments.lap import VARIANTS

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "latent_action_priors"
PARTS = ("main", "transfer", "humanoid")
#: The paper's demonstration file of each environment.
DEMONSTRATIONS = {"HalfCheetah-v5": "HalfCheetah-v4.npy", "Ant-v5": "Ant-v4.npy", "Humanoid-v5": "Humanoid.npy"}
#: The project's goals for PPO+latent against PPO.
GOAL_RETURN_RATIO, GOAL_STEP_FRACTION = 1.2, 0.6
#: --quick: budgets that only check the pipeline end to end.
QUICK = {"total_steps": 2048, "prior_epochs": 200, "bc_epochs": 50, "eval_episodes": 2,
         "ppo": {"n_steps": 512, "batch_size": 64, "eval_envs": 2}}


# ----------------------------------------------------------------------------------------- jobs
def _jobs(args) -> list[Job]:
    """Every run the arguments ask for: its folder name, and its LAPExperiment fields as the spec."""
    from latentprior.data.lap import PAPER_LATENT_SIZES

    jobs = []

    def add(part, env_id, variant, seed, steps, transfer=False):
        experiment = {"env_id": env_id, "variant": variant, "seed": seed, "total_steps": steps,
                      "demonstration": str(args.data / DEMONSTRATIONS[env_id]), "allow_pickle": args.allow_pickle}
        name = f"{env_id}__{variant}__seed{seed}"
        if VARIANTS[variant].needs_prior:  # prior ablations run in folders of their own
            if args.latent_size == "paper":
                experiment["latent_size"] = PAPER_LATENT_SIZES[env_id]
                name += f"__k{PAPER_LATENT_SIZES[env_id]}"
            if args.prior_data != "cycle":
                experiment["prior_data"] = args.prior_data
                name += f"__prior-{args.prior_data}"
        if transfer:
            experiment.update(target_speed_factor=args.speed_factor, target_direction=args.direction if env_id != "HalfCheetah-v5" else 0.0)
            name += f"__speed{args.speed_factor:g}x"
            if args.tracking_sharpness != 5.0:
                experiment["tracking_sharpness"] = args.tracking_sharpness
                name += f"__sharpness{args.tracking_sharpness:g}"
        if args.quick:
            experiment.update(QUICK)
        jobs.append(Job(name, part, experiment))

    for seed in args.seeds:
        for env_id in args.envs:
            if "main" in args.parts:
                for variant in args.variants:
                    add("main", env_id, variant, seed, args.steps)
            if "transfer" in args.parts:
                for variant in args.transfer_variants:
                    add("transfer", env_id, variant, seed, args.steps, transfer=True)
        if "humanoid" in args.parts:
            for variant in ("ppo", "ppo+latent"):
                add("humanoid", "Humanoid-v5", variant, seed, args.humanoid_steps)
    return jobs


def result_file(results: Path, name: str) -> Path:
    """Where a run's result is: ``run_lap_experiment`` writes it last, inside the run's folder."""
    return Path(results) / name / "result.json"


def run_job(job: dict, results: Path, command: str) -> None:
    """One run, in this process (a child of the benchmark; ``job`` is a :class:`common.Job` as a dict)."""
    import torch

    from common import machine
    from latentprior.experiments.lap import LAPExperiment, run_lap_experiment

    torch.set_num_threads(1)
    experiment = LAPExperiment.from_dict(job["spec"])
    run_lap_experiment(experiment, result_file(results, job["name"]).parent, progress=False,
                       metadata={"part": job["part"], "command": command, "machine": machine()})


# --------------------------------------------------------------------------------------- report
def _mean_curve(runs: list[dict]):
    """The seeds' task-return curves averaged on the evaluation steps they all have (mean, std over seeds)."""
    from latentprior.experiments.report import Curve

    return mean_curve([Curve(np.array(r["curve"]["steps"]), np.array(r["curve"]["task_return_mean"])) for r in runs])


def _fmt(value: float | None, suffix: str = "") -> str:
    return "never" if value is None else f"{value:,.0f}{suffix}"


def _goal_lines(env_id: str, finals: dict, curves: dict) -> list[str]:
    """The project's goals for each latent variant against PPO on one robot, with the figures."""
    from latentprior.experiments.lap import steps_to_reach

    if "ppo" not in finals:
        return []
    lines = []
    ppo_final, ppo_steps = float(curves["ppo"].returns[-1]), float(curves["ppo"].steps[-1])
    for variant in [v for v in _ordered(finals) if v.split(" ")[0] in ("ppo+latent", "ppo+latent+style")]:
        final = float(curves[variant].returns[-1])
        if ppo_final > 0:
            verdict = "met" if final >= GOAL_RETURN_RATIO * ppo_final else "missed"
            ratio = f"{final / ppo_final:.2f}x"
        else:  # a ratio to a non-positive return says nothing
            verdict, ratio = "not assessable", "no ratio"
        lines.append(f"- {env_id}, {variant}: final task return {final:,.1f} vs PPO's {ppo_final:,.1f}: {ratio} "
                     f"(goal >= {GOAL_RETURN_RATIO}x): **{verdict}**")
        reach = steps_to_reach(curves[variant], ppo_final)
        fraction = None if reach is None else reach / ppo_steps
        ok = fraction is not None and fraction <= GOAL_STEP_FRACTION
        reached = (f"reaches PPO's final return at {reach:,.0f} of {ppo_steps:,.0f} steps ({fraction:.0%})" if reach is not None
                   else f"does not reach PPO's final return in {ppo_steps:,.0f} steps")
        lines.append(f"- {env_id}, {variant}: {reached} (goal <= {GOAL_STEP_FRACTION:.0%}): **{'met' if ok else 'missed'}**")
    return lines


def _label(run: dict) -> str:
    """A run's row label: its variant, plus the prior ablation it ran (``--latent-size paper``, ``--prior-data``)."""
    experiment, label = run["experiment"], run["variant"]
    if VARIANTS[label].needs_prior:
        if experiment.get("latent_size") is not None:
            label += f" (k={experiment['latent_size']})"
        if experiment.get("prior_data", "cycle") != "cycle":
            label += f" (prior fitted on the {experiment['prior_data']})"
    return label


def _ordered(labels) -> list[str]:
    """Row labels in the order of :data:`VARIANTS`, each variant's ablations after it."""
    return sorted(labels, key=lambda label: (list(VARIANTS).index(label.split(" ")[0]), label))


def _demonstration_level(results: Path, env_id: str, data: Path, allow_pickle: bool) -> dict | None:
    """The demonstration's reward level (its gait cycle replayed open loop, 10 episodes), cached in
    ``demonstration__<env>.json``; computed only with ``--allow-pickle`` (it reads the demonstration)."""
    from latentprior.experiments.lap import LAPExperiment, plan_lap_experiment, replay_reference_cycle
    from latentprior.io import atomic_write_json, read_json

    path = results / f"demonstration__{env_id}.json"
    if path.is_file():
        return read_json(path)
    if not allow_pickle or env_id not in DEMONSTRATIONS or not (data / DEMONSTRATIONS[env_id]).is_file():
        return None
    plan = plan_lap_experiment(LAPExperiment(env_id=env_id, variant="ppo+style", demonstration=str(data / DEMONSTRATIONS[env_id]),
                                             allow_pickle=True))
    level = {**replay_reference_cycle(plan.cycle, env_id, episodes=10, env_kwargs=plan.env_kwargs),
             "cycle": {"start": plan.cycle.start, "length": plan.cycle.length}}
    atomic_write_json(path, level)
    return level


def _gait_table(by_variant: dict[str, list[dict]]) -> list[str]:
    """Each variant's gait against the demonstration's (``measure_gait``, cached per run in ``gait.json``;
    it reads the demonstration, hence only with ``--allow-pickle``)."""
    from latentprior.experiments.lap import measure_gait
    from latentprior.experiments.report import markdown_table

    def mean(values, digits=2):
        values = [v for v in values if v is not None and np.isfinite(v)]  # nan: no step after the start-up
        return "-" if not values else f"{np.mean(values):.{digits}f}" + (f" ± {np.std(values):.{digits}f}" if len(values) > 1 else "")

    rows, demonstration = [], None
    for variant in [v for v in _ordered(by_variant) if v != "bc"]:
        gaits = [measure_gait(r["_dir"]) for r in by_variant[variant]]
        demonstration = gaits[0]["demonstration"]
        g = [x["policy"] for x in gaits]
        rows.append([variant, mean([x["speed"] for x in g]), mean([x["speed_factor"] for x in gaits]),
                     mean([x["cycle_steps"] for x in g], 1), mean([x["frequency_hz"] for x in g]), mean([x["stride_m"] for x in g]),
                     mean([x["reference_similarity"] for x in g]),
                     f"{sum(x['cycle_steps'] is None for x in g)} of {len(g)}",
                     mean([np.mean(x["episode_lengths"]) for x in gaits], 0),
                     # None: every episode ended within the start-up, so no step was recorded
                     mean([(x["executed_action"] or {}).get("mean_abs") for x in gaits]),
                     mean([(x["executed_action"] or {}).get("saturated") for x in gaits])])
    if demonstration is None:
        return []
    d = demonstration
    rows.append(["demonstration", f"{d['speed']:.2f}", "1", str(d["cycle_steps"]), f"{d['frequency_hz']:.2f}", f"{d['stride_m']:.2f}", "1",
                 "-", "-", "-", "-"])
    return [
        "Gaits (`measure_gait`: 3 deterministic episodes per seed, after 200 steps of start-up; mean ± std over seeds). "
        "Similarity: correlation of the mean joint cycle with the demonstration's reference cycle at the best phase "
        "shift; a different cycle length or a low similarity is a gait other than the demonstration's. Episode "
        "length: steps before the episode ended (1000: no fall). Executed actions, in the action bounds mapped to "
        "[-1, 1], after the start-up: mean |a| and the share of entries with |a| > 0.8.",
        "",
        markdown_table(["variant", "speed (m/s)", "x demonstration", "cycle (steps)", "frequency (Hz)", "stride (m)",
                        "similarity to the reference cycle", "seeds without a periodic gait", "episode length",
                        "mean abs(a)", "share abs(a) > 0.8"], rows),
    ]


def _decoder_reach_lines(by_variant: dict[str, list[dict]]) -> list[str]:
    """What each seed's fitted decoder puts within reach (``decoder_reach``, cached per run in
    ``decoder_reach.json``; it reads the demonstration, hence only with ``--allow-pickle``)."""
    import gymnasium as gym

    from latentprior.experiments.lap import LAPExperiment, decoder_reach, plan_lap_experiment, reference_cycle
    from latentprior.experiments.report import markdown_table
    from latentprior.io import atomic_write_json, read_json
    from latentprior.latent.action_prior import ActionPrior

    rows = []
    for r in [r for v in _ordered(by_variant) if v.split(" ")[0] == "ppo+latent" for r in by_variant[v]]:
        path = Path(r["_dir"]) / "decoder_reach.json"
        if path.is_file():
            reach = read_json(path)
        else:
            experiment = LAPExperiment.from_dict(read_json(Path(r["_dir"]) / "experiment.json"))
            plan = plan_lap_experiment(experiment)
            cycle = plan.cycle
            if cycle is None:  # a prior fitted on the whole demonstration: the same reference cycle, through it
                with gym.make(r["env_id"], **plan.env_kwargs) as probe:
                    cycle = reference_cycle(plan.dataset, probe, experiment.cycle_length, experiment.cycle_start)
            reach = decoder_reach(ActionPrior.load(Path(r["_dir"]) / "action_prior"), cycle, r["env_id"], env_kwargs=plan.env_kwargs)
            atomic_write_json(path, reach)
        latents = reach["reference_latents"]
        low, high = np.array(reach["coverage"]["min"]), np.array(reach["coverage"]["max"])
        rows.append([_label(r), str(r["seed"]), f"{reach['replay']['mean']:,.0f} ± {reach['replay']['std']:,.0f}",
                     f"{reach['reconstruction_max_abs']:.3f}", f"[{min(latents['min']):.2f}, {max(latents['max']):.2f}]",
                     f"{np.mean(high - low) / 2:.2f}", f"{np.max(np.maximum(-low, high)):.2f}"])
    if not rows:
        return []
    return [
        "Decoder reach (`decoder_reach`, each ppo+latent seed's prior): the reference cycle replayed open loop "
        "through the prior, `dec(enc(a_ref))` (compare the demonstration row), the largest reconstruction error, "
        "the range of the cycle's latents (a latent policy acts in [-1, 1]), and the decoder's outputs over the "
        "latent box [-1, 1]^k: the mean half-width of each action dimension's range and the largest |dec(z)| "
        "(1: the whole action range; the executed action adds at most w = 0.1 of residual).",
        "",
        markdown_table(["variant", "seed", "dec(enc(a_ref)) replayed", "max reconstruction error", "cycle latents",
                        "decoder range half-width", "max abs(dec(z))"], rows),
    ]


def report(results: Path, data: Path = DATA, allow_pickle: bool = False) -> str:
    from latentprior.experiments.lap import steps_to_reach
    from latentprior.experiments.report import markdown_table, plot_curves

    runs = [{**json.loads(p.read_text()), "_dir": p.parent} for p in sorted(results.glob("*/result.json"))]
    if not runs:
        return f"no results in {results}\n"
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        e = r["experiment"]
        task = (e["target_speed_factor"], e.get("tracking_sharpness", 5.0)) if e["target_speed_factor"] else None
        groups.setdefault((r["metadata"].get("part", "main"), r["env_id"], task), []).append(r)
    first = runs[0]["metadata"]
    machine = first.get("machine", {})
    shaped = sorted({r["variant"] for r in runs if r["return_metric"] != "eval/task_return_mean" and "style" in r["variant"]})
    lines = [
        "# Latent action priors benchmark",
        "",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores; versions {json.dumps(machine.get('versions', {}))}.",
        f"Runs finished between {min(r['finished'] for r in runs)} and {max(r['finished'] for r in runs)}; "
        f"{len(runs)} runs, {sum(r['run_wall_s'] for r in runs) / 3600:,.1f} h of run wall-clock in all.",
        f"Command: `{first.get('command', '?')}`; report written {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}.",
        "",
        "Final task return: each run's last evaluation (deterministic episodes), mean ± std over seeds. "
        "Steps to reach PPO's final return: first evaluation at which the variant's mean curve (over seeds) "
        "reaches the final value of PPO's mean curve. `bc` trains without environment steps; its row is "
        "its single evaluation. The demonstration row is the paper's reference gait cycle's actions replayed "
        "open loop from reset (10 episodes): the demonstration's reward level for an open-loop expert (HalfCheetah's "
        "oscillator), a lower bound for a closed-loop one.",
    ]
    if shaped:
        lines += ["", f"**Caveat**: the evaluations of {', '.join(shaped)} logged no task return, so their figures "
                  "are style-shaped returns, not comparable with the others."]
    goals: list[str] = []
    for (part, env_id, task), group in sorted(groups.items(), key=lambda kv: (PARTS.index(kv[0][0]), kv[0][1], kv[0][2] or (0, 0))):
        by_variant: dict[str, list[dict]] = {}
        for r in group:
            by_variant.setdefault(_label(r), []).append(r)
        curves = {v: _mean_curve(rs) for v, rs in by_variant.items()}
        finals = {v: [r["final_task_return_mean"] for r in rs] for v, rs in by_variant.items()}
        target = float(curves["ppo"].returns[-1]) if "ppo" in curves else None
        rows = []
        for variant in _ordered(by_variant):
            rs, f = by_variant[variant], finals[variant]
            reach = steps_to_reach(curves[variant], target) if target is not None else None
            rows.append([variant, ",".join(str(r["seed"]) for r in rs), f"{max(r['steps'] for r in rs):,}",
                         f"{np.mean(f):,.1f} ± {np.std(f):,.1f}" if len(f) > 1 else f"{f[0]:,.1f} (one seed)",
                         "-" if target is None else _fmt(reach)])
        heading = f"{part}: {env_id}" + (f", {task[0]:g}x the demonstration's speed "
                                          f"({group[0]['resolved']['target_speed']:.2f} m/s), tracking reward "
                                          f"exp(-{task[1]:g} |v - v_des|)" if task else "")
        suffix = "" if not task else f"__speed{task[0]:g}x" + (f"__sharpness{task[1]:g}" if task[1] != 5.0 else "")
        plot = f"{part}__{env_id}{suffix}.png"
        ppo_curves = {v: c for v, c in curves.items() if v != "bc"}
        reference = {"bc": float(curves["bc"].returns[-1])} if "bc" in curves else None
        plot_curves(ppo_curves, results / plot, title=heading, ylabel="task return", reference=reference)
        level = _demonstration_level(results, env_id, data, allow_pickle) if not task else None
        if level is not None:
            rows.append([f"demonstration (its {level['cycle']['length']}-step cycle replayed open loop)", "-", "-",
                         f"{level['mean']:,.1f} ± {level['std']:,.1f}", "-"])
        lines += ["", f"## {heading}", "",
                  markdown_table(["variant", "seeds", "env steps", "final task return", "steps to reach PPO's final return"], rows),
                  "", f"![learning curves]({plot})"]
        if allow_pickle:
            lines += ["", *_gait_table(by_variant)]
            reach = [] if task else _decoder_reach_lines(by_variant)
            lines += ["", *reach] if reach else []
        if part in ("main", "humanoid"):
            goals += _goal_lines(env_id, finals, curves)
    lines += ["", "## Goals", "", *(goals or ["- no PPO / PPO+latent pair finished yet"])]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--envs", default="HalfCheetah-v5,Ant-v5", help="robots of the main and transfer parts")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="variants of the main part")
    parser.add_argument("--transfer-variants", default="ppo+style,ppo+latent+style", help="variants of the transfer part")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=1_000_000, help="PPO steps per main/transfer run (the paper: 2M)")
    parser.add_argument("--humanoid-steps", type=int, default=1_000_000, help="PPO steps per Humanoid run (the paper: 5M)")
    parser.add_argument("--speed-factor", type=float, default=2.0, help="transfer: multiple of the demonstration's speed")
    parser.add_argument("--tracking-sharpness", type=float, default=5.0,
                        help="transfer: k of the tracking reward exp(-k |v - v_des|) (5: the issue's; Ant at 2x gets "
                             "exp(-5 x 3.76) ~ 7e-9 at rest, no gradient, while k = 1 gives 0.02)")
    parser.add_argument("--direction", type=float, default=0.0, help="transfer: Ant's commanded heading (radians)")
    parser.add_argument("--latent-size", choices=("pca", "paper"), default="pca",
                        help="pca: smallest k above 97%% explained variance of the reference cycle's actions "
                             "(HalfCheetah 3, Ant 3, Humanoid 10); paper: the authors' released sizes (3, 4, 9)")
    parser.add_argument("--prior-data", choices=("cycle", "demonstration"), default="cycle",
                        help="the actions the prior is fitted on: the reference gait cycle (default) or the whole "
                             "demonstration (Ant's cycle spans |a| <= 0.45 of its range, the whole demonstration 0.9)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the paper's .npy demonstrations")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="read the paper's .npy demonstrations, which are pickles (can run code): only if you trust them")
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel, one process each (2 cores: 2)")
    parser.add_argument("--results", type=Path, default=None, help="default: benchmarks/results/latent_action_priors[_quick]")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, seed 0, separate folder, then --report")
    parser.add_argument("--report", action="store_true", help="write REPORT.md from the results and print it")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # a child process's single run
    parser.add_argument("--parent-command", help=argparse.SUPPRESS)  # the command that launched it
    args = parser.parse_args(argv)
    args.parts, args.envs, args.seeds = csv_list(args.parts), csv_list(args.envs), csv_list(args.seeds, int)
    args.variants, args.transfer_variants = csv_list(args.variants), csv_list(args.transfer_variants)
    for what, chosen, known in [("parts", args.parts, PARTS), ("envs", args.envs, DEMONSTRATIONS),
                                ("variants", args.variants + args.transfer_variants, VARIANTS)]:
        if set(chosen) - set(known):
            parser.error(f"unknown {what} {sorted(set(chosen) - set(known))}; choose from {', '.join(known)}")
    if args.quick:
        args.seeds = [0]
    results = results_folder(args.results, "latent_action_priors", args.quick)

    if args.job:
        run_job(json.loads(args.job), results, args.parent_command or shlex.join(sys.argv))
        return
    if not args.report or args.quick:
        if not args.allow_pickle:
            parser.error("the paper's demonstrations are pickled .npy files and unpickling can run code; "
                         "pass --allow-pickle if you trust them (see --help)")
        run_jobs(_jobs(args), __file__, results, args.workers, command_line(), result_file=result_file)
    if args.report or args.quick:
        text = report(results, args.data, args.allow_pickle)
        (results / "REPORT.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
