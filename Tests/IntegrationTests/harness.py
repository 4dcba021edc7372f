"""Helpers for the Gatehouse integration tests: start the real `gatehouse` binary with a generated config, talk to
it through its CLI, and make sure every process it started is gone afterwards.

Everything here uses loopback only, ephemeral ports and bounded waits. Processes are only ever signalled after
checking that they run the gatehouse executable (pid_max is small on this machine, so pids get reused).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / ".build" / "debug" / "gatehouse"

# How long a CLI command (status, reload, restart, stop) may take before the test fails.
CLI_TIMEOUT = 15.0
# How long the whole node may take to report all workers ready after `start`.
STARTUP_TIMEOUT = 20.0


# --------------------------------------------------------------------------------------------------------------
# Ports, sockets


def free_port() -> int:
    """An ephemeral loopback TCP port that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def connection_state(sock: socket.socket) -> str:
    """'open' if the peer has neither closed nor reset the connection, else 'closed' / 'reset' / 'data'.

    Never sends anything: a peek that would block means the peer is still there and silent.
    """
    old_timeout = sock.gettimeout()
    sock.setblocking(False)  # in timeout mode Python would wait out the timeout instead of returning EAGAIN
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return "open"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except OSError as e:  # pragma: no cover - unexpected
        return f"error:{e!r}"
    finally:
        sock.settimeout(old_timeout)
    return "closed" if data == b"" else "data"


def _socket_inode(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """Inode of the TCP socket with this local/remote address in /proc/net/tcp (IPv4 loopback only)."""

    def enc(addr: tuple[str, int]) -> str:
        ip = socket.inet_aton(addr[0])
        return "%08X:%04X" % (int.from_bytes(ip, "little"), addr[1])

    want_local, want_remote = enc(local), enc(remote)
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                return int(fields[9])
    return None


def connection_owner(sock: socket.socket) -> set[int]:
    """Pids of the processes that hold the server side of `sock` (the accepted socket), from /proc.

    Empty while the connection is only in the listen backlog (not accepted yet) or when no process holds it.
    """
    client = sock.getsockname()
    server = sock.getpeername()
    inode = _socket_inode(server, client)
    if not inode:
        return set()
    target = f"socket:[{inode}]"
    owners: set[int] = set()
    for pid in _all_pids():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        owners.add(pid)
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return owners


# --------------------------------------------------------------------------------------------------------------
# Processes


def _all_pids() -> Iterable[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) from /proc/<pid>/stat, or None if the process does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; the fields after the last ')' are fixed.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[2])


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (a zombie has exited; it only waits to be reaped)."""
    if not isinstance(pid, int) or pid <= 0:  # status reports pid 0 for a slot waiting to be respawned
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def parent_pid(pid: int) -> int | None:
    st = proc_stat(pid)
    return st[1] if st else None


def proc_exe(pid: int) -> str | None:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    if exe.endswith(" (deleted)"):
        exe = exe[: -len(" (deleted)")]
    return exe


def proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.05, message: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy; return that. Fail the test after `timeout` seconds.

    Exceptions raised by the predicate count as "not yet"; the last one is shown if the wait times out.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_exc: BaseException | None = None
    while True:
        try:
            last = predicate()
            last_exc = None
            if last:
                return last
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f"last exception: {last_exc!r}" if last_exc else f"last value: {last!r}"
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}; {detail}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------------------
# Status documents


def procs(status: dict, role: str) -> list[dict]:
    return [p for p in status["processes"] if p["role"] == role]


def the_fetcher(status: dict) -> dict:
    fetchers = procs(status, "fetcher")
    assert len(fetchers) == 1, f"expected exactly one fetcher in status, got {fetchers}"
    return fetchers[0]


def ready_workers(status: dict) -> list[dict]:
    return [p for p in procs(status, "worker") if p["state"] == "ready"]


def ready_by_slot(status: dict) -> dict[int, dict]:
    """Ready workers keyed by slot; fails if two ready workers share a slot."""
    out: dict[int, dict] = {}
    for w in ready_workers(status):
        assert w["slot"] not in out, f"two ready workers in slot {w['slot']}: {out[w['slot']]} and {w}"
        out[w["slot"]] = w
    return out


def child_pids(status: dict) -> set[int]:
    return {p["pid"] for p in status["processes"] if p["role"] != "supervisor"}


# --------------------------------------------------------------------------------------------------------------
# The broker under test


class Broker:
    """One Gatehouse node: its temp dir, its config file, and the processes it runs.

    Every pid ever seen (supervisor, children from status) is remembered so that `cleanup` can make sure none
    is left running, whatever the test did.
    """

    def __init__(self, binary: Path, name: str = "node", pki: dict | None = None) -> None:
        self.binary = Path(binary)
        self.binary_real = os.path.realpath(binary)
        self.name = name
        self.pki = pki
        # A short path: the control socket path must fit in sun_path (108 bytes).
        self.dir = Path(tempfile.mkdtemp(prefix="gh-", dir="/tmp"))
        self.config_path = self.dir / "gatehouse.conf"
        self.data_dir = self.dir / "var"
        self.run_dir = self.data_dir / "run"
        self.socket_path = self.run_dir / "gatehouse.sock"
        self.stdout_path = self.dir / "supervisor.stdout"
        self.stderr_path = self.dir / "supervisor.stderr"
        self.port = free_port()
        self.ssl_port: int | None = None
        self.shutdown_timeout = 5.0
        self.workers = 2
        self.proc: subprocess.Popen | None = None
        self.daemon_pid: int | None = None
        self.known_pids: set[int] = set()
        self.sockets: list[socket.socket] = []
        self.cli_log: list[str] = []
        self.last_status: dict | None = None
        self._out_files: list[Any] = []

    # ----- config

    def config_lines(
        self,
        workers: int | None = None,
        ssl: bool = False,
        shutdown_timeout: str | None = None,
        extra: Iterable[str] = (),
    ) -> list[str]:
        if workers is not None:
            self.workers = workers
        if shutdown_timeout is not None:
            self.shutdown_timeout = float(shutdown_timeout.rstrip("s"))
        lines = [
            "# Generated by Tests/IntegrationTests",
            f"node.worker_processes = {self.workers}",
            f"node.data_dir = {self.data_dir}",
            f"node.shutdown_timeout = {self.shutdown_timeout:g}s",
            "node.metrics_listener = off",
            "log.level = " + os.environ.get("GATEHOUSE_TEST_LOG_LEVEL", "info"),
            f"listener.tcp.external = 127.0.0.1:{self.port}",
            "listener.tcp.external.allow_anonymous = true",
        ]
        if ssl:
            assert self.pki is not None, "ssl listener needs the pki fixture"
            if self.ssl_port is None:
                self.ssl_port = free_port()
            lines += [
                f"listener.ssl.external = 127.0.0.1:{self.ssl_port}",
                f"listener.ssl.external.keyfile = {self.pki['server_key']}",
                f"listener.ssl.external.certfile = {self.pki['server_cert']}",
                f"listener.ssl.external.cacertfile = {self.pki['ca_cert']}",
                "listener.ssl.external.verify = verify_peer",
                "listener.ssl.external.fail_if_no_peer_cert = true",
            ]
        lines += list(extra)
        return lines

    def write_config(self, lines: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Write the config file (generated from kwargs unless `lines` is given); return its lines."""
        if lines is None:
            lines = self.config_lines(**kwargs)
        self.config_path.write_text("\n".join(lines) + "\n")
        return lines

    def line_of(self, prefix: str) -> int:
        """1-based line number of the first config line starting with `prefix`."""
        for i, line in enumerate(self.config_path.read_text().splitlines(), start=1):
            if line.startswith(prefix):
                return i
        raise AssertionError(f"{prefix!r} not in {self.config_path}")

    # ----- processes

    def start_foreground(self, wait_ready: bool = True, workers: int | None = None) -> dict | None:
        """`gatehouse start --config FILE --foreground` in its own session; wait until all workers are ready."""
        assert self.proc is None, "already started"
        if not self.config_path.exists():
            self.write_config()
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        self._out_files += [out, err]
        self.proc = subprocess.Popen(
            [str(self.binary), "start", "--config", str(self.config_path), "--foreground"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            cwd=self.dir,
        )
        self.known_pids.add(self.proc.pid)
        if not wait_ready:
            return None
        return self.wait_ready(workers if workers is not None else self.workers)

    def run_start_expect_failure(self, foreground: bool = True, timeout: float = 15.0) -> tuple[int, str, str, float]:
        """Run `start` and wait for it to exit; return (exit code, stdout, stderr, seconds taken)."""
        assert self.proc is None, "already started"
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        self._out_files += [out, err]
        args = [str(self.binary), "start", "--config", str(self.config_path)]
        if foreground:
            args.append("--foreground")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True, cwd=self.dir
        )
        self.known_pids.add(self.proc.pid)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"`gatehouse start` still running after {timeout}s (expected it to fail fast)")
        took = time.monotonic() - t0
        return rc, self.stdout(), self.stderr(), took

    def start_daemon(self, timeout: float = STARTUP_TIMEOUT + 5) -> tuple[int, str, str]:
        """`gatehouse start --config FILE` (daemonizing). Output goes to files, not pipes, so a daemon that keeps
        the inherited descriptors open cannot make the test hang."""
        if not self.config_path.exists():
            self.write_config()
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        self._out_files += [out, err]
        p = subprocess.Popen(
            [str(self.binary), "start", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            cwd=self.dir,
        )
        self.known_pids.add(p.pid)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError(f"daemonizing `gatehouse start` did not return within {timeout}s")
        stdout = self.stdout()
        m = re.search(r"\bpid\D{0,3}(\d+)\b", stdout) or re.search(r"\b(\d+)\b", stdout)
        if m:
            self.daemon_pid = int(m.group(1))
            self.known_pids.add(self.daemon_pid)
        return rc, stdout, self.stderr()

    @property
    def supervisor_pid(self) -> int:
        if self.daemon_pid is not None:
            return self.daemon_pid
        assert self.proc is not None
        return self.proc.pid

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT, config: Path | None = None) -> subprocess.CompletedProcess:
        """Run `gatehouse <args...> --config FILE` and return the completed process (never raises on rc != 0)."""
        cmd = [str(self.binary), *args, "--config", str(config or self.config_path)]
        t0 = time.monotonic()
        try:
            cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.cli_log.append(f"$ {' '.join(cmd[1:])}\n  TIMED OUT after {timeout}s; stderr: {e.stderr!r}")
            raise AssertionError(f"`gatehouse {' '.join(args)}` did not return within {timeout}s")
        took = time.monotonic() - t0
        if args and args[0] != "status" or cp.returncode != 0:
            self.cli_log.append(
                f"$ {' '.join(cmd[1:])}  -> rc={cp.returncode} in {took:.2f}s\n"
                f"  stdout: {cp.stdout.strip()[:2000]}\n  stderr: {cp.stderr.strip()[:2000]}"
            )
        return cp

    def status(self) -> dict:
        """`status --json`, parsed; fails the test if the command fails or prints something else than JSON."""
        doc, error = self.try_status()
        if doc is None:
            raise AssertionError(error)
        return doc

    def try_status(self) -> tuple[dict | None, str]:
        """`status --json`, parsed, or (None, why not)."""
        cp = self.cli("status", "--json")
        if cp.returncode != 0:
            return None, f"status --json failed rc={cp.returncode}: {cp.stderr.strip() or cp.stdout.strip()}"
        try:
            doc = json.loads(cp.stdout)
        except json.JSONDecodeError as e:
            return None, f"status --json printed invalid JSON ({e}): {cp.stdout!r}"
        self.last_status = doc
        for p in doc.get("processes", []):
            if isinstance(p.get("pid"), int) and p["pid"] > 0:
                self.known_pids.add(p["pid"])
        if isinstance(doc.get("supervisor_pid"), int):
            self.known_pids.add(doc["supervisor_pid"])
        return doc, ""

    def wait_status(self, predicate: Callable[[dict], Any], timeout: float, message: str) -> dict:
        """Poll status until `predicate(status)` is truthy; return that status."""
        box: dict = {}

        def check() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"supervisor exited with code {self.proc.returncode} while waiting for {message}")
            st, error = self.try_status()
            if st is None:
                raise RuntimeError(error)  # not yet; shown if the wait times out
            if predicate(st):
                box["st"] = st
                return True
            return False

        wait_until(check, timeout, interval=0.05, message=message)
        return box["st"]

    def wait_ready(self, workers: int, timeout: float = STARTUP_TIMEOUT) -> dict:
        """Wait until status answers with `workers` ready workers (and none starting/draining) and a fetcher."""

        def ok(st: dict) -> bool:
            ws = procs(st, "worker")
            return (
                len(ready_workers(st)) == workers
                and len(ws) == workers
                and len(procs(st, "fetcher")) == 1
            )

        return self.wait_status(ok, timeout, f"{workers} ready workers and one fetcher")

    def connect(self, port: int | None = None) -> socket.socket:
        s = connect(port or self.port)
        self.sockets.append(s)
        return s

    def stdout(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    # ----- cleanup

    def _ours(self, pid: int) -> bool:
        """Whether `pid` runs the gatehouse binary (guards against signalling a reused pid)."""
        exe = proc_exe(pid)
        if exe is not None and (exe == self.binary_real or os.path.basename(exe) == "gatehouse"):
            return True
        # A script standing in for the binary runs under its interpreter: match its path on the command line.
        return any(os.path.realpath(a) == self.binary_real for a in proc_cmdline(pid)[:2] if a.startswith("/"))

    def leftover_pids(self) -> set[int]:
        """Live (non-zombie) gatehouse processes that belong to this node.

        A process belongs to it if it is a known pid, is in the foreground supervisor's process group, mentions
        this node's config path on its command line, or descends from one of those.
        """
        pgid = self.proc.pid if self.proc is not None else None
        cfg = str(self.config_path)
        table: dict[int, tuple[str, int, int]] = {}
        for pid in _all_pids():
            st = proc_stat(pid)
            if st is not None:
                table[pid] = st
        ours: set[int] = set()
        for pid, (state, ppid, pgrp) in table.items():
            if state in ("Z", "X") or pid == os.getpid():
                continue
            if not self._ours(pid):
                continue
            if pid in self.known_pids or (pgid is not None and pgrp == pgid) or any(
                cfg in a for a in proc_cmdline(pid)
            ):
                ours.add(pid)
        # Descendants of ours that run the binary too.
        changed = True
        while changed:
            changed = False
            for pid, (state, ppid, _) in table.items():
                if pid not in ours and ppid in ours and state not in ("Z", "X") and self._ours(pid):
                    ours.add(pid)
                    changed = True
        return ours

    def cleanup(self) -> list[str]:
        """Stop everything this node started: close client sockets, SIGTERM the supervisor, then SIGKILL whatever
        is left after a deadline. Returns notes about processes that had to be killed."""
        notes: list[str] = []
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass
        sup = self.supervisor_pid if (self.proc is not None or self.daemon_pid is not None) else None
        if sup is not None and pid_alive(sup) and self._ours(sup):
            try:
                os.kill(sup, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + self.shutdown_timeout + 3
            while time.monotonic() < deadline:
                if self.proc is not None and self.daemon_pid is None:
                    if self.proc.poll() is not None:
                        break
                elif not pid_alive(sup):
                    break
                time.sleep(0.05)
        # Give children of a stopped supervisor a moment, then kill whatever remains.
        deadline = time.monotonic() + 1.0
        left = self.leftover_pids()
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.leftover_pids()
        for pid in sorted(left):
            notes.append(f"had to SIGKILL leftover gatehouse pid {pid} ({' '.join(proc_cmdline(pid))})")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None and self.proc.pid is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                notes.append(f"supervisor pid {self.proc.pid} could not be reaped")
        for f in self._out_files:
            try:
                f.close()
            except OSError:
                pass
        return notes

    def remove_dir(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def describe(self) -> str:
        """Everything useful to diagnose a failure: config, CLI calls, last status, supervisor output."""
        parts = [f"temp dir: {self.dir}", f"binary: {self.binary}"]
        if self.proc is not None:
            parts.append(f"foreground supervisor pid {self.proc.pid}, returncode {self.proc.poll()}")
        if self.daemon_pid is not None:
            parts.append(f"daemon supervisor pid {self.daemon_pid}")
        try:
            parts.append("---- config ----\n" + self.config_path.read_text())
        except OSError:
            pass
        if self.cli_log:
            parts.append("---- CLI calls ----\n" + "\n".join(self.cli_log[-40:]))
        if self.last_status is not None:
            parts.append("---- last status ----\n" + json.dumps(self.last_status, indent=1))
        parts.append("---- supervisor stdout ----\n" + self.stdout()[-20000:])
        parts.append("---- supervisor stderr ----\n" + self.stderr()[-20000:])
        log_file = self.data_dir / "log" / "gatehouse.log"
        if log_file.exists():
            parts.append(f"---- {log_file} ----\n" + log_file.read_text(errors="replace")[-20000:])
        return "\n".join(parts)


def make_pki(directory: Path) -> dict:
    """A CA and a server certificate for 127.0.0.1/localhost, made with the openssl CLI (valid two days)."""
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        cp = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True, timeout=60)
        if cp.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed: {cp.stderr}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Gatehouse Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (directory / "server.ext").write_text(
        "basicConstraints = CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    return {
        "dir": directory,
        "ca_cert": directory / "ca.pem",
        "server_cert": directory / "server.pem",
        "server_key": directory / "server.key",
    }
