"""Running the parts of a workflow (map, switch, group, around) inside one run.

A part is a step of its scope with two phases. It *opens* once everything its body needs
from outside has completed: a map reads its collection, a switch asks its cases in order, a
group calls ``before``; then its body's steps join the run (see :mod:`.plan`) and are
scheduled, recorded and undone like any other. It *closes* once its body is done: a map's
result is the list of its elements' results, a switch's the chosen case's, a group's its
body's (or what ``after`` made of it). A step of the body that fails for good fails the run
as any step does; the parts around it are marked failed with it.

An ``around`` group runs differently: its context manager is entered in a thread of the
group's own (or on the loop, for an async one), its steps run there one at a time, and it is
exited with the error of a step that failed, so a transaction or a thread-bound connection
spans exactly the group's steps.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import (
    RetryCancelled,
    StepArgumentError,
    StepResultError,
    SwitchNoMatch,
    WorkflowDefinitionError,
)
from .parts import GroupDef, MapDef, PartStep, Scope, SwitchDef, Wired
from .plan import Frame, Instance, bind, qualified_needs, scope_frame
from .records import StepStatus
from .state import DONE, StepState

if TYPE_CHECKING:
    from .executor import Execution


@dataclass(slots=True)
class MapProgress:
    """A map's elements and how far it got: elements are taken ``batch_size`` at a time,
    at most ``max_concurrency`` of them in flight."""

    elements: list[Any]
    expanded: int = 0
    waiting: collections.deque[Instance] = field(default_factory=collections.deque)
    """Elements expanded but not admitted yet (beyond the map's max_concurrency)."""
    in_flight: int = 0


@dataclass(slots=True)
class Placement:
    """Where an ``around`` group's steps run: the thread and context its manager entered."""

    threads: ThreadPoolExecutor
    context: contextvars.Context


def frames_of(st: StepState, top: Frame) -> tuple[Frame, ...]:
    """The scopes a step of the run sits in, innermost first."""
    return st.instance.frames if st.instance is not None else (top,)


class PartRunner:
    """The part phases of one execution."""

    def __init__(self, execution: Execution, top: Frame) -> None:
        self.ex = execution
        self.top = top

    # --- opening --------------------------------------------------------------------------

    async def run(self, st: StepState) -> None:
        if st.instances is None:
            await self.open(st)
        else:
            await self.close(st)

    async def open(self, st: StepState) -> None:
        ex = self.ex
        needed = max((ex.states[p].recorded_seq for p in st.needs), default=0)
        if not await ex.log_allows(needed):
            return
        assert isinstance(st.spec, PartStep)
        part = st.spec.part
        st.tries += 1
        st.status = StepStatus.RUNNING
        now = ex.now()
        st.started_at = st.started_at or now
        try:
            detail, instances = await self.plan(st)
        except Exception as exc:
            ex.fail(st, exc)
            return
        ex.record(st, "step.started", {"try": st.tries, **detail}, now)
        st.instances = instances
        if isinstance(part, GroupDef) and part.around is not None:
            await self.run_around(st, instances[0])
            return
        self.admit_all(st)
        if not instances:
            await self.close(st)

    async def plan(self, st: StepState) -> tuple[dict[str, Any], list[Instance]]:
        """What the part does this run: the instances of its body (their steps added to the
        run) and what to record about it."""
        assert isinstance(st.spec, PartStep)
        part = st.spec.part
        frames = frames_of(st, self.top)
        if isinstance(part, MapDef):
            (over,) = bind((part.over,), frames)
            value = self.ex.value_of(over)
            if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
                raise StepArgumentError(
                    f"map {st.name!r} maps over {'.'.join((part.over.source, *part.over.path))}"
                    f", which is a {type(value).__name__}, not a list"
                )
            elements = list(value)
            # Recorded with the map's start: a resumed run rebuilds these very elements,
            # whatever the collection has become (a resume's new inputs).
            collection = self.ex.log.encode_result(elements, f"the collection of map {st.name!r}")
            progress = MapProgress(elements)
            st.plan = progress
            instances = self.expand(st, part, progress)
            return {"elements": len(elements), "collection": collection}, instances
        if isinstance(part, SwitchDef):
            for case in part.cases:
                if case.when is None or await self.ask(st, case.when, frames):
                    return {"case": case.name}, [self.case_instance(st, part, case.name)]
            names = ", ".join(case.name for case in part.cases)
            raise SwitchNoMatch(
                f"switch {st.name!r}: no case matched (cases: {names}) and it has no Default case"
            )
        assert isinstance(part, GroupDef)
        if part.before is not None:
            await self.ask(st, part.before, frames)
        return {}, [self.instantiate(st, part.body, 0, f"{st.name}.", {})]

    async def ask(self, st: StepState, wired: Wired, frames: tuple[Frame, ...], *first: Any) -> Any:
        """Call a part's own function (a case's ``when``, a group's hook) with its wiring."""
        ex = self.ex
        kwargs = ex.kwargs(bind(wired.arguments, frames), wired.context_param, ex.ctx(st))
        args = ((ex.instance,) if wired.is_method else ()) + first
        return await ex.call(wired.fn, args, kwargs, st.name, st.placement, "part")

    def case_instance(self, st: StepState, part: SwitchDef, case: str) -> Instance:
        return self.instantiate(st, part.case(case).body, 0, f"{st.name}.{case}.", {})

    def expand(self, st: StepState, part: MapDef, progress: MapProgress) -> list[Instance]:
        """The map's next batch of elements, added to the run (admitted up to the map's
        ``max_concurrency``)."""
        start = progress.expanded
        end = min(len(progress.elements), start + part.batch_size)
        progress.expanded = end
        batch = [
            self.instantiate(
                st, part.body, i, f"{st.name}[{i}].", {part.element: progress.elements[i]}
            )
            for i in range(start, end)
        ]
        for instance in batch:
            instance.admitted = False
            progress.waiting.append(instance)
        if st.instances is not None:
            st.instances.extend(batch)
        return batch

    def instantiate(
        self, st: StepState, body: Scope, index: int, prefix: str, local: dict[str, Any]
    ) -> Instance:
        """One copy of a body's steps, added to the run under ``prefix``."""
        frames = (scope_frame(body.steps, prefix, local), *frames_of(st, self.top))
        instance = Instance(st.name, index, prefix, frames)
        graph = body.graph
        placement = None
        if isinstance(st.spec, PartStep):
            part = st.spec.part
            if isinstance(part, GroupDef) and part.around is not None:
                placement = st.placement  # set by run_around before instantiating again
        for name in graph.order:
            spec = body.steps[name]
            node = self.ex.add_node(
                spec,
                prefix + name,
                bind(spec.arguments, frames),
                bind(spec.where_arguments, frames),
                qualified_needs(graph, name, prefix),
                instance,
            )
            node.placement = placement
            instance.names.append(node.name)
        instance.left = len(instance.names)
        return instance

    # --- progress -------------------------------------------------------------------------

    def admit_all(self, st: StepState) -> None:
        """Admit what the part may run now: every instance, or for a map as many elements
        as its ``max_concurrency`` allows."""
        assert st.instances is not None
        progress = st.plan if isinstance(st.plan, MapProgress) else None
        if progress is None:
            for instance in st.instances:
                if not instance.admitted:
                    self.admit(instance)
            return
        assert isinstance(st.spec, PartStep) and isinstance(st.spec.part, MapDef)
        limit = st.spec.part.max_concurrency
        while progress.waiting and (limit is None or progress.in_flight < limit):
            instance = progress.waiting.popleft()
            progress.in_flight += 1
            self.admit(instance)

    def admit(self, instance: Instance) -> None:
        ex = self.ex
        instance.admitted = True
        if instance.left == 0:
            self.done(instance)
            return
        for name in instance.names:
            node = ex.states[name]
            if node.status is StepStatus.PENDING:
                node.waiting = sum(1 for p in node.needs if ex.states[p].status not in DONE)
                if node.waiting == 0:
                    ex.push_ready(node)
            elif node.status is StepStatus.RUNNING and node.instances is not None:
                self.progress(node)

    def done(self, instance: Instance) -> None:
        """Every step of an instance is done: admit the next element, take the next batch,
        or close the part."""
        st = self.ex.states[instance.part]
        progress = st.plan if isinstance(st.plan, MapProgress) else None
        if progress is not None:
            progress.in_flight -= 1
        self.progress(st)

    def progress(self, st: StepState) -> None:
        """Move a part on: a map admits waiting elements and takes its next batch once the
        current one is done; a part whose instances are all done closes."""
        if st.status is not StepStatus.RUNNING or not self.ex.can_start():
            return
        assert st.instances is not None and isinstance(st.spec, PartStep)
        part = st.spec.part
        progress = st.plan if isinstance(st.plan, MapProgress) else None
        if progress is not None:  # counted as it goes: a map may have thousands of elements
            if progress.waiting:
                self.admit_all(st)
                return
            if progress.in_flight:
                return
        elif any(not instance.admitted for instance in st.instances):
            self.admit_all(st)
            return
        elif any(instance.left for instance in st.instances):
            return
        if (
            progress is not None
            and isinstance(part, MapDef)
            and progress.expanded < len(progress.elements)
        ):
            self.expand(st, part, progress)
            detail = {"elements": len(progress.elements), "to": progress.expanded}
            self.ex.record(st, "step.expanded", detail)
            self.admit_all(st)
            return
        if not st.closing:
            st.closing = True
            self.ex.push_ready(st)  # closes it

    # --- a resumed run --------------------------------------------------------------------

    def reopens(self, st: StepState) -> bool:
        """A part recorded as started is rebuilt rather than run again; an ``around`` group
        runs again from its first step (its context, a transaction, did not complete)."""
        if not isinstance(st.spec, PartStep):
            return False
        part = st.spec.part
        return not (isinstance(part, GroupDef) and part.around is not None)

    def reopen(self, records: dict[str, Any], plans: dict[str, Any], rolling_back: bool) -> bool:
        """Rebuild the steps of parts the log shows started, so their records can be read
        back into them; True when any was rebuilt (their own parts come next round).

        An ``around`` group that had not completed runs again from its first step when the
        run goes on (its context, a transaction, did not complete); when the run is rolling
        back, its steps are rebuilt too, so those that completed are undone."""
        rebuilt = False
        by_part = _records_by_part(records)
        for st in list(self.ex.states.values()):
            if st.instances is not None or not isinstance(st.spec, PartStep):
                continue
            if st.status in (StepStatus.PENDING, StepStatus.SKIPPED):
                continue
            part = st.spec.part
            inside = by_part.get(st.name, [])
            around = isinstance(part, GroupDef) and part.around is not None
            if around and st.status is not StepStatus.SUCCEEDED and not rolling_back:
                for name in inside:
                    records.pop(name)  # run again from the first step
                continue
            if not inside and st.status is StepStatus.RUNNING:
                st.status = StepStatus.PENDING  # nothing inside was recorded: open it again
                continue
            st.instances = self.rebuild(st, part, inside, plans.get(st.name))
            rebuilt = True
        return rebuilt

    def rebuild(
        self, st: StepState, part: Any, inside: list[str], plan: dict[str, Any] | None
    ) -> list[Instance]:
        if isinstance(part, MapDef):
            progress = MapProgress(self.recorded_elements(st, part, plan))
            st.plan = progress
            st.instances = []
            indexes = [int(name[len(st.name) + 1 :].split("]", 1)[0]) for name in inside]
            last = max(indexes, default=0)
            while progress.expanded <= last and progress.expanded < len(progress.elements):
                self.expand(st, part, progress)
            return st.instances
        if isinstance(part, SwitchDef):
            case = inside[0][len(st.name) + 1 :].split(".", 1)[0]
            return [self.case_instance(st, part, case)]
        assert isinstance(part, GroupDef)
        return [self.instantiate(st, part.body, 0, f"{st.name}.", {})]

    def recorded_elements(
        self, st: StepState, part: MapDef, plan: dict[str, Any] | None
    ) -> list[Any]:
        """The elements a map started with: as the log recorded them, typed as the
        collection reads now when it still holds the same values."""
        current: list[Any] | None = None
        with contextlib.suppress(Exception):  # what it maps over may not read back
            (over,) = bind((part.over,), frames_of(st, self.top))
            current = list(self.ex.value_of(over))
        if plan is None:  # a run recorded before maps kept their collection
            return current or []
        recorded = list(plan["collection"])
        if current is not None:
            with contextlib.suppress(Exception):
                if self.ex.log.encode_result(current, "the collection") == recorded:
                    return current
        return recorded

    def after_restore(self) -> None:
        """Count what each rebuilt instance has left; a map's elements with progress are
        in flight again, the rest wait for admission."""
        states = self.ex.states
        for st in states.values():
            if st.instances is None:
                continue
            progress = st.plan if isinstance(st.plan, MapProgress) else None
            if progress is not None:
                progress.waiting = collections.deque()
                progress.in_flight = 0
            started = 0
            for instance in st.instances:
                nodes = [states[name] for name in instance.names]
                instance.left = sum(1 for node in nodes if node.status not in DONE)
                instance.admitted = instance.left == 0
                if instance.admitted or progress is None:
                    continue  # a switch's case, a group: admitted when the part moves on
                if any(node.status is not StepStatus.PENDING for node in nodes):
                    progress.waiting.insert(started, instance)  # in flight before: first
                    started += 1
                else:
                    progress.waiting.append(instance)

    # --- closing --------------------------------------------------------------------------

    async def close(self, st: StepState) -> None:
        ex = self.ex
        assert isinstance(st.spec, PartStep) and st.instances is not None
        part = st.spec.part
        needed = max((ex.states[n].recorded_seq for i in st.instances for n in i.names), default=0)
        if not await ex.log_allows(needed):
            return
        try:
            if isinstance(part, MapDef):
                results = [self.result_of(part.body, i) for i in st.instances]
                value = [v for v, _ in results]
                stored = [s for _, s in results]
            else:
                value, stored = self.result_of(
                    part.body if isinstance(part, GroupDef) else self.chosen_body(part, st),
                    st.instances[0],
                )
                if isinstance(part, GroupDef) and part.after is not None:
                    value = await self.ask(st, part.after, frames_of(st, self.top), value)
                    stored = ex.log.encode_result(value, f"the result of group {st.name!r}")
        except Exception as exc:
            ex.fail(st, exc)
            return
        ex.succeed_step(st, value, stored, [], StepStatus.SUCCEEDED)

    def chosen_body(self, part: Any, st: StepState) -> Scope:
        assert isinstance(part, SwitchDef) and st.instances is not None
        prefix = st.instances[0].prefix
        return part.case(prefix[len(st.name) + 1 : -1]).body

    def result_of(self, body: Scope, instance: Instance) -> tuple[Any, Any]:
        node = self.ex.states[instance.prefix + body.result]
        if node.status is StepStatus.SKIPPED:
            return None, None
        return node.value, node.stored

    # --- around ---------------------------------------------------------------------------

    async def run_around(self, st: StepState, instance: Instance) -> None:
        """Enter the group's context manager, run its steps one at a time where it was
        entered, and exit it with the error of a step that failed."""
        ex = self.ex
        threads = ThreadPoolExecutor(1, thread_name_prefix=f"jobsaga-around-{st.name}")
        placement = Placement(threads, contextvars.copy_context())
        st.placement = placement
        for name in instance.names:
            ex.states[name].placement = placement
        try:
            await self.run_inside(st, instance, placement)
        finally:  # after the exit, and after an ``after`` hook, which runs there too
            threads.shutdown(wait=False)

    async def run_inside(self, st: StepState, instance: Instance, placement: Placement) -> None:
        ex = self.ex
        assert isinstance(st.spec, PartStep) and isinstance(st.spec.part, GroupDef)
        group = st.spec.part
        assert group.around is not None
        order = [instance.prefix + n for n in group.body.graph.topological()]
        failed: StepState | None = None
        stop_error: BaseException | None = None
        try:
            manager = await self.ask(st, group.around, frames_of(st, self.top))
            is_async = hasattr(manager, "__aenter__")
            if not is_async and not hasattr(manager, "__enter__"):
                raise WorkflowDefinitionError(
                    f"around of group {st.name!r} must return a context manager, got "
                    f"{type(manager).__name__}"
                )
            await self.in_place(placement, manager.__aenter__ if is_async else manager.__enter__)
        except Exception as exc:
            ex.fail(st, exc)
            return
        try:
            for name in order:
                node = ex.states[name]
                if not ex.can_start():
                    stop_error = RetryCancelled(node.name, None)
                    break
                if node.status is StepStatus.PENDING:
                    await ex.run_node(node)
                if node.status is StepStatus.FAILED:
                    failed = node
                    break
                if node.status not in DONE:  # the log gave up, or a halt: not completed
                    stop_error = RetryCancelled(node.name, None)
                    break
                instance.left -= 1
        except BaseException as exc:  # cancelled (a stop, a shutdown): exit with it
            await asyncio.shield(self.exit(placement, manager, is_async, exc))
            raise
        error = failed.exc if failed is not None else stop_error
        try:
            await self.exit(placement, manager, is_async, error)
        except Exception as exc:
            if failed is not None:
                ex.fail_step_of_part(st, failed)
            else:
                ex.fail(st, exc)
            return
        if failed is not None:
            ex.fail_step_of_part(st, failed)
            return
        if stop_error is not None:
            st.status = StepStatus.PENDING  # not completed: run again if the run resumes
            return
        await self.close(st)

    async def exit(
        self, placement: Placement, manager: Any, is_async: bool, error: BaseException | None
    ) -> Any:
        info = (type(error), error, error.__traceback__) if error is not None else (None,) * 3
        method = manager.__aexit__ if is_async else manager.__exit__
        return await self.in_place(placement, functools.partial(method, *info))

    async def in_place(self, placement: Placement, fn: Any) -> Any:
        """Call ``fn`` where the group's steps run: in its context, in its thread (or on the
        loop when it returns an awaitable, as an async context manager's methods do)."""
        if asyncio.iscoroutinefunction(fn) or (
            isinstance(fn, functools.partial) and asyncio.iscoroutinefunction(fn.func)
        ):
            task = asyncio.get_running_loop().create_task(fn(), context=placement.context)
            return await task
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            placement.threads, functools.partial(placement.context.run, fn)
        )


def halt_in_around_error(name: str) -> StepResultError:
    return StepResultError(
        f"step {name!r} returned Halt inside an around group: the group's context (a "
        "transaction) cannot stay open while the run waits; halt before or after the group"
    )


def _records_by_part(records: dict[str, Any]) -> dict[str, list[str]]:
    """Each recorded step's name under every part around it (``each[3].pay.x`` under
    ``each``, ``each[3].pay``...), read once a round: a resumed map of a thousand elements
    with a part in each must not scan every record once per part."""
    by_part: dict[str, list[str]] = {}
    for name in records:
        for cut, char in enumerate(name):
            if char in ".[" and cut:
                by_part.setdefault(name[:cut], []).append(name)
    return by_part
