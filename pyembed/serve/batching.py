"""Batching concurrent embedding requests into one model call per model version.

Requests arriving within a few milliseconds of each other are encoded together: one sorted
``encode`` over all their texts wastes less on padding and runs the cores once, so 8 clients
get nearly the throughput of one big batch. A batch closes as soon as no further request is on
its way (continuous batching), never later than ``max_wait``. The model runs in one worker
thread (torch and ONNX Runtime use every core already); the event loop only queues and answers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from collections.abc import Callable

import numpy as np

Encode = Callable[[list[str]], np.ndarray]


@dataclasses.dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[np.ndarray]


class Batcher:
    """Collects jobs for one encode function and runs them together."""

    def __init__(
        self,
        encode: Encode,
        executor: concurrent.futures.Executor,
        *,
        max_texts: int = 256,
        max_wait: float = 0.005,
        on_batch: Callable[[int, int], None] | None = None,
        arriving: Callable[[], int] = lambda: 0,
    ) -> None:
        self.encode = encode
        self.arriving = arriving  # requests accepted but not yet queued here (being checked)
        self.on_batch = on_batch  # (requests, texts) of each batch, for metrics
        self.executor = executor
        self.max_texts = max_texts
        self.max_wait = max_wait
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def embed(self, texts: list[str]) -> np.ndarray:
        """The embeddings of ``texts``, encoded together with whatever else is waiting."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(texts, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0].texts)
            deadline = time.monotonic() + self.max_wait
            while size < self.max_texts:
                remaining = deadline - time.monotonic()
                # Wait only for requests known to be on their way: with none, the model would
                # idle for the whole window while every client waits for this batch.
                if remaining <= 0 or (self.queue.empty() and self.arriving() == 0):
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
                jobs.append(job)
                size += len(job.texts)
            texts = [text for job in jobs for text in job.texts]
            try:
                vectors = await loop.run_in_executor(self.executor, self.encode, texts)
            except Exception as exc:  # every waiting request learns what went wrong
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(jobs), len(texts))
            offset = 0
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(vectors[offset : offset + len(job.texts)])
                offset += len(job.texts)
