"""Keeps `pulse worker` running: the Faust worker runs in a child process that is restarted when it dies
for any reason other than being asked to stop (a lost broker makes Faust exit, for instance). A restart
is safe at any moment: the sink stores progress with the data, and uncommitted messages are read again.

SIGTERM and SIGINT are passed on to the child, which finishes its batch, commits and exits 0.
"""
from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0  # a child that ran this long resets the backoff
# How long a stopping worker may take to finish its batch before it is killed (safe: progress is stored
# with the data). Below compose's stop_grace_period (35 s), so Docker never kills the supervisor first.
STOP_GRACE_S = 25.0
# EX_CONFIG from sysexits.h: the child cannot work with this configuration (say, Kafka refused the
# credentials); a restart would only repeat the refusal, so the supervisor exits with it instead.
EXIT_CONFIG = 78


def die_with_parent() -> None:
    """Linux: the child gets SIGKILL if the supervisor dies, so a killed supervisor leaves no orphan."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


def stop_process(process: subprocess.Popen, timeout_s: float = 60.0) -> int:
    """SIGTERM, a bounded wait, then SIGKILL; the exit status (negative: the signal that ended it)."""
    process.send_signal(signal.SIGTERM)  # no-op when it has exited already
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=10)


class Supervisor:
    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        """`env`: the child's whole environment (`Settings.child_env()`); None: this process's."""
        self.command = list(command)
        self.env = None if env is None else dict(env)
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def _forward(self, signum: int, _frame: object) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGINT, self._forward)
        failures = 0
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen(self.command, env=self.env, preexec_fn=die_with_parent)
            code = self._wait_child()
            if self.stopping:
                # A child stopped before it installed its handlers dies of the signal: nothing was in flight.
                return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
            if code == 0:
                return 0
            if code == EXIT_CONFIG:
                print("pulse worker: not restarting: the configuration was refused (see the error above)",
                      file=sys.stderr, flush=True)
                return code
            failures = 0 if time.monotonic() - started > STABLE_AFTER_S else failures + 1
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S)) - 1] if failures else 0.5
            log.warning("worker exited with %s; restarting in %.1f s", code, delay)
            print(f"pulse worker: worker process exited with {code}; restarting in {delay:.1f} s",
                  file=sys.stderr, flush=True)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.1)
            if self.stopping:
                return 0

    def _wait_child(self) -> int:
        assert self.child is not None
        while True:
            try:
                return self.child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if self.stopping and self._stop_overdue():
                    self.child.kill()

    def _stop_overdue(self) -> bool:
        if not hasattr(self, "_stop_seen"):
            self._stop_seen = time.monotonic()
        return time.monotonic() - self._stop_seen > STOP_GRACE_S
