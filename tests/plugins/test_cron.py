"""Cron on both engines: each tick once, caught up across a leader change, carried in meta."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jobsaga
from jobsaga import App, CronEntry, Worker
from jobsaga.plugins.cron import insert_due, sync_entries
from tests.helpers import wait_until

from .support import FakeClock, rows


class Tick(Worker, name="tests.cron.Tick", queue="cron"):
    def perform(self, job: jobsaga.Job[dict[str, Any]]) -> None:
        return None


def cron_jobs(app: App) -> list[jobsaga.Job[Any]]:
    found = rows(app, "SELECT id FROM jobsaga_jobs ORDER BY id")
    jobs = [app.get_job(int(r["id"])) for r in found]
    return [j for j in jobs if j is not None and j.meta.get("cron")]


def test_each_tick_once_with_meta(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    app = make_app(Tick, clock=clock)
    entries = [
        CronEntry("*/5 * * * *", Tick, args={"n": 1}, name="five", priority=2),
        CronEntry("0 * * * *", Tick, name="hourly"),
    ]
    sync_entries(app, entries)
    assert insert_due(app, entries) == []  # a new entry starts with its next tick
    clock.advance(4 * 60 + 59)
    assert insert_due(app, entries) == []
    clock.advance(1)  # 12:05:00
    (job,) = insert_due(app, entries)
    assert job.meta["cron_expr"] == "*/5 * * * *" and job.meta["cron_name"] == "five"
    assert job.meta["cron_tick"].startswith("2026-03-01T12:05:00")
    assert job.args == {"n": 1} and job.priority == 2 and job.queue == "cron"
    assert insert_due(app, entries) == []  # same instant again: nothing
    clock.advance(30)
    assert insert_due(app, entries) == []


def test_nodes_racing_insert_each_tick_once(make_app: Callable[..., App]) -> None:
    """Three nodes run cron at the same instants over three hours of minute ticks (a test
    clock): every tick of every entry is inserted exactly once."""
    clock = FakeClock()
    apps = [make_app(Tick, clock=clock) for _ in range(3)]
    entries = [
        CronEntry("* * * * *", Tick, name="every-minute"),
        CronEntry("*/15 * * * *", Tick, name="quarter", args={"k": 15}),
    ]
    sync_entries(apps[0], entries)
    inserted: list[int] = []
    lock = threading.Lock()
    for _ in range(180):
        clock.advance(60)
        barrier = threading.Barrier(len(apps))

        def run(app: App, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            jobs = insert_due(app, entries)
            with lock:
                inserted.extend(j.id for j in jobs)

        threads = [threading.Thread(target=run, args=(a,)) for a in apps]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    jobs = cron_jobs(apps[0])
    for name, count in (("every-minute", 180), ("quarter", 12)):
        ticks = [j.meta["cron_tick"] for j in jobs if j.meta["cron_name"] == name]
        assert len(ticks) == len(set(ticks)) == count
    assert len(inserted) == 192


def test_missed_ticks_caught_up_within_window(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    app = make_app(Tick, clock=clock)
    entries = [CronEntry("* * * * * */10", Tick, name="ten")]
    sync_entries(app, entries)
    clock.advance(35)  # a leader change: three ticks passed unseen
    assert len(insert_due(app, entries)) == 3
    clock.advance(3600)  # the cluster was down for an hour: only the last minute is caught up
    jobs = insert_due(app, entries, catch_up=60)
    assert len(jobs) == 6


def test_reboot_entry_and_listing(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    app = make_app(Tick, clock=clock)
    entries = [CronEntry("@reboot", Tick, name="boot"), CronEntry("@daily", "tests.cron.Tick")]
    sync_entries(app, entries)
    assert insert_due(app, entries) == []
    clock.advance(1)
    (job,) = insert_due(app, entries, reboot=True)
    assert job.meta["cron_name"] == "boot"
    [boot] = rows(app, "SELECT ticks FROM jobsaga_cron WHERE name = 'boot'")
    assert boot["ticks"] == 1  # `cron list` shows the boot's job as a tick
    listed = rows(app, "SELECT name, expression, worker FROM jobsaga_cron ORDER BY name")
    assert sorted(r["name"] for r in listed) == sorted([entries[1].key, "boot"])
    sync_entries(app, entries[:1])  # an entry left the crontab: it is no longer listed
    assert [r["name"] for r in rows(app, "SELECT name FROM jobsaga_cron")] == ["boot"]


def test_node_runs_cron_and_performs_the_jobs(make_app: Callable[..., App]) -> None:
    """The node's cron inserts a tick's job once the app's clock has passed it: a test clock,
    moved a second at a time, the cron woken rather than waited for."""
    clock = FakeClock()
    app = make_app(Tick, clock=clock)
    events: list[tuple[str, dict[str, Any]]] = []
    app.telemetry.attach("t", "plugin.cron.stop", lambda e, m, md: events.append((e, dict(m))))
    crontab = [("* * * * * *", Tick, {"name": "every-second"}), ("@reboot", Tick)]
    node = app.node({"cron": 5}, poll_interval=0.05, crontab=crontab, heartbeat_interval=0.2)
    cron = node.plugins.cron
    assert cron is not None
    with node.start_in_thread():
        wait_until(lambda: node.plugins.is_leader and cron.runs >= 1, 5)  # entries registered
        for _ in range(2):
            clock.advance(1)
            cron.wake()
        wait_until(
            lambda: len([j for j in cron_jobs(app) if j.state.value == "completed"]) >= 3, 10
        )
    jobs = cron_jobs(app)
    names = [j.meta["cron_name"] for j in jobs]
    assert names.count(CronEntry("@reboot", Tick).key) == 1
    ticks = [j.meta["cron_tick"] for j in jobs if j.meta["cron_name"] == "every-second"]
    assert len(ticks) == len(set(ticks)) >= 2
    assert any(m["inserted"] >= 1 for _, m in events)


def test_new_leader_catches_up_ticks_of_the_gap(make_app: Callable[..., App]) -> None:
    """The second node takes over after the first stops and inserts the ticks in between.

    A test clock: two ticks pass under the first leader, then three more as it stops (its
    cron, which just ran, sleeps a real second meanwhile), which the second inserts when it
    takes over; then one more under it."""
    clock = FakeClock()
    first, second = make_app(Tick, clock=clock), make_app(Tick, clock=clock)
    crontab = [CronEntry("* * * * * *", Tick, name="s")]
    options: dict[str, Any] = {"poll_interval": 0.05, "crontab": crontab, "leader_lease": 1.0}
    a = first.node({"other": 1}, name="a", **options)
    b = second.node({"other": 1}, name="b", **options)
    a_cron, b_cron = a.plugins.cron, b.plugins.cron
    assert a_cron is not None and b_cron is not None
    with a.start_in_thread() as ta:
        wait_until(lambda: a.plugins.is_leader and a_cron.runs >= 1, 5)  # entry registered
        with b.start_in_thread():
            for count in (1, 2):
                clock.advance(1)
                a_cron.wake()
                wait_until(lambda count=count: len(cron_jobs(first)) == count, 5)
            clock.advance(3)
            ta.stop()
            wait_until(lambda: b.plugins.is_leader, 5)
            wait_until(lambda: len(cron_jobs(first)) == 5, 5)  # the gap, caught up
            clock.advance(1)
            b_cron.wake()
            wait_until(lambda: len(cron_jobs(first)) == 6, 5)
    ticks = sorted(j.meta["cron_tick"] for j in cron_jobs(first))
    assert len(ticks) == len(set(ticks))
    from datetime import datetime

    times = [datetime.fromisoformat(t) for t in ticks]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g == timedelta(seconds=1) for g in gaps), ticks
    assert times[-1] == clock() and len(times) == 6


def test_a_duty_woken_from_another_thread_runs_at_once(make_app: Callable[..., App]) -> None:
    """A looper reckons its sleep on the app's clock (cron: until the next tick); a test that
    moves that clock wakes it from the test's thread, and it runs at once, not when the sleep
    it began (half a minute here) ends, or some other timer happens to stir the loop."""
    clock = FakeClock()
    app = make_app(Tick, clock=clock)
    quiet: dict[str, Any] = {
        "poll_interval": 30,
        "stage_interval": 30,
        "control_interval": 30,
        "heartbeat_interval": 20,
        "rescue_after": 60,
        "leader_lease": 60,
    }
    node = app.node({"other": 1}, crontab=[CronEntry("*/5 * * * *", Tick)], **quiet)
    cron = node.plugins.cron
    assert cron is not None
    with node.start_in_thread():
        wait_until(lambda: cron.runs >= 1, 5)  # registered; the next tick is 300 s away
        clock.advance(300)
        woken = time.monotonic()
        cron.wake()
        wait_until(lambda: cron_jobs(app), 10)
        took = time.monotonic() - woken
    assert took < 0.5, f"the woken cron ran {took:.2f}s later"


def recorded(app: App) -> dict[str, int]:
    return {r["name"]: int(r["ticks"]) for r in rows(app, "SELECT name, ticks FROM jobsaga_cron")}


def test_an_unnamed_entry_continues_the_row_of_its_former_name(
    make_app: Callable[..., App],
) -> None:
    """Unnamed entries were recorded as "<schedule> <worker>" before names were derived from
    a hash. An upgraded leader carries that row's last tick over to the new name: the tick an
    old leader inserted is not inserted again, and the one it missed is caught up."""
    clock = FakeClock()
    app = make_app(Tick, clock=clock)
    # what a leader of the former release recorded and inserted, to the row
    former = [CronEntry("* * * * *", Tick, args={"n": 1}, name="* * * * * tests.cron.Tick")]
    sync_entries(app, former)
    clock.advance(60)  # 12:01:00
    assert [j.meta["cron_name"] for j in insert_due(app, former)] == [former[0].key]

    upgraded = [CronEntry("* * * * *", Tick, args={"n": 1})]
    (entry,) = upgraded
    assert entry.legacy_key == former[0].key != entry.key
    clock.advance(20)  # 12:01:20, the same tick: the upgraded leader takes over
    sync_entries(app, upgraded)
    assert recorded(app) == {entry.key: 1}  # one row, its count carried over
    assert insert_due(app, upgraded) == []  # 12:01 was inserted under the former name
    clock.advance(60)  # 12:02:20
    (job,) = insert_due(app, upgraded)
    assert job.meta["cron_name"] == entry.key and job.meta["cron_tick"].startswith(
        "2026-03-01T12:02:00"
    )
    assert len(cron_jobs(app)) == 2 and recorded(app) == {entry.key: 2}


def test_a_tick_the_former_leader_missed_is_caught_up_once_under_the_new_name(
    make_app: Callable[..., App],
) -> None:
    clock = FakeClock()
    app = make_app(Tick, clock=clock)
    former = [CronEntry("* * * * *", Tick, name="* * * * * tests.cron.Tick")]
    sync_entries(app, former)  # last tick 12:00:00; the old leader dies before 12:01
    upgraded = [CronEntry("* * * * *", Tick)]
    clock.advance(90)  # 12:01:30
    sync_entries(app, upgraded)
    assert [j.meta["cron_tick"][11:19] for j in insert_due(app, upgraded)] == ["12:01:00"]
    assert insert_due(app, upgraded) == []


def test_leaders_of_both_releases_in_turn_never_insert_a_tick_twice(
    make_app: Callable[..., App],
) -> None:
    """Leadership goes old -> new -> old -> new within minutes (a rolling upgrade that
    flaps): each row's last tick is the later of the two when the new one takes over."""
    clock = FakeClock()
    app = make_app(Tick, clock=clock)
    former = [CronEntry("* * * * *", Tick, name="* * * * * tests.cron.Tick")]
    upgraded = [CronEntry("* * * * *", Tick)]
    inserted = []
    for crontab in (former, upgraded, former, upgraded):
        sync_entries(app, crontab)
        for _ in range(3):
            clock.advance(30)
            inserted += [j.meta["cron_tick"] for j in insert_due(app, crontab)]
    assert len(inserted) == len(set(inserted))
    # the old release re-registered its row at its second term (from "now", so it neither
    # repeated nor caught up); every tick from then on was inserted once
    assert len(inserted) >= 5


def test_a_former_row_of_other_options_is_not_taken_over(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    app = make_app(Tick, clock=clock)
    former = [CronEntry("* * * * *", Tick, args={"n": 1}, name="* * * * * tests.cron.Tick")]
    sync_entries(app, former)
    clock.advance(60)
    assert len(insert_due(app, former)) == 1
    other = [CronEntry("* * * * *", Tick, args={"n": 2})]  # another entry, not a rename
    sync_entries(app, other)
    assert recorded(app) == {other[0].key: 0}  # a new entry: it starts with its next tick
    clock.advance(60)
    assert len(insert_due(app, other)) == 1


def test_a_former_row_written_meanwhile_moves_the_new_one_forward(
    make_app: Callable[..., App],
) -> None:
    """Both rows exist when a node of the former release inserted ticks (registering its row
    again) after the new row was made: the new row takes the later last tick."""
    clock = FakeClock()
    app = make_app(Tick, clock=clock)
    former = [CronEntry("* * * * *", Tick, name="* * * * * tests.cron.Tick")]
    upgraded = [CronEntry("* * * * *", Tick)]
    sync_entries(app, upgraded)  # the new row: last tick 12:00:00
    clock.advance(30)
    assert insert_due(app, former) == []  # the former row registered afresh at 12:00:30
    clock.advance(40)  # 12:01:10
    assert len(insert_due(app, former)) == 1  # 12:01 under the former name
    sync_entries(app, upgraded)
    assert insert_due(app, upgraded) == []  # not 12:01 again
    assert recorded(app) == {upgraded[0].key: 0}
    clock.advance(60)
    assert len(insert_due(app, upgraded)) == 1
