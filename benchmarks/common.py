"""What every benchmark script shares: jobs in child processes, resume, machine facts, report helpers.

A benchmark is a list of :class:`Job`. Each job runs as one child process (``python SCRIPT --job
JSON --results DIR``) whose output goes to ``DIR/runs/logs/NAME.log`` and which writes its result
``DIR/NAME.json`` last and atomically, with the machine, the versions, the command and the
dates. A job whose result exists is skipped, so rerunning the same command continues the
benchmark; a job that was interrupted starts again (or resumes from its own checkpoints, as RL
runs and expert training do). A job may need others: it starts once they have all finished and
is skipped, with a message, when one of them failed. Large outputs (datasets, modules, run
folders, logs) go under ``DIR/runs/``, which git ignores; the result JSONs and ``REPORT.md`` are
what is committed.

    from common import Job, run_jobs, run_child

    jobs = [Job("data", "part", {"kind": "data"}), Job("fit", "part", {"kind": "fit"}, needs=("data",))]
    run_jobs(jobs, __file__, results, workers=2, command=command_line())    # in the parent
    run_child(job_dict, results, command, handler)                          # in the child (--job)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from latentprior.experiments.report import Curve, markdown_table
from latentprior.io import atomic_write_json

__all__ = [
    "Job",
    "run_jobs",
    "run_child",
    "result_path",
    "load_result",
    "load_results",
    "machine",
    "now",
    "command_line",
    "csv_list",
    "mean_std",
    "mean_curve",
    "markdown_table",
    "report_header",
]


# ----------------------------------------------------------------------------------------- jobs
@dataclasses.dataclass
class Job:
    """One unit of a benchmark, run in its own process.

    :param name: unique; its result is ``<results>/<name>.json`` (so no ``/`` in it).
    :param part: the benchmark part it belongs to (for reports and ``--parts``).
    :param spec: everything the child needs, JSON-able; ``spec["kind"]`` usually picks the handler.
    :param needs: names of jobs that must have finished first.
    """

    name: str
    part: str
    spec: dict[str, Any]
    needs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "part": self.part, "spec": self.spec, "needs": list(self.needs)}


def result_path(results: Path, name: str) -> Path:
    return Path(results) / f"{name}.json"


def load_result(results: Path, name: str) -> dict[str, Any] | None:
    """A finished job's result, or ``None`` if it has not finished."""
    path = result_path(results, name)
    return json.loads(path.read_text()) if path.is_file() else None


def load_results(results: Path) -> list[dict[str, Any]]:
    """Every finished job's result in ``results``, by name order."""
    return [json.loads(p.read_text()) for p in sorted(Path(results).glob("*.json"))]


def _log_path(results: Path, name: str) -> Path:
    return Path(results) / "runs" / "logs" / f"{name}.log"


def _launch(job: Job, script: str, results: Path, command: str) -> tuple[int, float]:
    log = _log_path(results, job.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    child = [sys.executable, str(script), "--job", json.dumps(job.to_dict()), "--results", str(results),
             "--parent-command", command]
    t0 = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n==== {now()} {shlex.join(child)}\n")
        out.flush()
        code = subprocess.call(child, stdout=out, stderr=subprocess.STDOUT)
    return code, time.perf_counter() - t0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_jobs(
    jobs: Sequence[Job], script: str, results: Path, workers: int = 1, command: str = "",
    result_file: Callable[[Path, str], Path] = result_path,
) -> dict[str, str]:
    """Run the jobs whose results are missing, ``workers`` at a time, each after the jobs it needs.

    A need that is not among ``jobs`` counts as finished when its result exists. A result may list
    ``outputs`` (paths relative to ``results``, or absolute) that later jobs read; when one of them
    is gone (a fresh clone has the committed JSONs but no run folders), the job runs again. Prints
    one line per job (and a failed job's last log lines). ``result_file(results, name)`` is where a
    job's result is (default :func:`result_path`; a benchmark whose runs write their own result
    inside their run folder passes its own).

    :return: each job's status: ``"done already"``, ``"finished"``, ``"failed"`` or ``"skipped"``.
    """
    results = Path(results)
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique, got duplicates {sorted({n for n in names if names.count(n) > 1})}")
    status: dict[str, str] = {}
    pending: dict[str, Job] = {}
    by_name = {job.name: job for job in jobs}
    running: dict[Future, str] = {}  # job names by their future
    for job in jobs:
        file = result_file(results, job.name)
        done = json.loads(file.read_text()) if file.is_file() else None
        missing = [o for o in (done or {}).get("outputs", []) if not (results / o).exists()]
        if missing:
            print(f"{job.name}: its result is there but not its outputs {missing} (run folders are not committed); "
                  "running it again", flush=True)
        if done is None or missing:
            pending[job.name] = job
            continue
        status[job.name] = "done already"
        # (a result written before its benchmark used Job has no spec to compare)
        if "spec" in done and done["spec"] != json.loads(json.dumps(job.spec)):
            old, new = done.get("spec", {}), json.loads(json.dumps(job.spec))
            changed = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
            print(f"{job.name}: done already, with other settings ({', '.join(changed)}); kept (delete "
                  f"{file} to run it again with these)", flush=True)
    logs = _log_path(results, "*").parent
    print(f"{len(pending)} of {len(jobs)} jobs to run, {workers} at a time; logs in {logs}", flush=True)

    def state(need: str) -> str:
        if need in status:
            return "ok" if status[need] in ("done already", "finished") else "failed"
        if need in pending or need in running.values():
            return "wait"
        return "ok" if result_file(results, need).is_file() else "failed"

    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        while pending or running:
            waiting = len(pending)
            for name, job in list(pending.items()):
                states = {need: state(need) for need in job.needs}
                if any(s == "failed" for s in states.values()):
                    failed = [n for n, s in states.items() if s == "failed"]
                    status[name] = "skipped"
                    del pending[name]
                    print(f"{name}: skipped, it needs {', '.join(failed)}, which did not finish", flush=True)
                elif all(s == "ok" for s in states.values()) and len(running) < max(workers, 1):
                    del pending[name]
                    print(f"{name}: started", flush=True)
                    running[pool.submit(_launch, job, script, results, command)] = name
            if not running:
                if pending and len(pending) == waiting:
                    raise ValueError(f"jobs that need each other, none can start: {sorted(pending)}")
                continue  # everything left was skipped above, or is now startable
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                job = by_name[running.pop(future)]
                code, seconds = future.result()
                ok = code == 0 and result_file(results, job.name).is_file()
                status[job.name] = "finished" if ok else "failed"
                print(f"{job.name}: {'finished' if ok else f'FAILED (exit {code})'} in {seconds:,.0f} s", flush=True)
                if not ok:
                    print(_tail(_log_path(results, job.name)), flush=True)
    return status


def run_child(
    job: dict[str, Any], results: Path, command: str, handler: Callable[[dict[str, Any], Path], dict[str, Any]]
) -> None:
    """The child's side: run ``handler(job, results)`` with one torch thread, then write its result last.

    The handler sees the job with ``command`` (the benchmark's command line) added.

    The result JSON holds the job (``name``, ``part``, ``spec``, ``needs``), what the handler
    returned, ``started``/``finished``/``wall_s``, ``machine`` and ``command``.
    """
    import torch

    torch.set_num_threads(1)
    started, t0 = now(), time.perf_counter()
    outcome = handler({**job, "command": command}, Path(results))
    atomic_write_json(result_path(results, job["name"]), {
        **job, **outcome,
        "started": started, "finished": now(), "wall_s": time.perf_counter() - t0,
        "machine": machine(), "command": command,
    })


# ---------------------------------------------------------------------------------------- facts
def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, platform, versions, load."""
    import gymnasium
    import mujoco
    import torch

    import latentprior

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {"python": platform.python_version(), "latentprior": latentprior.__version__, "torch": torch.__version__,
                "gymnasium": gymnasium.__version__, "mujoco": mujoco.__version__}
    for name in ("stable_baselines3", "envpool"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "versions": versions,
            "load_avg_1m": os.getloadavg()[0]}


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def command_line() -> str:
    """This process's command line as a user would type it."""
    return shlex.join(["python", *sys.argv])


# -------------------------------------------------------------------------------------- reports
def csv_list(text: str, kind: Callable[[str], Any] = str) -> list:
    """``"a,b,,c"`` -> ``["a", "b", "c"]``, each converted by ``kind``."""
    return [kind(item) for item in text.split(",") if item]


def mean_std(values: Iterable[float | None], digits: int = 1, scale: float = 1.0, suffix: str = "") -> str:
    """``"mean ± std"`` of the values that are not ``None`` (one value alone, ``"-"`` for none), times ``scale``."""
    values = [scale * float(v) for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:,.{digits}f}{suffix}"
    return f"{np.mean(values):,.{digits}f} ± {np.std(values):,.{digits}f}{suffix}"


def mean_curve(curves: Sequence[Curve]) -> Curve:
    """Curves (one per seed) averaged on the steps they all have: mean, and std over them."""
    common = sorted(set.intersection(*(set(c.steps.tolist()) for c in curves)))
    values = np.array([[dict(zip(c.steps.tolist(), c.returns.tolist()))[s] for s in common] for c in curves])
    return Curve(np.array(common), values.mean(0), values.std(0))


def report_header(title: str, runs: Sequence[dict[str, Any]], notes: Sequence[str] = ()) -> list[str]:
    """The opening lines of a ``REPORT.md``: machine, versions, dates, commands, total run time."""
    if not runs:
        return [f"# {title}", "", "No results yet."]
    facts = runs[0].get("machine", {})
    commands = sorted({r.get("command", "?") for r in runs})
    lines = [
        f"# {title}",
        "",
        f"Machine: {facts.get('cpu', '?')}, {facts.get('cores', '?')} cores; versions {json.dumps(facts.get('versions', {}))}.",
        f"1-minute load average during the jobs: {min(r['machine']['load_avg_1m'] for r in runs):.1f} to "
        f"{max(r['machine']['load_avg_1m'] for r in runs):.1f} (other work on the machine slows every timing).",
        f"{len(runs)} jobs finished between {min(r['started'] for r in runs)} and {max(r['finished'] for r in runs)}, "
        f"{sum(r['wall_s'] for r in runs) / 3600:,.2f} h of job wall-clock in all; report written {now()}.",
        "Commands: " + "; ".join(f"`{c}`" for c in commands) + ".",
    ]
    return lines + [""] + list(notes)


def results_folder(results: Path | None, name: str, quick: bool) -> Path:
    """Where a benchmark writes: ``results`` if given, else ``benchmarks/results/<name>``, or
    ``<name>_quick`` for a smoke check (emptied first: a smoke check runs everything afresh)."""
    default = Path(__file__).resolve().parent / "results" / (f"{name}_quick" if quick else name)
    if quick and results is None:
        shutil.rmtree(default, ignore_errors=True)
    folder = Path(results or default).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_then_report(
    make_jobs: Callable[[], Sequence[Job]],
    script: str,
    results: Path,
    workers: int,
    report: Callable[[Path], str],
    *,
    run: bool,
    write_report: bool,
) -> None:
    """The end of a benchmark's ``main``: run the jobs (``run``), name those that did not finish,
    then write ``REPORT.md`` from the results and print it (``write_report``)."""
    if run:
        status = run_jobs(make_jobs(), script, results, workers, command_line())
        failed = sorted(name for name, s in status.items() if s in ("failed", "skipped"))
        if failed:
            print(f"not finished: {', '.join(failed)} (logs in {results / 'runs' / 'logs'})", flush=True)
    if write_report:
        text = report(results)
        (results / "REPORT.md").write_text(text)
        print(text)
