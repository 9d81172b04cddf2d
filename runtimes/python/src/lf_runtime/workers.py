"""A small pool of daemon threads for sync handlers.

Why not `concurrent.futures.ThreadPoolExecutor`:
1. A sync handler stuck past its deadline cannot be killed. The executor's threads are joined at interpreter
   exit, so one stuck handler would keep a replica that wants to restart from ever exiting; ours are daemons.
2. The runtime hands results back itself (see `serving.py`), so the per-job `Future` would be pure overhead.

Threads start on demand, up to `max_threads`, and are reused (the executor's idle-semaphore scheme).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

Job = tuple[Callable[[Any], None], Any]


class WorkerPool:
    """Runs `func(arg)` jobs on daemon threads. `func` must not raise (the pool only guards itself)."""

    def __init__(self, max_threads: int, name: str = "lf-handler") -> None:
        self._max = max_threads
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []

    def submit(self, func: Callable[[Any], None], arg: Any) -> None:
        self._jobs.put((func, arg))
        if self._idle.acquire(blocking=False):
            return
        if len(self._threads) < self._max:
            thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    @property
    def size(self) -> int:
        return len(self._threads)

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                job[0](job[1])
            except BaseException:  # noqa: S110 - the job reports its own failures; the thread must live on
                pass
            del job
            self._idle.release()
