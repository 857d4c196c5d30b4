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

What one request can cost the others is bounded: a body larger than ``max_body_bytes`` is
refused (413) without being kept, from its Content-Length or as soon as the bytes received
pass the limit (:class:`BodySizeLimit`); a text that cannot be translated is refused (422)
before it joins a batch, and a batch that fails anyway is translated again one request at a
time, so only the request at fault gets an error; the queue holds at most ``max_queue``
requests (503 with Retry-After when full); every request has a deadline of ``timeout_s``
seconds (504); and a translation has at most ``1.5 x its source tokens + 10`` tokens,
whatever it was batched with.

    transformer-course translator serve --port 8000     # the course's checkpoint
    curl -s localhost:8000/translate -H 'content-type: application/json' \\
        -d '{"text": "Ein Mann liest ein Buch."}'
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from ..models.generation import beam_search, greedy_decode
from ..recipes.translator import Translator

__all__ = ["BatchingTranslator", "TranslationRequest", "create_app", "model_thread",
           "BackgroundServer", "serve", "BodySizeLimit", "ServiceBusy", "DeadlineExceeded",
           "default_max_body_bytes"]

log = logging.getLogger(__name__)


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


class ServiceBusy(Exception):
    """The queue is full: try again in ``retry_after`` seconds (HTTP 503)."""

    def __init__(self, retry_after: int):
        super().__init__(f"the translation queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class DeadlineExceeded(TimeoutError):
    """A request was not translated within its deadline (HTTP 504)."""


class BatchingTranslator:
    """Collects concurrent :meth:`translate` calls into batches for one :class:`Translator`.

    Args:
        translator: the model and tokenizer.
        max_batch_size: most sentences translated together; 1 turns batching off.
        max_wait_ms: how long the first request of a batch waits for others to join it.
        beam_size, length_penalty: decoding settings, as in :meth:`Translator.translate`.
        executor: the thread that runs the model (:func:`model_thread`); by default one is
            created by :meth:`start` and shut down by :meth:`stop`.
        max_queue: most requests waiting for a batch; one more raises :class:`ServiceBusy`.
        timeout_s: a request not answered within this many seconds raises
            :class:`DeadlineExceeded` (and leaves the queue if its batch has not started);
            None: no deadline.
        max_output_ratio, max_output_extra: a translation has at most
            ``int(max_output_ratio * source tokens) + max_output_extra`` tokens (and never
            more than the model's positions), computed for each request on its own: a short
            request batched with a long one is not allowed the long one's length. The defaults
            are :meth:`Translator.translate`'s limit for a sentence translated alone.

    A text that the translator's ``source_pieces`` check refuses (a ValueError: too many
    tokens for the model, say) is answered with that error and left out of its batch; a batch
    that raises anyway is translated again one request at a time, so that only the
    request(s) that fail alone get the error.
    """

    def __init__(self, translator: Translator, max_batch_size: int = 16,
                 max_wait_ms: float = 5.0, beam_size: int = 1, length_penalty: float = 0.6,
                 executor: ThreadPoolExecutor | None = None, *, max_queue: int = 128,
                 timeout_s: float | None = 30.0, max_output_ratio: float = 1.5,
                 max_output_extra: int = 10):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if not max_output_ratio > 0 or max_output_extra < 0:
            raise ValueError("max_output_ratio must be > 0 and max_output_extra >= 0, got "
                             f"{max_output_ratio} and {max_output_extra}")
        self.translator = translator
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.max_output_ratio = max_output_ratio
        self.max_output_extra = max_output_extra
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()
        self._batch_seconds = 0.0  # moving average, for Retry-After
        self._queue: asyncio.Queue | None = None
        self._waiting: set[asyncio.Future] = set()  # queued, not yet taken by the worker
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

    def retry_after(self) -> int:
        """Seconds until the queue has probably drained (at least 1), for Retry-After."""
        batches = len(self._waiting) / self.max_batch_size + 1
        return max(1, math.ceil(batches * self._batch_seconds))

    async def translate(self, text: str) -> str:
        """Queue one sentence and wait for its translation.

        Raises :class:`ServiceBusy` when ``max_queue`` requests are already waiting,
        :class:`DeadlineExceeded` after ``timeout_s`` seconds, and the translator's own error
        (a ValueError for a text it cannot encode) when the sentence fails on its own.
        """
        if self._queue is None:
            raise RuntimeError("call start() before translate()")
        if len(self._waiting) >= self.max_queue:
            self.counts["queue_full"] += 1
            raise ServiceBusy(self.retry_after())
        future = asyncio.get_running_loop().create_future()
        self._waiting.add(future)
        future.add_done_callback(self._waiting.discard)  # answered, failed or given up
        self._queue.put_nowait((text, future))
        try:
            # On timeout wait_for cancels the future: the worker skips it if still queued.
            return await asyncio.wait_for(future, self.timeout_s)
        except asyncio.TimeoutError:
            self.counts["timed_out"] += 1
            raise DeadlineExceeded(
                f"no translation within {self.timeout_s:g} s: the service is busy; try again "
                "later"
            ) from None

    def _decode(self, src, max_len: int) -> list[list[int]]:
        """``decode`` for :meth:`Translator.translate_with`, with each row's own length limit.

        ``max_len`` is the translator's limit for the whole padded batch, derived from its
        longest sentence; row i may have at most ``ratio * (its source tokens) + extra``."""
        model, tokenizer = self.translator.model, self.translator.tokenizer
        lengths = (src != tokenizer.pad_id).sum(dim=1).tolist()
        limits = [max(1, min(max_len, int(self.max_output_ratio * n) + self.max_output_extra))
                  for n in lengths]
        use_cache = getattr(model, "supports_cache", True)
        bos, eos = tokenizer.bos_id, tokenizer.eos_id
        if self.beam_size == 1:
            rows = greedy_decode(model, src, bos, eos, max(limits), use_cache=use_cache)
        else:
            rows = beam_search(model, src, self.beam_size, bos, eos, max(limits),
                               alpha=self.length_penalty, use_cache=use_cache)
        return [row[:limit] for row, limit in zip(rows, limits, strict=True)]

    def _translate_batch(self, texts: list[str]) -> list[str | ValueError]:
        """Translate ``texts`` together; a text the translator refuses on its own (its
        ``source_pieces`` check: too many tokens for the model, say) is left out of the batch
        and gets its ValueError instead of failing the others."""
        results: list[str | ValueError | None] = [None] * len(texts)
        readable = []
        for i, text in enumerate(texts):
            try:
                self.translator.source_pieces(text)
                readable.append(i)
            except ValueError as error:
                results[i] = error
        if readable:
            translations = self.translator.translate_with(
                [texts[i] for i in readable], self._decode, batch_size=len(readable))
            for i, translation in zip(readable, translations, strict=True):
                results[i] = translation
        return results

    async def _next(self) -> tuple[str, asyncio.Future]:
        """The oldest queued request that is still waiting (skips those that gave up)."""
        while True:
            text, future = await self._queue.get()
            self._waiting.discard(future)
            if not future.done():
                return text, future

    async def _collect(self) -> list[tuple[str, asyncio.Future]]:
        """The next batch: the first waiting request and those arriving within max_wait."""
        batch = [await self._next()]  # sleep until there is work
        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch_size:
            try:
                text, future = self._queue.get_nowait()
                self._waiting.discard(future)
                if not future.done():  # a request past its deadline left the queue
                    batch.append((text, future))
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

    async def _translate(self, texts: list[str]) -> list[str | ValueError]:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        results = await loop.run_in_executor(self._executor, self._translate_batch, texts)
        self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * (time.perf_counter() - start)
        translated = sum(isinstance(result, str) for result in results)
        if translated:
            self.batch_sizes[translated] += 1
        return results

    def _fail(self, future: asyncio.Future, error: Exception) -> None:
        self.counts["failed"] += 1
        if not future.done():
            future.set_exception(error)

    def _answer(self, future: asyncio.Future, result: str | ValueError) -> None:
        if isinstance(result, Exception):
            self._fail(future, result)
        elif not future.done():  # a client that gave up cancelled its future
            future.set_result(result)

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            try:
                results = await self._translate([text for text, _ in batch])
            except Exception as error:  # the service keeps running
                if len(batch) == 1:
                    self._fail(batch[0][1], error)
                    continue
                # One bad request must not fail the others: translate each one alone.
                self.counts["retried_batches"] += 1
                log.warning("a batch of %d requests failed (%s: %s); translating them one "
                            "at a time", len(batch), type(error).__name__, error)
                for text, future in batch:
                    if future.done():  # gave up (deadline) meanwhile
                        continue
                    try:
                        [result] = await self._translate([text])
                    except Exception as single_error:
                        result = single_error
                    self._answer(future, result)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                self._answer(future, result)

    def stats(self) -> dict:
        batches = sum(self.batch_sizes.values())
        requests = sum(size * count for size, count in self.batch_sizes.items())
        return {
            "requests": requests,
            "batches": batches,
            "mean_batch_size": requests / batches if batches else 0.0,
            "batch_sizes": {str(size): count for size, count in sorted(self.batch_sizes.items())},
            "queued": len(self._waiting),
            **{key: self.counts[key]
               for key in ("failed", "retried_batches", "queue_full", "timed_out")},
        }


def default_max_body_bytes(max_chars: int) -> int:
    """The largest body a valid request can need: 12 bytes per character (JSON's
    ``\\ud83d\\ude00`` escapes of a character outside the BMP) and 1 KiB for the rest."""
    return 12 * max_chars + 1024


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: refuse a request body larger than ``max_bytes`` without keeping it.

    The application never sees more than ``max_bytes`` of a body: a Content-Length over the
    limit is refused (413) before the application is called, and a body of unknown length
    (chunked) is counted as it arrives and refused as soon as it passes the limit. The rest of
    a refused body is never stored: up to ``drain_bytes`` of it are read and dropped, so that
    a client that sends its whole body before reading the answer (most HTTP libraries) gets
    the 413 on a connection that stays usable; beyond that (a body that claims or turns out
    to have more), or with ``Expect: 100-continue``, the 413 goes at once and the connection
    is closed, so the server does not even read the rest (such a client may see the
    connection reset instead of the answer). ``timeout_s``: a body still incomplete this many
    seconds after the request began is answered 408 (a client sending it byte by byte holds
    no connection for longer).
    """

    def __init__(self, app, max_bytes: int, timeout_s: float | None = None,
                 drain_bytes: int = 4 * 2**20):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.drain_bytes = drain_bytes

    @staticmethod
    async def _refuse(send, status: int, detail: str, close: bool) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        if close:  # the rest of the body is not read: the connection cannot be reused
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _too_large(self) -> str:
        return (f"the request body is larger than {self.max_bytes} bytes, the most this "
                "service accepts; send one sentence per request")

    async def _drain(self, receive, received: int, deadline: float | None) -> bool:
        """Read and drop the rest of a refused body while it fits in ``drain_bytes``; whether
        it ended (and the connection can be kept)."""
        while received <= self.drain_bytes:
            try:
                timeout = None if deadline is None else deadline - time.monotonic()
                message = await asyncio.wait_for(receive(), timeout)
            except asyncio.TimeoutError:
                return False
            if message["type"] != "http.request":
                return False  # the client went away
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        if b"content-length" in headers:
            try:
                length = int(headers[b"content-length"])
            except ValueError:
                await self._refuse(send, 400, "Content-Length is not a number", close=True)
                return
            if length > self.max_bytes:
                drain = (length <= self.drain_bytes
                         and headers.get(b"expect", b"").lower() != b"100-continue")
                ended = drain and await self._drain(receive, 0, deadline)
                await self._refuse(send, 413, self._too_large(), close=not ended)
                return
        received = 0
        complete = False  # the whole body has arrived: later receives wait for a disconnect
        refused: str | None = None  # why the body was cut off: replaces the app's answer

        async def limited_receive():
            nonlocal received, complete, refused
            if refused is not None:
                raise _BodyTooLarge if refused == "large" else _BodyTooSlow
            if complete or deadline is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    refused = "slow"
                    raise _BodyTooSlow from None
            if message["type"] == "http.request" and not complete:
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    refused = "large"
                    raise _BodyTooLarge
            return message

        response_started = False

        async def guarded_send(message):
            nonlocal response_started
            if refused is not None:
                return  # the app's answer to a body it could not read: ours goes instead
            response_started |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except (_BodyTooLarge, _BodyTooSlow):
            pass  # the app did not catch it: answered below
        if refused is None or response_started:
            return
        if refused == "large":
            ended = complete or await self._drain(receive, received, deadline)
            await self._refuse(send, 413, self._too_large(), close=not ended)
        else:
            await self._refuse(send, 408, f"the request body did not arrive within "
                                          f"{self.timeout_s:g} s", close=True)


class TranslationRequest(BaseModel):
    """The body of ``POST /translate``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored
    text: str


def _printable(value) -> str | int:
    """``value`` safe to put in a JSON answer (a lone surrogate cannot be encoded)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def create_app(translator: Translator, max_batch_size: int = 16, max_wait_ms: float = 5.0,
               beam_size: int = 1, max_chars: int = 1000,
               executor: ThreadPoolExecutor | None = None, *, max_queue: int = 128,
               timeout_s: float | None = 30.0, max_body_bytes: int | None = None,
               max_output_ratio: float = 1.5, max_output_extra: int = 10) -> FastAPI:
    """The FastAPI application serving ``translator``.

    Bad requests get a 4xx answer with a message: 422 for a body that is not JSON, lacks
    ``text``, has other fields, has a ``text`` that is not a string, is blank or cannot be
    encoded (a lone surrogate such as ``"\\ud800"``), or that the tokenizer refuses; 413 for a
    text longer than ``max_chars`` characters and for a body larger than ``max_body_bytes``
    (default :func:`default_max_body_bytes`), which is refused before it is read; 408 for a
    body that takes longer than ``timeout_s`` to arrive. A full queue (``max_queue`` waiting
    requests) is answered 503 with a Retry-After header, and a request not answered within
    ``timeout_s`` seconds 504. ``executor``: the thread that runs the model (see
    :func:`model_thread`); the other settings are :class:`BatchingTranslator`'s.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    if max_body_bytes is None:
        max_body_bytes = default_max_body_bytes(max_chars)
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    batcher = BatchingTranslator(translator, max_batch_size, max_wait_ms, beam_size,
                                 executor=executor, max_queue=max_queue, timeout_s=timeout_s,
                                 max_output_ratio=max_output_ratio,
                                 max_output_extra=max_output_extra)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="Transformers from Scratch: German-to-English translation",
                  lifespan=lifespan)
    app.state.batcher = batcher
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes, timeout_s=timeout_s)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes the input, which fails to encode when it holds a lone
        # surrogate (a 500) and can be large: answer where and what, not the input.
        detail = [{"type": _printable(e.get("type", "")), "msg": _printable(e.get("msg", "")),
                   "loc": [_printable(part) for part in e.get("loc", ())]}
                  for e in error.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "parameters": sum(p.numel() for p in translator.model.parameters()),
            "max_batch_size": max_batch_size,
            "max_wait_ms": max_wait_ms,
            "beam_size": beam_size,
            "max_chars": max_chars,
            "max_body_bytes": max_body_bytes,
            "max_queue": max_queue,
            "timeout_s": timeout_s,
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
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise HTTPException(
                status_code=422,
                detail=f"text is not valid Unicode: character {error.start} is a lone "
                       "surrogate (U+D800 to U+DFFF), which has no UTF-8 encoding",
            ) from None
        try:
            return {"translation": await batcher.translate(text)}
        except ServiceBusy as error:
            raise HTTPException(status_code=503, detail=str(error),
                                headers={"Retry-After": str(error.retry_after)}) from None
        except DeadlineExceeded as error:
            raise HTTPException(status_code=504, detail=str(error)) from None
        except ValueError as error:  # the text failed on its own: the translator refused it
            reason = _printable(error)[:300]  # the message, never an unencodable character
            raise HTTPException(status_code=422,
                                detail=f"this text cannot be translated: {reason}") from None
        except Exception:
            log.exception("translating a request failed")
            raise HTTPException(status_code=500, detail="the translation failed; the error "
                                                        "was logged") from None

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
          max_chars: int = 1000, executor: ThreadPoolExecutor | None = None, *,
          max_queue: int = 128, timeout_s: float | None = 30.0,
          max_body_bytes: int | None = None) -> None:
    """Serve ``translator`` until interrupted (``transformer-course translator serve``);
    ``executor`` is the thread it was loaded in (:func:`model_thread`); the limits are
    :func:`create_app`'s."""
    import uvicorn

    app = create_app(translator, max_batch_size, max_wait_ms, beam_size, max_chars, executor,
                     max_queue=max_queue, timeout_s=timeout_s, max_body_bytes=max_body_bytes)
    print(f"serving on http://{host}:{port} (POST /translate, GET /health, GET /stats)",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
