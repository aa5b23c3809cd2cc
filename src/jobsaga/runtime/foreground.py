"""A node run in the foreground of its process (``Node.run``, what ``jobsaga worker`` does):
its own event loop, and what the operator's stop signals do.

The first SIGTERM or SIGINT starts a warm shutdown (the node stops fetching and waits up to
its grace period for running jobs); a second ends the grace period at once (a forced stop:
running jobs are interrupted as at its end, and what is recorded stays true: an async perform
that stopped is written back, a job whose code still runs in a thread is held); a third exits
the process there and then, leaving its running jobs to the lifeline, as a crash would. Each
signal is answered in words, so a person pressing Ctrl-C knows what they started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("jobsaga.runtime.node")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_in_foreground(node: Node, announce: Callable[[str], None] | None = None) -> None:
    """Run ``node`` on a new event loop until a stop signal, then stop it (see the module
    docstring for what each signal does). ``announce`` is told when the node is ready and
    what each signal does (default: the log, at INFO)."""
    say = announce or (lambda text: log.info("node %s: %s", node.name, text))

    def on_signal(sig: signal.Signals) -> None:
        node.signals += 1
        try:
            say(signal_text(node, sig))
        finally:
            if node.signals == 1:
                node.request_stop()
            elif node.signals == 2:
                node.request_stop(force=True)
            else:
                sys.stderr.flush()
                sys.stdout.flush()
                os._exit(128 + sig.value)

    # The loop's default executor (``asyncio.to_thread``), ours so that the stop can let go
    # of it: asyncio.run() would otherwise wait, without end, for a thread of it that outlived
    # its cancelled caller (an async perform's). Idle ones end at once.
    default_threads = ThreadPoolExecutor(thread_name_prefix="asyncio")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(default_threads)
        # Before start(): jobs already run while plugins start, and a SIGTERM in that window
        # must stop the node gracefully rather than kill it with jobs executing.
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await node.start()
        except BaseException:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
            raise
        say("ready (Ctrl-C to stop)")
        try:
            await node.wait_stopped()
        finally:
            try:
                await node.stop()  # the handlers stay meanwhile: a second signal forces it
            finally:
                for sig in STOP_SIGNALS:
                    loop.remove_signal_handler(sig)
                # even when the stop failed: asyncio.run() would wait on its threads
                default_threads.shutdown(wait=False)
                loop.set_default_executor(ThreadPoolExecutor(1, thread_name_prefix="asyncio"))

    asyncio.run(main())


def signal_text(node: Node, sig: signal.Signals) -> str:
    """What a stop signal does now, for the operator who sent it."""
    again = "Ctrl-C" if sig == signal.SIGINT else sig.name
    running = node.running_jobs
    jobs = f"{running} running job{'' if running == 1 else 's'}"
    if node.signals == 1:
        if not running:
            return "warm shutdown: no job is running; stopping"
        return (
            f"warm shutdown: waiting up to {node.grace_period:g} s for {jobs} "
            f"({again} again to force)"
        )
    if node.signals == 2:
        return (
            f"forced shutdown: interrupting {jobs} now; an async perform is written back to "
            f"run again, a job whose code still runs in a thread stays executing until it "
            f"is rescued ({again} again to exit at once)"
        )
    return (
        f"exiting at once: {jobs} left executing under this node are rescued once its "
        "heartbeat lapses (rescue_after), their attempts counted"
    )
