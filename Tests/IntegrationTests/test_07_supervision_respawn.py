"""07 supervision: children that die are respawned; `restart fetcher` / `restart workers` replace them."""

from __future__ import annotations

import os
import re
import signal
import time

import harness
from harness import pid_alive, parent_pid, ready_by_slot, ready_workers, the_fetcher

KILLED_BY_9 = re.compile(r"\b9\b|SIGKILL|kill", re.IGNORECASE)


def _held_connection(broker, worker_pids: set[int]):
    s = broker.connect()
    owners = harness.wait_until(lambda: harness.connection_owner(s), 3, message="a worker to accept the connection")
    assert owners <= worker_pids, f"connection held by {owners}, workers are {worker_pids}"
    assert harness.connection_state(s) == "open"
    return s


def test_07_kill9_fetcher_is_respawned_workers_untouched(broker):
    broker.write_config(workers=2)
    st = broker.start_foreground()
    old_fetcher = the_fetcher(st)["pid"]
    workers_before = {slot: w["pid"] for slot, w in ready_by_slot(st).items()}
    conn = _held_connection(broker, set(workers_before.values()))

    os.kill(old_fetcher, signal.SIGKILL)
    t0 = time.monotonic()
    st = broker.wait_status(
        lambda s: (f := the_fetcher(s))["pid"] != old_fetcher and pid_alive(f["pid"]),
        2.0,
        "a new fetcher pid within 2s of kill -9",
    )
    took = time.monotonic() - t0
    new = the_fetcher(st)
    assert parent_pid(new["pid"]) == broker.proc.pid, "new fetcher is not a child of the supervisor"
    assert not pid_alive(old_fetcher), "old fetcher pid still alive"

    # Restart bookkeeping.
    assert new["restarts"] == 1, f"fetcher restarts = {new['restarts']}, expected 1 ({new})"
    assert new["last_exit"] and KILLED_BY_9.search(new["last_exit"]), (
        f"fetcher last_exit {new['last_exit']!r} does not mention signal 9 / SIGKILL"
    )

    # Workers untouched, connection still held.
    st = broker.status()
    assert {slot: w["pid"] for slot, w in ready_by_slot(st).items()} == workers_before
    assert harness.connection_state(conn) == "open", "held connection was closed by a fetcher restart"
    print(f"fetcher respawned after {took:.2f}s")

    # A second crash is respawned too (the backoff may have grown, but stays well under 2s), counted as 2.
    second = new["pid"]
    os.kill(second, signal.SIGKILL)
    st = broker.wait_status(
        lambda s: (f := the_fetcher(s))["pid"] not in (old_fetcher, second) and pid_alive(f["pid"]),
        2.0,
        "a third fetcher pid within 2s of the second kill -9",
    )
    assert the_fetcher(st)["restarts"] == 2, f"fetcher restarts = {the_fetcher(st)['restarts']}, expected 2"
    assert {slot: w["pid"] for slot, w in ready_by_slot(st).items()} == workers_before
    assert harness.connection_state(conn) == "open", "held connection was closed by the second fetcher restart"


def test_07_kill9_worker_is_replaced_in_same_slot(broker):
    broker.write_config(workers=2)
    st = broker.start_foreground()
    before = {slot: w["pid"] for slot, w in ready_by_slot(st).items()}
    fetcher = the_fetcher(st)["pid"]
    victim_slot, other_slot = 1, 0
    victim = before[victim_slot]

    os.kill(victim, signal.SIGKILL)

    def replaced(s):
        ws = [w for w in harness.procs(s, "worker") if w["slot"] == victim_slot and w["pid"] != victim]
        return ws and pid_alive(ws[0]["pid"])

    broker.wait_status(replaced, 2.0, f"a new worker pid in slot {victim_slot} within 2s of kill -9")
    st = broker.wait_status(
        lambda s: victim_slot in ready_by_slot(s) and ready_by_slot(s)[victim_slot]["pid"] != victim
        and len(ready_workers(s)) == 2,
        5.0,
        f"the new worker in slot {victim_slot} to be ready",
    )
    by_slot = ready_by_slot(st)
    new = by_slot[victim_slot]
    assert not pid_alive(victim), "killed worker still alive"
    assert parent_pid(new["pid"]) == broker.proc.pid
    assert by_slot[other_slot]["pid"] == before[other_slot], "the other worker was replaced too"
    assert the_fetcher(st)["pid"] == fetcher, "the fetcher was replaced too"
    assert len(harness.procs(st, "worker")) == 2, harness.procs(st, "worker")
    # Same bookkeeping as for the fetcher (the status schema is the same for every child).
    assert new["restarts"] == 1, f"worker restarts = {new['restarts']}, expected 1 ({new})"
    assert new["last_exit"] and KILLED_BY_9.search(new["last_exit"]), (
        f"worker last_exit {new['last_exit']!r} does not mention signal 9 / SIGKILL"
    )


def test_07_restart_fetcher_command(broker):
    broker.write_config(workers=2)
    st = broker.start_foreground()
    old_fetcher = the_fetcher(st)["pid"]
    workers_before = {slot: w["pid"] for slot, w in ready_by_slot(st).items()}
    conn = _held_connection(broker, set(workers_before.values()))

    cp = broker.cli("restart", "fetcher")
    assert cp.returncode == 0, f"restart fetcher failed: {cp.stderr.strip() or cp.stdout.strip()}"
    # While the old fetcher drains, status lists it next to the slot waiting to respawn: wait for one new one.
    st = broker.wait_status(
        lambda s: len(fs := harness.procs(s, "fetcher")) == 1 and fs[0]["pid"] not in (0, old_fetcher)
        and pid_alive(fs[0]["pid"]),
        5.0,
        "a new fetcher pid after `restart fetcher`",
    )
    harness.wait_until(lambda: not pid_alive(old_fetcher), 5, message="the old fetcher to exit")
    assert parent_pid(the_fetcher(st)["pid"]) == broker.proc.pid
    st = broker.status()
    assert {slot: w["pid"] for slot, w in ready_by_slot(st).items()} == workers_before, "workers were replaced"
    assert len(harness.procs(st, "worker")) == 2
    assert harness.connection_state(conn) == "open", "held connection was closed by `restart fetcher`"


def test_07_restart_workers_command(broker):
    broker.write_config(workers=2)
    st = broker.start_foreground()
    fetcher = the_fetcher(st)["pid"]
    old = {w["pid"] for w in ready_workers(st)}

    cp = broker.cli("restart", "workers")
    assert cp.returncode == 0, f"restart workers failed: {cp.stderr.strip() or cp.stdout.strip()}"

    def all_new(s):
        ready = ready_workers(s)
        return len(ready) == 2 and not ({w["pid"] for w in ready} & old)

    st = broker.wait_status(all_new, 10, "2 ready workers, none of them an old pid")
    harness.wait_until(
        lambda: not any(pid_alive(p) for p in old), broker.shutdown_timeout + 2, message="the old workers to exit"
    )
    st = broker.wait_status(
        lambda s: len(harness.procs(s, "worker")) == 2, broker.shutdown_timeout + 2, "old workers gone from status"
    )
    new = ready_by_slot(st)
    assert sorted(new) == [0, 1], new
    for w in new.values():
        assert w["pid"] not in old and pid_alive(w["pid"]) and parent_pid(w["pid"]) == broker.proc.pid, w
    assert the_fetcher(st)["pid"] == fetcher, "`restart workers` replaced the fetcher"
