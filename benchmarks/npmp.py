"""Benchmark: neural probabilistic motor primitives (Merel et al., ICLR 2019), issue 4.

Parts (each job is one child process writing ``<results>/<job>.json`` last; finished jobs are
skipped and interrupted ones start again, RL runs and expert training from their checkpoints, so
rerunning the same command continues; see ``benchmarks/common.py``):

  fig3         Single-skill validation (the paper's Fig. 3) with the SB3 zoo HalfCheetah expert
               (``../shared/data/sb3_zoo/sac_HalfCheetah-v3.zip``; the part is skipped with a
               message when the file is absent), and again (job prefix ``fig3cmd``, BC from the
               fewest rollouts only) with one skill of the shipped command-conditioned PPO expert,
               forward at 2 m/s, scored by that skill's tracking reward: a smoother expert, to
               tell LFPC's limits from this expert's. Policies: the expert; the open-loop nominal
               actions; the linear-feedback policy around one nominal rollout (Eq. 6), indexed by
               time and by the nearest nominal state; a student
               network trained by LFPC from that one rollout (Eq. 8); students trained by BC from
               --fig3-rollouts noisy rollouts (DART-like: executed actions with noise 0.1, targets
               the expert's mean actions, Eq. 4). Each is run from the nominal rollout's initial
               state under action noise --fig3-noise, --fig3-episodes episodes per level (one at
               noise 0, which is deterministic); episode i draws the same noise for every policy.
               Students are MLPs from observation to action (``fit_student``), the NPMP decoder's
               size, one per --fig3-seeds seed.
               Goals: LFPC from 1 rollout >= 95 % of BC from 100 at noise 0.1; open loop clearly
               worse (below 80 % of LFPC's return at every noise level > 0, our threshold).
  compression  Many skills in one module. Command-conditioned experts (``<experts-dir>/<env>``,
               as ``latentprior experts train-commanded --env ENV --out <experts-dir>/ENV`` writes
               them; without --experts-dir the package's shipped expert for the robot, see
               ``shipped_commanded``; trained here as a resumable job when missing) give one single-skill expert
               per command of the ``train`` skill set. Data: --rollouts noisy rollouts (noise 0.1)
               per training skill for BC, one nominal rollout with Jacobians per skill for LFPC,
               --references clean rollouts per skill of the ``train`` and ``held_out`` sets as
               references. Modules (ablations): bc (beta 0.1, alpha 0.95, latent 60), bc-beta0.01,
               bc-beta0.001, bc-alpha0, bc-latent20, lfpc. Score: one-shot imitation (``imitate``),
               return under each skill's tracking reward relative to the reference's, median over
               references. Goals (bc): >= 90 % on training skills, >= 80 % on held-out skills.
               --train-skills dense fits the modules (job names ending in __dense) on dozens of
               skills on a finer command grid instead (``dense_skills``: 20 HalfCheetah, 72 Ant),
               the held-out commands excluded and the same rollouts in all, to test how held-out
               imitation depends on how densely the training skills cover the commands.
  latent-opt   For the bc module, the references one-shot imitation fails (relative return below
               50 %, else the --latent-opt-worst worst): median relative return before and after
               optimising their latents against the reference actions (Eq. 10; the paper: 43 % ->
               78 %).
  reuse        A high-level PPO (or SAC, --reuse-algo) policy acting through a frozen decoder
               (``MotorPrimitivesWrapper``) on go-to-target (Ant-v5; sparse reward, the target jumps
               once reached: ``GoToTarget``) and changing-target-speed (--speed-env;
               ``ChangingTargetSpeed``), against the same learner from scratch and through a
               weakly regularised module (bc-beta0.001). Also through the alpha-0 module
               (``npmp-iid``, bc-alpha0): PPO explores with i.i.d. Gaussian noise on the latent
               each step, which a decoder trained under the AR(1) prior (alpha 0.95) never saw;
               an alpha-0 decoder was trained on i.i.d. latents (MoCapAct trains its modules with
               alpha 0 for this reuse). --reuse-variants picks learners. Goal: with the bc
               module, reach the from-scratch agent's final return in <= 50 % of its steps.

Module sizes (--size). ``paper``: NPMPConfig's defaults, Merel et al.'s (latent 60, encoder
2 x 1024, decoder 3 x 1024, K 5, subsequences of 30, minibatches of 512, Adam 1e-4, LFPC 32 x 5
copies); one gradient step takes seconds on a CPU, so it is for an accelerator. ``cpu`` (the
default): latent 60, K 5 and the LFPC copies (5) as the paper, encoder 2 x 256, decoder 3 x 256,
subsequences of 10 (the paper found the length mattered little), minibatches of 64, LFPC 16
subsequences x 5 copies, Adam 3e-4; the Fig. 3 students are 3 x 256 (paper: the decoder's 3 x
1024), minibatches of 256, Adam 3e-4. The report names the size used.

Estimated cost at the defaults, in CPU-hours on the 2-core project VM: extrapolated from step times
measured there on 2026-11-21 while other jobs shared the cores (load average ~4): SB3-zoo-expert
rollouts 15k steps/s (8 environments), a Fig. 3 student step 6.6 ms, an NPMP step 19 ms (BC) and
24 ms (LFPC) at ``--size cpu``, PPO 1.8k (Ant through the decoder) to 4.3k (HalfCheetah from
scratch) steps/s. Estimates, not results; every job JSON records its real ``wall_s``.
  fig3         ~0.7  1M rollout steps (~2 min), 15 students x 20k steps (~35 min), evaluation
  compression  ~2.2  rollouts (~5 min), 2 robots x 6 modules x 30k steps (~1 h per robot), imitation
  latent-opt   <0.1
  reuse        ~3.3  2 tasks x 4 learners x 3 seeds x 1M PPO steps (measured 4-9 min each, beside other jobs)
  together ~6.3 CPU-hours, about 3.5 hours with --workers 2. Missing command-conditioned experts are
  trained first, on top: SAC for the tasks' default budgets (1M steps HalfCheetah, 3M Ant; about
  2 + 6 CPU-hours at the 144 steps/s docs/BENCHMARKS.md measured for SAC on HalfCheetah, Ant's
  rate unmeasured); --expert-steps overrides. ``--size paper`` makes a module step 50-200x slower
  (measured: 1.2 s LFPC, 4.1 s BC).

    python benchmarks/npmp.py --workers 2                     # everything (hours; resumable)
    python benchmarks/npmp.py --parts fig3                    # one part
    python benchmarks/npmp.py --parts compression --envs HalfCheetah-v5 --experts-dir runs/experts
    python benchmarks/npmp.py --quick                         # smoke check: tiny budgets, minutes
    python benchmarks/npmp.py --report                        # REPORT.md from the results
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latentprior.experts.commanded import shipped_commanded

from common import (Job, command_line, csv_list, load_result, load_results, markdown_table, mean_curve, mean_std,
                    report_header, results_folder, run_child, run_then_report)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
ZOO_EXPERT = REPO.parent / "shared" / "data" / "sb3_zoo" / "sac_HalfCheetah-v3.zip"
FIG3_ENV = "HalfCheetah-v5"
#: Fig. 3 is run for two experts of FIG3_ENV: the SB3 zoo SAC expert (returns: the environment's
#: reward), and one skill of the project's shipped command-conditioned PPO expert (returns: the
#: skill's tracking reward, at most 1 per step). Job-name prefix -> (title, command or None).
FIG3_SETUPS = {
    "fig3": ("SB3 zoo SAC expert (`sac_HalfCheetah-v3.zip`, ReLU 256 x 256)", None),
    "fig3cmd": ("the shipped command-conditioned PPO expert (tanh 256 x 256), skill: forward at 2 m/s", {"speed": 2.0, "heading": 0.0}),
}
PARTS = ("fig3", "compression", "latent-opt", "reuse")

#: Module sizes: NPMPConfig and StudentConfig fields (see the module docstring).
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"npmp": {}, "student": {}},
    "cpu": {
        "npmp": {"encoder_hidden": (256, 256), "decoder_hidden": (256, 256, 256), "subsequence_length": 10,
                 "batch_size": 64, "lfpc_subsequences": 16, "learning_rate": 3e-4},
        "student": {"hidden": (256, 256, 256), "batch_size": 256, "learning_rate": 3e-4},
    },
}
#: Compression variants: NPMPConfig fields over the size's, and whether LFPC fits them.
VARIANTS: dict[str, tuple[dict[str, Any], bool, str]] = {
    "bc": ({}, False, "BC from noisy rollouts, beta 0.1, alpha 0.95, latent 60"),
    "bc-beta0.01": ({"beta": 0.01}, False, "beta 0.01"),
    "bc-beta0.001": ({"beta": 0.001}, False, "beta 0.001 (weakly regularised)"),
    "bc-alpha0": ({"alpha": 0.0}, False, "alpha 0 (i.i.d. latents)"),
    "bc-latent20": ({"latent_dim": 20}, False, "latent 20"),
    "lfpc": ({}, True, "LFPC from one nominal rollout per skill"),
}
#: --train-skills: the skills a module is fitted on. "train" is the expert task's own training set;
#: "dense" covers the same command ranges on a finer grid, dozens of skills (the paper compresses
#: thousands of experts), with the task's held-out commands left out. Both use the same number of
#: noisy rollouts in all (--rollouts per skill of the "train" set, shared among the dense skills),
#: so what changes is how densely the skills cover the command space, not how much data there is.
TRAIN_SKILLS = ("train", "dense")


def dense_skills(env_id: str) -> list:
    """The "dense" training commands of a robot: HalfCheetah 0.5-4.25 m/s forward and 0.5-2.25 m/s
    backward every 0.25 m/s (20 skills); Ant every 15 degrees at 0.75, 1.125 and 1.5 m/s (72 skills)."""
    from latentprior.experts.commanded import Command, commanded_task

    task = commanded_task(env_id)
    if env_id == "HalfCheetah-v5":
        grid = [Command(v) for v in [*np.arange(0.5, 4.3, 0.25), *-np.arange(0.5, 2.3, 0.25)]]
    elif env_id == "Ant-v5":
        grid = [Command(v, np.radians(d)) for d in range(0, 360, 15) for v in (0.75, 1.125, 1.5)]
    else:
        raise SystemExit(f"--train-skills dense: no dense skill grid for {env_id} (HalfCheetah-v5, Ant-v5)")
    held_out = set(task.skills("held_out"))
    return [c for c in grid if c.name not in held_out]


def _suffix(train_skills: str) -> str:
    """Job-name suffix of a training-skill set: none for the task's own "train" set (the runs before the option)."""
    return "" if train_skills == "train" else f"__{train_skills}"


#: Reuse: the module variant each high-level learner acts through (None: from scratch).
REUSE_VARIANTS: dict[str, str | None] = {"scratch": None, "npmp": "bc", "npmp-weak": "bc-beta0.001", "npmp-iid": "bc-alpha0"}
#: Reuse tasks: the task wrapper's arguments per robot.
REUSE_TASKS: dict[str, dict[str, dict[str, Any]]] = {
    "go-to-target": {"Ant-v5": {"distance_range": (1.0, 3.0), "radius": 0.5, "hold_steps": 10}},
    "changing-speed": {"HalfCheetah-v5": {"speed_range": (1.0, 4.0), "change_every": (100, 300), "reward_std": 0.5},
                       "Ant-v5": {"speed_range": (0.75, 1.5), "change_every": (100, 300), "reward_std": 0.25}},
}
NOISE_TRAIN = 0.1            # action noise of the noisy rollouts (Merel et al.: 0.1 on [-1, 1] actions)
FAIL_THRESHOLD = 0.5         # latent-opt: "clips with less than 50 % relative expert performance"
GOALS = {"lfpc_vs_bc100": 0.95, "open_loop_vs_lfpc": 0.8, "train": 0.9, "held_out": 0.8, "reuse_fraction": 0.5}
#: --quick: budgets that only check the pipeline end to end; its numbers mean nothing.
QUICK = {"fig3_rollouts": "2,3", "fig3_episode_steps": 100, "fig3_episodes": 2, "fig3_seeds": "0", "student_steps": 50,
         "expert_steps": 1500, "rollouts": 2, "references": 1, "episode_steps": 60, "fit_steps": 20,
         "latent_opt_steps": 10, "reuse_steps": 1024, "seeds": "0", "delta_branches": 2, "delta_horizon": 5}


# ============================================================================================ jobs
def _jobs(args) -> list[Job]:
    """Every job the arguments ask for, with the jobs they need (which are skipped when done)."""
    jobs: dict[str, Job] = {}
    size = SIZES[args.size]

    def add(job: Job) -> None:
        jobs.setdefault(job.name, job)

    if "fig3" in args.parts:
        for prefix, (_, command) in FIG3_SETUPS.items():
            if command is None and not ZOO_EXPERT.is_file():
                print(f"fig3 (zoo expert) skipped: the SB3 zoo HalfCheetah expert is not at {ZOO_EXPERT} (see "
                      "../shared/data/MANIFEST.md for where it comes from: DLR-RM/rl-trained-agents, sac/HalfCheetah-v3_1)",
                      flush=True)
                continue
            if command is not None and shipped_commanded(FIG3_ENV) is None:
                continue
            expert = str(ZOO_EXPERT) if command is None else str(shipped_commanded(FIG3_ENV))
            # The zoo setup keeps its original job specs (no "data"/"command" keys) so its results stay valid.
            data = {"kind": "fig3-data", "expert": expert, "rollouts": max(args.fig3_rollouts), "seed": 0,
                    "episode_steps": args.fig3_episode_steps, **({} if command is None else {"skill": command})}
            link = {} if command is None else {"data": f"{prefix}__data"}
            add(Job(f"{prefix}__data", "fig3", data))
            evaluation = {"noise": args.fig3_noise, "episodes": args.fig3_episodes}
            add(Job(f"{prefix}__baselines", "fig3", {"kind": "fig3-baselines", **evaluation, **link}, (f"{prefix}__data",)))

            def student(name: str, rollouts: int, seed: int, delta_horizon: int | None = None) -> None:
                spec = {"kind": "fig3-student", "student": name, "rollouts": rollouts, "lfpc": delta_horizon is not None,
                        "config": {**size["student"], "steps": args.student_steps, "seed": seed}, **evaluation, **link}
                if delta_horizon is not None:
                    spec |= {"delta_horizon": delta_horizon, "delta_branches": args.delta_branches}
                add(Job(f"{prefix}__{name}__seed{seed}", "fig3", spec, (f"{prefix}__data",)))

            # The commanded setup answers one question (does LFPC work for a smoother expert?): BC from
            # the fewest rollouts only.
            bc_rollouts = args.fig3_rollouts if command is None else [min(args.fig3_rollouts)]
            for seed in args.fig3_seeds:
                student("lfpc1", 1, seed, args.delta_horizon)
                for rollouts in bc_rollouts:
                    student(f"bc{rollouts}", rollouts, seed)
            # Ablation of Delta's width (seed 0): one-step transition noise, and 20-step branches.
            for horizon in sorted({1, 20} - {args.delta_horizon}):
                student(f"lfpc1-h{horizon}", 1, args.fig3_seeds[0], horizon)

    def compression(env_id: str, variants: list[str], train_skills: str = "train") -> None:
        # The expert: --experts-dir/<env>, else the one shipped in the package, else trained into runs/npmp_experts.
        if args.experts_dir is not None:
            expert_out = Path(args.experts_dir).resolve() / env_id
        elif args.quick:
            expert_out = (args.results / "runs" / "experts" / env_id).resolve()
        else:
            expert_out = shipped_commanded(env_id) or REPO / "runs" / "npmp_experts" / env_id
        add(Job(f"experts__{env_id}", "compression", {
            "kind": "experts", "env_id": env_id, "out": str(expert_out), "steps": args.expert_steps}))
        suffix, data_job = _suffix(train_skills), f"data__{env_id}{_suffix(train_skills)}"
        rollouts = args.rollouts
        if train_skills == "dense":  # the same rollouts in all as the "train" set's
            from latentprior.experts.commanded import commanded_task

            rollouts = max(round(args.rollouts * len(commanded_task(env_id).skills("train")) / len(dense_skills(env_id))), 1)
        add(Job(data_job, "compression", {
            "kind": "data", "env_id": env_id, "rollouts": rollouts, "references": args.references,
            "episode_steps": args.episode_steps, "delta_horizon": args.delta_horizon,
            "delta_branches": args.delta_branches, **({"train_skills": train_skills} if suffix else {})},
            (f"experts__{env_id}",)))
        for variant in variants:
            overrides, lfpc, _ = VARIANTS[variant]
            config = {**size["npmp"], **overrides, "steps": args.fit_steps, "log_interval": max(args.fit_steps // 10, 1)}
            add(Job(f"fit__{env_id}__{variant}{suffix}", "compression", {
                "kind": "fit", "env_id": env_id, "variant": variant, "lfpc": lfpc, "config": config,
                **({"data": data_job} if suffix else {})}, (data_job,)))

    if "compression" in args.parts:
        for env_id in args.envs:
            for train_skills in args.train_skills:
                compression(env_id, args.variants, train_skills)
    if "latent-opt" in args.parts:
        for env_id in args.envs:
            compression(env_id, ["bc"])
            add(Job(f"latentopt__{env_id}", "latent-opt", {
                "kind": "latent-opt", "env_id": env_id, "steps": args.latent_opt_steps, "worst": args.latent_opt_worst},
                (f"fit__{env_id}__bc",)))
    if "reuse" in args.parts:
        for task in args.reuse_tasks:
            env_id = "Ant-v5" if task == "go-to-target" else args.speed_env
            compression(env_id, [REUSE_VARIANTS[v] for v in args.reuse_variants if REUSE_VARIANTS[v] is not None])
            for seed in args.seeds:
                for variant in args.reuse_variants:
                    module = REUSE_VARIANTS[variant]
                    spec = {"kind": "reuse", "task": task, "env_id": env_id, "variant": variant, "module_variant": module,
                            "task_kwargs": REUSE_TASKS[task][env_id], "algo": args.reuse_algo, "steps": args.reuse_steps,
                            "seed": seed}
                    add(Job(f"reuse__{task}__{variant}__seed{seed}", "reuse", spec,
                            () if module is None else (f"fit__{env_id}__{module}",)))
    return list(jobs.values())


def _handle(job: dict[str, Any], results: Path) -> dict[str, Any]:
    """The child's entry: dispatch on ``spec["kind"]``; the handler gets the spec and the command line."""
    handlers: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
        "fig3-data": _fig3_data, "fig3-baselines": _fig3_baselines, "fig3-student": _fig3_student,
        "experts": _experts, "data": _data, "fit": _fit, "latent-opt": _latent_opt, "reuse": _reuse,
    }
    return handlers[job["spec"]["kind"]]({**job["spec"], "command": job["command"]}, results)


def _runs(results: Path, *parts: str) -> Path:
    path = results.joinpath("runs", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


# ============================================================================= shared job pieces
def _start_at(env, qpos: np.ndarray, qvel: np.ndarray, seed: int) -> np.ndarray:
    """Reset, then put the simulator in a recorded state; the observation of that state."""
    env.reset(seed=seed)
    env.unwrapped.set_state(qpos, qvel)
    return env.unwrapped._get_obs()


def _branch_perturbation_std(
    expert, make_env: Callable, nominal, horizon: int, branches: int, seed: int
) -> tuple[np.ndarray, int]:
    """LFPC's ``Delta``: the state deviation action noise induces within ``horizon`` steps of the nominal.

    The paper estimates "the stationary transition noise distribution induced by noisy actions
    ... from a small number of trajectories". Whole noisy rollouts drift out of phase with the
    nominal (a gait cycle shifted in time is no small perturbation), so each of ``branches``
    noisy rollouts starts from a nominal state ``s*_t0`` (simulator state restored) and runs
    ``horizon`` steps with action noise 0.1; :func:`estimate_perturbation_std` fits their
    deviation from ``s*_t0+1 .. s*_t0+h``.

    :return: ``(sum of squared stds weighted by rows, rows)``, to pool over skills.
    """
    from latentprior.latent.npmp import estimate_perturbation_std

    rng = np.random.default_rng(seed)
    env = make_env()
    total, rows = 0.0, 0
    try:
        for _ in range(branches):
            t0 = int(rng.integers(0, max(nominal.num_steps - horizon, 0) + 1))
            obs = _start_at(env, nominal.qpos[t0], nominal.qvel[t0], int(rng.integers(2**31)))
            states = []
            for _ in range(min(horizon, nominal.num_steps - t0)):
                obs, _, terminated, truncated, _ = env.step(expert.act(obs, noise_std=NOISE_TRAIN, rng=rng))
                states.append(obs)
                if terminated:
                    break
            std = estimate_perturbation_std(nominal.observations[t0 + 1: t0 + 1 + len(states)], [np.stack(states)])
            total, rows = total + std**2 * len(states), rows + len(states)
    finally:
        env.close()
    return total, rows


# ============================================================================================ fig3
def _fig3_expert(data_spec: dict) -> tuple[Any, list[Callable]]:
    """A Fig. 3 setup's single-skill expert and the wrappers of its environment (the skill's task reward)."""
    from latentprior.experts import load_expert
    from latentprior.experts.commanded import Command, load_commanded

    if data_spec.get("skill") is None:
        return load_expert(data_spec["expert"], env=FIG3_ENV), []
    commanded = load_commanded(data_spec["expert"])
    command = Command.from_dict(data_spec["skill"], "fig3 skill command")
    return commanded.skill(command), [commanded.task.wrapper(command)]


def _fig3_env(wrappers: list[Callable], **make_kwargs: Any):
    import gymnasium as gym

    env = gym.make(FIG3_ENV, **make_kwargs)
    for wrap in wrappers:
        env = wrap(env)
    return env


def _fig3_data(spec: dict, results: Path) -> dict:
    """One nominal rollout with Jacobians and the noisy rollouts of a setup's expert."""
    from latentprior.data.collect import collect

    folder = "fig3" if spec.get("skill") is None else "fig3cmd"
    out = _runs(results, folder)
    expert, wrappers = _fig3_expert(spec)
    license = "MIT (DLR-RM/rl-trained-agents)" if spec.get("skill") is None else "latentprior (generated)"
    steps = spec["episode_steps"]
    nominal = collect(expert, FIG3_ENV, 1, noise_std=0.0, seed=spec["seed"], num_envs=1, max_episode_steps=steps,
                      jacobians=True, out=out / "nominal.h5", progress=False, license=license, wrappers=wrappers)
    noisy = collect(expert, FIG3_ENV, spec["rollouts"], noise_std=NOISE_TRAIN, seed=spec["seed"] + 1, num_envs=8,
                    max_episode_steps=steps, out=out / "noisy.h5", progress=False, license=license, wrappers=wrappers)
    return {
        "nominal_return": float(nominal.returns[0]),
        "noisy_return_mean": float(noisy.returns.mean()), "noisy_return_std": float(noisy.returns.std()),
        "collect_s": nominal.seconds + noisy.seconds, "noisy_steps": noisy.steps,
        "files": {"nominal": f"runs/{folder}/nominal.h5", "noisy": f"runs/{folder}/noisy.h5"},
        "outputs": [f"runs/{folder}/nominal.h5", f"runs/{folder}/noisy.h5"],
    }


def _evaluate_fig3(policy: Callable, expert, nominal, noise_levels: list[float], episodes: int,
                   wrappers: list[Callable] = ()) -> dict:
    """Returns of ``policy(obs, t)`` from the nominal's initial state under each action noise level.

    Episode ``i`` at a noise level draws the same noise for every policy (seeded by ``(i, level)``),
    so policies are compared on the same perturbations. Noise 0 is deterministic: one episode.
    """
    env = _fig3_env(list(wrappers), max_episode_steps=nominal.num_steps)
    low, high = env.action_space.low, env.action_space.high
    out = {}
    try:
        for level, noise in enumerate(noise_levels):
            returns = []
            for i in range(1 if noise == 0 else episodes):
                rng = np.random.default_rng([i, level])
                obs, total = _start_at(env, nominal.qpos[0], nominal.qvel[0], i), 0.0
                for t in range(nominal.num_steps):
                    action = expert.perturb(np.clip(policy(obs, t), low, high), noise, rng)
                    obs, reward, terminated, truncated, _ = env.step(action)
                    total += float(reward)
                    if terminated or truncated:
                        break
                returns.append(total)
            out[f"{noise:g}"] = {"returns": returns, "mean": float(np.mean(returns)), "std": float(np.std(returns))}
    finally:
        env.close()
    return out


def _fig3_baselines(spec: dict, results: Path) -> dict:
    from latentprior.data import load_dataset
    from latentprior.latent.npmp import LinearFeedbackPolicy

    data = load_result(results, spec.get("data", "fig3__data"))
    expert, wrappers = _fig3_expert(data["spec"])
    nominal = load_dataset(results / data["files"]["nominal"])[0]
    feedback = LinearFeedbackPolicy.from_episode(nominal)
    policies = {
        "expert": lambda obs, t: expert.mean_action(obs),
        "open loop": lambda obs, t: nominal.expert_actions[t],
        "linear feedback": feedback.mean_action,
        "linear feedback, nearest state": lambda obs, t: feedback.mean_action(obs),
    }
    return {"policies": {name: _evaluate_fig3(policy, expert, nominal, spec["noise"], spec["episodes"], wrappers)
                         for name, policy in policies.items()},
            "linearisation": _linearisation_error(expert, nominal, spec.get("delta_horizons", [1, 5, 20]),
                                                  spec.get("delta_branches", 20), wrappers)}


def _linearisation_error(expert, nominal, horizons: list[int], branches: int, wrappers: list[Callable] = (),
                         samples: int = 2000) -> dict:
    """How well ``a*_t + J_t ds`` predicts the expert at ``s*_t + ds``, ``ds ~ Delta``, for each Delta.

    For each branch horizon: rms error of the (clipped) linear-feedback action against the expert's
    mean action at the perturbed state, next to the rms error of the open-loop action ``a*_t`` (no
    feedback). A ratio near 1 means the linearisation carries no more of the expert's response
    than the nominal action does: LFPC's targets are then no better than BC from the nominal alone.
    """
    from latentprior.latent.npmp import linear_feedback_targets

    rng = np.random.default_rng(0)
    states, actions, jacobians = nominal.observations[:-1], nominal.expert_actions, nominal.jacobians
    out = {}
    for horizon in horizons:
        total, rows = _branch_perturbation_std(expert, lambda: _fig3_env(list(wrappers)), nominal, horizon, branches, 0)
        std = np.sqrt(total / rows)
        index = rng.integers(0, len(states), samples)
        ds = std * rng.standard_normal((samples, states.shape[1]))
        truth = expert.mean_action((states[index] + ds).astype(np.float32))
        feedback = np.clip(linear_feedback_targets(actions[index], jacobians[index], ds),
                           expert.action_space.low, expert.action_space.high)
        lf, ol = (float(np.sqrt(np.mean((x - truth) ** 2))) for x in (feedback, actions[index]))
        out[str(horizon)] = {"delta_std": std.tolist(), "rms_linear_feedback": lf, "rms_open_loop": ol, "ratio": lf / ol}
    return out


def _fig3_student(spec: dict, results: Path) -> dict:
    import time

    from latentprior.data import Dataset, load_dataset
    from latentprior.latent.npmp import StudentConfig, fit_student

    data = load_result(results, spec.get("data", "fig3__data"))
    expert, wrappers = _fig3_expert(data["spec"])
    nominal = load_dataset(results / data["files"]["nominal"])
    delta_std = None
    if spec["lfpc"]:
        train = nominal
        total, rows = _branch_perturbation_std(expert, lambda: _fig3_env(wrappers), nominal[0], spec["delta_horizon"],
                                               spec["delta_branches"], spec["config"]["seed"])
        delta_std = np.sqrt(total / rows)
    else:
        noisy = load_dataset(results / data["files"]["noisy"])
        train = Dataset(noisy.episodes[: spec["rollouts"]], noisy.metadata)
    config = StudentConfig(**spec["config"], perturbation_std=None if delta_std is None else tuple(delta_std))
    t0 = time.perf_counter()
    student = fit_student(train, config, lfpc=spec["lfpc"])
    fit_s = time.perf_counter() - t0
    evaluation = _evaluate_fig3(lambda obs, t: student.mean_action(obs), expert, nominal[0], spec["noise"], spec["episodes"],
                                wrappers)
    nominal_rms = float(np.sqrt(np.mean((student.mean_action(nominal[0].observations[:-1]) - nominal[0].expert_actions) ** 2)))
    return {"fit_s": fit_s, "train_steps": train.num_steps, "final_mse": student.history["mse"][-1],
            "nominal_action_rms": nominal_rms, "history": student.history, "evaluation": evaluation,
            "delta_std": None if delta_std is None else delta_std.tolist()}


# ===================================================================================== compression
def _experts(spec: dict, results: Path) -> dict:
    """The command-conditioned expert: load it, or train it (resumable) when it is missing."""
    from latentprior.experts.commanded import TRAINING_DEFAULTS, commanded_task, load_commanded, train_commanded
    from latentprior.rl import SACConfig

    out = Path(spec["out"])
    task = commanded_task(spec["env_id"])
    trained_here = not (out / "config.json").is_file()
    if trained_here:
        steps = spec["steps"] or task.default_steps
        fields = {**TRAINING_DEFAULTS["sac"], "total_steps": steps, "eval_every": max(steps // 10, 1), "eval_episodes": 5,
                  "tensorboard": False}
        if spec["quick"]:
            fields.update(learning_starts=500, eval_episodes=0, checkpoint_every=0)
        train_commanded(task, SACConfig(**fields), out, progress=False, evaluate_steps=60 if spec["quick"] else None,
                        metadata={"command": spec["command"]})
    expert = load_commanded(out)
    skills = json.loads((out / "skills.json").read_text()) if (out / "skills.json").is_file() else None
    return {"trained_here": trained_here, "expert_info": expert.info, "skills": skills, "outputs": [str(out / "config.json")]}


def _data(spec: dict, results: Path) -> dict:
    """Noisy rollouts (BC), nominal rollouts with Jacobians (LFPC), clean references, Delta."""
    import gymnasium as gym

    from latentprior.data import load_dataset
    from latentprior.experts.commanded import Command, collect_skills, load_commanded

    env_id = spec["env_id"]
    expert = load_commanded(load_result(results, f"experts__{env_id}")["spec"]["out"])
    folder = env_id + _suffix(spec.get("train_skills", "train"))
    out = _runs(results, "data", folder)
    options = {"max_episode_steps": spec["episode_steps"], "progress": False, "command": spec["command"]}
    # name: (skill set, episodes per skill, action noise, seed, Jacobians)
    train = dense_skills(env_id) if spec.get("train_skills") == "dense" else "train"
    plan = {"train_bc": (train, spec["rollouts"], NOISE_TRAIN, 0, False), "train_lfpc": (train, 1, 0.0, 1, True),
            "reference_train": (train, spec["references"], 0.0, 2, False),
            "reference_held_out": ("held_out", spec["references"], 0.0, 3, False)}
    made = {name: collect_skills(expert, skills, episodes, noise_std=noise, seed=seed, jacobians=jacobians,
                                 out=out / f"{name}.h5", **options)
            for name, (skills, episodes, noise, seed, jacobians) in plan.items()}
    nominal = load_dataset(out / "train_lfpc.h5")
    total, rows = 0.0, 0
    for k, skill in enumerate(nominal.metadata.extra["skills"]):
        command = Command.from_dict(skill["command"], f"{out / 'train_lfpc.h5'}: skill {k}")
        t, r = _branch_perturbation_std(expert.skill(command), lambda: gym.make(env_id, **expert.task.env_kwargs),
                                        nominal[skill["first_episode"]], spec["delta_horizon"], spec["delta_branches"], seed=k)
        total, rows = total + t, rows + r
    files = {name: f"runs/data/{folder}/{name}.h5" for name in made}
    return {
        "files": files, "outputs": list(files.values()),
        "returns": {name: {"mean": float(r.returns.mean()), "std": float(r.returns.std()), "episodes": r.episodes,
                           "steps": r.steps, "seconds": r.seconds} for name, r in made.items()},
        "delta_std": np.sqrt(total / rows).tolist(), "train_skill_count": len(nominal.metadata.extra["skills"]),
    }


def _fit(spec: dict, results: Path) -> dict:
    """Fit one module and score it by one-shot imitation of training and held-out skills."""
    import time

    from latentprior.data import load_dataset
    from latentprior.experiments.npmp import imitate, summarize_imitation
    from latentprior.latent.npmp import NPMPConfig, fit_npmp

    env_id, variant = spec["env_id"], spec["variant"]
    data_job = spec.get("data", f"data__{env_id}")
    data = load_result(results, data_job)
    train = load_dataset(results / data["files"]["train_lfpc" if spec["lfpc"] else "train_bc"])
    config = NPMPConfig(**spec["config"], lfpc_perturbation_std=tuple(data["delta_std"]) if spec["lfpc"] else None)
    module = f"runs/modules/{env_id}__{variant}{data_job.removeprefix(f'data__{env_id}')}"
    npmp = fit_npmp(train, config, lfpc=spec["lfpc"], checkpoint_dir=results / module)  # an interrupted fit resumes
    fit_s = npmp.history["seconds"][-1]  # over every resumed segment
    npmp.save(results / module)
    out: dict[str, Any] = {"module": module, "outputs": [module], "fit_s": fit_s, "fit_s_per_step": fit_s / config.steps,
                           "final": {k: v[-1] for k, v in npmp.history.items() if v}}
    t0 = time.perf_counter()
    for skills in ("train", "held_out"):
        imitation = imitate(npmp, load_dataset(results / data["files"][f"reference_{skills}"]), module_source=module)
        out[skills] = {**summarize_imitation(imitation), "results": [r.to_dict() for r in imitation]}
    out["imitate_s"] = time.perf_counter() - t0
    return out


def _latent_opt(spec: dict, results: Path) -> dict:
    """Re-imitate the references the bc module fails, with latents optimised by Eq. 10."""
    from latentprior.data import load_dataset
    from latentprior.experiments.npmp import imitate
    from latentprior.latent.npmp import NPMP

    env_id = spec["env_id"]
    fit = load_result(results, f"fit__{env_id}__bc")
    data = load_result(results, f"data__{env_id}")
    npmp = NPMP.load(results / fit["module"])
    candidates = [(r["relative_return"], skills, r["episode"])
                  for skills in ("train", "held_out") for r in fit[skills]["results"] if r["relative_return"] is not None]
    failing = sorted(c for c in candidates if c[0] < FAIL_THRESHOLD)
    chosen, rule = (failing, f"relative return < {FAIL_THRESHOLD:.0%}") if failing else (
        sorted(candidates)[: spec["worst"]], f"none below {FAIL_THRESHOLD:.0%}: the {spec['worst']} worst")
    rows = []
    for skills in ("train", "held_out"):
        indices = [episode for _, s, episode in chosen if s == skills]
        if not indices:
            continue
        before = {episode: value for value, s, episode in chosen if s == skills}
        reference = load_dataset(results / data["files"][f"reference_{skills}"])
        for r in imitate(npmp, reference, optimize=True, optimize_steps=spec["steps"], indices=indices):
            rows.append({"skills": skills, "episode": r.episode, "skill": r.skill, "before": before[r.episode],
                         "after": r.relative_return, "action_mse_after": r.action_mse})
    after = [r["after"] for r in rows if r["after"] is not None]
    return {"rule": rule, "references": rows, "candidates": len(candidates),
            "median_before": float(np.median([r["before"] for r in rows])) if rows else None,
            "median_after": float(np.median(after)) if after else None}


# ============================================================================================ reuse
def _reuse(spec: dict, results: Path) -> dict:
    """A high-level learner on a reuse task, from scratch or through a frozen decoder."""
    import gymnasium as gym

    from latentprior.envs import tasks
    from latentprior.envs.make import make_vec_env
    from latentprior.envs.motor_primitives import MotorPrimitivesWrapper
    from latentprior.experiments.report import read_curve
    from latentprior.experts.commanded import commanded_task
    from latentprior.latent.npmp import NPMP
    from latentprior.rl import PPOConfig, SACConfig, ppo, sac

    env_id, steps = spec["env_id"], spec["steps"]
    npmp = None
    if spec["module_variant"] is not None:
        npmp = NPMP.load(results / load_result(results, f"fit__{env_id}__{spec['module_variant']}")["module"])
    wrapper = {"go-to-target": tasks.GoToTarget, "changing-speed": tasks.ChangingTargetSpeed}[spec["task"]]
    env_kwargs = commanded_task(env_id).env_kwargs  # the modules' observations (Ant: 27-d)
    episode_steps = 100 if spec["quick"] else None

    def make_one() -> gym.Env:
        env = gym.make(env_id, max_episode_steps=episode_steps, disable_env_checker=True, **env_kwargs)
        if npmp is not None:
            env = MotorPrimitivesWrapper(env, npmp)
        return wrapper(env, **spec["task_kwargs"])

    fields = {"total_steps": steps, "seed": spec["seed"], "eval_every": max(steps // 20, 1), "eval_episodes": 5,
              "checkpoint_every": max(steps // 10, 1), "tensorboard": False}
    if spec["algo"] == "ppo":
        config, learner = PPOConfig(**fields, **({"n_steps": 256} if spec["quick"] else {})), ppo.train
    else:
        config, learner = SACConfig(**fields, learning_starts=200 if spec["quick"] else 10_000), sac.train
    run_dir = _runs(results, "reuse") / f"{spec['task']}__{spec['variant']}__seed{spec['seed']}"
    result = learner(functools.partial(make_vec_env, make_one), config, run_dir, progress=False,
                     metadata={"task": spec["task"], "variant": spec["variant"], "env_id": env_id})
    curve = read_curve(result.paths["metrics"], y="eval/return_mean")
    return {"curve": {"steps": curve.steps.tolist(), "return_mean": curve.returns.tolist()},
            "final_return_mean": float(curve.returns[-1]), "train_s": result.metrics.get("time/train_s"),
            "steps_done": result.steps}


# =========================================================================================== report
def _plot_bars(groups: dict[str, dict[str, float]], path: Path, title: str, ylabel: str) -> None:
    """Grouped bars: ``groups[group][series] = value``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latentprior.io import atomic_path

    names = list(groups)
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    fig, ax = plt.subplots(figsize=(7.0, 4.0), dpi=120)
    width = 0.8 / max(len(series), 1)
    for k, s in enumerate(series):
        ax.bar(np.arange(len(names)) + k * width, [groups[n].get(s, np.nan) for n in names], width, label=s)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _verdict(ok: bool | None) -> str:
    return "not assessable" if ok is None else ("met" if ok else "missed")


def _shown_path(path: str) -> str:
    """``path`` relative to the repository when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return path


def _report_fig3(runs: dict[str, dict], results: Path, prefix: str = "fig3") -> tuple[list[str], list[str]]:
    from latentprior.experiments.report import Curve, plot_curves

    title, command = FIG3_SETUPS[prefix]
    heading = f"## fig3: single-skill validation, {title}"
    if f"{prefix}__data" not in runs:
        reason = "" if command is not None or ZOO_EXPERT.is_file() else f" (the SB3 zoo expert is not at {ZOO_EXPERT})"
        return [heading, "", f"No results{reason}."], []
    data = runs[f"{prefix}__data"]
    students: dict[str, list[dict]] = {}
    for name, r in runs.items():
        if r["spec"]["kind"] == "fig3-student" and name.startswith(f"{prefix}__"):
            students.setdefault(r["spec"]["student"], []).append(r)
    baselines = runs.get(f"{prefix}__baselines", {}).get("policies", {})
    evaluations = [*baselines.values(), *(r["evaluation"] for rs in students.values() for r in rs)]
    noise = sorted({level for evaluation in evaluations for level in evaluation}, key=float)
    table: dict[str, dict[str, tuple[float, str]]] = {}
    for name, evaluation in baselines.items():
        table[name] = {n: (evaluation[n]["mean"], mean_std(evaluation[n]["returns"], 0)) for n in noise if n in evaluation}
    # LFPC (1 rollout) first, then BC by its number of rollouts.
    main_horizon = next((rs[0]["spec"]["delta_horizon"] for name, rs in students.items() if name == "lfpc1"), None)
    for student in sorted(students, key=lambda s: (students[s][0]["spec"]["rollouts"], s)):
        rs = students[student]
        if not rs[0]["spec"]["lfpc"]:
            label = f"BC, {rs[0]['spec']['rollouts']} noisy rollouts"
        elif student == "lfpc1":
            label = "LFPC, 1 rollout"
        else:
            label = f"LFPC, 1 rollout, Delta from {rs[0]['spec'].get('delta_horizon')}-step branches"
        if len(rs) == 1:
            table[label] = {n: (rs[0]["evaluation"][n]["mean"], mean_std(rs[0]["evaluation"][n]["returns"], 0)) for n in noise}
        else:
            table[label] = {n: (float(np.mean([r["evaluation"][n]["mean"] for r in rs])),
                                mean_std([r["evaluation"][n]["mean"] for r in rs], 0)) for n in noise}
    rows = [[name, *[table[name].get(n, (None, "-"))[1] for n in noise]] for name in table]
    episodes = next((r["spec"]["episodes"] for rs in students.values() for r in rs), "?")
    curves = {name: Curve(np.array([float(n) for n in noise]), np.array([table[name][n][0] for n in noise]))
              for name in table if all(n in table[name] for n in noise)}
    if curves:
        plot_curves(curves, results / f"{prefix}.png", title=f"{FIG3_ENV}: {title.split(' (')[0]} and its clones",
                    xlabel="action noise std (on [-1, 1] actions)", ylabel="return")
    fit_s = [r["fit_s"] for rs in students.values() for r in rs]
    lines = [
        heading, "",
        f"{FIG3_ENV}, {title}" + ("" if command is None else "; returns are the skill's tracking reward (at most 1 per step)") +
        f"; nominal rollout return {data['nominal_return']:,.0f}; "
        f"noisy rollouts (noise {NOISE_TRAIN}) {data['noisy_return_mean']:,.0f} ± {data['noisy_return_std']:,.0f}. "
        f"Every policy starts in the nominal rollout's initial state; {episodes} episodes per noise level > 0 (same noise "
        f"for every policy), one at noise 0. Expert, open loop and linear feedback: mean ± std over episodes; students: "
        f"mean ± std over training seeds of each seed's mean (rows from one seed show that seed's mean ± std over "
        f"episodes). LFPC's Delta: the state deviation from the nominal after {main_horizon} steps with action noise "
        f"{NOISE_TRAIN} (branched rollouts from nominal states; the ablation rows use 1 and 20 steps); targets "
        f"clipped to the action bounds. Student fits took {mean_std(fit_s, 0)} s each.",
        "",
        markdown_table(["policy", *[f"noise {n}" for n in noise]], rows), "", f"![{prefix}]({prefix}.png)",
    ]
    linearisation = runs.get(f"{prefix}__baselines", {}).get("linearisation")
    if linearisation:
        lines += ["", "How far the linearisation holds: at states ``s*_t + ds``, ``ds ~ Delta`` (2,000 samples), the rms "
                  "error against the expert's mean action of the linear-feedback action (clipped to the bounds) and of "
                  "the open-loop action ``a*_t``. A ratio near 1: the Jacobians predict little of the expert's response.", "",
                  markdown_table(["Delta from", "velocity std (mean)", "rms linear feedback", "rms open loop", "ratio"],
                                 [[f"{h}-step branches", f"{np.mean(v['delta_std'][8:]):.2f}", f"{v['rms_linear_feedback']:.3f}",
                                   f"{v['rms_open_loop']:.3f}", f"{v['ratio']:.2f}"] for h, v in linearisation.items()])]
    goals = []
    lfpc, bc100 = table.get("LFPC, 1 rollout"), table.get("BC, 100 noisy rollouts")
    high = max(noise, key=float) if noise else None
    if lfpc and bc100 and high in lfpc and high in bc100 and bc100[high][0] > 0:
        ratio = lfpc[high][0] / bc100[high][0]
        goals.append(f"- {prefix} ({title.split(' (')[0]}): LFPC from 1 rollout at noise {high}: {lfpc[high][0]:,.0f} vs BC from 100: "
                     f"{bc100[high][0]:,.0f} = {ratio:.0%} (goal >= {GOALS['lfpc_vs_bc100']:.0%}): "
                     f"**{_verdict(ratio >= GOALS['lfpc_vs_bc100'])}**")
    if lfpc and "open loop" in table:
        noisy = [n for n in noise if float(n) > 0 and n in table["open loop"]]
        ratios = {n: table["open loop"][n][0] / lfpc[n][0] for n in noisy if lfpc[n][0] > 0}
        ok = bool(ratios) and all(v < GOALS["open_loop_vs_lfpc"] for v in ratios.values()) if noisy else None
        shown = ", ".join(f"noise {n}: {v:.0%}" for n, v in ratios.items())
        goals.append(f"- {prefix} ({title.split(' (')[0]}): open loop relative to LFPC ({shown}; 'clearly worse' = below "
                     f"{GOALS['open_loop_vs_lfpc']:.0%} at every noise level > 0): **{_verdict(ok)}**")
    return lines, goals


def _report_compression(runs: dict[str, dict], results: Path) -> tuple[list[str], list[str]]:
    fits = [r for r in runs.values() if r["spec"]["kind"] == "fit"]
    if not fits:
        return ["## compression", "", "No results yet."], []
    lines, goals = ["## compression: many skills in one module", ""], []
    for env_id in sorted({r["spec"]["env_id"] for r in fits}):
        experts = runs.get(f"experts__{env_id}", {})
        data = runs.get(f"data__{env_id}", {})
        skills = experts.get("skills") or {}
        quality = ", ".join(f"{name} {np.mean([s['task_reward_mean'] for s in v.values()]):.2f}" for name, v in skills.items())
        lines += [f"### {env_id}", "",
                  f"Experts: `{_shown_path(experts.get('spec', {}).get('out', '?'))}` ({experts.get('expert_info', {}).get('steps', '?'):,} "
                  f"{experts.get('expert_info', {}).get('algo', 'RL').upper()} "
                  f"steps{', trained by this benchmark' if experts.get('trained_here') else ''}); mean tracking reward per "
                  f"step of their skills (1 = exact): {quality or '-'}. Data: {data['spec']['rollouts']} noisy rollouts per "
                  f"training skill, {data['spec']['references']} clean references per skill, episodes of "
                  f"{data['spec']['episode_steps']} steps. Relative return: one-shot imitation's return over the reference's "
                  "under the skill's tracking reward; median (mean) over references.", ""]
        dense = runs.get(f"data__{env_id}__dense")
        if dense:
            lines += [f"Modules marked __dense were fitted on {dense.get('train_skill_count', '?')} skills on a finer grid "
                      f"(`dense_skills`; the held-out commands excluded) with {dense['spec']['rollouts']} noisy rollouts "
                      "per skill, the same rollouts in all; their training-skill score is over those skills.", ""]
        rows, bars = [], {}
        for variant, train_skills in ((v, t) for v in VARIANTS for t in TRAIN_SKILLS):
            name = variant + _suffix(train_skills)
            r = runs.get(f"fit__{env_id}__{name}")
            if r is None:
                continue
            train, held = r["train"], r["held_out"]
            what = VARIANTS[variant][2] + (f"; {train_skills} training skills" if train_skills != "train" else "")
            rows.append([name, what, _relative(train), _relative(held),
                         f"{train['terminated']}/{held['terminated']}", f"{r['final'].get('mse', float('nan')):.4f}",
                         f"{r['final'].get('kl', float('nan')):.2f}",
                         f"{r['fit_s']:,.0f}"])
            bars[name] = {"training skills": train["relative_return_median"] or 0.0,
                          "held-out skills": held["relative_return_median"] or 0.0}
        _plot_bars(bars, results / f"compression__{env_id}.png", f"{env_id}: one-shot imitation", "median relative return")
        lines += [markdown_table(["module", "what", "training skills", "held-out skills", "fell (train/held-out)",
                                  "final action MSE", "final KL/step", "fit (s)"], rows),
                  "", f"![compression](compression__{env_id}.png)", ""]
        for train_skills in TRAIN_SKILLS:
            base = runs.get(f"fit__{env_id}__bc{_suffix(train_skills)}")
            if not base:
                continue
            label = "bc module" + (f" ({train_skills} training skills)" if train_skills != "train" else "")
            for skills, goal in (("train", GOALS["train"]), ("held_out", GOALS["held_out"])):
                value = base[skills]["relative_return_median"]
                goals.append(f"- compression, {env_id}, {label}, {skills.replace('_', '-')} skills: median relative return "
                             f"{'-' if value is None else f'{value:.0%}'} (goal >= {goal:.0%}): "
                             f"**{_verdict(None if value is None else value >= goal)}**")
    return lines, goals


def _relative(summary: dict) -> str:
    median, mean = summary["relative_return_median"], summary["relative_return_mean"]
    return "-" if median is None else f"{median:.0%} ({mean:.0%})"


def _report_latent_opt(runs: dict[str, dict]) -> tuple[list[str], list[str]]:
    opts = [r for r in runs.values() if r["spec"]["kind"] == "latent-opt"]
    if not opts:
        return ["## latent-opt", "", "No results yet."], []
    rows = []
    for r in opts:
        before, after = r["median_before"], r["median_after"]
        rows.append([r["spec"]["env_id"], r["rule"], f"{len(r['references'])} of {r['candidates']}",
                     "-" if before is None else f"{before:.0%}", "-" if after is None else f"{after:.0%}", r["spec"]["steps"]])
    lines = ["## latent-opt: latent optimisation of failed references (Eq. 10)", "",
             "bc module; references chosen by their one-shot relative return; latents optimised with Adam "
             "(lr 0.01) from the encoder's, then imitated again. The paper: median 43 % -> 78 %.", "",
             markdown_table(["robot", "references", "count", "median before", "median after", "Adam steps"], rows)]
    return lines, []


def _report_reuse(runs: dict[str, dict], results: Path) -> tuple[list[str], list[str]]:
    from latentprior.experiments.lap import steps_to_reach
    from latentprior.experiments.report import Curve, plot_curves

    reuse = [r for r in runs.values() if r["spec"]["kind"] == "reuse"]
    if not reuse:
        return ["## reuse", "", "No results yet."], []
    lines, goals = ["## reuse: a high-level policy through the frozen decoder", ""], []
    for task in sorted({r["spec"]["task"] for r in reuse}):
        group = [r for r in reuse if r["spec"]["task"] == task]
        by_variant: dict[str, list[dict]] = {}
        for r in group:
            by_variant.setdefault(r["spec"]["variant"], []).append(r)
        curves = {v: mean_curve([Curve(np.array(r["curve"]["steps"]), np.array(r["curve"]["return_mean"])) for r in rs])
                  for v, rs in by_variant.items()}
        target = float(curves["scratch"].returns[-1]) if "scratch" in curves else None
        total = float(curves["scratch"].steps[-1]) if "scratch" in curves else None
        rows = []
        for variant in [v for v in REUSE_VARIANTS if v in by_variant]:
            rs = by_variant[variant]
            reach = steps_to_reach(curves[variant], target) if target is not None else None
            rows.append([variant, REUSE_VARIANTS[variant] or "-", ",".join(str(r["spec"]["seed"]) for r in rs),
                         f"{max(r['steps_done'] for r in rs):,}", mean_std([r["final_return_mean"] for r in rs]),
                         "-" if target is None else ("never" if reach is None else f"{reach:,.0f}")])
        spec = group[0]["spec"]
        plot_curves(curves, results / f"reuse__{task}.png", title=f"{task} ({spec['env_id']}, {spec['algo'].upper()})",
                    ylabel="evaluation return")
        lines += [f"### {task}: {spec['env_id']}, {spec['algo'].upper()}, task {json.dumps(spec['task_kwargs'])}", "",
                  markdown_table(["learner", "module", "seeds", "env steps", "final return",
                                  "steps to scratch's final return"], rows),
                  "", f"![reuse](reuse__{task}.png)", ""]
        if target is not None and "npmp" in curves:
            reach = steps_to_reach(curves["npmp"], target)
            fraction = None if reach is None else reach / total
            # Reaching a from-scratch learner that never improved says nothing about the module.
            learned = target > float(curves["scratch"].returns[0])
            ok = (fraction is not None and fraction <= GOALS["reuse_fraction"]) if learned else None
            shown = "never" if reach is None else f"at {reach:,.0f} of {total:,.0f} steps ({fraction:.0%})"
            caveat = "" if learned else " (scratch's final return is no better than its first evaluation)"
            goals.append(f"- reuse, {task}: through the bc module the learner reaches scratch's final return "
                         f"{target:,.1f} {shown}{caveat} (goal <= {GOALS['reuse_fraction']:.0%}): **{_verdict(ok)}**")
    return lines, goals


def report(results: Path) -> str:
    all_runs = load_results(results)
    runs = {r["name"]: r for r in all_runs}
    sizes = sorted({r["spec"]["size"] for r in all_runs if r["spec"]["kind"] in ("fit", "fig3-student")})
    steps = sorted({r["spec"]["config"]["steps"] for r in all_runs if r["spec"]["kind"] == "fit"})
    modules = ", ".join(f"`{json.dumps(SIZES[size]['npmp'])}`" for size in sizes) or "-"
    students = ", ".join(f"`{json.dumps(SIZES[size]['student'])}`" for size in sizes) or "-"
    notes = [f"Module size `--size {', '.join(sizes) or '-'}` (`paper`: Merel et al.'s sizes; `cpu`: the CPU configuration "
             f"documented in `benchmarks/npmp.py`): NPMPConfig fields over the paper's defaults {modules}, "
             f"{', '.join(map(str, steps)) or '-'} gradient steps per module; Fig. 3 students: StudentConfig fields "
             f"{students}.", ""]
    if any(r["spec"].get("quick") for r in all_runs):
        notes = ["**Smoke run (`--quick`): tiny budgets that only check the pipeline; its numbers mean nothing.**", "", *notes]
    lines = report_header("Neural probabilistic motor primitives benchmark (Merel et al. 2019)", all_runs, notes)
    goals: list[str] = []
    for section in (*(_report_fig3(runs, results, prefix) for prefix in FIG3_SETUPS), _report_compression(runs, results),
                    _report_latent_opt(runs), _report_reuse(runs, results)):
        lines += ["", *section[0]]
        goals += section[1]
    lines += ["", "## Goals", "", *(goals or ["- nothing to assess yet"])]
    return "\n".join(lines) + "\n"


# ============================================================================================= main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    add("--size", choices=sorted(SIZES), default="cpu", help="module sizes: cpu (default, see above) or paper")
    add("--workers", type=int, default=1, help="jobs in parallel, one process each (2 cores: 2)")
    add("--results", type=Path, default=None, help="default: benchmarks/results/npmp[_quick]")
    # fig3
    add("--fig3-rollouts", default="100,200,500,1000", help="fig3: noisy rollouts of each BC student (the paper's)")
    add("--fig3-noise", default="0,0.05,0.1", help="fig3: evaluation action noise levels (the paper's)")
    add("--fig3-episodes", type=int, default=5, help="fig3: evaluation episodes per noise level > 0")
    add("--fig3-seeds", default="0,1,2", help="fig3: training seeds of each student")
    add("--fig3-episode-steps", type=int, default=1000, help="fig3: steps per rollout (HalfCheetah's episode)")
    add("--student-steps", type=int, default=20_000, help="fig3: gradient steps per student")
    # compression
    add("--envs", default="HalfCheetah-v5,Ant-v5", help="compression / latent-opt: robots with command-conditioned experts")
    add("--experts-dir", type=Path, default=None,
        help="folder of <env_id>/ command-conditioned experts (default: the package's shipped one for the robot, "
             "else runs/npmp_experts; --quick: inside its results)")
    add("--expert-steps", type=int, default=None, help="SAC steps when an expert is trained here (default: the task's, 1M/3M)")
    add("--variants", default=",".join(VARIANTS), help="compression: module variants (ablations)")
    add("--train-skills", default="train",
        help="compression: comma-separated training-skill sets: train (the expert task's), dense (dozens of skills on a "
             "finer grid, the same rollouts in all; job names end in __dense)")
    add("--rollouts", type=int, default=100, help="compression: noisy rollouts per training skill (the paper: 100)")
    add("--references", type=int, default=3, help="compression: clean reference rollouts per skill to imitate")
    add("--episode-steps", type=int, default=400, help="compression: steps per rollout and reference")
    add("--fit-steps", type=int, default=30_000, help="compression: gradient steps per module")
    add("--delta-horizon", type=int, default=5, help="LFPC's Delta: steps of each branched noisy rollout (fig3 also runs 1 and 20 as an ablation)")
    add("--delta-branches", type=int, default=20, help="LFPC's Delta: branched noisy rollouts per skill")
    # latent-opt
    add("--latent-opt-steps", type=int, default=500, help="latent-opt: Adam steps (Eq. 10)")
    add("--latent-opt-worst", type=int, default=5, help="latent-opt: references to optimise when none falls below 50 %%")
    # reuse
    add("--reuse-tasks", default="go-to-target,changing-speed", help=f"reuse: subset of {','.join(REUSE_TASKS)}")
    add("--speed-env", choices=sorted(REUSE_TASKS["changing-speed"]), default="HalfCheetah-v5",
        help="reuse: robot of changing-speed")
    add("--reuse-variants", default=",".join(REUSE_VARIANTS),
        help=f"reuse: learners, a subset of {','.join(REUSE_VARIANTS)} (see REUSE_VARIANTS)")
    add("--reuse-algo", choices=["ppo", "sac"], default="ppo", help="reuse: the high-level learner (SB3's defaults)")
    add("--reuse-steps", type=int, default=1_000_000, help="reuse: environment steps per run")
    add("--seeds", default="0,1,2", help="reuse: seeds")
    add("--quick", action="store_true",
        help="tiny budgets, seed 0, into benchmarks/results/npmp_quick (emptied first unless --results is given), then --report")
    add("--report", action="store_true", help="write REPORT.md from the results and print it")
    add("--job", help=argparse.SUPPRESS)             # a child process's single job
    add("--parent-command", help=argparse.SUPPRESS)  # the command that launched it
    args = parser.parse_args(argv)

    if args.job:
        run_child(json.loads(args.job), args.results, args.parent_command or command_line(), _handle)
        return
    if args.quick:  # tiny budgets for the flags left at their defaults
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    for key, kind in [("parts", str), ("envs", str), ("variants", str), ("train_skills", str), ("reuse_tasks", str), ("reuse_variants", str),
                      ("fig3_rollouts", int),
                      ("fig3_seeds", int), ("seeds", int), ("fig3_noise", float)]:
        setattr(args, key, csv_list(getattr(args, key), kind))
    from latentprior.experts.commanded import COMMANDED_TASKS

    for what, chosen, known in [("parts", args.parts, PARTS), ("envs", args.envs, COMMANDED_TASKS),
                                ("variants", args.variants, VARIANTS), ("training-skill sets", args.train_skills, TRAIN_SKILLS),
                                ("reuse tasks", args.reuse_tasks, REUSE_TASKS),
                                ("reuse variants", args.reuse_variants, REUSE_VARIANTS)]:
        if set(chosen) - set(known):
            parser.error(f"unknown {what} {sorted(set(chosen) - set(known))}; choose from {', '.join(known)}")
    if any(n < 2 for n in args.fig3_rollouts):
        parser.error("--fig3-rollouts are BC students' rollout counts, each >= 2 (LFPC uses the one nominal rollout)")
    args.results = results_folder(args.results, "npmp", args.quick)

    def make_jobs() -> list[Job]:
        jobs = _jobs(args)
        for job in jobs:
            job.spec.update(size=args.size, quick=args.quick)
        return jobs

    run_then_report(make_jobs, __file__, args.results, args.workers, report,
                    run=not args.report or args.quick, write_report=args.report or args.quick)

if __name__ == "__main__":
    main()
