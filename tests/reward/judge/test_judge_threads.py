"""The HTTP judge called from several threads at once (the streaming scorer does): every batch gets its own results,
and ``max_concurrency`` bounds the calls in flight across all batches, not per batch."""

from __future__ import annotations

import threading

from judge_testkit import make_requests

from easyr1.testing.judge_server import ServerBehaviour


def test_concurrent_score_batch_calls_share_one_concurrency_limit(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(latency_s=0.05)
    judge = make_judge(max_concurrency=3)
    batches = [make_requests(2, prefix=f"t{t}") for t in range(4)]  # 4 threads x 2 samples x 5 dimensions
    alone = [make_judge(max_concurrency=3).score_batch(batch) for batch in batches]
    server.reset()
    got: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            got[t] = judge.score_batch(batches[t])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert server.max_in_flight == 3  # reached with four batches at once, never exceeded
    for t, batch in enumerate(batches):
        assert [r.valid for r in got[t]] == [True] * len(batch)
        assert [r.scores for r in got[t]] == [r.scores for r in alone[t]]  # each thread got its own batch's answers
    assert judge.stats.snapshot().calls == 40


def test_submit_batch_returns_at_once_and_shares_the_limit(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(latency_s=0.05)
    judge = make_judge(max_concurrency=2)
    batches = [make_requests(1, prefix=f"s{t}") for t in range(4)]
    futures = [judge.submit_batch(batch) for batch in batches]
    blocking = judge.score_batch(make_requests(1, prefix="blocking"))
    results = [future.result(timeout=60) for future in futures]
    assert all(r.valid for batch in results for r in batch) and blocking[0].valid
    assert server.max_in_flight == 2
