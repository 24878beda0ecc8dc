"""Runs one console job: `python -m verticalize.web.runner <job.json>` starts the job's
`verticalize` command, records its pid, and writes its exit code into the job file when it
ends — so the job's outcome is known even if the console was restarted meanwhile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _update(path: Path, **fields) -> None:
    """The runner's own file beside the job's (<id>.state.json): the console never writes it."""
    state = path.with_suffix(".state.json")
    known = json.loads(state.read_text(encoding="utf-8")) if state.is_file() else {}
    tmp = path.with_suffix(".state.tmp")
    tmp.write_text(json.dumps(known | fields), encoding="utf-8")
    os.replace(tmp, state)


def main(job_file: str) -> int:
    path = Path(job_file)
    job = json.loads(path.read_text(encoding="utf-8"))
    command = [sys.executable, "-m", "verticalize", *job["argv"][1:]]
    # a console started in the background (`&`) has SIGINT ignored, and so would the stage:
    # give Ctrl+C back to it (the console's Stop sends SIGTERM, which the stage handles)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print("$ " + " ".join(job["argv"]), flush=True)
    child = subprocess.Popen(command)
    _update(path, child_pid=child.pid)
    while True:
        try:
            rc = child.wait()
            break
        except KeyboardInterrupt:  # the console signals the child itself; keep waiting
            continue
    _update(path, rc=rc, ended=time.time())
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
