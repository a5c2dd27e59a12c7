"""Redis Sentinel failover under load: a primary, a replica and three Sentinels, all real processes.

`serve` and two workers reach Redis through `redis+sentinel://` with REDIS_MIN_REPLICAS=1, while 600
profile notifications are posted at 30/s. The primary is SIGKILLed; once the Sentinels have promoted
the replica, the old primary is started again as the new primary's replica. When that has settled,
the new primary is SIGKILLed too. Every notification acknowledged with a 200 must be in the
PostgreSQL sink exactly once (one row per event id, and no row of anything not acknowledged), and
`status` must show nothing left. How long postbacks were answered 503 around each failover is printed.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from concur_postback.embedded import EmbeddedRedis, free_port
from concur_postback.tokens import generate_key
from tests.chaos.harness import Cluster, Rows, Sent, Shot, Timeline, notification_id, send_in_background
from tests.processes import Process, clean_env, cli
from tests.sentinel import MASTER, SentinelProcess, in_sync, wait_until

pytestmark = pytest.mark.slow

NOTIFICATIONS = 600
RATE = 30.0


def unavailable_windows(sent: Sent, kills: list[float]) -> list[float]:
    """Seconds from each kill to the last 503 (or unanswered postback) before the next kill."""
    bounds = [*kills, float("inf")]
    windows = []
    for kill, following in itertools.pairwise(bounds):
        late = [at for at in sent.unavailable_at if kill <= at < following]
        windows.append(max(late) - kill if late else 0.0)
    return windows


def test_every_acknowledged_postback_survives_two_failovers(
    tmp_path: Path,
    server_url: str,
    tables: tuple[list[str], Callable[[str], Rows]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (table, _), reader = tables
    rows = reader(table)
    primary = EmbeddedRedis(tmp_path / "a").start()
    replica = EmbeddedRedis(
        tmp_path / "b", extra_args=("--replicaof", "127.0.0.1", str(primary.port))
    ).start()
    nodes = {primary.port: primary, replica.port: replica}
    sentinels = [SentinelProcess(tmp_path / f"sentinel-{n}", primary.port) for n in range(3)]
    timeline = Timeline()
    processes: list[Cluster | Process] = []  # stopped however the run ends: none may outlive it
    try:
        wait_until(lambda: in_sync(replica), 30, "the replica syncs")
        wait_until(lambda: all(s.primary_port() == primary.port for s in sentinels), 30, "sentinels agree")
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
        database = urlsplit(server_url)
        env = clean_env(
            REDIS_URL=f"redis+sentinel://{hosts}/{MASTER}/0",
            REDIS_MIN_REPLICAS="1",
            TOKEN_ENCRYPTION_KEY=generate_key(),
            SINKS=f"{database.geturl()}?table={table}",
            WORKER_HEARTBEAT_TTL_SECONDS="8",
        )
        simulator_port = free_port()
        simulator = Process(["simulate", "--port", str(simulator_port)], env)
        processes.append(simulator)
        simulator.wait_for("Uvicorn running on", prefix=True)
        env.update(CONCUR_BASE_URL=f"http://127.0.0.1:{simulator_port}", CONCUR_ALLOWED_HOSTS="")
        web_port = free_port()
        cluster = Cluster(env, web_port)
        processes.append(cluster)
        timeline.mark("primary, replica, 3 sentinels, serve and 2 workers up")
        shots = [
            Shot(
                f"p{n}", {"type": "Profile", "oauth_token_key": f"failover-{n}-" + secrets.token_hex(8)}, b""
            )
            for n in range(NOTIFICATIONS)
        ]
        sender, result = send_in_background(f"http://127.0.0.1:{web_port}", shots, RATE)
        kills = []
        time.sleep(5)  # the fault's schedule: five seconds of load before the first kill
        for round_ in (1, 2):
            old = sentinels[0].primary_port()
            assert old is not None
            nodes[old].kill()
            kills.append(time.monotonic())
            timeline.mark(f"SIGKILL the primary (:{old})")

            def failed_over(old: int = old) -> bool:
                return all(s.primary_port() not in (None, old) for s in sentinels)

            took = wait_until(failed_over, 60, "a failover")
            new = sentinels[0].primary_port()
            timeline.mark(f"failover {round_}: sentinels name :{new} ({took:.1f} s)")
            # Back, as a replica of the new primary (as an operator, or its orchestrator, starts it).
            nodes[old].extra_args = ("--replicaof", "127.0.0.1", str(new))
            nodes[old].start()
            took = wait_until(lambda old=old: in_sync(nodes[old]), 60, "the old primary rejoins")
            timeline.mark(f"old primary back as a replica, in sync ({took:.1f} s)")
        sender.join()
        sent = result[0]
        timeline.mark(f"sender done: {len(sent.ids)} acknowledged, answers {dict(sent.answers)}")
        wait_until(
            lambda: {notification_id(r) for r in rows()} >= set(sent.ids), 120, "every event in the sink"
        )
        timeline.mark("every acknowledged notification is in PostgreSQL")

        def drained() -> bool:  # the postbacks answered 503 but stored are processed too
            answer = cli("status", "--json", env=env)
            return answer.returncode == 0 and orjson.loads(answer.stdout)["pending"] == 0

        took = wait_until(drained, 180, "nothing pending")
        timeline.mark(f"status: nothing pending ({took:.1f} s later)")
        running = [p.popen.args for p in (cluster.web, *cluster.workers) if p.popen.poll() is not None]
        for process in processes:
            process.stop()
        logs = tmp_path / "logs"
        logs.mkdir()
        for process in cluster.all():
            (logs / f"{process.popen.args[3]}-{process.popen.pid}.log").write_text(process.output)
    except AssertionError:
        with capsys.disabled():
            print("\n\nfailover timeline until it failed\n" + timeline.render())
        raise
    finally:
        for process in processes:  # what an early failure left running
            if isinstance(process, Cluster) or process.popen.poll() is None:
                process.stop()
        for sentinel in sentinels:
            sentinel.stop()
        for node in nodes.values():
            node.stop()

    stored = rows()
    delivered = [notification_id(row) for row in stored]
    windows = ", ".join(f"{window:.1f} s" for window in unavailable_windows(sent, kills))
    with capsys.disabled():
        print("\n\nfailover timeline\n" + timeline.render())
        print(f"  postbacks answered 503 (or not at all) until {windows} after each kill")
        print(f"  {len(delivered)} events for {len(sent.ids)} acknowledged notifications")
        print(f"  logs of every process: {logs}")
    assert not running, f"a process died: {running}"
    assert not sent.refused, sent.refused[:10]
    assert len(sent.acknowledged) == NOTIFICATIONS
    assert len(delivered) == len(set(delivered))  # once each ...
    assert set(delivered) >= set(sent.ids)  # ... every acknowledged one, and beyond those only postbacks
    assert len(set(delivered) - set(sent.ids)) <= len(sent.unavailable_at)  # answered 503 but stored
