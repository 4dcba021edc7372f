"""07 supervision: reload (CLI and SIGHUP) changes the worker count; an invalid config is refused."""

from __future__ import annotations

import os
import signal
import time

import pytest

import harness
from harness import pid_alive, parent_pid, procs, ready_by_slot, ready_workers, the_fetcher


def _grow(broker, before: dict[int, int], n: int, via: str) -> dict:
    """Wait until there are n ready workers and the pids of `before` still hold their slots."""

    def ok(s):
        by_slot = ready_by_slot(s)
        return len(by_slot) == n and len(procs(s, "worker")) == n and sorted(by_slot) == list(range(n))

    st = broker.wait_status(ok, 10, f"{n} ready workers after {via}")
    by_slot = ready_by_slot(st)
    for slot, pid in before.items():
        assert by_slot[slot]["pid"] == pid, f"{via}: slot {slot} pid changed {pid} -> {by_slot[slot]['pid']}"
    for w in by_slot.values():
        assert pid_alive(w["pid"]) and parent_pid(w["pid"]) == broker.proc.pid, w
    return st


def _shrink(broker, before: dict[int, int], n: int, via: str) -> dict:
    """Wait until only slots < n are left, the surplus pids have exited, and the kept slots kept their pids."""
    surplus = {pid for slot, pid in before.items() if slot >= n}

    def ok(s):
        by_slot = ready_by_slot(s)
        return (
            sorted(by_slot) == list(range(n))
            and len(procs(s, "worker")) == n
            and not any(pid_alive(p) for p in surplus)
        )

    st = broker.wait_status(ok, broker.shutdown_timeout + 3, f"{n} workers and the surplus exited after {via}")
    by_slot = ready_by_slot(st)
    for slot in range(n):
        assert by_slot[slot]["pid"] == before[slot], f"{via}: slot {slot} pid changed"
    return st


def _slots(st: dict) -> dict[int, int]:
    return {slot: w["pid"] for slot, w in ready_by_slot(st).items()}


def test_07_reload_cli_2_to_3_to_1_to_2(broker):
    broker.write_config(workers=2)
    st = broker.start_foreground()
    fetcher = the_fetcher(st)["pid"]

    # 2 -> 3
    before = _slots(st)
    broker.write_config(workers=3)
    cp = broker.cli("reload")
    assert cp.returncode == 0, f"reload failed: {cp.stderr.strip() or cp.stdout.strip()}"
    st = _grow(broker, before, 3, "reload 2->3")

    # 3 -> 1
    before = _slots(st)
    broker.write_config(workers=1)
    cp = broker.cli("reload")
    assert cp.returncode == 0, f"reload failed: {cp.stderr.strip() or cp.stdout.strip()}"
    st = _shrink(broker, before, 1, "reload 3->1")
    assert len(ready_workers(st)) == 1

    # 1 -> 2
    before = _slots(st)
    broker.write_config(workers=2)
    cp = broker.cli("reload")
    assert cp.returncode == 0, f"reload failed: {cp.stderr.strip() or cp.stdout.strip()}"
    st = _grow(broker, before, 2, "reload 1->2")

    assert the_fetcher(st)["pid"] == fetcher, "reload replaced the fetcher"
    assert broker.proc.poll() is None, "supervisor exited"


def test_07_reload_sighup_2_to_3_to_1(broker):
    broker.write_config(workers=2)
    st = broker.start_foreground()

    before = _slots(st)
    broker.write_config(workers=3)
    os.kill(broker.proc.pid, signal.SIGHUP)
    st = _grow(broker, before, 3, "SIGHUP 2->3")

    before = _slots(st)
    broker.write_config(workers=1)
    os.kill(broker.proc.pid, signal.SIGHUP)
    st = _shrink(broker, before, 1, "SIGHUP 3->1")
    assert broker.proc.poll() is None, "supervisor exited after SIGHUP"


def _invalid_config(broker) -> tuple[int, str]:
    """Valid lines asking for 3 workers, plus one misspelled key. Returns (line number, key)."""
    lines = broker.config_lines(workers=3)
    lines.insert(3, "node.worker_procesess = 3")
    broker.write_config(lines)
    return broker.line_of("node.worker_procesess"), "node.worker_procesess"


def _unchanged_for(broker, expected: dict[int, int], fetcher: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        st = broker.status()
        assert _slots(st) == expected, f"workers changed after a refused reload: {_slots(st)} != {expected}"
        assert len(procs(st, "worker")) == len(expected), procs(st, "worker")
        assert the_fetcher(st)["pid"] == fetcher, "fetcher replaced after a refused reload"
        time.sleep(0.1)


def _restore_valid(broker, original: list[str]) -> None:
    """Put the original (2-worker) file back, so that `status --config FILE` can read the file again.

    (Whether `status` must cope with an invalid file is not part of the contract; this is only noted.)
    """
    cp = broker.cli("status", "--json")
    print(f"status with the invalid file in place: rc={cp.returncode} {cp.stderr.strip()[:300]}")
    broker.write_config(original)


def _missing_certfile_config(broker) -> tuple[int, str]:
    """A config asking for 3 workers whose ssl certfile does not exist (only the supervisor, which checks files,
    can refuse this one). Returns (line number, key)."""
    missing = broker.dir / "no-such-dir" / "server.pem"
    lines = [
        l if not l.startswith("listener.ssl.external.certfile") else f"listener.ssl.external.certfile = {missing}"
        for l in broker.config_lines(workers=3, ssl=True)
    ]
    broker.write_config(lines)
    return broker.line_of("listener.ssl.external.certfile"), "listener.ssl.external.certfile"


INVALID_RELOADS = {"unknown-key": _invalid_config, "missing-certfile": _missing_certfile_config}


@pytest.mark.parametrize("case", list(INVALID_RELOADS))
def test_07_reload_invalid_config_is_refused(broker, case):
    ssl = case == "missing-certfile"
    original = broker.write_config(workers=2, ssl=ssl)
    st = broker.start_foreground()
    before, fetcher = _slots(st), the_fetcher(st)["pid"]

    line, key = INVALID_RELOADS[case](broker)
    cp = broker.cli("reload")
    out = cp.stderr + cp.stdout
    assert cp.returncode != 0, f"reload of an invalid config exited 0: {out!r}"
    expected_prefix = f"{broker.config_path}:{line}: {key}"
    assert expected_prefix in out, f"reload output lacks {expected_prefix!r}: {out!r}"
    if case == "unknown-key":
        assert "unknown key" in out, out
        assert "node.worker_processes" in out, f"no did-you-mean suggestion: {out!r}"

    # The old config stays: still 2 workers with the same pids (the refused file asked for 3).
    _restore_valid(broker, original)
    _unchanged_for(broker, before, fetcher, 1.5)
    assert broker.proc.poll() is None, "supervisor exited after a refused reload"

    # The supervisor is not wedged: a valid file reloads fine.
    broker.write_config(workers=3, ssl=ssl)
    cp = broker.cli("reload")
    assert cp.returncode == 0, f"reload of a fixed config failed: {cp.stderr.strip() or cp.stdout.strip()}"
    _grow(broker, before, 3, "reload after a refused one")


def test_07_sighup_invalid_config_keeps_running(broker):
    original = broker.write_config(workers=2)
    st = broker.start_foreground()
    before, fetcher = _slots(st), the_fetcher(st)["pid"]

    line, key = _invalid_config(broker)
    os.kill(broker.proc.pid, signal.SIGHUP)
    # The supervisor logs why it refused the reload (it logs one line per event to stderr); wait for that line
    # so that the file is not restored before the supervisor has read it.
    where = f"{broker.config_path}:{line}: {key}"
    harness.wait_until(lambda: where in broker.stderr(), 3, message=f"supervisor stderr to report {where!r}")
    assert broker.proc.poll() is None, "supervisor exited after SIGHUP with an invalid config"

    _restore_valid(broker, original)
    _unchanged_for(broker, before, fetcher, 1.5)
    assert broker.proc.poll() is None, "supervisor exited after SIGHUP with an invalid config"


def test_07_reload_shrink_retires_busy_workers_gracefully(broker):
    """3 -> 1 while every worker holds a client: the surplus workers stop being "ready" at once, are listed as
    "draining" while they are still alive, and exit within shutdown_timeout; slot 0 and its client stay."""
    broker.write_config(workers=3, shutdown_timeout="3s")
    st = broker.start_foreground()
    by_slot = _slots(st)
    slot_of = {pid: slot for slot, pid in by_slot.items()}

    # Open connections until every worker holds at least one (the kernel spreads them; give up after 60).
    held: dict[int, list] = {0: [], 1: [], 2: []}
    for _ in range(60):
        s = broker.connect()
        owners = harness.wait_until(lambda: harness.connection_owner(s), 3, message="a worker to accept")
        (owner,) = owners
        held[slot_of[owner]].append(s)
        if all(held.values()):
            break
    spread = {slot: len(v) for slot, v in held.items()}
    print(f"connections per slot: {spread}")
    assert all(held.values()), f"could not get a connection onto every worker: {spread}"

    broker.write_config(workers=1, shutdown_timeout="3s")
    t0 = time.monotonic()
    cp = broker.cli("reload")
    assert cp.returncode == 0, f"reload failed: {cp.stderr.strip() or cp.stdout.strip()}"
    surplus = {by_slot[1], by_slot[2]}

    def one_ready(s):
        return [w["pid"] for w in ready_workers(s)] == [by_slot[0]]

    st = broker.wait_status(one_ready, 2, "only slot 0 ready after reload 3->1")
    for w in procs(st, "worker"):
        if w["pid"] in surplus and pid_alive(w["pid"]):
            assert w["state"] == "draining", f"surplus worker listed as {w['state']!r}: {w}"

    harness.wait_until(
        lambda: not any(pid_alive(p) for p in surplus), broker.shutdown_timeout + 2, message="the surplus workers to exit"
    )
    took = time.monotonic() - t0
    st = broker.wait_status(lambda s: len(procs(s, "worker")) == 1, 2, "retired workers gone from status")
    assert _slots(st) == {0: by_slot[0]}
    for slot in (1, 2):
        for s in held[slot]:
            state = harness.wait_until(
                lambda: harness.connection_state(s) != "open" and harness.connection_state(s), 1,
                message=f"slot {slot}'s client to be closed",
            )
            assert state in ("closed", "reset"), state
    for s in held[0]:
        assert harness.connection_state(s) == "open", "slot 0's client was closed by the scale-down"
    print(f"surplus workers exited {took:.2f}s after reload")
