r"""Benchmark: latent space priors (Gehring, Gopinath, Won, Krause, Synnaeve, Usunier, TMLR 2023), issue 5.

Parts (each job is one child process writing ``<results>/<job>.json`` last; finished jobs are
skipped and interrupted ones start again, RL runs from their checkpoints, so rerunning the same
command continues; see ``benchmarks/common.py``). A part adds the jobs it needs (skipped when done).

  demos           State-only Ant-v5 demonstrations of diverse locomotion (the 27-d observation
                  without contact forces, plus ``qpos``/``qvel``) from the command-conditioned Ant
                  expert ``<experts-dir>/Ant-v5`` (as ``latentprior experts train-commanded --env
                  Ant-v5 --out <experts-dir>/Ant-v5`` writes it; without --experts-dir the package's
                  shipped one, ``shipped_commanded``, when there is one; the job fails, saying how to train
                  it, when it is missing: this script trains no experts). Training episodes: every
                  skill of the expert's ``train`` set (8 headings x 2 speeds) --demo-skill-episodes
                  times, plus --demo-switching episodes whose command (speed and heading drawn from
                  the expert's training range) changes every 100-300 steps, so the data holds turns
                  and changes of speed, the transitions a prior can stitch motions with. Held out:
                  the ``held_out`` skills (the headings between) once each and --held-out-switching
                  switching episodes. Actions at --demo-noise (Merel et al.'s 0.1). The VAE and the
                  prior see observations only (``train.h5``, ``held_out.h5``: observations, qpos,
                  qvel); ``train_actions.h5`` keeps the executed actions for ``--low-level-method
                  bc``. Episodes too short for the fits' windows are dropped (counted in the result).
  vae             The state VAE, ``VAEConfig.small()`` (the authors' architecture on 32 windows of 64
                  frames; --vae-steps), reconstruction error on the held-out demonstrations.
  prior           The transformer prior, ``PriorConfig.small()`` (--prior-steps); held-out NLL per
                  latent step, beside an i.i.d. Gaussian fitted to the training latents (no temporal
                  context): the gap is what the prior learnt about how motion unfolds.
  low-level       The low-level policy reenacting the demonstrations' latents: behavioural cloning of
                  the demonstrations' (noisy, DART-like) actions (the default, --bc-epochs) or SAC on
                  the reenactment task (--low-level-method sac, --low-level-steps; the authors' way);
                  ``reenactment_report`` on the held-out demonstrations. BC is the default because,
                  at what this CPU affords, it reenacts far better: on Ant, 100 BC epochs (68 s)
                  reenact 55 % of the held-out frames before losing the reference, SAC after 200k
                  steps (k = 4, 50k updates; curve flat since 50k) 1 % (docs/BENCHMARKS.md).
  samples         A kinematic MP4 of motion sampled from the prior without context and decoded by the
                  VAE (--sample-count sequences of --sample-steps frames at --video-size), written to
                  ``<results>/samples.mp4`` and linked from the report.
  antmaze-medium  High-level SAC (SB3's settings, learning starts --learning-starts) on AntMaze
                  medium (``latentprior.envs.antmaze``; by default D4RL's fixed start and goal, the paper's
                  task, whose 50 instances differ in +-1 m offsets, --maze-instances; sparse
                  reward 1 at the goal, which ends the episode, so a return is a success indicator)
                  for every learner of --maze-learners: ``scratch`` (plain SAC in the Ant's 8-d
                  action space from scratch, no demonstrations), ``none`` (SAC in the latent space
                  through the low-level policy, prior unused: the paper's baseline), ``explore``,
                  ``regularize``, ``options``, ``plan`` (the integrations, the authors' knobs), each
                  for --seeds, --maze-samples environment samples. Every --eval-every samples, and at
                  the end, the deterministic policy runs --eval-instances task instances, one per
                  seed (``eval_seed(seed) + i``), the same instances at every evaluation: the learning
                  curve is the success rate against environment samples (an option of 2 latents
                  counts 2 samples). Goals: with the prior, >= 80 % success within 1M samples; the
                  baselines visibly behind (our threshold: by >= 20 points at the shortest run's budget). The paper
                  pre-trained on D4RL's AntMaze data (another ant model, see ``envs/antmaze.py``) and
                  trained with a dense reward of unstated form; here the pre-training data is
                  open-ground locomotion, and the learners train on the sparse success plus 20 x the
                  step's decrease of the geodesic distance to the goal (``AntMaze(reward_type=
                  "progress", progress_weight=20)``: the speed towards the goal in m/s; the defaults
                  of --maze-reward and --progress-weight, jobs end in ``__progress20``), measured on
                  paths 1 m from the walls (--progress-clearance, ``__clearance1``); the high level acts
                  in the VAE's used latent dimensions (--latent-subspace, ``__used``). The curves
                  stay success rates. --maze-reward sparse trains on the success alone: no learner
                  learnt from it (docs/BENCHMARKS.md).
  antmaze-large   The same learners on AntMaze large with the same (medium-maze) VAE, prior and
                  low-level policy: transfer (--large-samples).
  bisk            Bipedal Skills (``latentprior.envs.bipedal_skills``, robot --bisk-robot): its own
                  demonstrations from an expert trained on the robot's ``VelocityControl`` task
                  (--bisk-expert: a run directory or policy artifact acting on
                  ``latentprior/BiskVelocityControl<robot>-v0`` with ``shaped=True``; the part is
                  skipped with a message without one), its own VAE, prior and low-level policy on
                  the 17-d proprioception, then --bisk-learners on --bisk-tasks for --bisk-samples.
                  Reenactment episodes start from the demonstration's state: the adapter records
                  the robot's qpos/qvel and sets them (``BipedalSkills.sim_state``/``set_state``).
                  Goal: the best prior integration's final return >= 2x the baseline's (``none``)
                  at equal budget, on each task. The expert for the default robot (HalfCheetah) is
                  committed (benchmarks/experts/bisk-HalfCheetah-VelocityControl, the default of
                  --bisk-expert): PPO on the shaped VelocityControl task with falls ending the
                  episode, retrained by the command below (its return is in docs/BENCHMARKS.md).
                  A Walker expert trained the same way without ending falls stayed at random
                  actions' return for 1.2M steps.

latentprior train --env latentprior/BiskVelocityControlHalfCheetah-v0 --env-kwarg shaped=true \
    --env-kwarg allow_fallover=false --algo ppo --steps 3000000 --num-envs 16 --set n_steps=128 \
    --set batch_size=512 --set target_kl=0.03 --set log_std_init=-0.5 --set eval_every=100000 \
    --out benchmarks/results/latent_space_priors/runs/expert/HalfCheetah


Sizes and budgets. The VAE and prior use the CPU presets (``small()``, documented in
``latent/lsp.py``); the low-level policy and every high-level learner use the project's SAC at SB3's
settings (256x256, batch 256, one update per step) with learning starts 10k (the RL zoo's MuJoCo
value) and an initial entropy coefficient of 0.01 (--ent-coef-init; SB3's 1 swamps the critic of a
32-d latent action space, docs/BENCHMARKS.md; jobs end in ``__alpha0.01``). ``plan`` uses the authors' 1024
candidates of 64 latents, replanned every 4, scored by the critics: only a candidate's first latent
enters the score, so the planner draws the candidates' first latents and the best one's next 3
alone (``LatentPlanner.plan``; the same plans in distribution, per decision 4.7x cheaper at this prior's size, 34x at the paper's,
docs/BENCHMARKS.md "Model costs"), and the horizon changes neither the plans nor the cost.

Estimated cost at the defaults, in CPU-hours on the 2-core project VM: ESTIMATES, extrapolated from
step times measured there on 2026-11-21 (``--quick`` and a 3,000-sample timing run of every learner)
while other jobs shared the two cores (load average 5-6, about twice the load of the SAC numbers in
docs/BENCHMARKS.md, where SAC ran 145 updates/s against 79 here; at that load everything below is
roughly 1.8x cheaper). Measured: VAE step 45 ms, prior step 95 ms (``small()``); SAC with one update
per step, in samples/s: low-level reenactment 78, scratch 79, none 69, explore 69, regularize 53,
options 217 (108 decisions of 2 latents), plan 69; one evaluation of 50 AntMaze instances of 1000
steps 30-50 s, the planner's final evaluation of them 13 min (plan's numbers before the planner drew
first latents only: since 2026-12-07 a plan run costs about 1.6x a none run, and its final
evaluation about 5 min on a VM 4x slower than this one; docs/BENCHMARKS.md, session 16). With
--num-envs 4, 1M-sample runs measured 45-60 min on the VM of sessions 13-15 and 2-3 h on the
AVX2-only VM of session 16 (none about 160 samples/s, plan about 100). Every job JSON records its real ``wall_s``.
  demos           <0.1   ~100k expert steps (1.2 ms each)
  vae, prior      ~0.8   20k steps each
  low-level       <0.1   100 BC epochs (measured: 68 s); with --low-level-method sac ~3.7, 1M SAC steps
  samples         <0.1
  antmaze-medium  ~72    6 learners x 3 seeds x 1M samples (~24 h per seed: scratch 3.5, none 4.1,
                         explore 4.1, regularize 5.2, options 1.3, plan 4.1, evaluations 1.8)
  antmaze-large   ~72    the same in the large maze
  bisk            ~55    its demos, VAE, prior and low-level policy (~1), then 2 tasks x 4 learners
                         x 3 seeds x 500k samples (AntMaze's rates assumed; a Bipedal Skills step is
                         cheaper than an AntMaze one)
  together ~195 CPU-hours at this load, ~115 at docs/BENCHMARKS.md's; with --workers 2 about half
  of that in wall-clock. Disk: a finished run keeps its last checkpoint, replay buffer included
  (~0.65 GB per 1M samples), ~30 GB at the defaults under <results>/runs/; if space is short, delete
  the learners' folders (runs/antmaze-medium/, ...) once their JSONs are written: nothing reads them
  again (the pre-training folders are read by every learner, keep those). The cheapest check of the main goal: --parts antmaze-medium
  --maze-learners none,explore --seeds 0 (~9 CPU-hours with the pre-training; ~2 with --num-envs 4).

    python benchmarks/latent_space_priors.py --workers 2                  # everything (days; resumable)
    python benchmarks/latent_space_priors.py --parts demos,vae,prior,low-level,samples
    python benchmarks/latent_space_priors.py --parts antmaze-medium --maze-learners none,explore --seeds 0
    python benchmarks/latent_space_priors.py --parts bisk                 # with the committed HalfCheetah expert
    python benchmarks/latent_space_priors.py --quick --experts-dir /tmp/quick_experts --random-demos  # smoke, minutes
    python benchmarks/latent_space_priors.py --report                     # REPORT.md from the results
    python benchmarks/latent_space_priors.py --curves 'antmaze-medium__*'  # each run's evaluations (and progress, m)

A fresh clone holds the results' JSONs but not their run folders: the pre-training jobs run again
(~16 min per robot on one core) and reproduce the committed results exactly (session 15, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latentprior.experts.commanded import shipped_commanded

from common import (Job, command_line, csv_list, load_result, load_results, markdown_table, mean_curve, mean_std,
                    report_header, results_folder, run_child, run_then_report)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
NAME = "latent_space_priors"
#: The project's Bipedal Skills experts, committed (a PPO run's policy, 48 KB; docs/BENCHMARKS.md).
BISK_EXPERTS = {"HalfCheetah": HERE / "experts" / "bisk-HalfCheetah-VelocityControl"}
PARTS = ("demos", "vae", "prior", "low-level", "samples", "antmaze-medium", "antmaze-large", "bisk")
ANT = "Ant-v5"
#: The Ant's observation for demonstrations and the low-level policy: AntMaze's first 27 values.
ANT_KWARGS = {"include_cfrc_ext_in_observation": False}
MAZES = {"antmaze-medium": "medium", "antmaze-large": "large"}
INTEGRATION_NAMES = ("none", "explore", "regularize", "options", "plan")  # checked against INTEGRATIONS in main
LEARNERS = ("scratch", *INTEGRATION_NAMES)
BISK_TASKS = ("GoToTargets", "Gaps", "Stairs", "Hurdles")
SWITCH_EVERY = (100, 300)    # steps between command changes in switching demonstrations
GOALS = {"success": 0.8, "success_samples": 1_000_000, "behind": 0.2, "bisk_ratio": 2.0}
#: --quick: budgets that only check the pipeline end to end; its numbers mean nothing.
QUICK = {"demo_skill_episodes": 1, "demo_switching": 2, "held_out_switching": 1, "demo_steps": 120,
         "bisk_demo_episodes": 4, "bisk_held_out": 1, "vae_steps": 20, "prior_steps": 20, "low_level_steps": 600,
         "bc_epochs": 2, "maze_samples": 600, "large_samples": 400, "bisk_samples": 400, "eval_every": 300,
         "eval_instances": 3, "learning_starts": 200, "seeds": "0", "sample_count": 2, "sample_steps": 20}
QUICK_EPISODE_STEPS = 100    # --quick: task episodes this long, so that evaluations take seconds


def _bisk_robot(robot_key: str) -> str:
    return robot_key.split("-", 1)[1]


def _bisk_proprioception_id(robot: str) -> str:
    return f"latentprior_benchmark/BiskProprioception{robot}-v0"


def _bisk_proprioception_env(robot: str, **kwargs: Any):
    """Bipedal Skills' VelocityControl (shaped) observing the robot's 17-d proprioception only.

    The environment of the Bipedal Skills low-level policy: its VAE and reenactment see the robot,
    not the contact forces and the velocity command, which are no part of a motion's state.
    """
    import gymnasium as gym

    from latentprior.envs.bipedal_skills import PROPRIOCEPTION, BipedalSkills

    env = BipedalSkills("VelocityControl", robot, shaped=True, **kwargs)
    space = env.observation_space
    box = gym.spaces.Box(space.low[PROPRIOCEPTION], space.high[PROPRIOCEPTION], dtype=space.dtype)
    return gym.wrappers.TransformObservation(env, lambda obs: obs[PROPRIOCEPTION], box)


def _register_bisk_proprioception() -> None:
    import gymnasium as gym

    for robot in ("Walker", "HalfCheetah"):
        if _bisk_proprioception_id(robot) not in gym.registry:
            gym.register(_bisk_proprioception_id(robot), functools.partial(_bisk_proprioception_env, robot),
                         max_episode_steps=1000)


# ============================================================================================ jobs
def _jobs(args) -> list[Job]:
    """Every job the arguments ask for, with the jobs they need (which are skipped when done)."""
    jobs: dict[str, Job] = {}

    def add(job: Job) -> None:
        jobs.setdefault(job.name, job)

    from latentprior.envs.reenactment import LowLevelConfig
    from latentprior.latent.lsp import PriorConfig, VAEConfig

    low_level_config = LowLevelConfig()
    min_frames = max(VAEConfig.small().window, PriorConfig.small().context + 1,
                     low_level_config.episode_steps + low_level_config.horizon + 1)

    latent = {} if args.latent_dim is None else {"latent_dim": args.latent_dim}

    def pretraining(robot: str, demos: dict[str, Any], kinds: set[str], part: str | None = None) -> None:
        """The ``kinds`` of pre-training jobs of one robot (demos, vae, prior, low-level), with the ones they need."""
        key = _pretrained(robot, latent)
        if kinds & {"prior", "low-level"}:
            kinds = kinds | {"vae"}
        if "vae" in kinds:
            kinds = kinds | {"demos"}
        if "demos" in kinds:
            add(Job(f"demos__{robot}", part or "demos", {"kind": "demos", "robot": robot, "min_frames": min_frames,
                                                         "noise": args.demo_noise, **demos}))
        if "vae" in kinds:
            add(Job(f"vae__{key}", part or "vae", {"kind": "vae", "robot": robot, "steps": args.vae_steps, **latent},
                    (f"demos__{robot}",)))
        if "prior" in kinds:
            add(Job(f"prior__{key}", part or "prior", {"kind": "prior", "robot": robot, "steps": args.prior_steps, **latent},
                    (f"vae__{key}",)))
        if "low-level" in kinds:
            method = {"method": args.low_level_method,
                      **({"epochs": args.bc_epochs,
                          "latent_targets": args.low_level_targets if robot == ANT else args.bisk_low_level_targets}
                         if args.low_level_method == "bc" else
                         {"steps": args.low_level_steps, "learning_starts": args.learning_starts, **_vector(args)})}
            add(Job(f"low-level__{key}", part or "low-level", {"kind": "low-level", "robot": robot, **method, **latent},
                    (f"vae__{key}",)))

    def learners(task: str, robot: str, names: list[str], samples: int, part: str) -> None:
        for seed in args.seeds:
            for learner in names:
                lsp = {"plan_rollouts": args.plan_rollouts, "plan_horizon": args.plan_horizon} if learner == "plan" else {}
                spec = {"kind": "learner", "task": task, "robot": robot, "learner": learner, "seed": seed,
                        "samples": samples, "eval_every": args.eval_every, "eval_instances": args.eval_instances,
                        "learning_starts": args.learning_starts, "lsp": lsp,
                        "episode_steps": QUICK_EPISODE_STEPS if args.quick else None, **_vector(args),
                        **({} if learner == "scratch" else latent)}  # scratch uses no VAE: one run serves every size
                if task in MAZES and args.maze_reward != "sparse":
                    spec["reward_type"] = args.maze_reward
                    if args.maze_reward == "progress" and args.progress_weight != 1.0:
                        spec["progress_weight"] = args.progress_weight
                if task in MAZES and args.maze_instances != "random":
                    spec["instances"] = args.maze_instances
                if task in MAZES and args.maze_reward == "progress" and args.progress_clearance:
                    spec["progress_clearance"] = args.progress_clearance
                if args.n_critics != 2:
                    spec["n_critics"] = args.n_critics
                if args.latent_subspace != "all" and learner != "scratch":
                    spec["subspace"] = args.latent_subspace
                if args.ent_coef_init != 1.0:
                    spec["ent_coef_init"] = args.ent_coef_init
                key = _pretrained(robot, latent)
                needs = () if learner == "scratch" else (f"prior__{key}", f"low-level__{key}")
                add(Job(f"{task}__{learner}__seed{seed}{_variant_suffix(spec)}", part, spec, needs))

    # --experts-dir/Ant-v5, else the expert shipped in the package, else the folder benchmarks/npmp.py trains into.
    ant_expert = (Path(args.experts_dir).resolve() / ANT if args.experts_dir is not None
                  else shipped_commanded(ANT) or REPO / "runs" / "npmp_experts" / ANT)
    # --random-demos (smoke runs) stands in for a missing expert only.
    ant_demos = {"expert": str(ant_expert), "random": args.random_demos and not (ant_expert / "config.json").is_file(),
                 "skill_episodes": args.demo_skill_episodes,
                 "switching_episodes": args.demo_switching, "held_out_switching": args.held_out_switching,
                 "episode_steps": args.demo_steps}
    # What each part needs of the Ant's pre-training.
    kinds = set(args.parts) & {"demos", "vae", "prior", "low-level"}
    kinds |= {"prior"} if "samples" in args.parts else set()
    kinds |= {"prior", "low-level"} if set(args.parts) & set(MAZES) else set()
    if kinds:
        pretraining(ANT, ant_demos, kinds)
    if "samples" in args.parts:
        add(Job(f"samples__{ANT}", "samples", {"kind": "samples", "robot": ANT, "count": args.sample_count,
                                               "steps": args.sample_steps, "size": args.video_size, "seed": 0},
                (f"prior__{ANT}",)))
    for part, size in MAZES.items():
        if part in args.parts:
            learners(part, ANT, args.maze_learners, args.maze_samples if size == "medium" else args.large_samples, part)
    if "bisk" in args.parts:
        robot = f"bisk-{args.bisk_robot}"
        if args.bisk_expert is None and args.bisk_robot in BISK_EXPERTS:
            args.bisk_expert = BISK_EXPERTS[args.bisk_robot]
        if args.bisk_expert is None and not args.random_demos:
            print("bisk skipped: no Bipedal Skills expert (--bisk-expert). Train one on the robot's VelocityControl task "
                  "(the command in this script's docstring) and pass its run directory", flush=True)
        else:
            expert = None if args.bisk_expert is None else str(Path(args.bisk_expert).resolve())
            pretraining(robot, {"expert": expert, "random": expert is None, "episodes": args.bisk_demo_episodes,
                                "held_out_episodes": args.bisk_held_out, "episode_steps": 1000 if not args.quick else
                                args.demo_steps}, {"prior", "low-level"}, "bisk")
            for task in args.bisk_tasks:
                learners(task, robot, args.bisk_learners, args.bisk_samples, "bisk")
    return list(jobs.values())


def _handle(job: dict[str, Any], results: Path) -> dict[str, Any]:
    """The child's entry: dispatch on ``spec["kind"]``; the handler gets the spec and the command line."""
    handlers: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
        "demos": _demos, "vae": _vae, "prior": _prior, "low-level": _low_level, "samples": _samples, "learner": _learner,
    }
    return handlers[job["spec"]["kind"]]({**job["spec"], "command": job["command"]}, results)


def _runs(results: Path, *parts: str) -> Path:
    path = results.joinpath("runs", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _keep_newest_checkpoint(run_dir: Path) -> None:
    """Delete a finished SAC run's older checkpoint: each holds the replay buffer (0.6 GB at 1M transitions).

    The newest one stays: it tells a rerun that the run has finished, and holds the critics.
    """
    from latentprior.rl.checkpoint import latest_checkpoint

    newest = latest_checkpoint(run_dir)
    for old in (run_dir / "checkpoints").glob("step_*"):
        if old != newest:
            shutil.rmtree(old)


def _vector(args) -> dict:
    """The spec field of --num-envs, only when it is not SB3's 1 (so the specs of earlier runs stay the same)."""
    return {"num_envs": args.num_envs} if args.num_envs != 1 else {}


def _sac_config(steps: int, learning_starts: int, **fields: Any):
    """SB3's SAC settings for ``steps`` steps, ten checkpoints, no TensorBoard; ``fields`` override."""
    from latentprior.rl import SACConfig

    return SACConfig(total_steps=steps, learning_starts=min(learning_starts, steps // 2), checkpoint_every=max(steps // 10, 1),
                     log_every=min(1000, max(steps // 10, 1)), tensorboard=False, **fields)


# ======================================================================================= demos
def _rollouts(env, choose: Callable, count: int, seed: int, observe: Callable = lambda obs: obs) -> list:
    """``count`` episodes in ``env``; ``choose(rng)`` gives each episode its ``act(obs, t) -> action``.

    Records ``observe(obs)``, the executed actions and, for MuJoCo environments (Bipedal Skills'
    too), ``qpos``/``qvel``.
    """
    from latentprior.data import Episode
    from latentprior.data.collect import sim_state

    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(count):
        act = choose(rng)
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        rows: dict[str, list] = {"observations": [observe(obs)], "actions": [], "qpos": [], "qvel": []}
        t, done = 0, False
        while True:
            state = sim_state(env)
            if state is not None:
                rows["qpos"].append(state[0])
                rows["qvel"].append(state[1])
            if done:
                break
            action = act(obs, t)
            obs, _, terminated, truncated, _ = env.step(action)
            rows["actions"].append(action)
            rows["observations"].append(observe(obs))
            t, done = t + 1, terminated or truncated
        episodes.append(Episode(**{k: np.asarray(v) for k, v in rows.items() if v}))
    return episodes


def _switching(expert, noise: float) -> Callable:
    """``choose`` for :func:`_rollouts`: the command-conditioned expert with a new command every 100-300 steps."""
    from latentprior.experts.commanded import Command

    task = expert.task

    def choose(rng: np.random.Generator) -> Callable:
        state = {"until": 0, "skill": None}

        def act(obs: np.ndarray, t: int) -> np.ndarray:
            if t >= state["until"]:
                command = Command(rng.uniform(*task.speed_range), rng.uniform(*task.heading_range))
                state["skill"], state["until"] = expert.skill(command), t + int(rng.integers(*SWITCH_EVERY))
            return state["skill"].act(obs, noise_std=noise, rng=rng)

        return act

    return choose


def _uniform(space) -> Callable:
    """``choose`` for :func:`_rollouts`: uniformly random actions (``--random-demos``, smoke runs only)."""
    return lambda rng: lambda obs, t: rng.uniform(space.low, space.high).astype(space.dtype)


def _write(episodes: list, metadata, path: Path, fields: tuple[str, ...]) -> int:
    """Save the episodes' ``fields`` in the metadata's dtypes; the number of frames written."""
    from latentprior.data import Dataset, Episode, save_dataset

    dtypes = {"observations": metadata.observation_space.dtype, "actions": np.float32, "qpos": np.float64, "qvel": np.float64}
    kept = [Episode(**{f: getattr(e, f).astype(dtypes[f]) for f in fields if getattr(e, f) is not None}) for e in episodes]
    save_dataset(Dataset(kept, metadata), path)
    return sum(len(e.observations) for e in kept)


def _demos(spec: dict, results: Path) -> dict:
    """Demonstrations: state-only files for the VAE and prior, one with actions for behavioural cloning."""
    import dataclasses

    import gymnasium as gym

    from latentprior.data import DatasetMetadata, load_dataset

    robot, noise, steps = spec["robot"], spec["noise"], spec["episode_steps"]
    out = _runs(results, "demos", robot)
    train, held_out, quality = [], [], {}
    if robot == ANT:
        from latentprior.experts.commanded import collect_skills, commanded_task, load_commanded

        env_id, env_kwargs = ANT, dict(ANT_KWARGS)
        expert_dir = Path(spec["expert"])
        with gym.make(ANT, max_episode_steps=steps, **ANT_KWARGS) as env:
            observation_space, action_space = env.observation_space, env.action_space
            if spec["random"]:
                # As many episodes as the expert's skill and switching episodes.
                skills = {name: len(commands) for name, commands in commanded_task(ANT).skill_sets.items()}
                train = _rollouts(env, _uniform(action_space), skills["train"] * spec["skill_episodes"] + spec["switching_episodes"], 0)
                held_out = _rollouts(env, _uniform(action_space), skills["held_out"] + spec["held_out_switching"], 1)
                source = "uniformly random actions (--random-demos)"
            elif not (expert_dir / "config.json").is_file():
                raise SystemExit(
                    f"no command-conditioned Ant expert at {expert_dir}. Train it first (hours; rerun to resume):\n"
                    f"  latentprior experts train-commanded --env {ANT} --out {expert_dir}\n"
                    "(see docs/STATUS.md for the PPO settings used for HalfCheetah), check its skills.json, then rerun "
                    "this benchmark, or point --experts-dir at a folder holding Ant-v5/")
            else:
                expert = load_commanded(expert_dir)
                for name, episodes, seed in (("train", spec["skill_episodes"], 0), ("held_out", 1, 1)):
                    made = collect_skills(expert, name, episodes, noise_std=noise, seed=seed, max_episode_steps=steps,
                                          out=out / f"skills_{name}.h5", progress=False, command=spec["command"])
                    (train if name == "train" else held_out).extend(load_dataset(made.path).episodes)
                    quality[name] = {"tracking_reward_per_step": float(made.returns.sum() / made.steps), "episodes": made.episodes}
                train += _rollouts(env, _switching(expert, noise), spec["switching_episodes"], 2)
                held_out += _rollouts(env, _switching(expert, noise), spec["held_out_switching"], 3)
                source = f"command-conditioned expert {expert_dir} ({expert.info.get('steps', '?')} {expert.info.get('algo', '?')} steps)"
    else:
        from latentprior.envs.bipedal_skills import PROPRIOCEPTION, bipedal_skills_id, make_bipedal_skills

        bisk = _bisk_robot(robot)
        env_id, env_kwargs = _bisk_proprioception_id(bisk), {}
        with gym.make(env_id) as env:
            observation_space = env.observation_space
        with make_bipedal_skills("VelocityControl", bisk, shaped=True, max_episode_steps=steps) as env:
            action_space = env.action_space
            observe = lambda obs: obs[PROPRIOCEPTION]  # noqa: E731
            if spec["random"]:
                choose, source = _uniform(action_space), "uniformly random actions (--random-demos)"
            else:
                from latentprior.experts import load_expert

                expert = load_expert(spec["expert"], env=env)
                choose = lambda rng: lambda obs, t: expert.act(obs, noise_std=noise, rng=rng)  # noqa: E731
                source = f"expert {spec['expert']} on {bipedal_skills_id('VelocityControl', bisk)} (shaped)"
            train = _rollouts(env, choose, spec["episodes"], 0, observe)
            held_out = _rollouts(env, choose, spec["held_out_episodes"], 1, observe)
    dropped = sum(len(e.observations) < spec["min_frames"] for e in train)
    train = [e for e in train if len(e.observations) >= spec["min_frames"]]
    held_out = [e for e in held_out if len(e.observations) >= 8]  # the low-level policy looks 6 frames ahead
    if not train or not held_out:
        raise SystemExit(f"{robot}: no demonstration has the {spec['min_frames']} frames the fits need "
                         f"({dropped} training episodes too short): the expert falls too early")
    obs_dim = observation_space.shape[0]
    metadata = DatasetMetadata(env_id, observation_space, None,
                               source=f"benchmarks/latent_space_priors.py: {source}", command=spec["command"],
                               env_kwargs=env_kwargs, extra={"noise_std": noise, "episode_steps": steps})
    states = ("observations", "qpos", "qvel")
    frames = {"train": _write(train, metadata, out / "train.h5", states),
              "held_out": _write(held_out, metadata, out / "held_out.h5", states)}
    _write(train, dataclasses.replace(metadata, action_space=action_space), out / "train_actions.h5", (*states, "actions"))
    files = {name: f"runs/demos/{robot}/{name}.h5" for name in ("train", "held_out", "train_actions")}
    return {"files": files, "outputs": list(files.values()), "source": source, "episodes": {"train": len(train),
            "held_out": len(held_out)}, "frames": frames, "dropped_short": dropped, "skills": quality, "obs_dim": obs_dim}


def _datasets(results: Path, robot: str, *names: str) -> list:
    from latentprior.data import load_dataset

    files = load_result(results, f"demos__{robot}")["files"]
    return [load_dataset(results / files[name]) for name in names]


# ======================================================================================== fits
def _vae(spec: dict, results: Path) -> dict:
    from latentprior.latent.lsp import VAEConfig, fit_vae

    train, held_out = _datasets(results, spec["robot"], "train", "held_out")
    size = {"latent_dim": spec["latent_dim"]} if "latent_dim" in spec else {}
    config = VAEConfig.small(steps=spec["steps"], log_interval=max(spec["steps"] // 20, 1), **size)
    directory = f"runs/vae/{_pretrained(spec['robot'], spec)}"
    vae = fit_vae(train, config, held_out=held_out, checkpoint_dir=results / directory)  # an interrupted fit resumes
    fit_s = vae.history["seconds"][-1]  # over every resumed segment
    vae.save(results / directory)
    return {"vae": directory, "outputs": [directory], "fit_s": fit_s, "ms_per_step": 1e3 * fit_s / config.steps,
            "config": json.loads(json.dumps(vars(config))), "held_out_error": vae.held_out_error,
            "final": {k: v[-1] for k, v in vae.history.items() if v}}


def _iid_gaussian_nll(vae, train, held_out) -> float:
    """NLL per latent step (nats) of the held-out latents under one Gaussian over pre-tanh latents, fitted to the training ones.

    The prior's densities are of ``z = tanh(u)``; the same change of variables applies here.
    """
    import torch

    bound = 1 - 1e-6
    with torch.no_grad():
        u = torch.atanh(torch.cat([vae.encode(e.observations) for e in train]).clamp(-bound, bound)).double()
        normal = torch.distributions.Normal(u.mean(0), u.std(0))
        total, count = 0.0, 0
        for episode in held_out:
            z = vae.encode(episode.observations).double().clamp(-bound, bound)
            log_p = normal.log_prob(torch.atanh(z)).sum(-1) - torch.log1p(-z.square()).sum(-1)
            total, count = total - float(log_p.sum()), count + len(z)
    return total / count


def _prior(spec: dict, results: Path) -> dict:
    from latentprior.latent.lsp import PriorConfig, StateVAE, fit_prior

    train, held_out = _datasets(results, spec["robot"], "train", "held_out")
    key = _pretrained(spec["robot"], spec)
    vae_dir = results / load_result(results, f"vae__{key}")["vae"]
    vae = StateVAE.load(vae_dir)
    config = PriorConfig.small(steps=spec["steps"], log_interval=max(spec["steps"] // 20, 1))
    directory = f"runs/prior/{key}"
    prior = fit_prior(vae, train, config, held_out=held_out, checkpoint_dir=results / directory)  # an interrupted fit resumes
    fit_s = prior.history["seconds"][-1]  # over every resumed segment
    prior.vae_path = str(vae_dir)
    prior.save(results / directory)
    return {"prior": directory, "outputs": [directory], "fit_s": fit_s, "ms_per_step": 1e3 * fit_s / config.steps,
            "config": json.loads(json.dumps(vars(config))), "held_out_nll": prior.held_out_nll,
            "train_nll": prior.history["nll"][-1], "iid_gaussian_nll": _iid_gaussian_nll(vae, train, held_out),
            "history": prior.history}


def _low_level(spec: dict, results: Path) -> dict:
    import dataclasses
    import time

    from latentprior.envs.reenactment import LowLevelConfig
    from latentprior.experiments.report import read_curve
    from latentprior.experiments.low_level import fit_low_level, fit_low_level_bc
    from latentprior.latent.lsp import StateVAE

    robot, key = spec["robot"], _pretrained(spec["robot"], spec)
    vae = StateVAE.load(results / load_result(results, f"vae__{key}")["vae"])
    train, held_out = _datasets(results, robot, "train", "held_out")
    directory = f"runs/low-level/{key}"
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if spec["method"] == "bc":
        (with_actions,) = _datasets(results, robot, "train_actions")
        low_level = fit_low_level_bc(vae, with_actions, LowLevelConfig(), epochs=spec["epochs"], held_out=held_out,
                                     latent_targets=spec.get("latent_targets", "mean"))
    else:
        config = _sac_config(spec["steps"], spec["learning_starts"], eval_every=max(spec["steps"] // 20, 1),
                             num_envs=spec.get("num_envs", 1))
        run_dir = _runs(results, "low-level", f"{key}_run")
        low_level = fit_low_level(vae, train, LowLevelConfig(), config, run_dir, held_out=held_out, progress=False)
        _keep_newest_checkpoint(run_dir)
        curve = read_curve(run_dir / "metrics.csv")
        out = {"curve": {"steps": curve.steps.tolist(), "return_mean": curve.returns.tolist()},
               "train_s": low_level.metrics.get("time/train_s"), "steps_per_s": low_level.metrics.get("time/steps_per_s"),
               "sac": json.loads(json.dumps(dataclasses.asdict(config)))}
    fit_s = time.perf_counter() - t0
    low_level.save(results / directory)
    return {"low_level": directory, "outputs": [directory], "fit_s": fit_s, "report": low_level.report,
            "config": dataclasses.asdict(low_level.config), **out}


def _pretrained(robot: str, spec: dict) -> str:
    """The name of a robot's VAE, prior and low-level policy in job names and folders: the robot, then
    ``"__z<d>"`` when the spec sets the VAE's latent size (``--latent-dim``)."""
    return robot if spec.get("latent_dim") is None else f"{robot}__z{spec['latent_dim']}"


def _artifacts(results: Path, robot: str) -> tuple:
    """The fitted VAE, prior and low-level policy named ``robot`` (:func:`_pretrained`), checked against each other."""
    from latentprior.experiments.low_level import LowLevelPolicy
    from latentprior.latent.lsp import LatentPrior, StateVAE

    vae = StateVAE.load(results / load_result(results, f"vae__{robot}")["vae"])
    prior = LatentPrior.load(results / load_result(results, f"prior__{robot}")["prior"], vae=vae)
    low_level = LowLevelPolicy.load(results / load_result(results, f"low-level__{robot}")["low_level"], vae=vae)
    return vae, prior, low_level


def _samples(spec: dict, results: Path) -> dict:
    from latentprior.experiments.lsp import render_kinematic, sample_motions
    from latentprior.latent.lsp import LatentPrior, StateVAE

    robot = spec["robot"]
    vae = StateVAE.load(results / load_result(results, f"vae__{robot}")["vae"])
    prior = LatentPrior.load(results / load_result(results, f"prior__{robot}")["prior"], vae=vae)
    motions = sample_motions(prior, vae, spec["steps"], spec["count"], spec["seed"])
    width, height = (int(v) for v in spec["size"].split("x"))
    path = render_kinematic(motions.states, ANT, results / "samples.mp4", {**ANT_KWARGS, "width": width, "height": height})
    return {"video": path.name, "outputs": [path.name], "bytes": path.stat().st_size,
            "frames": spec["count"] * spec["steps"]}


# =================================================================================== learners
def _reward_suffix(spec: dict) -> str:
    """``""`` for the task's own (sparse) reward, else ``"__<reward_type>"``, then the progress weight when it
    is not 1 (``"__progress20"``)."""
    reward = spec.get("reward_type", "sparse")
    weight = spec.get("progress_weight")
    return "" if reward == "sparse" else f"__{reward}" + ("" if weight is None else f"{weight:g}")


#: Learner settings a spec records only when they differ from the default (SB3's 1 and 2 critics, the
#: VAE's 32): spec key, what job names end in, what report titles say.
VARIANTS = (("ent_coef_init", "__alpha{:g}", "SAC's initial entropy coefficient {:g}"),
            ("latent_dim", "__z{}", "VAE latent size {}"),
            ("n_critics", "__critics{}", "{} critics"),
            ("subspace", "__{}", "the high level acts in the VAE's {} latent dimensions only"),
            ("instances", "__{}", "AntMaze's {} task instances"),
            ("progress_clearance", "__clearance{:g}", "progress measured on paths {:g} m from the walls"))


def _variant_suffix(spec: dict) -> str:
    """What job names, run folders and report sections of a learner end in: the reward's suffix, then one
    part per :data:`VARIANTS` setting the spec records (``"__alpha0.01"``, ``"__z8"``, ``"__critics5"``)."""
    return _reward_suffix(spec) + "".join(suffix.format(spec[key]) for key, suffix, _ in VARIANTS
                                          if spec.get(key) is not None)


def _unsized(variant: str) -> str:
    """A variant suffix without the settings scratch does not have (no VAE: its latent size and subspace)."""
    return re.sub(r"__z\d+|__used", "", variant)


def _task_maker(spec: dict) -> tuple[Callable, slice, str]:
    """``(make_task, proprioception slice, task id)`` of a learner's task."""
    kwargs = {"disable_env_checker": True}
    if spec["episode_steps"]:
        kwargs["max_episode_steps"] = spec["episode_steps"]
    if spec["task"] in MAZES:
        from latentprior.envs.antmaze import ANT_PROPRIOCEPTION, antmaze_id, make_antmaze

        size = MAZES[spec["task"]]
        if spec.get("reward_type", "sparse") != "sparse":
            kwargs["reward_type"] = spec["reward_type"]
        if spec.get("progress_weight") is not None:
            kwargs["progress_weight"] = spec["progress_weight"]
        if spec.get("progress_clearance") is not None:
            kwargs["progress_clearance"] = spec["progress_clearance"]
        if spec.get("instances") is not None:
            kwargs["instances"] = spec["instances"]
        return functools.partial(make_antmaze, size, **kwargs), ANT_PROPRIOCEPTION, antmaze_id(size)
    from latentprior.envs.bipedal_skills import PROPRIOCEPTION, bipedal_skills_id, make_bipedal_skills

    robot = _bisk_robot(spec["robot"])
    return (functools.partial(make_bipedal_skills, spec["task"], robot, **kwargs), PROPRIOCEPTION,
            bipedal_skills_id(spec["task"], robot))


def _learner(spec: dict, results: Path) -> dict:
    """One learner on one task for one seed: its evaluation curve against environment samples and its final evaluation."""
    from latentprior.envs.make import make_vec_env
    from latentprior.experiments.lsp import run_lsp_experiment
    from latentprior.experiments.report import read_curve
    from latentprior.rl import sac
    from latentprior.rl.prior_integrations import LSPIntegrationConfig

    learner, samples = spec["learner"], spec["samples"]
    lsp = LSPIntegrationConfig(**spec["lsp"])
    # An option executes option_length latents, one environment sample each: count samples, not decisions.
    per_step = lsp.option_length if learner == "options" else 1
    steps = max(samples // per_step, 1)
    config = _sac_config(steps, spec["learning_starts"], seed=spec["seed"], eval_every=max(spec["eval_every"] // per_step, 1),
                         eval_episodes=spec["eval_instances"], eval_envs=spec["eval_instances"], num_envs=spec.get("num_envs", 1),
                         ent_coef_init=spec.get("ent_coef_init", 1.0), n_critics=spec.get("n_critics", 2))
    make_task, proprioception, task_id = _task_maker(spec)
    shaped = bool(_reward_suffix(spec))
    run_dir = _runs(results, spec["task"]) / f"{learner}__seed{spec['seed']}{_variant_suffix(spec)}"
    facts = {"benchmark": NAME, "task": spec["task"], "learner": learner, "command": spec["command"]}
    out: dict[str, Any] = {}
    if learner == "scratch":
        result = sac.train(functools.partial(make_vec_env, make_task), config, run_dir, progress=False, metadata=facts)
        metrics, steps_done = result.metrics, result.steps
    else:
        vae, prior, low_level = _artifacts(results, _pretrained(spec["robot"], spec))
        subspace = None
        if spec.get("subspace") == "used":
            from latentprior.latent.lsp import LatentSubspace

            subspace = LatentSubspace.used(vae, *_datasets(results, spec["robot"], "train"))
        make_task.__name__ = task_id  # the name run_lsp_experiment records
        summary = run_lsp_experiment(make_task, vae, prior, low_level, learner, lsp, config, run_dir,
                                     proprioception=proprioception, subspace=subspace, progress=False, metadata=facts)
        metrics, steps_done = summary["metrics"], summary["steps"]
        out = {"explore_fraction": summary.get("explore_fraction"), "planner": summary.get("planner"),
               "subspace_dims": None if subspace is None else list(subspace.dims)}
    _keep_newest_checkpoint(run_dir)
    # With a shaped reward the task reports its score (success) as info["task_reward"]: curves and
    # finals are that score, as with the sparse reward; the shaped return is kept beside it.
    curve = read_curve(run_dir / "metrics.csv", y="eval/task_return_mean" if shaped else "eval/return_mean")
    final = json.loads((run_dir / "eval.json").read_text())
    if shaped:
        shaped_curve = read_curve(run_dir / "metrics.csv", y="eval/return_mean")
        out["shaped_final"] = final["return_mean"]
        out["shaped_curve"] = {"samples": (shaped_curve.steps * per_step).tolist(), "value": shaped_curve.returns.tolist()}
    score = "task_return" if shaped else "return"
    return {
        **out,
        "curve": {"samples": (curve.steps * per_step).tolist(), "value": curve.returns.tolist()},
        "final": final[f"{score}_mean"], "final_returns": final[f"{score}s"], "final_lengths": final["lengths"],
        "samples_per_step": per_step, "steps_done": steps_done,
        "train_s": metrics.get("time/train_s"), "samples_per_s": per_step * metrics.get("time/steps_per_s", float("nan")),
        "sac": {"total_steps": config.total_steps, "learning_starts": config.learning_starts,
                "eval_every": config.eval_every, "eval_episodes": config.eval_episodes},
    }


# =========================================================================================== report
def _verdict(ok: bool | None) -> str:
    return "not run" if ok is None else ("met" if ok else "missed")


def _report_pretraining(runs: dict[str, dict], robot: str, key: str | None = None) -> list[str]:
    """The pre-training section of ``robot``'s models named ``key`` (:func:`_pretrained`; default: the robot's own)."""
    key = key or robot
    demos = runs.get(f"demos__{robot}")
    if demos is None:
        return [f"### {key}", "", "Not run."]
    lines = [f"### {key}", "",
             f"Demonstrations: {demos['source']}; {demos['episodes']['train']} training episodes "
             f"({demos['frames']['train']:,} frames; {demos['dropped_short']} dropped as too short), "
             f"{demos['episodes']['held_out']} held-out episodes ({demos['frames']['held_out']:,} frames), "
             f"{demos['obs_dim']}-d states" + ("." if demos["spec"]["random"] else f", action noise {demos['spec']['noise']}.")]
    for name, q in demos.get("skills", {}).items():
        lines.append(f"Skill episodes ({name} set): {q['episodes']}, tracking reward {q['tracking_reward_per_step']:.2f} "
                     "per step (1 = exact).")
    vae, prior, low = (runs.get(f"{kind}__{key}") for kind in ("vae", "prior", "low-level"))
    rows = []
    if vae:
        errors = ", ".join(f"{k} {v:.3f}" for k, v in (vae["held_out_error"] or {}).items())
        size = vae["spec"].get("latent_dim")
        rows.append(["state VAE", f"{vae['spec']['steps']:,} steps, `VAEConfig.small({'' if size is None else f'latent_dim={size}'})`",
                     f"held-out reconstruction MSE (normalised units): {errors}", f"{vae['fit_s'] / 60:,.1f}"])
    if prior:
        gap = prior["iid_gaussian_nll"] - prior["held_out_nll"]
        rows.append(["prior", f"{prior['spec']['steps']:,} steps, `PriorConfig.small()`",
                     f"held-out NLL **{prior['held_out_nll']:.2f}** nats per latent step (training {prior['train_nll']:.2f}; "
                     f"an i.i.d. Gaussian over the same latents: {prior['iid_gaussian_nll']:.2f}, so the prior is "
                     f"{abs(gap):.2f} nats per step {'better' if gap > 0 else 'worse'})", f"{prior['fit_s'] / 60:,.1f}"])
    if low:
        r = low["report"] or {}
        budget = f"SAC, {low['spec']['steps']:,} steps" if low["spec"]["method"] == "sac" else f"BC, {low['spec']['epochs']} epochs"
        measured = (f"held-out reenactment: {r['within_tolerance']:.1%} of frames within error {r['tolerance']:g}, "
                    f"{r['reenacted_frames']:,}/{r['frames']:,} frames reenacted, error {r['errors'].get('all', float('nan')):.3f}, "
                    f"reward {r['reward_mean']:.3f} per step") if r else "no report"
        rows.append(["low-level policy", budget, measured, f"{low['fit_s'] / 60:,.1f}"])
    if rows:
        lines += ["", markdown_table(["model", "budget", "result", "fit (min)"], rows)]
    samples = runs.get(f"samples__{robot}")
    if samples:
        lines += ["", f"Motion sampled from the prior without context, decoded by the VAE and played back kinematically "
                      f"({samples['spec']['count']} sequences of {samples['spec']['steps']} frames): "
                      f"[{samples['video']}]({samples['video']}) ({samples['bytes'] / 1024:,.0f} KiB)."]
    return lines


def _learner_curves(group: list[dict]) -> dict[str, Any]:
    from latentprior.experiments.report import Curve

    by_learner: dict[str, list[dict]] = {}
    for r in sorted(group, key=lambda r: (LEARNERS.index(r["spec"]["learner"]), r["spec"]["seed"])):
        by_learner.setdefault(r["spec"]["learner"], []).append(r)
    curves = {name: mean_curve([Curve(np.array(r["curve"]["samples"]), np.array(r["curve"]["value"])) for r in rs])
              for name, rs in by_learner.items()}
    # Goals compare learners at equal budget: the shortest run's samples (a run continued past the others, say to
    # the paper's 2M, is read at that point of its curve).
    budget = min(r["curve"]["samples"][-1] for r in group) if group else 0
    return {"runs": by_learner, "curves": curves, "budget": budget}


def _at_budget(run: dict, budget: float, curve: str = "curve", final: str = "final") -> float | None:
    """A run's evaluation at ``budget`` samples: its final one if it stopped there, else the last one before.

    ``curve``/``final``: which of the run's curves (``"shaped_curve"``/``"shaped_final"``: the shaped
    return); ``None`` where the run went past ``budget`` without keeping that curve.
    """
    if run.get(final) is None:
        return None
    samples = np.asarray(run[curve]["samples"] if curve in run else run["curve"]["samples"])
    if samples[-1] <= budget:
        return float(run[final])
    if curve not in run:
        return None
    return float(np.asarray(run[curve]["value"])[max(int(np.searchsorted(samples, budget, side="right")) - 1, 0)])


def _report_task(task: str, group: list[dict], results: Path, success: bool) -> tuple[list[str], dict[str, Any]]:
    """Table and curves of one task; ``success``: values are success rates (AntMaze), else returns."""
    from latentprior.experiments.lap import steps_to_reach
    from latentprior.experiments.report import plot_curves
    from latentprior.rl.prior_integrations import INTEGRATIONS

    data = _learner_curves(group)
    spec = group[0]["spec"]
    progress = success and spec.get("reward_type") == "progress"
    scale, unit = (100.0, " %") if success else (1.0, "")
    what = {"scratch": "plain SAC in the robot's action space from scratch", **INTEGRATIONS}
    rows = []
    for learner in [n for n in LEARNERS if n in data["runs"]]:
        rs, curve = data["runs"][learner], data["curves"][learner]
        reach = steps_to_reach(curve, GOALS["success"]) if success else None
        train_h = [r["train_s"] / 3600 for r in rs if r.get("train_s") is not None]
        rows.append([learner, what[learner], ",".join(str(r["spec"]["seed"]) for r in rs),
                     ", ".join(f"{n:,.0f}" for n in sorted({r["curve"]["samples"][-1] for r in rs})),
                     mean_std([_at_budget(r, data["budget"]) for r in rs], 1, scale, unit),
                     *([_progress_at_budget(rs, data["budget"])] if progress else []),
                     f"{scale * curve.returns.max():,.1f}{unit}",
                     *(["never" if reach is None else f"{reach:,.0f}"] if success else []),
                     mean_std(train_h, 2), mean_std([r.get("samples_per_s") for r in rs], 0)])
        if learner == "plan" and all(r.get("planner") for r in rs):
            rows.append(["plan (planner acting)", "the same runs, evaluated with the planner choosing the latents", "", "",
                         mean_std([r["planner"].get("planner/task_return_mean", r["planner"]["planner/return_mean"]) for r in rs],
                                  1, scale, unit), *([""] if progress else []), "", *([""] if success else []),
                         "", ""])
    reward = spec.get("reward_type", "sparse")
    if spec.get("progress_weight") is not None:
        reward = f"{reward} x {spec['progress_weight']:g}"
    setting_note = "".join(", " + label.format(spec[key]) for key, _, label in VARIANTS if spec.get(key) is not None)
    title = (task.split("__")[0] + (f" ({reward} reward{setting_note})" if reward != "sparse" else
                                    f" ({setting_note[2:]})" if setting_note else "")) if success else \
        f"bisk {task.split('__')[0]} ({_bisk_robot(spec['robot'])}{setting_note})"
    ylabel = f"success rate over {spec['eval_instances']} instances" if success else f"return over {spec['eval_instances']} instances"
    plot_curves(data["curves"], results / f"{task}.png", title=title, xlabel="environment samples", ylabel=ylabel,
                reference={f"goal {GOALS['success']:.0%}": GOALS["success"]} if success else None)
    header = ["learner", "what", "seeds", "samples",
              f"{'success' if success else 'return'} at {data['budget']:,.0f} samples (mean ± std over seeds)",
              *([f"progress at {data['budget']:,.0f} samples (m of geodesic distance; mean ± std)"] if progress else []),
              "best evaluation (mean curve)", *([f"samples to {GOALS['success']:.0%} (mean curve)"] if success else []),
              "train time (h)", "samples/s at the end"]
    lines = [f"## {title}", "",
             f"{spec['eval_instances']} task instances per evaluation (reset seeds `eval_seed(seed) + i`, the same at every "
             f"evaluation of a run), deterministic policy, every {spec['eval_every']:,} samples; "
             + (("an instance counts as a success when the ant reaches the goal (sparse reward, episode ends there)."
                 if reward == "sparse" else f"trained on the {reward} reward (`AntMaze(reward_type='{spec.get('reward_type')}'"
                 + (f", progress_weight={spec['progress_weight']:g}" if spec.get("progress_weight") is not None else "")
                 + ")`); an "
                 "instance counts as a success when the ant reaches the goal (the sparse score in `info['task_reward']`, "
                 "episode ends there).") if success else "returns are the task's sparse reward.") + " Curves: mean over seeds, band ± std.", "",
             markdown_table(header, rows), ""]
    longer = [f"`{learner}` seed {r['spec']['seed']}: {scale * r['final']:,.1f}{unit} at {r['curve']['samples'][-1]:,.0f}"
              + (f" ({_metres(r, r['shaped_final']):.1f} m)" if progress and r.get("shaped_final") is not None else "")
              for learner, rs in data["runs"].items() for r in rs if r["curve"]["samples"][-1] > data["budget"]]
    if longer:
        lines += [f"Runs continued past the common budget ({data['budget']:,.0f} samples), at their end: "
                  + "; ".join(longer) + ".", ""]
    lines += [f"![{task}]({task}.png)", ""]
    return lines, data


def _metres(run: dict, shaped_return: float) -> float:
    """An AntMaze run's shaped (progress) return in metres of geodesic progress: over its progress weight."""
    return shaped_return / run["spec"].get("progress_weight", 1.0)


def _progress_at_budget(runs: list[dict], budget: float) -> str:
    """The runs' progress towards the goal at ``budget`` samples, in metres: the shaped evaluation return
    over the progress weight (it also holds the sparse success, at most 1 / weight m). Runs that went past
    ``budget`` before their shaped curve was recorded have no value there: counted as "n of N seeds"."""
    values = [None if v is None else _metres(r, v) for r in runs for v in [_at_budget(r, budget, "shaped_curve", "shaped_final")]]
    known = [v for v in values if v is not None]
    return mean_std(known, 1) + ("" if len(known) == len(values) else f" ({len(known)} of {len(values)} seeds)")


def _best_integration(data: dict[str, Any]) -> tuple[str, float] | None:
    """The prior integration with the best mean evaluation at the common budget, and that value."""
    finals = {name: _final(data, name) for name in data["runs"] if name not in ("scratch", "none")}
    if not finals:
        return None
    best = max(finals, key=finals.get)
    return best, finals[best]


def _final(data: dict[str, Any], learner: str) -> float | None:
    """A learner's mean evaluation over seeds at the common budget (``data["budget"]``)."""
    rs = data["runs"].get(learner)
    return None if not rs else float(np.mean([_at_budget(r, data["budget"]) for r in rs]))


def _maze_goals(task: str, data: dict[str, Any] | None, variant: str = "") -> list[str]:
    from latentprior.experiments.lap import steps_to_reach

    label = "antmaze-medium" if task == "antmaze-medium" else "antmaze-large (transfer of the medium maze's prior)"
    label += f" ({variant.strip('_').replace('__', ', ')})" if variant else ""
    best = None if data is None else _best_integration(data)
    goals = []
    if task == "antmaze-medium":
        if best is None:
            goals.append(f"- {label}: with the prior, >= {GOALS['success']:.0%} success within "
                         f"{GOALS['success_samples']:,} samples: **not run**")
        else:
            reached = {n: steps_to_reach(data["curves"][n], GOALS["success"]) for n in data["runs"] if n not in ("scratch", "none")}
            within = {n: s for n, s in reached.items() if s is not None and s <= GOALS["success_samples"]}
            shown = "; ".join(f"{n} {'never' if s is None else f'at {s:,.0f}'} ({_final(data, n):.0%} at {data['budget']:,.0f})" for n, s in reached.items())
            goals.append(f"- {label}: with the prior, >= {GOALS['success']:.0%} success within {GOALS['success_samples']:,} "
                         f"samples (mean curve over seeds): {shown}: **{_verdict(bool(within))}**")
    for baseline in ("none", "scratch"):
        value = None if data is None else _final(data, baseline)
        if best is None or value is None:
            goals.append(f"- {label}: baseline `{baseline}` visibly behind (our threshold: >= {100 * GOALS['behind']:.0f} points "
                         "below the best prior integration at the end): **not run**")
            continue
        gap = best[1] - value
        goals.append(f"- {label}: baseline `{baseline}` {value:.0%} vs the best prior integration `{best[0]}` {best[1]:.0%} "
                     f"at {data['budget']:,.0f} samples (the shortest run's): {100 * gap:+.0f} points (goal: behind by >= "
                     f"{100 * GOALS['behind']:.0f}): "
                     f"**{_verdict(gap >= GOALS['behind'])}**")
    return goals


def _bisk_goal(task: str, data: dict[str, Any] | None) -> str:
    best = None if data is None else _best_integration(data)
    baseline = None if data is None else _final(data, "none")
    if best is None or baseline is None:
        return f"- bisk {task}: best prior integration's return >= {GOALS['bisk_ratio']:g}x the baseline's (`none`): **not run**"
    ok = best[1] > 0 and best[1] >= GOALS["bisk_ratio"] * baseline
    ratio = f"{best[1] / baseline:.2f}x" if baseline > 0 else "baseline <= 0"
    return (f"- bisk {task}: best prior integration `{best[0]}` {best[1]:.2f} vs baseline `none` {baseline:.2f} at "
            f"{data['budget']:,.0f} samples ({ratio}; goal >= {GOALS['bisk_ratio']:g}x at equal budget): **{_verdict(ok)}**")


def _report_reach(results: Path) -> list[str]:
    """The robot's reach through the low-level policy (``benchmarks/lsp_reach.py``'s ``reach/*.json``)."""
    files = sorted((Path(results) / "reach").glob("*.json"))
    if not files:
        return []
    lines = ["## Reach through the low-level policy (`benchmarks/lsp_reach.py`)", "",
             "Net displacement after the episode (median, m), episodes that ended in a fall, and how concentrated "
             "the end directions are (1: all one way), per source of latents.", ""]
    for path in files:
        r = json.loads(path.read_text())
        demo = r["demo_vs_demonstration"]
        lines += [f"**{r['robot']}** ({r['steps']} steps; demonstration latents cover "
                  f"{demo['displacement_ratio']['median']:.0%} of the demonstration's distance, direction cosine "
                  f"{demo['direction_cosine']['median']:.2f}; `{r['command']}`)", "",
                  "| latents | net displacement (m) | fell | concentration |", "|---|---|---|---|"]
        lines += [f"| {name} | {v['net_displacement_m']['median']:.1f} | {v['ended_early']:.0%} | "
                  f"{v['direction_concentration']:.2f} |" for name, v in r["sources"].items()]
        lines.append("")
    return lines


def curves(results: Path, pattern: str) -> str:
    """Each matching learner run's evaluations, one line per run: the task score (success in per cent
    on AntMaze) and, where the run kept its shaped-return curve, its progress in metres."""
    lines = []
    for file in sorted(Path(results).glob(f"{pattern}.json")):
        run = json.loads(file.read_text())
        if run.get("spec", {}).get("kind") != "learner":
            continue
        success = run["spec"]["task"] in MAZES
        scale = 100.0 if success else 1.0
        samples, values = run["curve"]["samples"], run["curve"]["value"]
        lines.append(f"{run['name']}: {len(samples)} evaluations to {samples[-1]:,.0f} samples, every "
                     f"{samples[1] - samples[0] if len(samples) > 1 else samples[0]:,.0f}; "
                     f"{'success (%)' if success else 'return'}: " + " ".join(f"{scale * v:.1f}" for v in values)
                     + f"; final {scale * run['final']:.1f}")
        if success and "shaped_curve" in run:
            lines.append("    progress (m): " + " ".join(f"{_metres(run, v):.1f}" for v in run["shaped_curve"]["value"])
                         + f"; final {_metres(run, run['shaped_final']):.1f}")
        elif success and run.get("shaped_final") is not None:
            lines.append(f"    progress (m): final {_metres(run, run['shaped_final']):.1f} (no curve kept)")
    return "\n".join(lines) if lines else f"no learner result matches {pattern}.json in {results}"


def report(results: Path) -> str:
    all_runs = load_results(results)
    runs = {r["name"]: r for r in all_runs}
    notes = ["Latent space priors: a state VAE and a transformer prior over its latents fitted on state-only "
             "demonstrations, a low-level policy that reenacts latents, and high-level SAC acting in the latent space "
             "with the prior integrated (`INTEGRATIONS`). Budgets and sizes are in `benchmarks/latent_space_priors.py`."]
    if any(r["spec"].get("quick") for r in all_runs):
        notes = ["**Smoke run (`--quick`): tiny budgets that only check the pipeline; its numbers mean nothing.**", "", *notes]
    lines = report_header("Latent space priors benchmark (Gehring et al. 2023)", all_runs, notes)
    robots = [ANT, *sorted({r["spec"]["robot"] for r in all_runs if r["spec"]["robot"] != ANT})]
    lines += ["", "## Pre-training: demonstrations, VAE, prior, low-level policy", ""]
    for robot in robots:
        keys = sorted({_pretrained(robot, r["spec"]) for r in all_runs
                       if r["spec"]["kind"] == "vae" and r["spec"]["robot"] == robot}) or [robot]
        for key in keys:
            lines += [*_report_pretraining(runs, robot, key), ""]
    lines += _report_reach(results)
    goals: list[str] = []
    learners = [r for r in all_runs if r["spec"]["kind"] == "learner"]

    def task_section(task: str, success: bool, not_run: str, variant: str = "") -> dict[str, Any] | None:
        """Append ``task``'s section to ``lines``; its data for the goal check (``None`` when not run)."""
        group = [r for r in learners if r["spec"]["task"] == task and _variant_suffix(r["spec"]) == variant]
        # scratch uses no VAE: a section of a VAE latent size (__z<d>) or subspace (__used) shows the scratch
        # runs of its other settings
        unsized = _unsized(variant)
        if unsized != variant and not any(r["spec"]["learner"] == "scratch" for r in group):
            group += [r for r in learners if r["spec"]["task"] == task and r["spec"]["learner"] == "scratch"
                      and _variant_suffix(r["spec"]) == unsized]
        if not group:
            lines.extend(["", not_run])
            return None
        section, data = _report_task(task + variant, group, results, success=success)
        lines.extend(["", *section])
        return data

    def variants_of(task: str) -> list[str]:
        """``task``'s sections: one per variant suffix, except a scratch-only one that a __z<d>/__used section shows."""
        runs = [r for r in learners if r["spec"]["task"] == task]
        variants = {_variant_suffix(r["spec"]) for r in runs}
        absorbed = {v for v in variants if v in {_unsized(w) for w in variants if w != v}
                    and all(r["spec"]["learner"] == "scratch" for r in runs if _variant_suffix(r["spec"]) == v)}
        return sorted(variants - absorbed) or [""]

    for task in MAZES:
        for variant in variants_of(task):
            goals += _maze_goals(task, task_section(task, True, f"## {task}\n\nNot run.", variant), variant)
    bisk_tasks = sorted({r["spec"]["task"] for r in learners if r["spec"]["task"] not in MAZES})
    for task in bisk_tasks or ["GoToTargets", "Hurdles"]:
        not_run = (f"## bisk {task}\n\nNot run (`python benchmarks/latent_space_priors.py --parts bisk --bisk-tasks {task}`; "
                   "the default robot's expert is committed, another robot needs --bisk-expert).")
        for variant in variants_of(task):
            goals.append(_bisk_goal(task + variant, task_section(task, False, not_run, variant)))
    lines += ["", "## Goals", "", *goals]
    return "\n".join(lines) + "\n"


# ============================================================================================= main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    add("--workers", type=int, default=1, help="jobs in parallel, one process each (2 cores: 2)")
    add("--results", type=Path, default=None, help=f"default: benchmarks/results/{NAME}[_quick]")
    add("--seeds", default="0,1,2", help="seeds of every high-level learner")
    # demonstrations
    add("--experts-dir", type=Path, default=None,
        help="folder holding the command-conditioned Ant expert as Ant-v5/ (default: the package's shipped one, "
             "else runs/npmp_experts, benchmarks/npmp.py's folder)")
    add("--demo-skill-episodes", type=int, default=3, help="demos: episodes per skill of the expert's train set (16 skills)")
    add("--demo-switching", type=int, default=40, help="demos: training episodes whose command changes every 100-300 steps")
    add("--held-out-switching", type=int, default=4, help="demos: held-out switching episodes (beside the 8 held-out skills)")
    add("--demo-steps", type=int, default=1000, help="demos: steps per episode (Ant-v5's limit)")
    add("--demo-noise", type=float, default=0.1, help="demos: action noise std on [-1, 1] actions (Merel et al.'s 0.1)")
    add("--random-demos", action="store_true",
        help="with --quick only: uniformly random actions for a robot whose expert is missing (pipeline checks)")
    # fits
    add("--vae-steps", type=int, default=20_000, help="vae: gradient steps (VAEConfig.small()'s)")
    add("--prior-steps", type=int, default=20_000, help="prior: gradient steps (PriorConfig.small()'s)")
    add("--low-level-method", choices=["bc", "sac"], default="bc", help="low-level: BC of the actions or SAC reenactment")
    add("--low-level-steps", type=int, default=1_000_000, help="low-level: SAC steps on the reenactment task")
    add("--bc-epochs", type=int, default=100, help="low-level with --low-level-method bc: epochs")
    from latentprior.experiments.low_level import LATENT_TARGETS

    add("--low-level-targets", choices=LATENT_TARGETS, default="posterior",
        help="Ant low level with --low-level-method bc: fit_low_level_bc's latent_targets (the means topple the Ant "
             "under exploratory latents; the posterior follows demonstrations' directions best: benchmarks/lsp_reach.py "
             "and docs/BENCHMARKS.md; results of the means in results/latent_space_priors/mean_targets/)")
    add("--bisk-low-level-targets", choices=LATENT_TARGETS, default="unused-random",
        help="the same for the Bipedal Skills robot (posterior samples send the HalfCheetah backwards; the means "
             "barely move it under exploratory latents; docs/BENCHMARKS.md)")
    add("--sample-count", type=int, default=3, help="samples: sequences sampled from the prior")
    add("--sample-steps", type=int, default=40, help="samples: frames per sequence (20 per second)")
    add("--video-size", default="240x180", help="samples: video width x height in pixels")
    # high level
    add("--maze-learners", default=",".join(LEARNERS), help=f"antmaze parts: subset of {','.join(LEARNERS)}")
    add("--maze-samples", type=int, default=1_000_000, help="antmaze-medium: environment samples per run")
    add("--maze-reward", choices=["sparse", "progress"], default="progress",
        help="antmaze parts: the training reward; 'progress' adds the decrease of the geodesic distance to the goal "
             "(AntMaze's reward_type='progress'; jobs and run folders end in __progress; curves stay success rates); "
             "'sparse' is the success alone")
    add("--progress-weight", type=float, default=20.0,
        help="antmaze parts with --maze-reward progress: reward per metre of geodesic progress (AntMaze's "
             "progress_weight; jobs of another value end in __progress<w>). 20 = 1/dt makes the step's reward the "
             "speed towards the goal in m/s; at 1 a good step earns ~0.003, below the critic's noise")
    add("--maze-instances", choices=["random", "d4rl"], default="d4rl",
        help="antmaze parts: AntMaze's task instances: D4RL's fixed start and goal (d4rl, the paper's task and the "
             "default; jobs end in __d4rl) or start and goal cells drawn per episode (random, a harder goal-conditioned "
             "task no learner here has learnt)")
    add("--progress-clearance", type=float, default=1.0,
        help="antmaze parts with --maze-reward progress: the geodesic distance's paths keep this many metres from the "
             "walls (AntMaze's progress_clearance; jobs of a value above 0 end in __clearance<m>). 0: the shortest "
             "paths, which graze corners the ant's legs catch on (benchmarks/lsp_maze_episodes.py)")
    add("--large-samples", type=int, default=1_000_000, help="antmaze-large: environment samples per run")
    add("--eval-every", type=int, default=50_000, help="environment samples between evaluations")
    add("--eval-instances", type=int, default=50, help="task instances per evaluation (one reset seed each)")
    add("--ent-coef-init", type=float, default=0.01,
        help="SAC's initial entropy coefficient of every high-level run (SB3's is 1; jobs and run folders of a value "
             "other than 1 end in __alpha<x>). With 32-d latent actions, 1 fills the critic with an entropy bonus of ~20 "
             "per step that takes hundreds of thousands of samples to drain (docs/BENCHMARKS.md)")
    add("--latent-subspace", choices=["all", "used"], default="used",
        help="latent dimensions the high level acts in: only those the VAE uses on the training demonstrations "
             "(used, the default: mean KL >= 0.01 nats per frame, the others held at their mean; jobs end in __used) "
             "or all (the paper's; the Ant VAE uses 8 of 32, and with all 32 no learner got through the maze, "
             "docs/BENCHMARKS.md)")
    add("--n-critics", type=int, default=2,
        help="critics of every high-level SAC run, the target taking their minimum (SB3's 2; jobs of another "
             "number end in __critics<n>). More critics are more pessimistic: the 32-d latent action space's "
             "critics overestimate (docs/BENCHMARKS.md)")
    add("--latent-dim", type=int, default=None,
        help="the VAE's latent size for every pre-training and learner of this invocation (default: VAEConfig's 32, "
             "the authors'); jobs and folders of the VAE, prior, low level and learners end in __z<d>. The Ant VAE "
             "uses 8 of 32 dimensions (docs/BENCHMARKS.md): the other 24 are noise in the high level's action")
    add("--learning-starts", type=int, default=10_000, help="SAC's random warm-up steps (the RL zoo's MuJoCo value)")
    add("--num-envs", type=int, default=1,
        help="environments per SAC run (low level and high level). SAC makes one gradient update per vector step, so "
             "k environments make 1/k updates per sample: k = 4 cuts the update cost, which dominates on a CPU, "
             "4-fold (1: SB3's one update per sample)")
    add("--plan-rollouts", type=int, default=1024, help="plan: candidates per decision (the authors')")
    add("--plan-horizon", type=int, default=64, help="plan: latents per candidate (the authors': 64; see above)")
    # bipedal skills
    add("--bisk-expert", type=Path, default=None,
        help="bisk: expert on the robot's VelocityControl task (shaped); default for HalfCheetah: the committed "
             "benchmarks/experts/bisk-HalfCheetah-VelocityControl")
    add("--bisk-robot", choices=["Walker", "HalfCheetah"], default="HalfCheetah", help="bisk: the robot")
    add("--bisk-demo-episodes", type=int, default=50, help="bisk: training episodes of 1000 steps")
    add("--bisk-held-out", type=int, default=5, help="bisk: held-out episodes")
    add("--bisk-tasks", default="GoToTargets,Hurdles", help=f"bisk: subset of {','.join(BISK_TASKS)}")
    add("--bisk-learners", default="scratch,none,explore,regularize", help="bisk: learners")
    add("--bisk-samples", type=int, default=500_000, help="bisk: environment samples per run")
    add("--quick", action="store_true",
        help=f"tiny budgets, seed 0, into benchmarks/results/{NAME}_quick (emptied first unless --results is given), then --report")
    add("--report", action="store_true", help="write REPORT.md from the results and print it")
    add("--curves", metavar="PATTERN", default=None,
        help="print the evaluation curve of every learner run whose result name matches the glob PATTERN "
             "(e.g. 'antmaze-large__*'), with its progress in metres where it kept one, then exit")
    add("--job", help=argparse.SUPPRESS)             # a child process's single job
    add("--parent-command", help=argparse.SUPPRESS)  # the command that launched it
    args = parser.parse_args(argv)

    if args.job:
        _register_bisk_proprioception()
        run_child(json.loads(args.job), args.results, args.parent_command or command_line(), _handle)
        return
    if args.random_demos and not args.quick:
        parser.error("--random-demos is for smoke runs only: add --quick")
    if args.quick:  # tiny budgets for the flags left at their defaults
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    for key in ("parts", "maze_learners", "bisk_tasks", "bisk_learners"):
        setattr(args, key, csv_list(getattr(args, key)))
    args.seeds = csv_list(args.seeds, int)
    from latentprior.rl.prior_integrations import INTEGRATIONS

    assert set(INTEGRATION_NAMES) == set(INTEGRATIONS), f"the library's integrations changed: {sorted(INTEGRATIONS)}"
    for what, chosen, known in [("parts", args.parts, PARTS), ("maze learners", args.maze_learners, LEARNERS),
                                ("bisk learners", args.bisk_learners, LEARNERS), ("bisk tasks", args.bisk_tasks, BISK_TASKS)]:
        if set(chosen) - set(known):
            parser.error(f"unknown {what} {sorted(set(chosen) - set(known))}; choose from {', '.join(known)}")
    args.results = results_folder(args.results, NAME, args.quick)
    if args.curves is not None:
        print(curves(args.results, args.curves))
        return

    def make_jobs() -> list[Job]:
        jobs = _jobs(args)
        for job in jobs:
            job.spec["quick"] = args.quick
        return jobs

    run_then_report(make_jobs, __file__, args.results, args.workers, report,
                    run=not args.report or args.quick, write_report=args.report or args.quick)

if __name__ == "__main__":
    main()
