"""15 adversarial: a seeded random schedule of clients, CRL swaps and replays against the invariant of the TLS gate.

The node: 2 workers, one TLS listener with CRL checking from two sources for the same CA, a `crl_cache_urls` URL
on a loopback HTTP server (`revocation_servers.CRLServer`, fetched every second) and a local `crlfile`, and OCSP
stapling from `openssl ocsp` (`revocation_servers.OCSPResponder`, refreshed every 10 s); a pool of client
certificates (one revoked from the start, new ones issued as the pool runs dry). Then, for
`GATEHOUSE_ADVERSARIAL_SECONDS` (60; `bin/acceptance --long` runs 600) with the seed `GATEHOUSE_ADVERSARIAL_SEED`
(fixed default, printed at the start), a random schedule of:

- connect: a `tls_stepper` client with a random certificate (now and then a revoked one), TLS 1.2 or 1.3, MQTT
  3.1.1 or 5, pausing before a random record of its handshake (or before its CONNECT) for 0-2 s;
- resume: the same with a saved session (ticket) of random age;
- revoke: `openssl ca -revoke` a random still-good certificate (often one whose handshake is paused right now),
  `-gencrl`, and publish the CRL on one source (HTTP or crlfile), which makes the sources disagree on which is newer;
- replay: put an older CRL back on one source (the fetcher must refuse the rollback; on the crlfile only while
  the HTTP source holds the newest CRL, so that the newest one is always published somewhere);
- ping the connected clients, close one, check the staple with `openssl s_client -status` (TLS 1.2 and 1.3),
  let the OCSP responder answer about the wrong certificate for a while.

Every action is printed with its time, so a failure can be replayed from the seed. Checked all along:

 (i)   no MQTT session lives longer than 1 s after a CRL revoking its certificate is in force on every worker
       (a PINGREQ sent after that second is answered: violation);
 (ii)  no client gets a CONNACK whose handshake completed (its last handshake record was sent) after a CRL revoking
       its certificate was in force on every worker;
 (iii) every staple served is a successful OCSP response about the server certificate's serial saying good.

"In force on a worker" is read from the broker's log, per worker (process tag `worker/<slot>`): the debug line
`CRL loaded` (`revocation.file`, `revocation.crl_number`) says what a rebuild read from each file, and the next
`revocation data reloaded` line of that worker says it is in force. The CRLs are cumulative (one CA database), so a
certificate is revoked on a worker from the first reload after which the newest CRL it holds (over both files)
lists it. This is conservative: the connection's own worker may have been faster.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

import pki
import revocation_servers as rs
from test_10_stapling import Handshake
from tls_stepper import TLSStepper, release_contexts

SEED = int(os.environ.get("GATEHOUSE_ADVERSARIAL_SEED", "20261203"))
SECONDS = float(os.environ.get("GATEHOUSE_ADVERSARIAL_SECONDS", "60"))
# Where new CRLs go: both sources (default), or only one ("http" / "crlfile"): a diagnostic aid that keeps the two
# sources from disagreeing, to tell a straddle from a wrong choice between two CRLs of one issuer.
SOURCES = os.environ.get("GATEHOUSE_ADVERSARIAL_SOURCES", "http,crlfile").split(",")
WORKERS = 2
POOL = 12  # client certificates at the start
REVOKED_KEPT = 12  # revoked certificates kept in the pool to try again (older ones are retired)
MAX_CLIENTS = 12  # connections open at once (handshaking or connected)
GRACE = 1.0  # (i): how long a revoked session may outlive the CRL in force
MARGIN = 0.002  # log timestamps have millisecond resolution
HTTP_PATH = "/root.crl"
CRL_REFRESH = "1s"
OCSP_REFRESH = "10s"
LOADED = "CRL loaded"


def _wall(line: pki.LogLine) -> float:
    return datetime.fromisoformat(line.raw.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()


# ----------------------------------------------------------------------------------------------------------------
# What each worker has in force, read from the log as it grows


class RevocationView:
    """Per worker: the CRL number each file was last loaded at, the newest in force, and since when."""

    def __init__(self, log_path: Path, workers: int) -> None:
        self.path = log_path
        self.offset = 0
        self.partial = b""
        self.workers = [f"worker/{w}" for w in range(workers)]
        self.pending: dict[str, dict[str, int]] = {w: {} for w in self.workers}
        self.state: dict[str, dict[str, int]] = {w: {} for w in self.workers}
        self.newest: dict[str, int] = {w: 0 for w in self.workers}
        # (wall time, newest CRL number in force) per worker, in order
        self.history: dict[str, list[tuple[float, int]]] = {w: [] for w in self.workers}
        self.regressions: list[str] = []
        self.reloads = 0

    def read(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        if not data:
            return
        self.offset += len(data)
        data = self.partial + data
        complete, _, self.partial = data.rpartition(b"\n")
        for line in pki.parse_log(complete.decode(errors="replace")):
            self._take(line)

    def _take(self, line: pki.LogLine) -> None:
        w = line.process
        if w not in self.pending:
            return
        if line.message == LOADED:
            number = line.fields.get("revocation.crl_number", "-")
            if number.isdigit():
                self.pending[w][line.fields.get("revocation.file", "?")] = int(number)
        elif line.message == pki.RELOADED:
            self.reloads += 1
            self._apply(w, _wall(line))

    def _apply(self, w: str, at: float) -> None:
        self.state[w].update(self.pending[w])
        self.pending[w].clear()
        newest = max(self.state[w].values(), default=0)
        if newest > self.newest[w]:
            self.newest[w] = newest
            self.history[w].append((at, newest))
        elif newest < self.newest[w]:
            self.regressions.append(f"{w} at {at:.3f}: newest loaded CRL {newest} < {self.newest[w]} before")

    def settle(self, at: float) -> None:
        """At the start: what each worker loaded when it started is in force from `at`."""
        self.read()
        for w in self.workers:
            self._apply(w, at)

    def in_force_since(self, w: str, number: int) -> float | None:
        """When a CRL numbered `number` or newer was first in force on worker `w`."""
        for at, newest in self.history[w]:
            if newest >= number:
                return at
        return None

    def everywhere_since(self, number: int) -> float | None:
        """When it was in force on every worker (the latest of them), or None while one has not got it."""
        times = [self.in_force_since(w, number) for w in self.workers]
        return None if any(t is None for t in times) else max(times)

    def holds(self, file: str, number: int) -> bool:
        """Every worker has `file` loaded at `number` and nothing pending."""
        return all(self.state[w].get(file) == number and not self.pending[w] for w in self.workers)


# ----------------------------------------------------------------------------------------------------------------
# Clients


@dataclass
class PoolCert:
    cert: pki.Cert
    revoked_in: int | None = None  # the first CRL number that lists it

    @property
    def name(self) -> str:
        return self.cert.name


@dataclass
class Attempt:
    """One connection of the schedule and what the invariant needs to know about it."""

    id: int
    pc: PoolCert
    version: str
    mqtt: int
    stepper: TLSStepper
    pause_before: int | None
    pause_for: float
    resumed_from: float | None  # age of the offered session, when resuming
    paused_until: float | None = None
    paused_done: bool = False
    connect_queued: bool = False
    connected: bool = False
    done: bool = False
    probe_sent_at: float | None = None  # (i): the PINGREQ sent after the grace
    probe_number: int = 0  # it is this client's ping number …; PINGRESPs come in order
    last_progress: float = field(default_factory=time.monotonic)

    @property
    def label(self) -> str:
        resume = f" resume(age {self.resumed_from:.1f}s)" if self.resumed_from is not None else ""
        pause = f" pause#{self.pause_before}:{self.pause_for:.2f}s" if self.pause_before is not None else ""
        return f"c{self.id} {self.pc.name} TLS{self.version} MQTT{'5' if self.mqtt == 5 else '3.1.1'}{pause}{resume}"


class StapleCheck:
    """`openssl s_client -status` in the background (output to a file), so that the schedule goes on meanwhile."""

    def __init__(self, port: int, cafile: Path, cert: pki.Cert, version: str, workdir: Path) -> None:
        self.version = version
        self.args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                     "-CAfile", str(cafile), "-verify_return_error", "-cert", str(cert.cert), "-key", str(cert.key),
                     {"1.2": "-tls1_2", "1.3": "-tls1_3"}[version], "-status"]
        self.out = tempfile.NamedTemporaryFile(dir=workdir, prefix="s_client-", delete=False)
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT)
        self.deadline = time.monotonic() + 10

    def result(self) -> Handshake | None:
        """The handshake once s_client exited (killed after 10 s), else None."""
        if self.proc.poll() is None:
            if time.monotonic() < self.deadline:
                return None
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        text = Path(self.out.name).read_text(errors="replace")
        os.unlink(self.out.name)
        return Handshake(self.args, self.proc.returncode, text)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        Path(self.out.name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------------
# The schedule


class Violation(AssertionError):
    pass


class Adversary:
    """The schedule, the clients and the checks. Made before the node starts (the pool and the first CRL go into its
    config); `attach` hands it the running node."""

    def __init__(self, p: pki.TestPKI, http: rs.CRLServer, crlfile: Path, responder: rs.OCSPResponder, seed: int,
                 seconds: float, workdir: Path) -> None:
        self.node: pki.TLSNode | None = None
        self.view: RevocationView | None = None
        self.p = p
        self.http = http
        self.crlfile = crlfile
        self.responder = responder
        self.seed = seed
        self.rng = random.Random(seed)
        self.seconds = seconds
        self.workdir = workdir
        self.offset = time.time() - time.monotonic()  # monotonic -> wall
        self.t0 = time.monotonic()
        self.pool: list[PoolCert] = []
        self.observer: pki.Cert | None = None
        self.attempts: list[Attempt] = []
        self.completions: list[Attempt] = []
        self.sessions: list[tuple[float, PoolCert, str, object]] = []  # (saved at, cert, version, session)
        self.crls: dict[int, Path] = {}  # CRL number -> file
        self.newest_published = 0  # the newest CRL put on either source
        self.cache_file = ""
        self.staple: StapleCheck | None = None
        self.ocsp_fault_until: float | None = None
        self.next_id = 0
        self.issued = 0
        self.stats: dict[str, int] = {}

    # ----- bookkeeping

    def say(self, what: str) -> None:
        print(f"[{time.monotonic() - self.t0:8.3f}] {what}", flush=True)

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def wall(self, mono: float) -> float:
        return mono + self.offset

    def violation(self, what: str, a: Attempt | None = None) -> None:
        detail = ""
        if a is not None:
            # What the broker logged about this connection (its peer address) and its certificate.
            keys = [f"tls.serial={a.pc.cert.serial}"]
            if a.stepper.local_port is not None:
                keys.append(f"127.0.0.1:{a.stepper.local_port} ")
            about = [l for l in self.node.log().splitlines() if any(k in l + " " for k in keys)]
            detail = (f"\n{a.label}\n{a.stepper.summary()}\n{a.stepper.transcript()}\nbroker log about it:\n"
                      + "\n".join(about[-30:]))
        history = "\n".join(f"  {w}: " + ", ".join(f"{t - self.wall(self.t0):.3f}s→{n}" for t, n in h)
                            for w, h in self.view.history.items())
        raise Violation(
            f"INVARIANT VIOLATED (seed {self.seed}, after {time.monotonic() - self.t0:.1f}s): {what}{detail}\n"
            f"CRLs in force per worker (time since start → newest CRL number):\n{history}\n"
            f"revoked in CRL: {', '.join(f'{c.name}@{c.revoked_in}' for c in self.pool if c.revoked_in)}\n"
            f"replay with GATEHOUSE_ADVERSARIAL_SEED={self.seed}; the whole broker log: {self.node.b.stderr_path}")

    # ----- setup

    def issue(self, n: int) -> None:
        for _ in range(n):
            self.issued += 1
            name = f"adv{self.issued:03d}"
            self.pool.append(PoolCert(self.p.root.issue(name, name)))

    def gencrl(self) -> int:
        path = self.p.root.gencrl(self.workdir / f"crl-{len(self.crls)}.pem")
        number = pki.crl_number(path, inform="PEM")
        self.crls[number] = path
        return number

    def publish(self, source: str, number: int) -> None:
        path = self.crls[number]
        if source == "http":
            self.http.put(HTTP_PATH, path.read_bytes())
        else:
            pki.publish(self.crlfile.parent, self.crlfile.name, path)
        self.newest_published = max(self.newest_published, number)

    def prepare(self, pool: int) -> str:
        """The certificate pool (the first one revoked), the observer for staple checks, the first CRL on both
        sources; returns the HTTP source's URL."""
        started = time.monotonic()
        self.issue(pool)
        self.observer = self.p.root.issue("observer", "observer")  # never revoked
        self.p.root.revoke(self.pool[0].cert)
        first = self.gencrl()
        self.pool[0].revoked_in = first
        served = self.workdir / "served.pem"
        served.write_bytes(self.crls[first].read_bytes())
        self.crlfile.write_bytes(self.crls[first].read_bytes())
        self.newest_published = first
        print(f"PKI: {pool} client certificates and CRL {first} in {time.monotonic() - started:.1f}s", flush=True)
        return self.http.serve(HTTP_PATH, served)

    def attach(self, node: pki.TLSNode, url: str) -> None:
        """Wait until the fetcher published the first CRL from HTTP and every worker loaded it from both sources
        and its staple; from then on, that is in force."""
        self.node = node
        self.view = RevocationView(node.b.stderr_path, WORKERS)
        published = node.wait_log("CRL published", timeout=10, fetch__url=url)[0]
        self.cache_file = published.fields["fetch.file"]
        assert self.cache_file.endswith(hashlib.sha256(url.encode()).hexdigest()[:16] + ".der"), published.raw
        first = self.newest_published
        deadline = time.monotonic() + 10
        while True:
            self.view.read()
            loaded = {w: {**self.view.state[w], **self.view.pending[w]} for w in self.view.workers}
            staples = {l.process for l in node.lines_with("OCSP staple loaded")}
            if all(v.get(self.cache_file) == first and v.get(str(self.crlfile)) == first for v in loaded.values()) \
                    and all(w in staples for w in self.view.workers):
                break
            assert time.monotonic() < deadline, (
                f"the workers never loaded CRL {first} from both sources and a staple: {loaded}, staples {staples}")
            time.sleep(0.05)
        self.t0 = time.monotonic()
        self.view.settle(self.wall(self.t0))

    # ----- the run

    def run(self) -> dict[str, int]:
        self.say(f"seed {self.seed}, {self.seconds:g}s, {len(self.pool)} certificates, first CRL "
                 f"{self.newest_published}, {self.pool[0].name} revoked from the start")
        end = self.t0 + self.seconds
        actions = [
            (self.act_connect, 4.0), (self.act_resume, 2.0), (self.act_revoke, 0.8), (self.act_replay, 0.5),
            (self.act_ping, 1.0), (self.act_close, 0.5), (self.act_staple, 0.5), (self.act_ocsp_fault, 0.2),
        ]
        weights = [w for _, w in actions]
        try:
            while time.monotonic() < end:
                action = self.rng.choices([a for a, _ in actions], weights)[0]
                action()
                self.pump(self.rng.uniform(0.05, 0.4))
            self.say("schedule over; last checks")
            self.pump(GRACE + 0.5)
            for a in self.attempts:
                if not a.done:
                    a.stepper.disconnect()
            self.pump(0.3)
        finally:
            for a in self.attempts:
                a.stepper.close()
            if self.staple is not None:
                self.staple.stop()
        if self.view.regressions:
            raise AssertionError("the test's model broke (the newest CRL left both sources):\n"
                                 + "\n".join(self.view.regressions))
        return self.stats

    # ----- actions

    def live(self) -> list[Attempt]:
        return [a for a in self.attempts if not a.done]

    def make_room(self) -> None:
        live = self.live()
        if len(live) >= MAX_CLIENTS:
            oldest = next((a for a in live if a.connected), live[0])
            self.say(f"close {oldest.label} (room for a new client)")
            self.finish(oldest, disconnect=True)

    def act_connect(self) -> None:
        self.make_room()
        revoked = [c for c in self.pool if c.revoked_in is not None]
        good = [c for c in self.pool if c.revoked_in is None]
        pc = self.rng.choice(revoked) if revoked and (not good or self.rng.random() < 0.25) else self.rng.choice(good)
        version = self.rng.choice(["1.2", "1.3"])
        self.start(pc, version, session=None, age=None, records=6)

    def act_resume(self) -> None:
        if not self.sessions:
            return self.act_connect()
        # Half the time the newest session (most likely still resumable: every reload starts new ticket keys).
        newest = self.rng.random() < 0.5
        saved_at, pc, version, session = self.sessions[-1] if newest else self.rng.choice(self.sessions)
        self.make_room()
        self.start(pc, version, session=session, age=time.monotonic() - saved_at, records=3)

    def start(self, pc: PoolCert, version: str, session, age: float | None, records: int) -> None:
        self.next_id += 1
        pause_before = self.rng.randint(0, records) if self.rng.random() < 0.8 else None
        pause_for = round(self.rng.uniform(0.0, 2.0), 3)
        mqtt = self.rng.choice([4, 5])
        stepper = TLSStepper(self.node.port, self.node.cafile, pc.cert, version, session=session,
                             name=f"c{self.next_id}")
        a = Attempt(self.next_id, pc, version, mqtt, stepper, pause_before, pause_for, age)
        self.attempts.append(a)
        self.count("resume" if session is not None else "connect")
        self.say(f"connect {a.label}" + (f" (revoked in CRL {pc.revoked_in})" if pc.revoked_in else ""))
        try:
            stepper.connect()
        except OSError as e:
            self.say(f"c{a.id}: TCP connect failed: {e!r}")
            a.done = True

    def act_revoke(self) -> None:
        good = [c for c in self.pool if c.revoked_in is None]
        in_flight = [a.pc for a in self.live() if not a.connected and a.pc.revoked_in is None]
        connected = [a.pc for a in self.live() if a.connected and a.pc.revoked_in is None]
        roll = self.rng.random()
        if in_flight and roll < 0.6:
            pc, why = self.rng.choice(in_flight), "its handshake is in flight"
        elif connected and roll < 0.8:
            pc, why = self.rng.choice(connected), "it is connected"
        elif good:
            pc, why = self.rng.choice(good), "at random"
        else:
            return
        self.p.root.revoke(pc.cert)
        number = self.gencrl()
        pc.revoked_in = number
        source = self.rng.choice(["http", "crlfile"])
        if source not in SOURCES:
            source = SOURCES[0]
        self.publish(source, number)
        self.count("revoke")
        self.say(f"revoke {pc.name} ({why}); CRL {number} published on {source}")
        if sum(1 for c in self.pool if c.revoked_in is None) < 4:
            self.issue(2)
            self.say(f"issued {self.pool[-2].name}, {self.pool[-1].name}")
        self.retire()

    def retire(self) -> None:
        """Keep the pool bounded: the oldest revoked certificates leave it, with their sessions and contexts."""
        revoked = [c for c in self.pool if c.revoked_in is not None]
        for old in revoked[:-REVOKED_KEPT]:
            self.pool.remove(old)
            self.sessions = [saved for saved in self.sessions if saved[1] is not old]
            release_contexts(old.cert)

    def act_replay(self) -> None:
        self.view.read()
        older = sorted(n for n in self.crls if n < self.newest_published)
        if not older:
            return
        number = self.rng.choice(older)
        sources = ["http"]
        if self.cache_file and self.view.holds(self.cache_file, self.newest_published):
            sources.append("crlfile")
        source = self.rng.choice(sources)
        self.publish(source, number)
        self.count("replay")
        self.say(f"replay CRL {number} on {source} (newest is {self.newest_published})")

    def act_ping(self) -> None:
        connected = [a for a in self.live() if a.connected]
        for a in connected:
            a.stepper.ping()
        if connected:
            self.say(f"ping {len(connected)} connected clients")

    def act_close(self) -> None:
        connected = [a for a in self.live() if a.connected]
        if connected:
            a = self.rng.choice(connected)
            self.say(f"close {a.label}")
            self.finish(a, disconnect=True)

    def act_staple(self) -> None:
        if self.staple is not None:
            return
        version = self.rng.choice(["1.2", "1.3"])
        assert self.observer is not None
        self.staple = StapleCheck(self.node.port, self.node.cafile, self.observer, version, self.workdir)
        self.say(f"staple check (s_client -status -tls1_{version[-1]})")

    def act_ocsp_fault(self) -> None:
        if self.ocsp_fault_until is not None:
            return
        victim = self.rng.choice(self.pool)
        self.responder.about = victim.cert.cert
        self.ocsp_fault_until = time.monotonic() + self.rng.uniform(3.0, 8.0)
        self.say(f"OCSP responder answers about {victim.name} instead of the server certificate")

    # ----- driving the clients

    def finish(self, a: Attempt, disconnect: bool = False) -> None:
        if disconnect:
            a.stepper.disconnect()
        a.stepper.close()
        a.done = True
        # Statistics only: a handshake that was in flight when its certificate's CRL came into force everywhere.
        since = self.view.everywhere_since(a.pc.revoked_in) if a.pc.revoked_in is not None else None
        last = a.stepper.last_handshake_record_sent_at
        if since is not None and a.stepper.events and self.wall(a.stepper.events[0].at) < since and (
                last is None or self.wall(last) > since):
            self.count("straddled a revocation")

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self.view.read()
            now = time.monotonic()
            for a in self.live():
                self.step(a, now)
            self.attempts = self.live()  # bounded: finished clients are dropped ((ii) keeps its own list)
            self.check_completions()
            self.check_staple()
            if self.ocsp_fault_until is not None and now >= self.ocsp_fault_until:
                self.responder.about = None
                self.ocsp_fault_until = None
                self.say("OCSP responder answers correctly again")
            left = deadline - time.monotonic()
            if left <= 0:
                return
            socks = [a.stepper.sock for a in self.live()
                     if a.stepper.sock is not None and not (a.stepper.eof or a.stepper.reset)]
            if socks:
                try:
                    select.select(socks, [], [], min(left, 0.01))
                except (OSError, ValueError):
                    time.sleep(0.005)
            else:
                time.sleep(min(left, 0.01))

    def step(self, a: Attempt, now: float) -> None:
        s = a.stepper
        before = (s.sent, len(s.packets), s.server_closed)
        s.poll(0)
        if s.handshake_done and not a.connect_queued and s.error is None:
            a.connect_queued = True
            s.mqtt_connect(f"adv-{self.seed}-{a.id}", version=a.mqtt, keepalive=60, send=False)
        if a.paused_until is not None and now >= a.paused_until:
            a.paused_until = None
            a.paused_done = True
            self.say(f"c{a.id}: resumes after {a.pause_for:.2f}s before record #{s.sent}")
        while s.queue and a.paused_until is None and not s.send_failed:
            if a.pause_before is not None and not a.paused_done and s.sent == a.pause_before:
                a.paused_until = now + a.pause_for
                self.say(f"c{a.id}: pauses before record #{s.sent} ({s.queue[0]!r})")
                break
            s.send_next()
        if (s.sent, len(s.packets), s.server_closed) != before:
            a.last_progress = now
        self.check_connack(a)
        self.check_session(a, now)
        if s.server_closed and not a.done:
            outcome = (f"alert {s.alert} {s.alert_name}" if s.alert is not None else "no alert") + (
                f", CONNACK {s.connack.code}" if s.connack else ", no CONNACK")
            self.say(f"c{a.id}: closed by the server ({outcome})")
            self.count("refused" if not a.connected else "disconnected")
            self.finish(a)
        elif not a.connected and a.paused_until is None and now - a.last_progress > 5.0:
            self.say(f"c{a.id}: no progress for 5 s, giving up ({s.summary()})")
            self.count("stalled")
            self.finish(a)

    def check_connack(self, a: Attempt) -> None:
        s = a.stepper
        if a.connected or s.connack is None:
            return
        if s.connack.code != 0:
            self.say(f"c{a.id}: CONNACK {s.connack.code}")
            return
        a.connected = True
        self.count("connected")
        if s.session_reused:
            self.count("resumed")
        self.say(f"c{a.id}: CONNACK 0 ({s.obj.version()}, resumed={s.session_reused})")
        if a.pc.revoked_in is not None:
            self.completions.append(a)  # (ii) is decided once that CRL's in-force time is known
        session = s.session
        if session is not None:
            self.sessions.append((time.monotonic(), a.pc, a.version, session))
            if len(self.sessions) > 40:
                self.sessions.pop(0)

    def check_completions(self) -> None:
        """(ii): a CONNACK 0 to a certificate revoked before it came; violation if the client sent its last
        handshake record after the CRL revoking it was in force on every worker. A certificate revoked after the
        CONNACK cannot violate (ii): its CRL comes into force later still."""
        for a in list(self.completions):
            s = a.stepper
            since = self.view.everywhere_since(a.pc.revoked_in)
            if since is None:
                continue
            self.completions.remove(a)
            last = s.last_handshake_record_sent_at
            if last is not None and self.wall(last) > since + MARGIN:
                opened = self.wall(s.events[0].at) - since
                path = ("it connected before that: a handshake straddling the CRL swap" if opened < 0 else
                        "it connected after that: the handshake was decided on another CRL")
                files = "; ".join(f"{w}: " + ", ".join(f"{Path(f).name}={n}" for f, n in sorted(st.items()))
                                  for w, st in self.view.state.items())
                self.violation(
                    f"(ii) c{a.id} ({a.pc.name}, serial {a.pc.cert.serial}) got CONNACK 0: its last handshake "
                    f"record went out {self.wall(last) - since:.3f}s after CRL {a.pc.revoked_in} (which revokes it) "
                    f"was in force on every worker; TCP connect {opened:+.3f}s from then ({path}). CRL numbers "
                    f"loaded per file now: {files}", a)

    def check_session(self, a: Attempt, now: float) -> None:
        """(i): a session whose certificate is revoked everywhere must be gone within GRACE."""
        s = a.stepper
        if not a.connected or a.pc.revoked_in is None or s.server_closed:
            return
        since = self.view.everywhere_since(a.pc.revoked_in)
        if since is None:
            return
        due = since + GRACE + MARGIN
        if a.probe_sent_at is None:
            if self.wall(now) >= due:
                s.ping()
                a.probe_sent_at = time.monotonic()
                a.probe_number = len(s.pings_sent)
        elif len(s.pongs) >= a.probe_number:
            self.violation(
                f"(i) c{a.id} ({a.pc.name}, serial {a.pc.cert.serial}) still has its session: a PINGREQ sent "
                f"{self.wall(a.probe_sent_at) - since:.3f}s after CRL {a.pc.revoked_in} was in force on every "
                f"worker was answered", a)

    def check_staple(self) -> None:
        if self.staple is None:
            return
        h = self.staple.result()
        if h is None:
            return
        version = self.staple.version
        self.staple = None
        self.count("staple checks")
        serial = (h.staple("Serial Number") or "").upper().lstrip("0")
        status = h.staple("Cert Status")
        self.say(f"staple (TLS {version}): stapled={h.stapled} status={status} serial={serial or '-'}")
        if not h.stapled:
            self.violation(f"(iii) no staple served (TLS {version})\n{h}")
        if "OCSP Response Status: successful (0x0)" not in h.output or status != "good" or \
                serial != self.p.server.serial:
            self.violation(f"(iii) wrong staple (TLS {version}): status {status}, serial {serial}, server "
                           f"certificate {self.p.server.serial}\n{h}")


# ----------------------------------------------------------------------------------------------------------------
# The test


@pytest.mark.time_limit(int(SECONDS) + 150)
def test_15_gate_holds_under_a_random_schedule(tls_node, own_pki, tmp_path):
    p = own_pki
    http = rs.CRLServer()
    responder = rs.OCSPResponder(p.root, tmp_path / "ocsp")
    try:
        workdir = tmp_path / "adversary"
        workdir.mkdir()
        crlfile = workdir / "local.pem"
        print(f"\nGATEHOUSE_ADVERSARIAL_SEED={SEED} GATEHOUSE_ADVERSARIAL_SECONDS={SECONDS:g}", flush=True)
        adversary = Adversary(p, http, crlfile, responder, SEED, SECONDS, workdir)
        url = adversary.prepare(POOL)
        node = tls_node(p, None, workers=WORKERS, crlfiles=[crlfile], options=[
            f"crl_cache_urls = {url}", "enable_ocsp_stapling = true", f"ocsp_responder_url = {responder.url}",
            f"ocsp_issuer_pem = {p.root.cert}", f"ocsp_refresh_interval = {OCSP_REFRESH}",
            "ocsp_refresh_http_timeout = 2s",
        ], extra=["node.fetch_refresh_floor = 1s", f"crl_cache_refresh_interval = {CRL_REFRESH}",
                  "crl_cache_http_timeout = 2s"])
        # `CRL loaded` (which CRL number a rebuild read from which file) is a debug line.
        node.lines = [l if not l.startswith("log.level") else "log.level = debug" for l in node.lines]
        node.start()
        adversary.attach(node, url)
        stats = adversary.run()
        assert adversary.view is not None
        print(f"adversarial run done: seed {SEED}, {SECONDS:g}s, {stats}, {adversary.view.reloads} reloads", flush=True)
        assert stats.get("revoke", 0) >= 1 and stats.get("connected", 0) >= 1 and stats.get("refused", 0) >= 1, (
            f"the schedule did too little to mean anything: {stats}")
    finally:
        http.stop()
        responder.stop()
