"""A small HTTP translation service with request batching (chapter 17).

Translating one sentence at a time leaves most of the CPU's arithmetic idle: the matrix
products of a decoding step cost little more for 16 rows than for 1. When requests arrive
close together, the service therefore waits a few milliseconds for company and translates
them as one batch:

- every request puts its text and a future into a queue and waits for the future;
- one worker takes the first waiting request, collects whatever else arrives within
  ``max_wait_ms`` (up to ``max_batch_size`` requests), translates the batch in a worker
  thread (the event loop keeps accepting requests meanwhile), and resolves the futures.

Endpoints: ``POST /translate`` ``{"text": "..."}`` -> ``{"translation": "..."}``,
``GET /health`` and ``GET /stats`` (how many batches of which sizes were run).

    transformer-course translator serve --port 8000     # the course's checkpoint
    curl -s localhost:8000/translate -H 'content-type: application/json' \\
        -d '{"text": "Ein Mann liest ein Buch."}'
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

from .translator import Translator

__all__ = ["BatchingTranslator", "TranslationRequest", "create_app", "model_thread",
           "BackgroundServer", "serve"]


def model_thread() -> ThreadPoolExecutor:
    """The single thread that runs the model, off the event loop.

    Load the model in it too where you can (``executor.submit(load_translator, ...)``), as
    ``transformer-course translator serve`` does. PyTorch's CPU kernels run on OpenMP thread
    teams, one per Python thread that calls them; when a second thread has its own team, the
    teams together outnumber the cores and OpenMP stops spinning between operations. Every
    small operation of a decoding step then waits for its helper threads to wake up:
    measured here, one sentence took 126 ms when the model had been loaded in the main thread
    and translated in this one, and 45 ms when this thread did both.
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="translate")


class BatchingTranslator:
    """Collects concurrent :meth:`translate` calls into batches for one :class:`Translator`.

    Args:
        translator: the model and tokenizer.
        max_batch_size: most sentences translated together; 1 turns batching off.
        max_wait_ms: how long the first request of a batch waits for others to join it.
        beam_size, length_penalty: decoding settings, as in :meth:`Translator.translate`.
        executor: the thread that runs the model (:func:`model_thread`); by default one is
            created by :meth:`start` and shut down by :meth:`stop`.
    """

    def __init__(self, translator: Translator, max_batch_size: int = 16,
                 max_wait_ms: float = 5.0, beam_size: int = 1, length_penalty: float = 0.6,
                 executor: ThreadPoolExecutor | None = None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.translator = translator
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._executor = executor
        self._owns_executor = executor is None

    async def start(self) -> None:
        """Start the worker (call from the event loop that will serve the requests)."""
        self._queue = asyncio.Queue()
        # One thread runs the model: batches are translated one after the other, off the
        # event loop, which keeps accepting (and queueing) requests meanwhile.
        if self._executor is None:
            self._executor = model_thread()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        if self._executor is not None and self._owns_executor:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def translate(self, text: str) -> str:
        """Queue one sentence and wait for its translation."""
        if self._queue is None:
            raise RuntimeError("call start() before translate()")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((text, future))
        return await future

    def _translate_batch(self, texts: list[str]) -> list[str]:
        return self.translator.translate(texts, beam_size=self.beam_size,
                                         length_penalty=self.length_penalty,
                                         batch_size=len(texts))

    async def _collect(self) -> list[tuple[str, asyncio.Future]]:
        """The next batch: the first waiting request and those arriving within max_wait."""
        batch = [await self._queue.get()]  # sleep until there is work
        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            # Poll every half millisecond: simpler than racing a timeout against queue.get(),
            # which can drop an item when the two finish together.
            await asyncio.sleep(min(remaining, 0.0005))
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            texts = [text for text, _ in batch]
            try:
                results = await loop.run_in_executor(self._executor, self._translate_batch,
                                                     texts)
            except Exception as error:  # the requests fail, the service keeps running
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batch_sizes[len(batch)] += 1
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # a client that gave up cancelled its future
                    future.set_result(result)

    def stats(self) -> dict:
        batches = sum(self.batch_sizes.values())
        requests = sum(size * count for size, count in self.batch_sizes.items())
        return {
            "requests": requests,
            "batches": batches,
            "mean_batch_size": requests / batches if batches else 0.0,
            "batch_sizes": {str(size): count for size, count in sorted(self.batch_sizes.items())},
        }


class TranslationRequest(BaseModel):
    """The body of ``POST /translate``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored
    text: str


def create_app(translator: Translator, max_batch_size: int = 16, max_wait_ms: float = 5.0,
               beam_size: int = 1, max_chars: int = 1000,
               executor: ThreadPoolExecutor | None = None) -> FastAPI:
    """The FastAPI application serving ``translator``.

    Bad requests get a 4xx answer with a message: 422 for a body that is not JSON, lacks
    ``text``, has other fields, has a ``text`` that is not a string or is blank, and 413 for
    a text longer than ``max_chars`` characters. ``executor``: the thread that runs the model
    (see :func:`model_thread`).
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    batcher = BatchingTranslator(translator, max_batch_size, max_wait_ms, beam_size,
                                 executor=executor)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="Transformers from Scratch: German-to-English translation",
                  lifespan=lifespan)
    app.state.batcher = batcher

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "parameters": sum(p.numel() for p in translator.model.parameters()),
            "max_batch_size": max_batch_size,
            "max_wait_ms": max_wait_ms,
            "beam_size": beam_size,
            "max_chars": max_chars,
        }

    @app.get("/stats")
    def stats() -> dict:
        return batcher.stats()

    @app.post("/translate")
    async def translate(request: TranslationRequest) -> dict:
        text = request.text
        if not text.strip():
            raise HTTPException(status_code=422, detail="text is empty: send a German sentence")
        if len(text) > max_chars:
            raise HTTPException(
                status_code=413,
                detail=f"text has {len(text)} characters; this service accepts at most "
                       f"{max_chars}: split it into sentences",
            )
        return {"translation": await batcher.translate(text)}

    return app


class BackgroundServer:
    """Run an app with uvicorn in a background thread (tests, notebooks, benchmarks).

    ``with BackgroundServer(app) as url:`` starts the server on 127.0.0.1 and a free port,
    waits until it accepts connections, yields its base URL, and shuts it down on exit.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                 timeout: float = 30.0):
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.host = host
        self.timeout = timeout
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url: str | None = None

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.perf_counter() + self.timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.perf_counter() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        # port=0 lets the system choose a free port; read back the one it chose.
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self.url

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=self.timeout)


def serve(translator: Translator, host: str = "127.0.0.1", port: int = 8000,
          max_batch_size: int = 16, max_wait_ms: float = 5.0, beam_size: int = 1,
          max_chars: int = 1000, executor: ThreadPoolExecutor | None = None) -> None:
    """Serve ``translator`` until interrupted (``transformer-course translator serve``);
    ``executor`` is the thread it was loaded in (:func:`model_thread`)."""
    import uvicorn

    app = create_app(translator, max_batch_size, max_wait_ms, beam_size, max_chars, executor)
    print(f"serving on http://{host}:{port} (POST /translate, GET /health, GET /stats)",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


if __name__ == "__main__":  # python -m transformer_course.serving ... = translator serve ...
    import sys

    from .cli import main

    sys.exit(main(["translator", "serve", *sys.argv[1:]]))
