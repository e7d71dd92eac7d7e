"""Dynamic batching: concurrent requests for the same graph and input shapes are merged into one
onnxruntime call, which costs about as much as a single request for small models.

One batch per queue runs at a time, in a worker thread (onnxruntime releases the GIL) while the
event loop goes on parsing requests, or on the event loop itself for graphs that run faster than
a thread hand-off; whatever arrived meanwhile forms the next batch. So a lone
request is never delayed, and under load batches grow by themselves up to `max_batch_size`
samples. `batch_timeout_micros` (TF Serving's name) additionally holds a batch that is not full
for up to that long, waiting for more requests: more throughput, more latency.
"""

import asyncio
import collections
import time

import numpy as np


class QueueFullError(Exception):
    """Too many samples are waiting: the server is overloaded (HTTP 503, TF's UNAVAILABLE)."""


class _Pending:
    __slots__ = ("arrays", "size", "future", "enqueued")

    def __init__(self, arrays, size, future):
        self.arrays, self.size, self.future, self.enqueued = arrays, size, future, time.perf_counter()


class Batcher:
    """Merges `submit` calls with the same key into batched `run(key, arrays)` calls.

    `run` is called in `executor` with one array per input (samples along axis 0) and returns one
    array per output. `on_batch(size)` is told the size of each batch run (for metrics).
    """

    def __init__(self, run, executor, max_batch_size=64, batch_timeout_micros=0, max_enqueued_batches=100, on_batch=None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}.")
        self._run = run
        self._executor = executor
        self.max_batch_size = int(max_batch_size)
        self._timeout = max(0.0, batch_timeout_micros / 1e6)
        self._max_queued = int(max_enqueued_batches) * self.max_batch_size
        self._on_batch = on_batch
        self._queues = {}
        self._workers = {}
        self._arrived = {}
        self.queued_samples = 0

    def submit(self, key, arrays, inline=False):
        """A future of this request's outputs (its rows of each batched output). `inline`: run the
        batch on the event loop rather than in the executor (for graphs faster than a thread hand-off)."""
        size = int(arrays[0].shape[0]) if arrays and arrays[0].ndim else 1
        if self.queued_samples and self.queued_samples + size > self._max_queued:  # an idle queue takes any request
            raise QueueFullError(f"the batching queue holds {self.queued_samples} samples, its limit is {self._max_queued}")
        loop = asyncio.get_running_loop()
        pending = _Pending(arrays, size, loop.create_future())
        self._queues.setdefault(key, collections.deque()).append(pending)
        self.queued_samples += size
        arrived = self._arrived.get(key)
        if arrived is not None:
            arrived.set()
        if key not in self._workers:
            self._workers[key] = loop.create_task(self._drain(key, inline))
        return pending.future

    async def _drain(self, key, inline):
        """Run batches for one key until its queue is empty."""
        queue = self._queues[key]
        try:
            while queue:
                if self._timeout and sum(p.size for p in queue) < self.max_batch_size:
                    await self._wait_for_more(key, queue)
                batch = self._take(queue)
                await self._run_batch(key, batch, inline)
        finally:
            del self._workers[key]
            if not queue:
                del self._queues[key]

    async def _wait_for_more(self, key, queue):
        deadline = queue[0].enqueued + self._timeout
        while sum(p.size for p in queue) < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            event = self._arrived[key] = asyncio.Event()
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                return
            finally:
                self._arrived.pop(key, None)

    def _take(self, queue):
        """Whole requests up to max_batch_size samples (a larger request runs alone)."""
        batch = [queue.popleft()]
        total = batch[0].size
        while queue and total + queue[0].size <= self.max_batch_size:
            total += queue[0].size
            batch.append(queue.popleft())
        self.queued_samples -= total
        return batch

    async def _run_batch(self, key, batch, inline):
        live = [p for p in batch if not p.future.done()]  # requests that timed out are dropped
        if not live:
            return
        if len(live) == 1:
            arrays = live[0].arrays
        else:
            arrays = [np.concatenate([p.arrays[i] for p in live]) for i in range(len(live[0].arrays))]
        if self._on_batch is not None:
            self._on_batch(sum(p.size for p in live))
        try:
            if inline:
                outputs = self._run(key, arrays)
                await asyncio.sleep(0)  # let the requests that arrived meanwhile be parsed into the next batch
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._run, key, arrays)
        except Exception as error:
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        start = 0
        for pending in live:
            end = start + pending.size
            if not pending.future.done():
                pending.future.set_result(outputs if len(live) == 1 else [o[start:end] for o in outputs])
            start = end
