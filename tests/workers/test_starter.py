"""The starter keeps exactly one session job waiting, whichever of several starters looks, and every
job has an id of its own."""

from __future__ import annotations

import threading

from redis import Redis

from concur_postback.config import Settings
from concur_postback.workers.worker import job_queue, make_starter


def test_one_session_waits_however_many_starters_look(redis: Redis, settings: Settings) -> None:
    starters = [make_starter(redis, settings) for _ in range(4)]
    barrier = threading.Barrier(len(starters))
    added: list[bool] = []

    def look(n: int) -> None:
        barrier.wait()
        added.append(starters[n].keep_one_waiting())

    threads = [threading.Thread(target=look, args=(n,)) for n in range(len(starters))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert added.count(True) == 1
    [job] = job_queue(redis, settings).get_jobs()
    assert not job.args and job.kwargs == {"until_idle": False}  # notifications are taken when it runs
    assert not starters[0].keep_one_waiting()


def test_every_session_has_a_job_id_of_its_own(redis: Redis, settings: Settings) -> None:
    queue = job_queue(redis, settings)
    starter = make_starter(redis, settings)
    ids = set()
    for _ in range(3):
        assert starter.keep_one_waiting()
        [job] = queue.get_jobs()
        ids.add(job.id)
        queue.remove(job)
    assert len(ids) == 3
