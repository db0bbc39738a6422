"""Services for tests, forked from a server that has imported what `rotor-slack serve` imports.

A suite starts some 300 services; a fresh `python -m app` spends about 0.8 s of CPU importing
before it serves. Forked from a preloaded server, each is still a process of its own (its own
pid, signals, exit code, environment and working directory), running the same `rotor-slack`
command on the same handed-over socket.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

_SERVER = multiprocessing.get_context("forkserver")
_SERVER.set_forkserver_preload(["tests.preloaded", "app.cli", "app.main", "app.schema"])


class Forked:
    """A `Launch` for `ServiceProcess`: `rotor-slack <args> --fd <sock>` forked from the server,
    with the part of `subprocess.Popen` the tests use."""

    def __init__(
        self, args: list[str], env: dict[str, str], cwd: Path, log: Path, sock: socket.socket
    ) -> None:
        # Daemonic: a service a failed test left running is stopped when its worker exits.
        self._process = _SERVER.Process(
            target=_become, args=(args, env, cwd, log, sock), daemon=True
        )
        self._process.start()
        self.pid = self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("rotor-slack", timeout or 0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _become(args: list[str], env: dict[str, str], cwd: Path, log: Path, sock: socket.socket):
    """In the forked child: set up as a fresh process would be, then run the command."""
    from app.cli import main

    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    with log.open("w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    sys.argv = ["rotor-slack", *args, "--fd", str(sock.detach())]
    main()
