"""Server-side batching: concurrent requests to one signature run as one call.

Follows TF Serving's BasicBatchScheduler: a queue per (model, version,
signature); a batch closes when it holds ``max_batch_size`` rows or its oldest
request has waited ``batch_timeout_micros``; at most ``num_batch_threads``
batches run at once (closed batches wait for a thread); a queue holding more
than ``max_enqueued_batches`` full batches turns new requests away
(UNAVAILABLE). Requests are never split, so a request larger than
``max_batch_size`` is refused. Every zoo signature treats rows independently
(see the seed contract), so batched results equal unbatched ones.

The queues live on the server's event loop: a request costs a future and a
list append, and only whole batches cross to a thread.
"""
import asyncio
import collections
import concurrent.futures
import time

import numpy as np

from serving.errors import ServingError


class _Task:
    __slots__ = ("inputs", "rows", "enqueued", "future")

    def __init__(self, inputs, rows, future):
        self.inputs = inputs
        self.rows = rows
        self.enqueued = time.monotonic()
        self.future = future


def execute(signature, tasks):
    """Runs ``tasks`` as one call; returns per task its outputs or its exception.

    When the merged call fails, each request runs alone, so one bad request
    cannot fail the others.
    """
    if len(tasks) == 1:
        try:
            return [signature(tasks[0].inputs)]
        except Exception as err:
            return [err]
    try:
        merged = {name: np.concatenate([t.inputs[name] for t in tasks]) for name in tasks[0].inputs}
        result = signature(merged)
        bounds = np.cumsum([0] + [t.rows for t in tasks])
        return [{k: v[a:b] for k, v in result.items()} for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    except Exception:
        results = []
        for task in tasks:
            try:
                results.append(signature(task.inputs))
            except Exception as single:
                results.append(single)
        return results


class Batcher:
    """Merges concurrent requests per key into batched signature calls.

    Use it from one asyncio event loop (``await batcher.run(...)``).

    Args:
        max_batch_size: most rows in one batch.
        batch_timeout_micros: longest wait of a batch's first request for others.
        max_enqueued_batches: queue bound, in batches, per key.
        num_batch_threads: batches running at once, each on its own thread.
        on_batch: ``f(key, rows, seconds)`` called after each batch ran.
    """

    def __init__(self, max_batch_size=1000, batch_timeout_micros=0, max_enqueued_batches=10,
                 num_batch_threads=1, on_batch=None):
        if max_batch_size < 1 or num_batch_threads < 1 or max_enqueued_batches < 1:
            raise ValueError("max_batch_size, num_batch_threads and max_enqueued_batches must be >= 1")
        self.max_batch_size = int(max_batch_size)
        self.timeout = batch_timeout_micros / 1e6
        self.max_enqueued_batches = int(max_enqueued_batches)
        self.num_batch_threads = int(num_batch_threads)
        self.on_batch = on_batch
        self.pool = concurrent.futures.ThreadPoolExecutor(self.num_batch_threads,
                                                          thread_name_prefix="genzoo-batch")
        self.queues = {}  # key -> deque of _Task
        self.queued_rows = collections.Counter()
        self.signatures = {}
        self.timers = {}  # key -> TimerHandle closing its batch
        self.due = collections.deque()  # keys with a closed batch waiting for a thread
        self.running = 0
        self.closed = False
        self.batch_sizes = collections.Counter()  # rows per executed batch (for tests/metrics)

    async def run(self, key, signature, inputs, rows):
        """Enqueues a request and waits for its rows of the batch's outputs."""
        if self.closed:
            raise ServingError("UNAVAILABLE", "The server is shutting down")
        if rows > self.max_batch_size:
            raise ServingError("INVALID_ARGUMENT",
                               f"Task size {rows} is larger than maximum batch size "
                               f"{self.max_batch_size} (batching_parameters_file)")
        if self.queued_rows[key] + rows > self.max_enqueued_batches * self.max_batch_size:
            raise ServingError("UNAVAILABLE",
                               "The batch scheduling queue to which this task was submitted is full")
        loop = asyncio.get_running_loop()
        task = _Task(inputs, rows, loop.create_future())
        queue = self.queues.setdefault(key, collections.deque())
        queue.append(task)
        self.queued_rows[key] += rows
        self.signatures[key] = signature
        if self.queued_rows[key] >= self.max_batch_size:
            self._close(key)
        elif len(queue) == 1:
            self.timers[key] = loop.call_at(loop.time() + self.timeout, self._close, key)
        return await task.future

    def _close(self, key):
        """The batch of ``key`` is complete: queue it for a thread."""
        timer = self.timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key not in self.due:
            self.due.append(key)
        self._dispatch()

    def _take(self, key):
        """Pops up to max_batch_size rows of live requests off ``key``'s queue."""
        queue, tasks, rows = self.queues[key], [], 0
        while queue and rows + queue[0].rows <= self.max_batch_size:
            task = queue.popleft()
            self.queued_rows[key] -= task.rows
            if not task.future.done():  # else it timed out or its client left
                tasks.append(task)
                rows += task.rows
        if queue:  # what is left starts the next batch
            loop = asyncio.get_running_loop()
            if self.queued_rows[key] >= self.max_batch_size:
                self.due.append(key)
            elif key not in self.timers:
                due = loop.time() + max(0.0, queue[0].enqueued + self.timeout - time.monotonic())
                self.timers[key] = loop.call_at(due, self._close, key)
        return tasks

    def _dispatch(self):
        loop = asyncio.get_running_loop()
        while self.running < self.num_batch_threads and self.due:
            key = self.due.popleft()
            tasks = self._take(key)
            if not tasks:
                continue
            self.running += 1
            done = loop.run_in_executor(self.pool, self._execute, key, self.signatures[key], tasks)
            done.add_done_callback(lambda f, tasks=tasks: self._finish(tasks, f))

    def _execute(self, key, signature, tasks):
        start = time.perf_counter()
        results = execute(signature, tasks)
        rows = sum(t.rows for t in tasks)
        self.batch_sizes[rows] += 1
        if self.on_batch is not None:
            self.on_batch(key, rows, time.perf_counter() - start)
        return results

    def _finish(self, tasks, done):
        self.running -= 1
        try:
            results = done.result()
        except BaseException as err:  # the pool itself failed (shutdown)
            results = [ServingError("UNAVAILABLE", f"batch not run: {err}")] * len(tasks)
        for task, result in zip(tasks, results, strict=True):
            if task.future.done():
                continue
            if isinstance(result, BaseException):
                task.future.set_exception(result)
            else:
                task.future.set_result(result)
        if not self.closed:
            self._dispatch()

    def close(self):
        """Refuses new requests, fails the queued ones, stops the threads."""
        self.closed = True
        for timer in self.timers.values():
            timer.cancel()
        for queue in self.queues.values():
            for task in queue:
                if not task.future.done():
                    task.future.set_exception(ServingError("UNAVAILABLE", "The server is shutting down"))
            queue.clear()
        self.pool.shutdown(wait=False)
