"""Saga semantics on both engines, with the run log persisted (run through the test entry point)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from typing import Any

import pytest

from jobsaga import App, Job, StepContext, Worker, Workflow, step
from jobsaga.errors import EnqueueInStepError, RetriesExhausted, RetryCancelled, StepResultError
from jobsaga.testing import run_workflow
from jobsaga.workflow import Continue, Retry, RunStatus
from tests.workflow.conftest import TRAIL


def run(app: App, workflow: type[Workflow], inputs: Any = None, context: Any = None) -> Any:
    return run_workflow(workflow, inputs, context, app=app)


class Chain(Workflow, inputs=["x"]):
    @step
    def a(self, x: int) -> int:
        TRAIL.append("a")
        return x + 1

    @step
    async def b(self, a: int) -> int:
        TRAIL.append("b")
        return a * 2

    @step
    def c(self, b: int, ctx: StepContext[Any]) -> dict[str, Any]:
        TRAIL.append("c")
        return {"value": b, "step": ctx.step, "tries": ctx.tries, "run": ctx.run_id}


def test_linear_chain(app: App) -> None:
    result = run(app, Chain, {"x": 1})
    assert result.ok and result.status is RunStatus.SUCCEEDED
    assert result.value == {"value": 4, "step": "c", "tries": 1, "run": result.run_id}
    assert TRAIL == ["a", "b", "c"]
    assert result.run.status == "succeeded"
    assert result.run.result == result.value
    assert [(s.step, s.status, s.result) for s in result.run.steps] == [
        ("a", "succeeded", 2),
        ("b", "succeeded", 4),
        ("c", "succeeded", result.value),
    ]
    assert [e.kind for e in result.run.events] == [
        "step.started",
        "step.succeeded",
    ] * 3


class Diamond(Workflow, inputs=["n"], max_concurrency=4):
    """b and c both need a and run at the same time; d needs both."""

    @step
    def a(self, n: int) -> int:
        return n

    @step
    def b(self, a: int) -> int:
        barrier.wait(timeout=5)  # only passes if c runs concurrently
        return a + 1

    @step
    def c(self, a: int) -> int:
        barrier.wait(timeout=5)
        return a + 2

    @step
    def d(self, b: int, c: int) -> int:
        return b * c


barrier = threading.Barrier(2)


def test_diamond_runs_independent_steps_concurrently(app: App) -> None:
    barrier.reset()
    result = run(app, Diamond, {"n": 3})
    assert result.value == 4 * 5
    steps = result.run.steps
    assert all(s.status == "succeeded" for s in steps)


class Five(Workflow, inputs=["fail_at"]):
    """A 5-step chain; the step numbered ``fail_at`` raises."""

    def work(self, index: int, ctx: StepContext[Any]) -> int:
        TRAIL.append(f"run{index}")
        if index == ctx.inputs["fail_at"]:
            raise KeyError(f"step {index} broke")
        return index

    def undo_work(self, index: int) -> None:
        TRAIL.append(f"undo{index}")

    @step
    def s0(self, ctx: StepContext[Any]) -> int:
        return self.work(0, ctx)

    @s0.undo
    def u0(self, result: int) -> None:
        self.undo_work(0)

    @step
    def s1(self, s0: int, ctx: StepContext[Any]) -> int:
        return self.work(1, ctx)

    @s1.undo
    def u1(self, result: int) -> None:
        self.undo_work(1)

    @step
    def s2(self, s1: int, ctx: StepContext[Any]) -> int:
        return self.work(2, ctx)

    @s2.undo
    def u2(self, result: int) -> None:
        self.undo_work(2)

    @step
    def s3(self, s2: int, ctx: StepContext[Any]) -> int:
        return self.work(3, ctx)

    @s3.undo
    def u3(self, result: int) -> None:
        self.undo_work(3)

    @step
    def s4(self, s3: int, ctx: StepContext[Any]) -> int:
        return self.work(4, ctx)

    @s4.undo
    def u4(self, result: int) -> None:
        self.undo_work(4)


@pytest.mark.parametrize("fail_at", range(5))
def test_failure_at_each_position_undoes_the_completed_in_reverse_once(
    app: App, fail_at: int
) -> None:
    result = run(app, Five, {"fail_at": fail_at})
    assert not result.ok
    error = result.error
    assert error.step == f"s{fail_at}" and isinstance(error.error, KeyError)
    completed = [f"s{i}" for i in range(fail_at)]
    assert error.undone == tuple(reversed(completed))
    runs = [f"run{i}" for i in range(fail_at + 1)]
    undos = [f"undo{i}" for i in reversed(range(fail_at))]
    assert runs + undos == TRAIL  # exactly once each, in reverse order of completion
    assert result.run.undo_order() == list(reversed(completed))
    assert result.status is (RunStatus.ROLLED_BACK if fail_at else RunStatus.FAILED)
    assert result.run.status == result.status.value
    statuses = result.run.statuses()
    assert statuses[f"s{fail_at}"] == "failed"
    for i in range(5):
        if i < fail_at:
            assert statuses[f"s{i}"] == "undone"
        elif i > fail_at:
            assert statuses[f"s{i}"] == "pending"  # never started: not undone


class SlowSibling(Workflow):
    """fast fails while slow is still running; slow succeeds later and is undone too."""

    @step
    async def slow(self) -> str:
        await asyncio.sleep(0.3)
        TRAIL.append("slow done")
        return "slow"

    @slow.undo
    async def undo_slow(self, result: str) -> None:
        TRAIL.append(f"undo {result}")

    @step
    async def fast(self) -> str:
        await asyncio.sleep(0.01)
        raise RuntimeError("fast failed")

    @step
    def after(self, slow: str, fast: str) -> None:
        TRAIL.append("after")


def test_a_concurrent_sibling_that_later_succeeds_is_undone(app: App) -> None:
    result = run(app, SlowSibling)
    assert result.error.step == "fast"
    assert TRAIL == ["slow done", "undo slow"]
    assert result.run.statuses() == {"slow": "undone", "fast": "failed", "after": "pending"}
    assert result.status is RunStatus.ROLLED_BACK


class Compensations(Workflow, inputs=["mode"]):
    @step
    def first(self) -> str:
        return "first"

    @first.undo
    def undo_first(self, result: str) -> None:
        TRAIL.append("undo first")

    @step(max_retries=2, backoff=0)
    def flaky(self, first: str, mode: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"try {ctx.tries}")
        if mode == "retry" and ctx.tries == 3:
            return "third time lucky"
        raise ConnectionError(f"down ({ctx.tries})")

    @flaky.compensate
    def on_flaky(self, error: BaseException, mode: str, ctx: StepContext[Any]) -> Any:
        TRAIL.append(f"compensate {type(error).__name__}")
        if mode == "retry":
            return Retry("try again")
        if mode.startswith("continue"):
            return Continue("fallback")
        if mode == "raise":
            raise ValueError("compensation replaced the error") from error
        return None

    @flaky.undo
    def undo_flaky(self, result: str) -> None:
        TRAIL.append(f"undo flaky {result}")

    @step
    def last(self, flaky: str, mode: str) -> str:
        if mode == "continue-then-fail":
            raise RuntimeError("late failure")
        return f"got {flaky}"


def test_compensate_retry_counts_against_max_retries(app: App) -> None:
    result = run(app, Compensations, {"mode": "retry"})
    assert result.value == "got third time lucky"
    assert TRAIL == [
        "try 1",
        "compensate ConnectionError",
        "try 2",
        "compensate ConnectionError",
        "try 3",
    ]
    assert result.run.step("flaky").tries == 3
    outcomes = [e.detail["outcome"] for e in result.run.events_of("step.compensate")]
    assert outcomes == ["retry", "retry"]


def test_compensate_retry_beyond_max_retries_fails(app: App, trail: list[str]) -> None:
    class Always(Compensations, name="always"):
        @step(name="flaky", max_retries=1, backoff=0)
        def flaky2(self, first: str, mode: str, ctx: StepContext[Any]) -> str:
            TRAIL.append(f"try {ctx.tries}")
            raise ConnectionError("down")

        @flaky2.compensate
        def on_flaky2(self, error: BaseException) -> Retry:
            return Retry()

    result = run(app, Always, {"mode": "retry"})
    assert TRAIL == ["try 1", "try 2", "undo first"]
    assert isinstance(result.error.error, RetriesExhausted)
    assert result.error.has(ConnectionError)


def test_compensate_continue_makes_the_step_succeed(app: App) -> None:
    result = run(app, Compensations, {"mode": "continue"})
    assert result.value == "got fallback"
    assert result.run.step("flaky").status == "compensated"
    assert result.run.step("flaky").result == "fallback"


def test_a_continued_step_counts_as_succeeded_and_is_undone(app: App) -> None:
    result = run(app, Compensations, {"mode": "continue-then-fail"})
    assert result.error.step == "last"
    assert TRAIL[-2:] == ["undo flaky fallback", "undo first"]


def test_compensate_fail_keeps_the_original_error(app: App) -> None:
    result = run(app, Compensations, {"mode": "fail"})
    assert isinstance(result.error.error, ConnectionError)
    assert TRAIL == ["try 1", "compensate ConnectionError", "undo first"]
    assert result.run.step("flaky").status == "failed"


def test_compensate_that_raises_replaces_the_error(app: App) -> None:
    result = run(app, Compensations, {"mode": "raise"})
    assert isinstance(result.error.error, ValueError)
    assert result.error.find(ConnectionError)  # still reachable through the cause
    assert result.run.error["type"] == "builtins.ValueError"
    [event] = result.run.events_of("step.compensate")
    assert event.detail["outcome"] == "raised"


class Undos(Workflow, inputs=["undo_mode"]):
    @step
    def one(self) -> int:
        return 1

    @one.undo
    def undo_one(self, result: int) -> None:
        TRAIL.append("undo one")

    @step(undo_retries=3, backoff=0)
    def two(self, one: int) -> int:
        return 2

    @two.undo
    def undo_two(self, result: int, ctx: StepContext[Any]) -> Any:
        TRAIL.append("undo two")
        undo_mode = ctx.inputs["undo_mode"]
        if undo_mode == "retry-then-ok" and TRAIL.count("undo two") < 3:
            return Retry("lock busy")
        if undo_mode == "raise":
            raise PermissionError("cannot release")
        if undo_mode == "retry-forever":
            return Retry()
        return None

    @step
    def three(self, two: int) -> int:
        raise LookupError("three failed")


def test_undo_retried_then_succeeding(app: App) -> None:
    result = run(app, Undos, {"undo_mode": "retry-then-ok"})
    assert TRAIL == ["undo two", "undo two", "undo two", "undo one"]
    assert result.status is RunStatus.ROLLED_BACK
    assert result.error.rolled_back
    assert result.run.step("two").undo_tries == 3
    assert len(result.run.events_of("step.undo_retried")) == 2


def test_undo_failing_is_recorded_and_the_rollback_goes_on(app: App) -> None:
    result = run(app, Undos, {"undo_mode": "raise"})
    assert TRAIL == ["undo two", "undo one"]
    assert result.status is RunStatus.ROLLBACK_FAILED
    error = result.error
    assert isinstance(error.error, LookupError)
    assert [f.step for f in error.undo_errors] == ["two"]
    assert error.find(PermissionError) and error.find(LookupError)
    assert not error.find(KeyError)
    assert result.run.statuses() == {"one": "undone", "two": "undo_failed", "three": "failed"}
    assert result.run.error["undo_errors"][0]["step"] == "two"
    assert result.run.undo_order() == ["two", "one"]


def test_undo_asking_for_retries_forever_gives_up(app: App) -> None:
    result = run(app, Undos, {"undo_mode": "retry-forever"})
    assert TRAIL.count("undo two") == 4  # the first try and 3 retries
    assert isinstance(result.error.undo_errors[0].error, RetriesExhausted)
    assert TRAIL[-1] == "undo one"


class Guarded(Workflow, inputs=["send"]):
    @step
    def load(self) -> dict[str, Any]:
        return {"email": "a@example.com", "opt_in": True}

    @step(args={"email": "load.email"})
    def notify(self, email: str) -> dict[str, str]:
        TRAIL.append(f"mail {email}")
        return {"email": "field"}

    @notify.where
    def only_when_asked(self, send: bool, load: dict[str, Any]) -> bool:
        return send and bool(load["opt_in"])

    @notify.undo
    def unsend(self, result: dict[str, str]) -> None:
        TRAIL.append("unsend")

    @step(where=lambda send: not send)
    def skipped_when_sending(self) -> str:
        return "ran"

    @step(args={"email": "notify.email"})
    def field_of_a_skipped_step(self, email: str | None) -> None:
        assert email is None or email == "field"

    @step
    def finish(self, notify: Any, skipped_when_sending: str | None) -> list[Any]:
        if notify is None:
            raise RuntimeError("nothing sent")
        return [notify, skipped_when_sending]


def test_guards_skip_with_none_and_skipped_steps_are_not_undone(app: App) -> None:
    sent = run(app, Guarded, {"send": True})
    assert sent.value == [{"email": "field"}, None]
    assert sent.run.step("skipped_when_sending").status == "skipped"
    assert TRAIL == ["mail a@example.com"]
    TRAIL.clear()
    unsent = run(app, Guarded, {"send": False})
    assert unsent.run.step("notify").status == "skipped"
    assert unsent.error.step == "finish"
    assert "unsend" not in TRAIL
    assert unsent.error.undone == ()


class FollowUp(Worker, queue="default"):
    def perform(self, job: Job[Any]) -> None:
        return None


class Enqueuer(Workflow, inputs=["how"]):
    @step
    def go(self, how: str, ctx: StepContext[Any]) -> str:
        if how == "insert":
            assert APP is not None
            APP.insert(FollowUp.new({"from": "step"}))
        ctx.enqueue_after_success(FollowUp.new({"from": "ctx"}))
        return "ok"

    @step
    async def go_async(self, go: str, how: str) -> str:
        if how == "insert-async":
            assert APP is not None
            await APP.ainsert(FollowUp.new({"from": "async step"}))
        return "ok"


APP: App | None = None


@pytest.mark.parametrize("how", ["insert", "insert-async"])
def test_inserting_a_job_from_a_step_is_refused(app: App, how: str) -> None:
    global APP
    APP = app
    result = run(app, Enqueuer, {"how": how})
    assert isinstance(result.error.error, EnqueueInStepError)
    assert "ctx.enqueue_after_success(Worker.new(...))" in str(result.error.error)
    assert app.engine.queue_counts() == {}
    assert result.follow_ups == ()


class ThreadedInsert(Workflow):
    @step
    async def spawn(self) -> dict[str, str]:
        outcomes: dict[str, str] = {}

        def insert(label: str) -> None:
            assert APP is not None
            try:
                APP.insert(FollowUp.new({"from": label}))
                outcomes[label] = "inserted"
            except EnqueueInStepError:
                outcomes[label] = "refused"

        for label, target in [
            ("thread", insert),
            ("copied context", functools.partial(contextvars.copy_context().run, insert)),
        ]:
            thread = threading.Thread(target=target, args=(label,))
            thread.start()
            thread.join()
        await asyncio.to_thread(insert, "to_thread")
        return outcomes


def test_the_guard_does_not_reach_a_thread_the_step_starts(app: App) -> None:
    """The documented limit: a new thread inherits no context variables, so the guard does
    not see it; asyncio.to_thread and a thread run in a copied context are guarded."""
    global APP
    APP = app
    result = run(app, ThreadedInsert)
    assert result.value == {
        "thread": "inserted",
        "copied context": "refused",
        "to_thread": "refused",
    }
    assert app.engine.queue_counts() == {"default": {"available": 1}}


def test_follow_ups_are_returned_only_on_success(app: App) -> None:
    result = run(app, Enqueuer, {"how": "register"})
    assert [spec.args for spec in result.follow_ups] == [{"from": "ctx"}]
    assert result.run.step("go").enqueue[0]["args"] == {"from": "ctx"}
    assert app.engine.queue_counts() == {}  # the test entry point returns them, never inserts


class Retrying(Workflow):
    @step(max_retries=2, retry_on=(TimeoutError,), backoff=0.01)
    def call_api(self, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"call {ctx.tries}")
        raise TimeoutError("slow api")

    @step(max_retries=3, backoff=0)
    async def poll(self, ctx: StepContext[Any]) -> Any:
        return Retry("not ready") if ctx.tries < 3 else "ready"


def test_retryable_errors_and_retry_results_are_bounded(app: App) -> None:
    result = run(app, Retrying)
    assert TRAIL == ["call 1", "call 2", "call 3"]
    assert isinstance(result.error.error, RetriesExhausted)
    assert result.error.find(TimeoutError)
    assert result.run.step("poll").tries == 3
    assert result.run.step("poll").status == "succeeded"
    retried = result.run.events_of("step.retried")
    assert {e.step for e in retried} == {"call_api", "poll"}


class Unstorable(Workflow):
    @step
    def bad(self) -> object:
        return object()


def test_a_result_that_is_not_json_fails_the_step_clearly(app: App) -> None:
    result = run(app, Unstorable)
    assert isinstance(result.error.error, StepResultError)
    assert "cannot be stored as JSON" in str(result.error.error)


class HugeOrDeep(Workflow, inputs=["kind"]):
    @step
    def bad(self, kind: str) -> object:
        if kind == "huge":
            return {"n": 10**5000}  # more digits than Python turns into text by default
        deep: list[object] = []
        for _ in range(1000):
            deep = [deep]
        return deep


@pytest.mark.parametrize("kind", ["huge", "deep"])
def test_a_result_too_large_or_deep_for_json_fails_the_step_clearly(app: App, kind: str) -> None:
    """Checked as job args are: the step fails with StepResultError (and the saga rolls
    back), rather than the log's write failing later or the run crashing."""
    result = run_workflow(HugeOrDeep, {"kind": kind}, app=app)
    assert result.error is not None and result.error.step == "bad"
    assert isinstance(result.error.error, StepResultError)
    assert "the run log" in str(result.error.error)


def test_concurrency_limit_and_declaration_order(app: App) -> None:
    active: list[int] = []
    peak: list[int] = [0]
    started: list[str] = []

    def make(i: int) -> Any:
        async def fn(self: Any) -> int:
            started.append(f"w{i}")
            active.append(i)
            peak[0] = max(peak[0], len(active))
            await asyncio.sleep(0.02)
            active.remove(i)
            return i

        fn.__name__ = f"w{i}"
        return step(fn)

    namespace = {f"w{i}": make(i) for i in range(8)}
    wide = type(Workflow)("Wide", (Workflow,), namespace, max_concurrency=3)
    result = run(app, wide)
    assert result.ok
    assert peak[0] == 3
    assert started[:3] == ["w0", "w1", "w2"]


def test_telemetry_events(app: App) -> None:
    seen: list[tuple[str, Any]] = []
    app.telemetry.attach(
        "t", "workflow.*", lambda event, m, meta: seen.append((event, meta.get("step")))
    )
    run(app, Undos, {"undo_mode": "retry-then-ok"})
    names = [event for event, _ in seen]
    assert names[0] == "workflow.start" and names[-1] == "workflow.exception"
    assert ("workflow.step.start", "one") in seen
    assert ("workflow.step.stop", "two") in seen
    assert ("workflow.step.exception", "three") in seen
    assert names.count("workflow.step.undo") == 4  # two retries, two undone
    seen.clear()
    run(app, Compensations, {"mode": "retry"})
    names = [event for event, _ in seen]
    assert "workflow.step.compensate" in names and "workflow.step.retry" in names
    assert names[-1] == "workflow.stop"


def test_memory_mode_keeps_the_same_log(app: App) -> None:
    result = run_workflow(Undos, {"undo_mode": "raise"})
    assert result.run.id is None
    assert result.run.statuses() == {"one": "undone", "two": "undo_failed", "three": "failed"}
    assert result.run.undo_order() == ["two", "one"]


def test_sync_steps_run_in_threads_async_on_the_loop(app: App) -> None:
    main = threading.get_ident()
    seen: dict[str, bool] = {}

    class Where(Workflow):
        @step
        def sync_step(self) -> None:
            seen["sync_in_thread"] = threading.get_ident() != main

        @step
        async def async_step(self) -> None:
            seen["async_on_loop"] = threading.get_ident() == main
            time.sleep(0)

    run(app, Where)
    assert seen == {"sync_in_thread": True, "async_on_loop": True}


class EnqueueInUndo(Workflow):
    @step
    def book(self) -> str:
        return "b-1"

    @book.undo
    def unbook(self, result: str) -> None:
        assert APP is not None
        APP.insert(FollowUp.new({"from": "undo"}))

    @step
    def fail(self, book: str, ctx: StepContext[Any]) -> None:
        assert ctx.actor == {"id": "u-1"}
        raise RuntimeError("fails so that book is undone")


def test_undo_code_cannot_enqueue_either(app: App) -> None:
    global APP
    APP = app
    result = run(app, EnqueueInUndo, {}, {"actor": {"id": "u-1"}})
    [failure] = result.error.undo_errors
    assert failure.step == "book" and isinstance(failure.error, EnqueueInStepError)
    assert app.engine.queue_counts() == {}


class RetryingSibling(Workflow, max_concurrency=4):
    """``patient`` waits a long backoff to retry when ``breaks`` fails the workflow."""

    @step(max_retries=5, backoff=30)
    async def patient(self, ctx: StepContext[Any]) -> Any:
        TRAIL.append(f"patient try {ctx.tries}")
        return Retry("not ready")

    @patient.undo
    def undo_patient(self, result: Any) -> None:
        TRAIL.append("undo patient")

    @step
    async def breaks(self) -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("broken")


def test_a_step_waiting_to_retry_is_not_retried_once_the_workflow_fails(app: App) -> None:
    started = time.monotonic()
    result = run(app, RetryingSibling)
    assert time.monotonic() - started < 10  # not the 30 s backoff
    assert result.error.step == "breaks"
    assert TRAIL == ["patient try 1"]
    [other] = result.error.other_errors
    assert other.step == "patient" and isinstance(other.error, RetryCancelled)
    assert result.run.step("patient").status == "failed"
    assert result.status is RunStatus.FAILED  # nothing completed, nothing undone


class GuardAndDelay(Workflow, inputs=["broken_guard"]):
    @step(max_retries=2, backoff=30)
    def polls(self, ctx: StepContext[Any]) -> str:
        return "done" if ctx.tries == 2 else Retry("soon", delay=0)  # type: ignore[return-value]

    @step
    def guarded(self, polls: str) -> str:
        return polls

    @guarded.where
    def check(self, broken_guard: bool) -> bool:
        if broken_guard:
            raise ValueError("guard exploded")
        return True


def test_retry_delay_overrides_backoff_and_a_raising_guard_fails_its_step(app: App) -> None:
    started = time.monotonic()
    ok = run(app, GuardAndDelay, {"broken_guard": False})
    assert ok.value == "done" and time.monotonic() - started < 10
    [retried] = ok.run.events_of("step.retried")
    assert retried.detail == {"try": 1, "delay": 0, "reason": "soon"}
    broken = run(app, GuardAndDelay, {"broken_guard": True})
    assert broken.error.step == "guarded" and isinstance(broken.error.error, ValueError)
