"""Server-side batching: concurrent requests to one signature run as one call.

Follows TF Serving's BasicBatchScheduler: a queue per (model, version,
signature); a batch closes when it holds ``max_batch_size`` rows or its oldest
request has waited ``batch_timeout_micros``; ``num_batch_threads`` threads run
batches; a queue holding more than ``max_enqueued_batches`` full batches turns
new requests away (UNAVAILABLE). Requests are never split, so a request larger
than ``max_batch_size`` is refused. Every zoo signature treats rows
independently (see the seed contract), so batched results equal unbatched ones.
"""
import collections
import concurrent.futures
import threading
import time

import numpy as np

from serving.errors import ServingError


class _Task:
    __slots__ = ("inputs", "rows", "enqueued", "future")

    def __init__(self, inputs, rows):
        self.inputs = inputs
        self.rows = rows
        self.enqueued = time.monotonic()
        self.future = concurrent.futures.Future()


class Batcher:
    """Merges concurrent requests per key into batched signature calls.

    Args:
        max_batch_size: most rows in one batch.
        batch_timeout_micros: longest wait of a batch's first request for others.
        max_enqueued_batches: queue bound, in batches, per key.
        num_batch_threads: threads running batches.
        on_batch: ``f(key, rows, seconds)`` called after each batch ran.
    """

    def __init__(self, max_batch_size=1000, batch_timeout_micros=0, max_enqueued_batches=10,
                 num_batch_threads=1, on_batch=None):
        if max_batch_size < 1 or num_batch_threads < 1 or max_enqueued_batches < 1:
            raise ValueError("max_batch_size, num_batch_threads and max_enqueued_batches must be >= 1")
        self.max_batch_size = int(max_batch_size)
        self.timeout = batch_timeout_micros / 1e6
        self.max_enqueued_batches = int(max_enqueued_batches)
        self.on_batch = on_batch
        self.queues = collections.OrderedDict()  # key -> deque of _Task
        self.signatures = {}
        self.cond = threading.Condition()
        self.closed = False
        self.batch_sizes = collections.Counter()  # rows per executed batch (for tests/metrics)
        self.threads = [threading.Thread(target=self._work, name=f"genzoo-batch-{i}", daemon=True)
                        for i in range(int(num_batch_threads))]
        for t in self.threads:
            t.start()

    def run(self, key, signature, inputs, rows):
        """Enqueues a request and blocks until its rows of the batch are ready."""
        return self.submit(key, signature, inputs, rows).result()

    def submit(self, key, signature, inputs, rows):
        """Enqueues a request; returns a concurrent.futures.Future of its outputs.

        Asynchronous front ends await it (``asyncio.wrap_future``) instead of
        holding a thread per waiting request.
        """
        if rows > self.max_batch_size:
            raise ServingError("INVALID_ARGUMENT",
                               f"Task size {rows} is larger than maximum batch size "
                               f"{self.max_batch_size} (batching_parameters_file)")
        task = _Task(inputs, rows)
        with self.cond:
            queue = self.queues.setdefault(key, collections.deque())
            queued = sum(t.rows for t in queue)
            if queued + rows > self.max_enqueued_batches * self.max_batch_size:
                raise ServingError("UNAVAILABLE",
                                   "The batch scheduling queue to which this task was submitted is full")
            self.signatures[key] = signature
            queue.append(task)
            self.cond.notify_all()
        return task.future

    def _take_batch(self):
        """Waits for a batch to close; returns (key, tasks) or None when closed."""
        with self.cond:
            while True:
                if self.closed:
                    return None
                now = time.monotonic()
                ready, wait = None, None
                for key, queue in self.queues.items():
                    if not queue:
                        continue
                    rows = sum(t.rows for t in queue)
                    due = queue[0].enqueued + self.timeout
                    if rows >= self.max_batch_size or now >= due:
                        ready = key
                        break
                    wait = due - now if wait is None else min(wait, due - now)
                if ready is not None:
                    queue, tasks, rows = self.queues[ready], [], 0
                    while queue and rows + queue[0].rows <= self.max_batch_size:
                        task = queue.popleft()
                        if task.future.set_running_or_notify_cancel():  # else timed out
                            tasks.append(task)
                            rows += task.rows
                    self.queues.move_to_end(ready)  # round robin over keys
                    if tasks:
                        return ready, tasks
                    continue  # only timed-out requests: look again
                self.cond.wait(wait)

    def _work(self):
        while True:
            item = self._take_batch()
            if item is None:
                return
            key, tasks = item
            signature = self.signatures[key]
            start = time.perf_counter()
            try:
                if len(tasks) == 1:
                    results = [signature(tasks[0].inputs)]
                else:
                    merged = {name: np.concatenate([t.inputs[name] for t in tasks])
                              for name in tasks[0].inputs}
                    result = signature(merged)
                    bounds = np.cumsum([0] + [t.rows for t in tasks])
                    results = [{k: v[a:b] for k, v in result.items()}
                               for a, b in zip(bounds[:-1], bounds[1:])]
                rows = sum(t.rows for t in tasks)
                self.batch_sizes[rows] += 1
                if self.on_batch is not None:
                    self.on_batch(key, rows, time.perf_counter() - start)
            except Exception as err:
                if len(tasks) == 1:
                    tasks[0].future.set_exception(err)
                    continue
                results = []  # one bad request must not fail the others: run them alone
                for task in tasks:
                    try:
                        results.append(signature(task.inputs))
                    except Exception as single:
                        results.append(single)
            for task, result in zip(tasks, results):
                if isinstance(result, Exception):
                    task.future.set_exception(result)
                else:
                    task.future.set_result(result)

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()
