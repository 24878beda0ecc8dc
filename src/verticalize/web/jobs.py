"""Jobs: `verticalize <stage>` subprocesses started from the console, one per project at a
time (others wait in a queue). Everything about a job is in files under
DIR/.verticalize-console/jobs/ — the runner (web/runner.py) writes the child's pid and exit
code there — so a restarted console, or a reloaded page, finds every job as it is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

STAGES = ("run", "data", "train", "eval", "export", "plan")
ACTIVE = ("queued", "running", "stopping")
RUNNER_FIELDS = ("child_pid", "rc", "ended")  # written by web/runner.py only
STOP_GRACE_S = 30.0  # SIGTERM first (training stops after its step, checkpointed), then SIGKILL


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process is not alive
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


class JobStore:
    def __init__(self, root: Path):
        self.dir = root / ".verticalize-console" / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    # -- files ---------------------------------------------------------------------------
    def path(self, job_id: str) -> Path:
        if not job_id.replace("-", "").isalnum():
            raise KeyError(job_id)
        return self.dir / f"{job_id}.json"

    def log_path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.log"

    def get(self, job_id: str) -> dict:
        """The job with what its runner recorded (child_pid, rc, ended) merged in."""
        try:
            job = json.loads(self.path(job_id).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise KeyError(job_id) from None
        state = self.path(job_id).with_suffix(".state.json")
        try:
            job |= json.loads(state.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            pass
        return job

    def save(self, job: dict) -> None:
        job = {k: v for k, v in job.items() if k not in RUNNER_FIELDS}
        tmp = self.path(job["id"]).with_suffix(".tmp")
        tmp.write_text(json.dumps(job, indent=1), encoding="utf-8")
        os.replace(tmp, self.path(job["id"]))

    def all(self, project: str | None = None) -> list[dict]:
        jobs = []
        for path in self.dir.glob("*.json"):
            if path.name.endswith(".state.json"):
                continue
            try:
                job = self.get(path.stem)
            except KeyError:
                continue
            if project is None or job["project"] == project:
                jobs.append(job)
        return sorted(jobs, key=lambda j: j["created"], reverse=True)

    def latest(self, project: str) -> dict | None:
        """The project's running (or stopping) job, else its newest."""
        jobs = self.all(project)
        running = [j for j in jobs if j["status"] in ("running", "stopping")]
        return (running or jobs or [None])[0]

    # -- lifecycle -----------------------------------------------------------------------
    def submit(self, project: str, folder: Path, stage: str, args: list[str]) -> dict:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
        job = {
            "id": time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
            "project": project,
            "folder": str(folder),
            "stage": stage,
            "argv": ["verticalize", stage, "verticalize.yaml", *args],
            "status": "queued",
            "created": time.time(),
        }
        with self._lock:
            self.save(job)
            self.tick()
        return self.get(job["id"])

    def _start(self, job: dict) -> None:
        log = open(self.log_path(job["id"]), "ab")  # noqa: SIM115 (the child holds it)
        env = {**os.environ, "COLUMNS": "120", "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "verticalize.web.runner", str(self.path(job["id"]))],
            cwd=job["folder"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # the job outlives a console restart
        )
        log.close()
        job.update(status="running", started=time.time(), runner_pid=process.pid)
        self.save(job)

    def tick(self) -> None:
        """Settle jobs whose process is gone, finish stops that waited too long, and start
        each project's oldest queued job when nothing of it runs."""
        with self._lock:
            jobs = sorted(self.all(), key=lambda j: j["created"])
            busy = set()
            for job in jobs:
                if job["status"] in ("running", "stopping"):
                    job = self._settle(job)
                    if job["status"] in ("running", "stopping"):
                        busy.add(job["project"])
            for job in jobs:
                if job["status"] == "queued" and job["project"] not in busy:
                    job = self.get(job["id"])
                    if job["status"] == "queued":
                        self._start(job)
                        busy.add(job["project"])

    def _settle(self, job: dict) -> dict:
        job = self.get(job["id"])
        if "rc" in job or not _alive(job.get("runner_pid")):
            if "rc" not in job:  # killed, or lost with the machine: no exit code was written
                job["status"] = "killed" if job.get("stop_requested") else "lost"
            elif job.get("stop_requested"):
                job["status"] = "stopped"
            else:
                job["status"] = "succeeded" if job["rc"] == 0 else "failed"
            job["settled"] = time.time()
            self.save(job)
        elif job["status"] == "stopping" and time.time() - job["stop_requested"] > STOP_GRACE_S:
            self._signal(job, signal.SIGKILL, group=True)
        return job

    def stop(self, job_id: str) -> dict:
        """Queued: cancelled. Running: SIGTERM to the stage (training stops after its current
        step with a checkpoint there; other stages stop at once); after STOP_GRACE_S, or when
        asked again, the whole process group is killed."""
        with self._lock:
            job = self.get(job_id)
            if job["status"] == "queued":
                job.update(status="cancelled", settled=time.time())
                self.save(job)
            elif job["status"] == "running":
                job.update(status="stopping", stop_requested=time.time())
                self.save(job)
                self._signal(job, signal.SIGTERM, group=False)
            elif job["status"] == "stopping":  # asked twice: kill now
                self._signal(job, signal.SIGKILL, group=True)
            self.tick()
            return self.get(job_id)

    @staticmethod
    def _signal(job: dict, sig: int, group: bool) -> None:
        pid = job.get("child_pid") or job.get("runner_pid")
        try:
            if group and job.get("runner_pid"):
                os.killpg(job["runner_pid"], sig)
            elif pid:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, job_id: str, lines: int = 40) -> str:
        path = self.log_path(job_id)
        if not path.is_file():
            return ""
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 16384))
            text = fh.read().decode("utf-8", errors="replace")
        return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


class Ticker(threading.Thread):
    """Calls store.tick() every `every` seconds while the console runs."""

    def __init__(self, store: JobStore, every: float = 0.5):
        super().__init__(daemon=True, name="console-jobs")
        self.store, self.every, self.halt = store, every, threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            try:
                self.store.tick()
            except Exception:  # a half-written file from a concurrent save: next tick
                continue
