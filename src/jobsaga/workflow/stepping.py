"""One step's tries: its guard and arguments, each try of its code (bounded by its
``timeout``), ``Retry`` and ``retry_on`` with the backoff between tries, its compensation's
decision, and how the step settles (succeeded, compensated, failed, or halting the run).
Each try starts only when the run log allows it (a step never runs on an unrecorded result)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from ..errors import RetriesExhausted, RetryCancelled, StepResultError, StepTimeout
from .part_runs import halt_in_around_error
from .records import StepStatus
from .results import Continue, Halt, Retry
from .state import StepState, brief
from .steps import step_delay

if TYPE_CHECKING:
    from .executor import Execution


async def run_step(ex: Execution, st: StepState) -> None:
    spec = st.spec
    name = st.name
    needed = max((ex.states[p].recorded_seq for p in st.needs), default=0)
    if not await ex.log_allows(needed):
        return
    try:  # the guard and arguments are not a try
        if spec.where_fn is not None:
            ctx = ex.ctx(st)
            args = (ex.instance,) if spec.where_is_method else ()
            guard_kw = ex.kwargs(st.guard_args, spec.where_context, ctx)
            if not await ex.call(spec.where_fn, args, guard_kw, name, st.placement, "guard"):
                st.status, st.value, st.finished_at = StepStatus.SKIPPED, None, ex.now()
                ex.record(st, "step.skipped", at=st.finished_at)
                st.recorded_seq = ex.log.seq
                return
        arguments = {b.param: ex.value_of(b) for b in st.args}
    except Exception as exc:
        st.tries = max(st.tries, 1)
        ex.fail(st, exc)
        return
    while True:
        if not ex.log.ready(0) and not await ex.log_allows():
            return  # the run stops; this try never started
        st.tries += 1
        st.status = StepStatus.RUNNING
        now = ex.now()
        st.started_at = st.started_at or now
        ex.record(st, "step.started", {"try": st.tries}, now)
        kwargs = dict(arguments)
        step_ctx = None  # made only for a step that takes it (follow-ups come through it)
        if spec.context_param is not None:
            kwargs[spec.context_param] = step_ctx = ex.ctx(st)
        error: BaseException | None = None
        retry: Retry | None = None
        try:
            if spec.timeout is None:
                value = await ex.call(spec.fn, (ex.instance,), kwargs, name, st.placement)
            else:
                value = await call_within(ex, spec.timeout, st, kwargs)
        except StepTimeout as exc:
            if spec.on_timeout == "halt":
                st.status = StepStatus.PENDING  # not completed: it runs again on resume
                detail = {"timeout": spec.timeout}
                ex.record(st, "step.interrupted", detail, error=exc, outcome="halt")
                ex.halt_now(None, None, reason=f"step {name!r} ran past its timeout")
                return
            error = exc
        except Exception as exc:
            error = exc
        else:
            if isinstance(value, Retry):
                retry = value
            elif isinstance(value, Halt):
                if st.placement is not None:
                    error = halt_in_around_error(name)
                else:
                    try:
                        stored = ex.log.encode_result(
                            value.value, f"the halt value of step {name!r}"
                        )
                    except StepResultError as exc:
                        error = exc
                    else:
                        follow_ups = step_ctx.follow_ups if step_ctx is not None else []
                        ex.succeed_step(st, value.value, stored, follow_ups, StepStatus.SUCCEEDED)
                        ex.halted_by(st, value, stored)
                        return
            else:
                try:
                    stored = ex.log.encode_result(value, f"the result of step {name!r}")
                except StepResultError as exc:
                    error = exc
                else:
                    follow_ups = step_ctx.follow_ups if step_ctx is not None else []
                    ex.succeed_step(st, value, stored, follow_ups, StepStatus.SUCCEEDED)
                    return
        if retry is not None or isinstance(error, spec.retry_on):
            if st.tries <= spec.max_retries:
                if await retry_later(ex, st, error, retry):
                    continue
                if ex.log_failure is None and ex.halt is None:
                    ex.fail(st, RetryCancelled(name, error))
                return
            error = RetriesExhausted(name, spec.max_retries, error)
        assert error is not None
        if spec.compensate_fn is None:
            ex.fail(st, error)
            return
        outcome = await compensate(ex, st, error)
        if outcome == "retry":
            continue
        if outcome is None:
            return


async def compensate(ex: Execution, st: StepState, error: BaseException) -> str | None:
    """Ask the step's compensation (part of the try); returns "retry" to run the
    step again, else None once the step has been settled (succeeded with a value, or
    failed)."""
    spec, name = st.spec, st.name
    if not await ex.log_allows():
        return None  # the run stops: the step is left as the log last recorded it
    st.compensations += 1
    ctx = ex.ctx(st, st.compensations)
    assert spec.compensate_fn is not None
    try:
        kwargs = ex.hook_kwargs(st, "compensate", ctx)
        decision = await ex.call(
            spec.compensate_fn, (ex.instance, error), kwargs, name, st.placement, "compensate"
        )
    except Exception as exc:
        compensated(ex, st, "raised", error=exc, original=error)
        ex.fail(st, exc)
        return None
    if isinstance(decision, Retry):
        if st.tries <= spec.max_retries:
            compensated(ex, st, "retry", original=error)
            if await retry_later(ex, st, error, decision):
                return "retry"
            if ex.log_failure is None and ex.halt is None:
                ex.fail(st, RetryCancelled(name, error))
            return None
        exhausted = RetriesExhausted(name, spec.max_retries, error)
        compensated(ex, st, "retry_refused", original=error)
        ex.fail(st, exhausted)
        return None
    if isinstance(decision, Continue):
        try:
            stored = ex.log.encode_result(
                decision.value, f"the value compensation of step {name!r} continued with"
            )
        except StepResultError as exc:
            ex.fail(st, exc)
            return None
        compensated(ex, st, "continue", original=error)
        ex.succeed_step(st, decision.value, stored, ctx.follow_ups, StepStatus.COMPENSATED)
        return None
    compensated(ex, st, "fail", original=error)
    ex.fail(st, error)
    return None


def compensated(
    ex: Execution,
    st: StepState,
    outcome: str,
    *,
    original: BaseException,
    error: BaseException | None = None,
) -> None:
    detail: dict[str, Any] = {"outcome": outcome, "error": brief(original)}
    if error is not None:
        detail["raised"] = brief(error)
    ex.log.event("step.compensate", ex.now(), step=st.name, detail=detail)
    if ex.mw.step_events:
        ex.step_event(st.name, "step.compensate", detail, original)


async def retry_later(
    ex: Execution, st: StepState, error: BaseException | None, retry: Retry | None
) -> bool:
    """End the try (``step.retried``) and wait out the backoff; False
    when the workflow started failing meanwhile (a step waiting to retry has not
    completed: it is not retried, and there is nothing to undo), or the run log gave up
    (the run stops)."""
    if not ex.can_start():
        return False
    delay = (
        retry.delay
        if retry is not None and retry.delay is not None
        else step_delay(st.spec.backoff, st.tries)
    )
    st.status = StepStatus.RETRIED
    detail: dict[str, Any] = {"try": st.tries, "delay": delay}
    if error is not None:
        detail["error"] = brief(error)
    if retry is not None and retry.reason:
        detail["reason"] = retry.reason
    ex.record(st, "step.retried", detail, error=error)
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await ex.stopping.wait()
    return ex.can_start()


async def call_within(ex: Execution, timeout: float, st: StepState, kwargs: dict[str, Any]) -> Any:
    """A try of a step bounded by its ``timeout``: an ``async def`` step is cancelled, a
    thread cannot be, so its result is dropped when it comes."""
    window = asyncio.timeout(timeout)
    try:
        async with window:
            return await ex.call(st.spec.fn, (ex.instance,), kwargs, st.name, st.placement)
    except TimeoutError:
        if not window.expired():
            raise  # the step's own TimeoutError
        raise StepTimeout(
            f"step {st.name!r} ran longer than its timeout of {timeout:g}s (try {st.tries})"
        ) from None
