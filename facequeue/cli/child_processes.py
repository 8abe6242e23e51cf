"""Child processes of the embedded servers: started in their own session with a parent-death signal, waited
for until they answer, and told apart from whatever else a stale pid file names."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from facequeue.core.storage import PRIVATE_FILE_MODE

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1


class EmbeddedStackError(RuntimeError):
    """An embedded server that could not start; the message says why and where its log is."""


@dataclass
class Child:
    """One embedded server process and how it is stopped."""

    name: str
    process: subprocess.Popen
    stop_signal: signal.Signals
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(
    name: str, command: list[str], log: Path, stop_signal: signal.Signals, user: pwd.struct_passwd | None
) -> Child:
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE), "ab") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,  # a Ctrl-C in serve's terminal is serve's to handle, in order
            preexec_fn=as_user(user, die_with=os.getpid(), signal_on_death=stop_signal),
        )
    return Child(name, process, stop_signal, log)


def as_user(
    user: pwd.struct_passwd | None, die_with: int | None = None, signal_on_death: signal.Signals = signal.SIGTERM
):
    """What the child runs before exec: take the user's identity, then ask the kernel for `signal_on_death` when
    this process ends (in that order: changing the user clears the request)."""

    def before_exec() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        if die_with is not None:
            die_with_parent(die_with, signal_on_death)

    return before_exec


def die_with_parent(parent_pid: int, signal_on_death: signal.Signals = signal.SIGTERM) -> None:
    """In a child before exec: the kernel sends `signal_on_death` when its parent ends, even by kill -9 (Linux only;
    elsewhere the next start clears what was left)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal_on_death))
    if os.getppid() != parent_pid:  # the parent ended before the request was made
        os._exit(1)


def wait_until_ready(child: Child, answers) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not answers():
        if child.process.poll() is not None or time.monotonic() > deadline:
            child.stop()
            raise EmbeddedStackError(
                f"the embedded {child.name} did not start; its log: {child.log}\n{_tail(child.log)}"
            )
        time.sleep(0.05)


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def clear_stale(pidfile: Path, program: str, *sockets: Path) -> None:
    """The pid file and sockets of a server that is gone (a previous serve was killed): removed before a start."""
    if alive(pid_in(pidfile), program):
        return
    for path in (pidfile, *sockets):
        path.unlink(missing_ok=True)


def pid_in(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int | None, name: str | None) -> bool:
    """Whether `pid` runs (and is that program, when `name` is given: a reused pid is not our server). A zombie,
    ended but not yet reaped by its parent, does not run."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs, as another user (postgres started by root runs as its own user)
    if not sys.platform.startswith("linux"):
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ")"
    comm, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return state != "Z" and (name is None or comm == name)


def package_dir(package: str) -> Path:
    """Where an installed package's files are, without importing it (the wheels' own modules print warnings)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedStackError(f"{package} is not installed; reinstall facequeue (`make install`)")
    return Path(next(iter(spec.submodule_search_locations)))


def wait_gone(pid: int, program: str) -> None:
    """Wait for a server told to stop, killing it once STOP_TIMEOUT has passed."""
    deadline = time.monotonic() + STOP_TIMEOUT
    while alive(pid, program):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):  # it ended since
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def runs_serve(pid: int) -> bool:
    """Whether `pid` is a running `facequeue serve` (not another program that was given a dead serve's pid)."""
    if not alive(pid, None):
        return False
    try:
        return b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not sys.platform.startswith("linux")  # no /proc: a live pid is taken as serve's
