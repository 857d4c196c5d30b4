"""Running a student's code where it can harm nothing but its own throw-away folder.

A submission is code from a stranger. :func:`run_sandboxed` starts it in a new process
session, in its own directory, through :func:`launch` (``python -m
transformer_course.grading.sandbox``), which applies every restriction the machine offers
and then becomes the student's program:

- always: resource limits (address space, CPU time, file size, open files, no core dumps),
  a minimal environment with ``HOME`` and ``TMPDIR`` inside the directory, a per-cell and a
  total wall-clock limit, a cap on captured output, a cap on the directory's size, and at the
  end every process it started is killed, including those that left its process group
  (the grader is their "subreaper", so orphans come back to it);
- Landlock (Linux >= 5.13, no privileges needed): reading is limited to the Python
  installation and the directory, writing to the directory; no TCP connections (ABI 4);
  no signals to, and no abstract sockets of, processes outside the sandbox (ABI 6);
- a network namespace of its own (no network at all) where the kernel allows one;
- run as root: every capability dropped; a cgroup ``pids`` limit where cgroups are writable
  (``RLIMIT_NPROC`` does not apply to root); as another user: ``RLIMIT_NPROC``.

:func:`probe` tells which of these work here. Without Landlock the student's code could read
files of the same user (other submissions, the course): :class:`Isolation` then reports
``filesystem=False`` and the grader refuses to run unless told to accept it.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import site
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Limits", "Isolation", "SandboxResult", "probe", "run_sandboxed", "launch"]

# --- Linux interfaces used through ctypes (numbers from <linux/landlock.h>, <sys/prctl.h>)
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000

# The system folders a Python process with torch needs to start (read-only).
SYSTEM_READ = ["/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin",
               "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
               "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/mime.types",
               "/etc/alternatives", "/etc/fonts", "/etc/ssl/certs",
               "/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat",
               "/sys/devices/system/cpu", "/sys/fs/cgroup",
               "/dev/urandom", "/dev/random", "/dev/zero"]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _errno_message() -> str:
    return os.strerror(ctypes.get_errno())


@dataclass(frozen=True)
class Limits:
    """What one submission may use."""

    cell_seconds: float = 90.0  # wall clock per cell; then interrupted, then killed
    total_seconds: float = 900.0  # wall clock for the whole notebook
    cpu_seconds: int = 900  # RLIMIT_CPU of the process
    memory_bytes: int = 4 << 30  # RLIMIT_AS: torch needs about 0.7 GB of address space
    file_bytes: int = 64 << 20  # RLIMIT_FSIZE: largest file it may write
    open_files: int = 256
    processes: int = 64  # processes and threads it may add
    output_bytes: int = 64 << 10  # captured output kept per cell, and per stream overall
    folder_bytes: int = 512 << 20  # its directory, all files together
    interrupt_grace_seconds: float = 5.0  # after the interrupt of a cell that ran too long


@dataclass
class Isolation:
    """The restrictions :func:`launch` applies (asked for, and then reported as applied)."""

    landlock_abi: int = 0  # 0: none
    network_namespace: bool = False
    drop_capabilities: bool = False  # when running as root
    cgroup_pids: bool = False  # a cgroup per run whose pids.max limits the processes
    read_paths: list[str] = field(default_factory=list)

    @property
    def filesystem(self) -> bool:
        return self.landlock_abi > 0

    def describe(self) -> str:
        parts = []
        if self.landlock_abi:
            what = "files"
            if self.landlock_abi >= 4:
                what += ", TCP"
            if self.landlock_abi >= 6:
                what += ", signals"
            parts.append(f"Landlock ABI {self.landlock_abi} ({what})")
        else:
            parts.append("no file-system isolation (Landlock unavailable)")
        parts.append("no network (own namespace)" if self.network_namespace
                     else "network namespace unavailable")
        if self.drop_capabilities:
            parts.append("root without capabilities")
        if self.cgroup_pids:
            parts.append("cgroup pids limit")
        elif os.geteuid() == 0:
            parts.append("no process-count limit (root, cgroups not writable)")
        else:
            parts.append("RLIMIT_NPROC")
        parts.append("rlimits (memory, CPU, file size, open files), own session, "
                     "process sweep")
        return "; ".join(parts)


def landlock_abi() -> int:
    if not sys.platform.startswith("linux"):
        return 0
    try:
        abi = _libc().syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                              ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(int(abi), 0)


def python_read_paths() -> list[str]:
    """What the student's Python must be able to read: its installation, its packages and
    this package (an editable install keeps it in the repository's ``src/`` only)."""
    import transformer_course

    package = os.path.dirname(os.path.abspath(transformer_course.__file__))
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), package}
    paths.update(site.getsitepackages())
    # An editable install puts the folder above the package (``src/``) on sys.path; Python
    # lists it to import from it. Allowed only if it holds nothing but the package.
    parent = os.path.dirname(package)
    extra = {name for name in os.listdir(parent)
             if not name.endswith((".egg-info", ".dist-info")) and name != "__pycache__"}
    if extra == {os.path.basename(package)}:
        paths.add(parent)
    return sorted(p for p in paths if os.path.exists(p))


# --- the launcher: runs in the child, applies the restrictions, then execs ---------------


def _landlock(abi: int, read: list[str], write: list[str]) -> None:
    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64),
                    ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    libc = _libc()
    # Every file-system right of this ABI is handled, so whatever is not allowed is denied.
    fs_bits = {1: 13, 2: 14, 3: 15}.get(abi, 16)
    handled_fs = (1 << fs_bits) - 1
    attr = RulesetAttr(handled_fs, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                       SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr),
                           ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(f"landlock_create_ruleset: {_errno_message()}")
    file_rights = FS_EXECUTE | FS_READ_FILE | FS_WRITE_FILE | (1 << 14 if abi >= 3 else 0)

    def allow(path: str, rights: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # absent on this system
        if not os.path.isdir(path):
            rights &= file_rights  # directory rights are refused on a file
        rule = PathBeneath(rights & handled_fs, fd)
        status = libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH,
                              ctypes.byref(rule), ctypes.c_uint32(0))
        os.close(fd)
        if status < 0:
            raise OSError(f"landlock_add_rule {path}: {_errno_message()}")

    for path in read:
        allow(path, FS_READ)
    for path in write:
        allow(path, handled_fs)
    allow("/dev/null", FS_READ_FILE | FS_WRITE_FILE)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        raise OSError(f"prctl(NO_NEW_PRIVS): {_errno_message()}")
    if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)):
        raise OSError(f"landlock_restrict_self: {_errno_message()}")
    os.close(ruleset)


def _drop_capabilities() -> None:
    libc = _libc()
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for capability in range(last + 1):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0):
            raise OSError(f"prctl(CAPBSET_DROP): {_errno_message()}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    if libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()):
        raise OSError(f"capset: {_errno_message()}")


def _set_limits(limits: dict) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
    for name, value in (("RLIMIT_AS", limits["memory_bytes"]),
                        ("RLIMIT_FSIZE", limits["file_bytes"]),
                        ("RLIMIT_NOFILE", limits["open_files"]), ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    if os.geteuid() != 0:  # root is exempt from RLIMIT_NPROC: the cgroup covers it
        uid = os.geteuid()
        mine = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == uid)
        total = mine + limits["processes"]
        resource.setrlimit(resource.RLIMIT_NPROC, (total, total))


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def _restrict(config: dict) -> None:
    """Apply ``config`` (written by :func:`run_sandboxed`) to this process and report what
    was applied as a JSON line on the status descriptor; a restriction that was asked for
    and fails ends the process (exit status 70)."""
    isolation = config["isolation"]
    status = os.fdopen(config["status_fd"], "w", buffering=1, closefd=False)
    applied = {}
    try:
        if config.get("cgroup"):
            Path(config["cgroup"], "cgroup.procs").write_text(str(os.getpid()))
            applied["cgroup_pids"] = True
        if isolation.get("network_namespace"):
            flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
            if _libc().unshare(flags):
                raise OSError(f"unshare(network): {_errno_message()}")
            applied["network_namespace"] = True
        if isolation.get("drop_capabilities") and os.geteuid() == 0:
            _drop_capabilities()
            applied["drop_capabilities"] = True
        _set_limits(config["limits"])
        if isolation.get("landlock_abi"):
            _landlock(isolation["landlock_abi"], isolation["read_paths"], [config["folder"]])
            applied["landlock_abi"] = isolation["landlock_abi"]
    except OSError as error:
        status.write(json.dumps({"event": "isolation-failed", "error": str(error)}) + "\n")
        os._exit(70)
    status.write(json.dumps({"event": "isolation", "applied": applied}) + "\n")
    status.flush()


def launch(config: dict, command: list[str]) -> None:
    """Restrict this process (see :func:`_restrict`), then exec ``command``."""
    _restrict(config)
    os.execve(command[0], command, config["environment"])


# --- the fork server: a Python with torch in milliseconds --------------------------------


class ForkServer:
    """A process that imported torch, IPython and the grading runner once, and forks a fresh
    child for every run: starting a Python that imports torch takes 2-3 s, a fork a few
    milliseconds. It never runs a student's code itself and holds nothing of the grader's
    (it is started with the sandbox's environment), so each child starts as clean as a new
    process. A child closes everything it inherited but its three pipes, then restricts
    itself exactly as :func:`launch` does before it runs ``python -m <module>``.

    Use it as a context manager around a batch (:func:`fork_server`); :func:`run_sandboxed`
    uses the current one for ``python -m`` commands and starts a fresh process otherwise.
    """

    def __init__(self):
        import socket

        self._socket, theirs = socket.socketpair()
        environment = sandbox_environment(None)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "transformer_course.grading.sandbox", "--fork-server",
             str(theirs.fileno())], pass_fds=(theirs.fileno(),), env=environment,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        ready = self._receive()
        if ready.get("ready") is not True:
            raise OSError(f"the fork server did not start: {ready}")

    def _receive(self) -> dict:
        data = b""
        while not data.endswith(b"\n"):
            chunk = self._socket.recv(65536)
            if not chunk:
                raise OSError("the fork server has gone")
            data += chunk
        return json.loads(data)

    def _ask(self, request: dict, fds: list[int] = ()) -> dict:
        import socket

        socket.send_fds(self._socket, [json.dumps(request).encode() + b"\n"], list(fds))
        return self._receive()

    def spawn(self, config: dict, module: str, args: list[str], fds: list[int]) -> int:
        """Fork a child that restricts itself by ``config`` and runs ``module`` with ``args``;
        ``fds`` are its stdout, stderr and status descriptors. Returns its pid."""
        return self._ask({"op": "spawn", "config": config, "module": module, "args": args},
                         fds)["pid"]

    def poll(self, pid: int) -> int | None:
        """The child's exit status (as ``Popen.returncode`` gives it), None while it runs."""
        return self._ask({"op": "poll", "pid": pid})["returncode"]

    def sweep(self) -> int:
        """Kill every process left under the server (orphans come back to it); how many."""
        return self._ask({"op": "sweep"})["killed"]

    def close(self) -> None:
        self._socket.close()
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_SERVER: ForkServer | None = None


class fork_server:  # noqa: N801 (used as a context manager, like open)
    """``with fork_server():`` runs the sandboxed ``python -m`` commands of the block as
    children of one :class:`ForkServer` (on Linux; elsewhere it changes nothing)."""

    def __enter__(self):
        global _SERVER
        self.previous = _SERVER
        if sys.platform.startswith("linux"):
            _SERVER = ForkServer()
        return _SERVER

    def __exit__(self, *exc):
        global _SERVER
        if _SERVER is not None and _SERVER is not self.previous:
            _SERVER.close()
        _SERVER = self.previous


def _serve_forks(fd: int) -> None:
    """The fork server's loop (``python -m transformer_course.grading.sandbox
    --fork-server FD``)."""
    import runpy
    import socket

    import IPython.core.interactiveshell  # noqa: F401 (loaded once, for every child)
    import torch  # noqa: F401

    import transformer_course.grading.runner  # noqa: F401

    channel = socket.socket(fileno=fd)
    libc = _libc()
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    exited: dict[int, int] = {}

    def reply(message: dict) -> None:
        channel.sendall(json.dumps(message).encode() + b"\n")

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            exited[pid] = os.waitstatus_to_exitcode(status)

    reply({"ready": True})
    buffer = b""
    while True:
        message, fds, _, _ = socket.recv_fds(channel, 1 << 20, 8)
        if not message:
            return
        buffer += message
        if not buffer.endswith(b"\n"):
            continue
        request, buffer = json.loads(buffer), b""
        if request["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                _forked_child(request, fds, channel, runpy)
            for descriptor in fds:
                os.close(descriptor)
            reply({"pid": pid})
        elif request["op"] == "poll":
            reap()
            reply({"returncode": exited.pop(request["pid"], None)})
        elif request["op"] == "sweep":
            killed = 0
            for _ in range(50):  # a fork bomb refills: repeat until nothing is left
                strays = _children(os.getpid())
                if not strays:
                    break
                killed += len(strays)
                _kill_tree(strays)
                for stray in strays:
                    try:
                        os.waitpid(stray, 0)
                    except ChildProcessError:
                        pass
            exited.clear()
            reply({"killed": killed})


def _forked_child(request: dict, fds: list[int], channel, runpy) -> None:
    """In the fork server's child: become the sandboxed program (never returns)."""
    code = 1
    try:
        channel.close()  # the student's code must not reach the server
        os.setsid()
        config = request["config"]
        high = [os.dup(fd) for fd in fds]  # out of the way of the numbers they go to
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(high[0], 1)
        os.dup2(high[1], 2)
        os.dup2(high[2], 3)
        os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        config["status_fd"] = 3
        os.chdir(config["folder"])
        os.environ.clear()
        os.environ.update(config["environment"] | {"GRADER_STATUS_FD": "3"})
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        _restrict(config)
        sys.argv = [request["module"], *request["args"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 (report, then leave without the server's cleanup)
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


# --- the supervisor: runs in the grader ---------------------------------------------------


@dataclass
class SandboxResult:
    """What happened: the runner's status events, its exit, why it was stopped, if it was."""

    events: list[dict]
    returncode: int | None
    stopped: str | None  # "cell timeout", "total timeout", "folder size", None
    stdout: str
    stderr: str
    isolation: dict

    def cell_events(self, index: int) -> list[dict]:
        return [e for e in self.events if e.get("index") == index]


class _CappedReader(threading.Thread):
    """Drains a pipe, keeping the first ``cap`` bytes, so a flood of output costs nothing."""

    def __init__(self, pipe, cap: int):
        super().__init__(daemon=True)
        self.pipe, self.cap, self.kept, self.dropped = pipe, cap, bytearray(), 0

    def run(self):
        while chunk := self.pipe.read1(65536) if hasattr(self.pipe, "read1") else \
                self.pipe.read(65536):
            room = self.cap - len(self.kept)
            self.kept += chunk[:max(room, 0)]
            self.dropped += max(len(chunk) - max(room, 0), 0)

    def text(self) -> str:
        note = f"\n[{self.dropped} more bytes of output dropped]" if self.dropped else ""
        return self.kept.decode("utf-8", "replace") + note


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def _kill_tree(roots: set[int]) -> None:
    """SIGKILL every process in the trees under ``roots`` and reap the grader's own."""
    pending, seen = list(roots), set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        pending.extend(_children(pid))
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _reap_strays(before: set[int]) -> int:
    """Kill and reap children that came to the grader since ``before`` (orphans of the
    student's processes, given to the grader as their subreaper); return how many."""
    killed = 0
    for _ in range(50):  # a fork bomb refills: repeat until no stray is left
        strays = _children(os.getpid()) - before
        if not strays:
            break
        killed += len(strays)
        _kill_tree(strays)
        for pid in strays:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return killed


def _folder_size(folder: Path, cap: int) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
            if total > cap:
                return total
    return total


def _make_cgroup(limits: Limits) -> str | None:
    """A fresh cgroup with a pids limit, where this process may create one (cgroup v1's
    ``pids`` hierarchy, or v2 with the pids controller enabled for children)."""
    for base in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup"):
        if not os.access(base, os.W_OK) or not Path(base, "cgroup.procs").exists():
            continue
        folder = Path(base, f"transformer-course-grade-{os.getpid()}-{time.monotonic_ns()}")
        try:
            folder.mkdir()
            (folder / "pids.max").write_text(str(limits.processes + 16))
            return str(folder)
        except OSError:
            try:
                folder.rmdir()
            except OSError:
                pass
    return None


def _remove_cgroup(folder: str | None) -> None:
    if not folder:
        return
    for _ in range(50):
        try:
            pids = [int(p) for p in Path(folder, "cgroup.procs").read_text().split()]
        except OSError:
            break
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    try:
        os.rmdir(folder)
    except OSError:
        pass


def sandbox_environment(folder: Path | None) -> dict[str, str]:
    """A minimal environment: nothing of the grader's (tokens, paths) reaches the student.
    Without a folder: the variables that do not name one (for the fork server)."""
    bin_dir = os.path.dirname(sys.executable)
    places = {}
    if folder is not None:
        home = folder / "home"
        for sub in ("home", "tmp"):
            (folder / sub).mkdir(exist_ok=True)
        places = {"HOME": str(home), "TMPDIR": str(folder / "tmp"),
                  "MPLCONFIGDIR": str(home / ".matplotlib"), "IPYTHONDIR": str(home / ".ipython"),
                  "XDG_CACHE_HOME": str(home / ".cache"),
                  "TRANSFORMER_COURSE_CACHE": str(home / ".cache" / "transformer-course")}
    return places | {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1",
        # Instead of ``python -I``, which would ignore the next one: the student's process
        # and the checks must iterate over sets in the same order.
        "PYTHONHASHSEED": "0", "PYTHONNOUSERSITE": "1", "PYTHONSAFEPATH": "1",
    }


def probe() -> Isolation:
    """Which restrictions work on this machine, tried in a child process (the grader itself
    is never restricted): everything first, then without what failed."""
    import tempfile

    isolation = Isolation(landlock_abi=landlock_abi(),
                          read_paths=python_read_paths() + [p for p in SYSTEM_READ
                                                            if os.path.exists(p)])
    linux = sys.platform.startswith("linux")
    isolation.drop_capabilities = linux and os.geteuid() == 0
    isolation.network_namespace = linux
    isolation.cgroup_pids = _can_make_cgroup()
    with tempfile.TemporaryDirectory(prefix="grade-probe-") as folder:
        for _ in range(4):
            check = "import importlib.util as u; assert u.find_spec('transformer_course')"
            result = run_sandboxed([sys.executable, "-I", "-c", check], Path(folder),
                                   Limits(total_seconds=60), isolation)
            failed = " ".join(e.get("error", "") for e in result.events
                              if e.get("event") == "isolation-failed")
            if result.returncode == 0 and not failed:
                return isolation
            if "unshare" in failed and isolation.network_namespace:
                isolation.network_namespace = False
            elif ("capset" in failed or "CAPBSET" in failed) and isolation.drop_capabilities:
                isolation.drop_capabilities = False
            elif "cgroup" in failed and isolation.cgroup_pids:
                isolation.cgroup_pids = False
            else:
                isolation.landlock_abi = 0
    return isolation


def _can_make_cgroup() -> bool:
    folder = _make_cgroup(Limits())
    _remove_cgroup(folder)
    return folder is not None


def run_sandboxed(command: list[str], folder: Path, limits: Limits, isolation: Isolation,
                  on_event=None) -> SandboxResult:
    """Run ``command`` in ``folder`` under ``isolation`` and ``limits``.

    The command reports progress as JSON lines on the file descriptor named by the
    environment variable ``GRADER_STATUS_FD``: ``{"event": "start", "index": i}`` when cell
    ``i`` starts and ``{"event": "end", "index": i, ...}`` when it ends. A cell running longer
    than ``limits.cell_seconds`` gets SIGINT, and SIGKILL if it has not ended
    ``interrupt_grace_seconds`` later; the whole run gets ``total_seconds``.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    environment = sandbox_environment(folder) | {"GRADER_STATUS_FD": str(write_fd)}
    cgroup = _make_cgroup(limits) if isolation.cgroup_pids else None
    config = {"isolation": asdict(isolation), "cgroup": cgroup, "limits": asdict(limits),
              "folder": str(folder), "status_fd": write_fd, "environment": environment}
    process = _start(command, folder, config)
    os.close(write_fd)
    readers = [_CappedReader(process.stdout, limits.output_bytes),
               _CappedReader(process.stderr, limits.output_bytes)]
    for reader in readers:
        reader.start()
    events, stopped, buffer = [], None, b""
    started = time.monotonic()
    cell_deadline = kill_at = None
    next_size_check = started + 1.0
    status = os.fdopen(read_fd, "rb", buffering=0)
    try:
        while True:
            now = time.monotonic()
            deadlines = [started + limits.total_seconds, next_size_check, now + 0.2]
            deadlines += [d for d in (cell_deadline, kill_at) if d is not None]
            exited = process.poll() is not None
            ready, _, _ = select.select([status], [], [], 0 if exited else
                                        max(min(deadlines) - now, 0.01))
            if not ready and exited:
                break  # its children may hold the pipe open: they are killed below
            if ready:
                chunk = status.read(65536)
                if not chunk:
                    break
                buffer += chunk
                if len(buffer) > 1 << 20:  # a flood of status lines: the code is hostile
                    stopped = "status flood"
                    break
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    events.append(event)
                    if on_event:
                        on_event(event)
                    if event.get("event") == "start":
                        cell_deadline, kill_at = now + limits.cell_seconds, None
                    elif event.get("event") == "end":
                        cell_deadline = kill_at = None
            now = time.monotonic()
            if now >= started + limits.total_seconds:
                stopped = "total timeout"
                break
            if cell_deadline is not None and now >= cell_deadline and kill_at is None:
                events.append({"event": "interrupted", "index": _current(events)})
                try:
                    os.kill(process.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
                kill_at = now + limits.interrupt_grace_seconds
            if kill_at is not None and now >= kill_at:
                stopped = "cell timeout"
                break
            if now >= next_size_check:
                if _folder_size(folder, limits.folder_bytes) > limits.folder_bytes:
                    stopped = "folder size"
                    break
                next_size_check = now + 1.0
    finally:
        strays = process.finish(cgroup)
        status.close()
        for reader in readers:
            reader.join(timeout=5)
    if strays:
        events.append({"event": "strays-killed", "count": strays})
    applied = next((e.get("applied", {}) for e in events if e.get("event") == "isolation"), {})
    return SandboxResult(events, process.returncode, stopped, readers[0].text(),
                         readers[1].text(), applied)


class _Started:
    """The sandboxed process: ``pid``, ``stdout`` and ``stderr`` (pipes), ``poll()``,
    ``returncode``, and ``finish()``, which kills it and everything it started."""

    def finish(self, cgroup: str | None) -> int:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _remove_cgroup(cgroup)
        return self._collect()


class _Launched(_Started):
    """Started as a new Python (:func:`launch`); the grader adopts its orphans."""

    def __init__(self, command: list[str], folder: Path, config: dict):
        self.libc = _libc() if sys.platform.startswith("linux") else None
        if self.libc is not None:
            self.libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.before = _children(os.getpid())
        self.process = subprocess.Popen(
            # Run as a file, not ``-m``: importing the package would import torch first.
            [sys.executable, "-I", os.path.abspath(__file__), json.dumps(config), "--",
             *command],
            cwd=folder, env=config["environment"], start_new_session=True,
            pass_fds=(config["status_fd"],), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid, self.stdout, self.stderr = self.process.pid, self.process.stdout, \
            self.process.stderr

    def poll(self):
        return self.process.poll()

    @property
    def returncode(self):
        return self.process.returncode

    def _collect(self) -> int:
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        _kill_tree(_children(self.pid))
        strays = _reap_strays(self.before)
        if self.libc is not None:
            self.libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        return strays


class _Forked(_Started):
    """Forked by the fork server, which adopts its orphans."""

    def __init__(self, server: ForkServer, module: str, args: list[str], config: dict):
        self.server, self.returncode = server, None
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            self.pid = server.spawn(config, module, args,
                                    [out_write, err_write, config["status_fd"]])
        finally:
            os.close(out_write)
            os.close(err_write)
        self.stdout = os.fdopen(out_read, "rb")
        self.stderr = os.fdopen(err_read, "rb")

    def poll(self):
        if self.returncode is None:
            self.returncode = self.server.poll(self.pid)
        return self.returncode

    def _collect(self) -> int:
        deadline = time.monotonic() + 10
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.server.sweep()


def _start(command: list[str], folder: Path, config: dict) -> _Started:
    """By the current fork server when the command is ``python -m module ...`` (restarted
    once if a previous run managed to end it), else as a new process."""
    global _SERVER
    if _SERVER is not None and command[:2] == [sys.executable, "-m"]:
        for attempt in range(2):
            try:
                return _Forked(_SERVER, command[2], command[3:], config)
            except OSError:
                if attempt == 0:
                    _SERVER.close()
                    _SERVER = ForkServer()
    return _Launched(command, folder, config)


def _current(events: list[dict]) -> int | None:
    starts = [e["index"] for e in events if e.get("event") == "start"]
    return starts[-1] if starts else None


if __name__ == "__main__":
    if sys.argv[1] == "--fork-server":
        _serve_forks(int(sys.argv[2]))
    else:
        configuration = json.loads(sys.argv[1])
        launch(configuration, sys.argv[sys.argv.index("--") + 1:])
