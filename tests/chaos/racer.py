"""One racing inserter process: ``python -m tests.chaos.racer URL KEYS THREADS``.

Once connected, with its threads started, it prints ``ready`` and waits for a line on stdin
(the test sends it to every racer once all are ready, so the processes start together, with no
guessed head start); then each thread inserts a unique job for every key 0..KEYS-1 in its own
shuffled order. Prints one JSON line: how many inserts each key created (not a conflict), and
any errors raised.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from collections import Counter

from jobsaga import App

from .chaos_app import UniqueJob


def main() -> None:
    url, keys, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    app = App(url, workers=[UniqueJob])
    app.engine.get_job(0)  # connect before the start line
    created: Counter[int] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(threads + 1)
    go = threading.Event()

    def insert(seed: int) -> None:
        order = list(range(keys))
        random.Random(seed).shuffle(order)
        ready.wait()
        go.wait()
        for key in order:
            try:
                job = app.insert(UniqueJob.new({"key": key}))
            except Exception as exc:  # reported, and the test fails on it
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if not job.conflict:
                with lock:
                    created[key] += 1

    workers = [threading.Thread(target=insert, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    print("ready", flush=True)
    sys.stdin.readline()
    go.set()
    for worker in workers:
        worker.join()
    app.close()
    print(json.dumps({"created": {str(k): n for k, n in created.items()}, "errors": errors[:20]}))


if __name__ == "__main__":
    main()
