"""07 supervision: `start` without --foreground daemonizes; `stop` stops it; the control socket is private."""

from __future__ import annotations

import os
import stat
import time

import harness
from harness import child_pids, pid_alive, procs, ready_workers


def test_07_daemon_start_status_stop(broker):
    broker.write_config(workers=2)
    rc, out, err = broker.start_daemon()
    assert rc == 0, f"`start` exited {rc}: stdout={out!r} stderr={err!r}"
    assert broker.daemon_pid is not None, f"`start` did not print the supervisor pid: stdout={out!r}"
    sup = broker.daemon_pid
    assert pid_alive(sup), f"printed supervisor pid {sup} is not alive"

    # `start` returned only once all workers are ready: the very first status shows them.
    st = broker.status()
    assert st["supervisor_pid"] == sup, f"status supervisor_pid {st['supervisor_pid']} != printed pid {sup}"
    assert len(ready_workers(st)) == 2, f"not all workers ready right after `start` returned: {procs(st, 'worker')}"
    assert len(procs(st, "fetcher")) == 1
    children = child_pids(st)
    for p in children:
        assert pid_alive(p) and harness.parent_pid(p) == sup, (p, harness.parent_pid(p))

    # The control socket is a Unix socket, mode 0600.
    info = os.stat(broker.socket_path)
    assert stat.S_ISSOCK(info.st_mode), f"{broker.socket_path} is not a socket"
    assert stat.S_IMODE(info.st_mode) == 0o600, f"control socket mode is {oct(stat.S_IMODE(info.st_mode))}"

    # The listener works.
    s = broker.connect()
    harness.wait_until(lambda: harness.connection_owner(s) & children, 3, message="a worker to accept the connection")
    s.close()

    # `stop` returns once the supervisor has exited.
    t0 = time.monotonic()
    cp = broker.cli("stop", timeout=broker.shutdown_timeout + 5)
    took = time.monotonic() - t0
    assert cp.returncode == 0, f"`stop` exited {cp.returncode}: {cp.stderr.strip() or cp.stdout.strip()}"
    # "Returns once the supervisor has exited": allow only the moment between its last reply and exit(2).
    harness.wait_until(lambda: not pid_alive(sup), 0.5, message=f"supervisor pid {sup} to be gone after `stop` returned")
    alive = {p for p in children if pid_alive(p)}
    assert not alive, f"children still alive after `stop` returned: {alive}"
    assert took <= broker.shutdown_timeout + 1, f"`stop` took {took:.1f}s"

    # And now nothing answers.
    cp = broker.cli("status", "--json")
    assert cp.returncode != 0, f"status after stop exited 0: {cp.stdout!r}"

