"""What the soak starts and must stop: its database, the emulator, the demo under gunicorn.

Each part is a context manager; ``cli`` stacks them in an ``ExitStack`` so a failure, Ctrl-C or
SIGTERM at any point stops every process it started (by its own pid) and drops the database.
Every process listens on loopback, on a port the OS picks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StackError(RuntimeError):
    """A part of the stack did not start."""


def server_url(url: str, database: str) -> str:
    """``url`` (any PostgreSQL URL) pointing at ``database`` instead."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


class Database:
    """A fresh PostgreSQL database, dropped on exit (its remaining connections first)."""

    def __init__(self, postgres_url: str, name: str):
        self.name = name
        self.admin_url = server_url(postgres_url, "postgres")
        self.url = server_url(postgres_url, name)

    def __enter__(self) -> Database:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc_info) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.name],
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')

    def server_version(self) -> str:
        import psycopg

        with psycopg.connect(self.admin_url, connect_timeout=5) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])


class Process:
    """A child process in its own session, its output in a log file; stopped by its pid only."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, pass_fds: tuple = ()):
        self.name, self.argv, self.env, self.log_path, self.pass_fds = name, argv, env, log_path, pass_fds
        self.popen: subprocess.Popen | None = None

    def __enter__(self) -> Process:
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=self.pass_fds,
        )
        return self

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise StackError(f"{self.name} has not been started")
        return self.popen.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            match = regex.search(self.log_text())
            if match:
                return match
            if self.popen is not None and self.popen.poll() is not None:
                break
            time.sleep(0.1)
        tail = "\n".join(self.log_text().splitlines()[-20:])
        raise StackError(f"{self.name} did not start (no {pattern!r} in its log):\n{tail}")

    def __exit__(self, *exc_info) -> None:
        popen = self.popen
        if popen is not None and popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # Its own process group only (start_new_session): the workers it left behind.
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
        self._log.close()


def child_pids(pid: int) -> list[int]:
    """The live children of ``pid`` (gunicorn's workers), from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command (which may contain spaces) start after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry.name))
    return sorted(children)


def pid_with_local_port(pids: list[int], port: int) -> int | None:
    """Which of ``pids`` owns the loopback TCP socket bound to local ``port`` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    return None


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def emulator_flags(env: dict[str, str]) -> set[str]:
    """The command-line flags this version of the emulator has (``--help``)."""
    done = subprocess.run(
        [sys.executable, "-m", "khaime_django.emulator", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return set(re.findall(r"(--[a-z][a-z-]+)", done.stdout))


class EmulatorProcess(Process):
    """``python -m khaime_django.emulator`` on a free loopback port, with the soak's faults.

    ``if_supported`` options are passed only when this emulator has them (e.g. its pool of
    webhook senders), so the soak runs against older and newer emulators alike."""

    def __init__(self, options: dict, env: dict[str, str], log_path: Path, if_supported: dict | None = None):
        argv = [sys.executable, "-m", "khaime_django.emulator", "--host", "127.0.0.1", "--port", "0"]
        if if_supported:
            flags = emulator_flags(env)
            options = {**options, **{k: v for k, v in if_supported.items() if _flag(k) in flags}}
        self.options = options
        for name, value in options.items():
            flag = _flag(name)
            if value is True:
                argv.append(flag)
            elif value not in (None, False):
                argv += [flag, str(value)]
        super().__init__("emulator", argv, env, log_path)
        self.base_url = ""

    def __enter__(self) -> EmulatorProcess:
        super().__enter__()
        match = self.wait_for_line(r"Khaime emulator listening on (http://127\.0\.0\.1:\d+)")
        self.base_url = match.group(1)
        return self

    @property
    def api_base_url(self) -> str:
        return self.base_url + "/api/v1/partner"

    def control(self, method: str, path: str, payload: dict | None = None) -> object:
        """Call the emulator's control API (``/_emulator``); answers its ``data``."""
        body = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(  # noqa: S310 (an http URL we built)
            f"{self.base_url}/_emulator{path}", data=body, method=method, headers={"Content-Type": "application/json"}
        )
        with _no_proxy.open(request, timeout=60) as response:
            answer = json.loads(response.read())
        return answer.get("data", answer) if isinstance(answer, dict) else answer

    def configure(self, **options) -> dict:
        return self.control("POST", "/config", options)  # type: ignore[return-value]


def listening_socket() -> socket.socket:
    """A loopback socket on a port the OS picks, for gunicorn to inherit: the shop's URL is known
    before gunicorn starts, so the emulator can be told where to send webhooks."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=256)
    sock.set_inheritable(True)
    return sock


class Gunicorn(Process):
    """The demo (``demo_project.wsgi``) under gunicorn's worker processes, as production serves it:
    sync workers, or gthread workers when ``threads`` > 1."""

    def __init__(
        self, sock: socket.socket, workers: int, timeout: int, env: dict[str, str], log_path: Path, threads: int = 1
    ):
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "demo_project.wsgi:application",
            "--bind",
            f"fd://{sock.fileno()}",
            "--workers",
            str(workers),
            "--timeout",
            str(timeout),
            "--threads",
            str(threads),
            "--graceful-timeout",
            "5",
            "--access-logfile",
            "-",
            "--access-logformat",
            'ACCESS %(p)s "%(r)s" %(s)s %(D)s',
        ]
        super().__init__("gunicorn", argv, env, log_path, pass_fds=(sock.fileno(),))
        self.workers = workers
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def __enter__(self) -> Gunicorn:
        super().__enter__()
        self.wait_for_line(r"Booting worker")
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.worker_pids()) < self.workers and time.monotonic() < deadline:
            time.sleep(0.1)
        return self

    def worker_pids(self) -> list[int]:
        return child_pids(self.pid)

    def worker_exits(self) -> list[str]:
        """gunicorn's log lines about workers that died or timed out."""
        return [
            line
            for line in self.log_text().splitlines()
            if "WORKER TIMEOUT" in line or "was sent SIGKILL" in line or "exited with code" in line
        ]


class TaskWorker(Process):
    """``manage.py db_worker``: applies the webhook events the app enqueued in task mode."""

    def __init__(self, env: dict[str, str], log_path: Path):
        argv = [sys.executable, "manage.py", "db_worker", "--no-startup-delay", "--no-reload", "--interval", "0.1"]
        super().__init__("db_worker", argv, env, log_path)
