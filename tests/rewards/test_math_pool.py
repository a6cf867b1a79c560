"""Math verification under adversarial input: no hang, no execution, timeouts scored 0."""

from __future__ import annotations

import time

import pytest

from visgrpo.rewards import MathPool, RewardHead, RewardSpec, math_accuracy


def test_adversarial_answers_neither_hang_nor_execute(tmp_path):
    marker = tmp_path / "pwned"
    cmd = f"__import__('os').system('touch {marker}')"
    nested = "eval(\"__import__('os').system('touch " + str(marker) + "')\")"
    # Control: each payload, evaluated on purpose here, does create the marker, so the
    # marker's absence below means the verifier never executed it.
    for payload in (cmd, nested):
        eval(payload)  # noqa: S307 - the control of the injection check
        assert marker.exists(), payload
        marker.unlink()
    completions = [
        "<answer>" + "1" + "0" * 100_000 + "</answer>",  # 10**100000 written out (too long)
        "Final: " + "1" + "0" * 100_000,  # the same untagged: parsed from the last 2000 chars
        "<answer>9^9^9^9</answer>",
        "<answer>9^{9^{9^{9}}}-1</answer>",
        "<answer>" + "\\frac{" * 500 + "1" + "}{2}" * 500 + "</answer>",  # 500-deep \frac
        f"<answer>{cmd}</answer>",
        cmd,
        f"<answer>{nested}</answer>",
    ]
    samples = [
        {"id": f"adv{i}", "answer": "3", "answer_type": "number"} for i in range(len(completions))
    ]
    # The deep \frac (3000+ characters) must reach the parser too: raise max_chars for it.
    head = RewardHead(
        [RewardSpec("math_accuracy", 1.0, {"timeout": 2.0, "max_chars": 10_000})], num_threads=4
    )
    start = time.monotonic()
    out = head(completions, samples)
    elapsed = time.monotonic() - start
    assert elapsed < 20.0, elapsed  # 8 checks of at most 2 s + 1 s grace, 4 at a time: < 12 s
    assert out.total.tolist() == [0.0] * len(completions)
    assert not marker.exists()  # where both payloads write when executed
    # every zero says why (too long / not equivalent / no parsable answer / timeout)
    assert all("math_accuracy" in r for r in out.reasons)


def test_timeout_path_tiny_timeout(pool):
    # 9^(9^(9^9)) cannot be compared with 5 in 10 ms: the worker's timer fires
    r = math_accuracy("<answer>9^{9^{9^{9}}}-1</answer>", {"answer": "5"}, timeout=0.01, pool=pool)
    assert r == (0.0, "timeout")
    # the worker survived (in-worker timer, no kill) and still verifies correctly
    assert math_accuracy("<answer>5</answer>", {"answer": "5"}, pool=pool).value == 1.0


def test_timeout_path_sleeping_verifier(helpers_path):
    p = MathPool(size=1, task="reward_helpers:sleepy_verify")
    try:
        sample = {"answer": "1"}
        r = math_accuracy("<answer>1</answer>", sample, timeout=0.2, pool=p)
        assert r == (0.0, "timeout")  # sleeps 1 s (payload has no "sleep": default 1.0) > 0.2 s
        assert p.kills == 0  # the in-worker timer interrupted the sleep
    finally:
        p.close()


@pytest.mark.slow
def test_stuck_worker_is_killed_and_replaced(helpers_path):
    p = MathPool(size=1, kill_grace=0.2)
    try:
        start = time.monotonic()
        reply = p.run({}, timeout=0.1, task="reward_helpers:stuck_task")
        # the task swallows the timer: the parent kills it at 0.1 + 0.2 s
        assert reply == {"status": "timeout"}
        assert p.kills == 1
        assert time.monotonic() - start < 10.0
        # a fresh worker takes over
        ok = p.run({"gold": "2", "pred": "2", "gold_wrap": True, "pred_wrap": True}, timeout=5)
        assert ok["status"] == "ok" and ok["result"]["correct"] is True
    finally:
        p.close()


def test_unknown_task_is_an_error_not_a_crash(pool):
    reply = pool.run({}, timeout=1.0, task="no_such_module_xyz:f")
    assert reply["status"] == "error" and "cannot import task" in reply["error"]


@pytest.mark.slow
def test_head_verifies_a_batch_concurrently(helpers_path):
    # Four checks that each sleep 1 s in a 4-worker pool: the head must run them at the
    # same time. Each worker reports its (start, end) wall-clock interval as the reason;
    # concurrency <=> all four intervals overlap: max(start) < min(end). This does not
    # depend on machine load (serial execution would give max(start) >= min(end)).
    p = MathPool(size=4, task="reward_helpers:sleepy_verify")
    try:
        head = RewardHead(
            [RewardSpec("math_accuracy", 1.0, {"timeout": 30.0, "pool": p})], num_threads=4
        )
        out = head(["<answer>1</answer>"] * 4, [{"answer": "1"}] * 4)
        assert out.total.tolist() == [1.0] * 4
        spans = [tuple(map(float, r["math_accuracy"].split(","))) for r in out.reasons]
        assert max(s for s, _ in spans) < min(e for _, e in spans)
    finally:
        p.close()


def test_pool_rejects_bad_size():
    with pytest.raises(ValueError, match="size must be >= 1"):
        MathPool(size=0)


def test_stdout_noise_in_worker_does_not_corrupt_replies(helpers_path):
    p = MathPool(size=1, task="reward_helpers:noisy_task")
    try:
        assert p.run({}, timeout=5.0) == {"status": "ok", "result": {"correct": True, "reason": None}}
        assert p.run({}, timeout=5.0)["status"] == "ok"  # the same worker is still in sync
        assert p.kills == 0
    finally:
        p.close()
