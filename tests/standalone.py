"""A real Spark standalone cluster on 127.0.0.1 for the tests: a master and one-core workers started
from the pip PySpark installation (``spark-class ...deploy.master.Master`` / ``...deploy.worker.Worker``),
each in a process group of its own so that it can be stopped, or killed with its executors, by pid."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import REPO

STARTUP_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_home() -> str:
    import pyspark

    return os.path.dirname(pyspark.__file__)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace_s: float = 20) -> None:
    """``sig`` to the process group the process leads (the JVM and any executor it forked), then
    SIGKILL when it has not exited within ``grace_s``."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # executors left behind by the worker share its group
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


class StandaloneCluster:
    """Master + ``workers`` workers with ``cores`` cores each; ``kill_worker``/``start_worker``
    take one away and bring it back (a new worker process on a fresh work dir)."""

    def __init__(self, base: Path, workers: int = 2, cores: int = 1, memory: str = "3g"):
        self.base, self.cores, self.memory = base, cores, memory
        self.home = spark_home()
        self.env = {**os.environ, "SPARK_HOME": self.home, "SPARK_LOCAL_IP": "127.0.0.1",
                    "SPARK_LOG_DIR": str(base / "logs"), "PYSPARK_PYTHON": sys.executable,
                    "SPARK_NO_DAEMONIZE": "1",
                    # a killed worker is declared dead after 30 s of silence (default 60 s)
                    "SPARK_MASTER_OPTS": "-Dspark.worker.timeout=30"}
        self.port, self.ui = free_port(), free_port()
        self.master = f"spark://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.work_dirs: dict[str, Path] = {}
        self.ui_ports: dict[str, int] = {}
        self._logs: list = []
        self._starts = 0
        self._start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                               str(self.port), "--webui-port", str(self.ui)])
        for i in range(workers):
            self.start_worker(f"worker{i}")
        self.wait_for_workers(workers)

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.base / f"{name}-{self._starts}.log", "wb")
        self._starts += 1
        self._logs.append(log)
        self.procs[name] = subprocess.Popen([os.path.join(self.home, "bin", "spark-class"), *args], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, cwd=self.base)

    def start_worker(self, name: str) -> None:
        work = self.base / f"{name}-work-{self._starts}"
        self.work_dirs[name] = work
        self.ui_ports[name] = free_port()
        self._start(name, ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores",
                           str(self.cores), "--memory", self.memory, "--webui-port", str(self.ui_ports[name]),
                           "--work-dir", str(work), self.master])

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker and its executors (no goodbye to the master: a machine lost)."""
        stop(self.procs.pop(name), signal.SIGKILL, 0)

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui}/json/", timeout=5) as resp:
            return json.load(resp)

    def alive_workers(self) -> int:
        """Workers of the processes running now that the master lists as ALIVE."""
        try:
            state = self.state()
        except OSError:
            return -1
        mine = {f":{self.ui_ports[n]}" for n, p in self.procs.items() if n in self.ui_ports and p.poll() is None}
        return sum(w.get("state") == "ALIVE" and any(w.get("webuiaddress", "").endswith(m) for m in mine)
                   for w in state.get("workers", []))

    def wait_for_workers(self, n: int) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while self.alive_workers() < n:
            dead = [name for name, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                                  for p in sorted(self.base.glob("*.log")))
                raise RuntimeError(f"standalone cluster did not come up ({'exited: ' + str(dead) if dead else 'timeout'}"
                                   f", {self.alive_workers()} of {n} workers alive)\n{tails}")
            time.sleep(1)

    def ensure_workers(self, names: list[str]) -> None:
        """Start again any of ``names`` that is not running, and wait for all of them, and for the
        master to have declared a killed one dead (else it may still give it executors)."""
        for name in names:
            if name not in self.procs:
                self.start_worker(name)
        self.wait_for_workers(len(names))
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while sum(w.get("state") == "ALIVE" for w in self.state().get("workers", [])) > len(names):
            if time.monotonic() > deadline:
                raise RuntimeError("the master still lists a killed worker as ALIVE")
            time.sleep(0.5)

    def completed_apps(self) -> list[str]:
        return [a["name"] for a in self.state().get("completedapps", [])]

    def app_dirs(self) -> set[Path]:
        """The application directories of every worker's work dir (one per application it ran)."""
        return {p for work in self.work_dirs.values() for p in work.glob("app-*")}

    def finished_tasks(self, name: str, skip: set[Path] = frozenset()) -> int:
        """Tasks the executors of worker ``name`` reported finished so far (from their logs), not
        counting those of the applications in ``skip`` (earlier jobs on the same worker)."""
        return sum(p.read_text(errors="replace").count("Executor: Finished task")
                   for p in self.work_dirs[name].glob("app-*/*/stderr") if p.parent.parent not in skip)

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            stop(proc)
        for log in self._logs:
            log.close()


def submit_cmd(master: str, job: str, *args: str) -> list[str]:
    return [os.path.join(REPO, "spark-submit.sh"), job, *args, "--", "--master", master,
            "--driver-memory", "1g", "--executor-memory", "1g", "--conf", "spark.sql.shuffle.partitions=2"]


def submit_env() -> dict:
    return {**os.environ, "HDFSAD_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}


def submit(master: str, cwd: Path, job: str, *args: str, timeout: int = 420) -> str:
    out = subprocess.run(submit_cmd(master, job, *args), capture_output=True, text=True, timeout=timeout,
                         cwd=cwd, env=submit_env())
    assert out.returncode == 0, f"{job} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out.stdout
