"""The whole stack on loopback for tests and benchmarks: stand-ins in threads, the service as a
real `rotor-slack serve` process wired to them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from app.sandbox.rotor import FakeRotor
from app.sandbox.slack import FakeSlack


def uvicorn_server(app, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    return uvicorn.Server(config)


def bind(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


class ThreadServer:
    """A uvicorn server in a thread of its own, for tests: `.url` once started."""

    def __init__(self, app, port: int = 0) -> None:
        sock = bind(port)
        self.url = address(sock)  # connections wait in the listen backlog until it serves
        self.server = uvicorn_server(app, port)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(
    keys: dict[str, str], slack: FakeSlack, rotor: FakeRotor, database_url: str, policy: Path
) -> dict[str, str]:
    # slack_sdk honours HTTP(S)_PROXY but not NO_PROXY: loopback calls must not use a proxy.
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(keys)
    env.update(
        SLACK_API_URL=f"{slack.base_url}/api/",
        ROTOR_API_URL=rotor.base_url,
        DATABASE_URL=database_url,
        ROTOR_SLACK_CONFIG=str(policy),
    )
    return env


# Starts `rotor-slack <args> --fd <socket>` in `cwd`, its output in `log`; gives a
# `subprocess.Popen` or what quacks like one (pid, poll, wait, send_signal, terminate, kill).
Launch = Callable[[list[str], dict[str, str], Path, Path, socket.socket], Any]


def python_m_app(
    args: list[str], env: dict[str, str], cwd: Path, log: Path, sock: socket.socket
) -> subprocess.Popen:
    """`rotor-slack <args>` as a new `python -m app` process, serving on `sock`."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app", *args, "--fd", str(sock.fileno())],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=[sock.fileno()],
        )


class ServiceProcess:
    """A running `rotor-slack serve`, its output in a log file."""

    def __init__(
        self,
        env: dict[str, str],
        workdir: Path,
        name: str = "service",
        metrics_port: int | None = None,
        launch: Launch | None = None,
    ) -> None:
        """`metrics_port`: serve /metrics and /readyz there (`--metrics-port`), not on `url`.
        `launch`: how the process starts (default: `python -m app`)."""
        # The socket is bound here and handed over, so no other test can take its port between
        # choosing it and the service binding it.
        sock = bind(0)
        self.env, self.port = env, sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ops_url = f"http://127.0.0.1:{metrics_port}" if metrics_port else self.url
        self.log = workdir / f"{name}.log"
        self._http = httpx.Client(trust_env=False, timeout=10)
        args = ["serve", "--migrate"]
        args += ["--metrics-port", str(metrics_port)] if metrics_port else []
        with sock:
            self.process = (launch or python_m_app)(args, env, workdir, self.log, sock)

    def wait_ready(self, timeout: float = 20.0) -> ServiceProcess:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited:\n{self.output()}")
            try:
                if self.get("/readyz", ops=True).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service was not ready in {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def get(self, path: str, ops: bool = False) -> httpx.Response:
        """`ops`: on the port of /metrics and /readyz."""
        return self._http.get((self.ops_url if ops else self.url) + path)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self._http.post(self.url + path, **kwargs)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        self._http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
