"""Chapter 17: the HTTP translation service and its request batching, on loopback."""

import asyncio
import json
import select
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from transformer_course.recipes.translator import load_translator
from transformer_course.serving.service import (
    BackgroundServer,
    BatchingTranslator,
    BodySizeLimit,
    create_app,
)

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "translator-cpu" / "model.pt"

SENTENCES = [
    "Ein Mann liest ein Buch.",
    "Zwei Hunde spielen im Schnee.",
    "Eine Frau in einem roten Kleid geht die Straße entlang.",
    "Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",
    "Ein Mann in einem blauen Hemd steht auf einer Leiter und putzt ein Fenster.",
    "Zwei Männer stehen am Herd und bereiten Essen zu.",
    "Ein Junge springt in einen See.",
    "Eine Gruppe von Menschen steht vor einem Iglu.",
    "Ein Hund rennt über eine Wiese.",
    "Kinder spielen Fußball auf einem Platz.",
    "Ein Mann fährt Fahrrad.",
    "Eine ältere Frau sitzt auf einer Bank im Park.",
]


@pytest.fixture(scope="module")
def translator():
    if not CHECKPOINT.is_file():
        pytest.skip("no committed translator checkpoint")
    return load_translator(CHECKPOINT, device="cpu")


@pytest.fixture(scope="module")
def expected(translator):
    # The reference: each sentence translated on its own, without the service.
    return {s: translator.translate(s, beam_size=1) for s in SENTENCES}


def post_all(url: str, texts: list[str]) -> list[httpx.Response]:
    """Send every text at once, one thread (and connection) per request. (``trust_env=False``:
    loopback requests must not go through a proxy set in the environment.)"""
    with ThreadPoolExecutor(len(texts)) as pool:
        return list(pool.map(
            lambda text: httpx.post(f"{url}/translate", json={"text": text}, timeout=60,
                                    trust_env=False),
            texts))


def test_concurrent_requests_are_batched_and_translated_exactly(translator, expected):
    app = create_app(translator, max_batch_size=8, max_wait_ms=50)
    texts = SENTENCES * 2  # 24 requests in flight together
    with BackgroundServer(app) as url:
        assert httpx.get(f"{url}/health", trust_env=False).json()["status"] == "ok"
        replies = post_all(url, texts)
        stats = httpx.get(f"{url}/stats", trust_env=False).json()
    assert [r.status_code for r in replies] == [200] * len(texts)
    assert [r.json()["translation"] for r in replies] == [expected[t] for t in texts]
    assert stats["requests"] == len(texts)
    sizes = {int(size) for size in stats["batch_sizes"]}
    assert max(sizes) > 1, stats  # requests really were translated together
    assert max(sizes) <= 8  # and never more than the limit


def test_batch_size_one_translates_each_request_alone(translator, expected):
    app = create_app(translator, max_batch_size=1)
    with BackgroundServer(app) as url:
        replies = post_all(url, SENTENCES[:6])
        stats = httpx.get(f"{url}/stats", trust_env=False).json()
    assert [r.json()["translation"] for r in replies] == [expected[t] for t in SENTENCES[:6]]
    assert stats["batch_sizes"] == {"1": 6}


def test_bad_requests_get_clear_4xx_answers(translator):
    app = create_app(translator, max_chars=50)
    with BackgroundServer(app) as url, httpx.Client(base_url=url, trust_env=False) as client:
        cases = {
            "empty": client.post("/translate", json={"text": ""}),
            "blank": client.post("/translate", json={"text": "   "}),
            "too long": client.post("/translate", json={"text": "Hallo " * 20}),
            "not json": client.post("/translate", content=b"{text: Hallo",
                                    headers={"content-type": "application/json"}),
            "no text": client.post("/translate", json={"sentence": "Hallo"}),
            "not a string": client.post("/translate", json={"text": 42}),
            "extra field": client.post("/translate", json={"text": "Hallo", "beam": 9}),
            "wrong method": client.get("/translate"),
        }
        still_works = client.post("/translate", json={"text": "Ein Mann liest."})
    codes = {name: r.status_code for name, r in cases.items()}
    assert codes == {"empty": 422, "blank": 422, "too long": 413, "not json": 422,
                     "no text": 422, "not a string": 422, "extra field": 422,
                     "wrong method": 405}
    assert "empty" in cases["empty"].json()["detail"]
    assert "at most 50" in cases["too long"].json()["detail"]
    assert still_works.status_code == 200  # bad requests do not break the service


def test_batcher_rejects_bad_settings(translator):
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchingTranslator(translator, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        BatchingTranslator(translator, max_wait_ms=-1)
    with pytest.raises(ValueError, match="max_chars"):
        create_app(translator, max_chars=0)


def test_batcher_groups_calls_made_together_without_http(translator, expected):
    async def run():
        batcher = BatchingTranslator(translator, max_batch_size=4, max_wait_ms=50)
        await batcher.start()
        try:
            results = await asyncio.gather(*(batcher.translate(s) for s in SENTENCES[:8]))
        finally:
            await batcher.stop()
        return results, batcher.stats()

    results, stats = asyncio.run(run())
    assert results == [expected[s] for s in SENTENCES[:8]]
    assert stats["batch_sizes"] == {"4": 2}  # all queued at once: two full batches


@pytest.mark.slow
def test_the_module_runs_as_a_command():
    if not CHECKPOINT.is_file():
        pytest.skip("no committed translator checkpoint")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "transformer_course", "translator", "serve",
         "--checkpoint", str(CHECKPOINT), "--port", str(port), "--threads", "1"], cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.time() < deadline, "server did not start"
            time.sleep(0.2)
        reply = httpx.post(f"{url}/translate", json={"text": "Ein Mann liest ein Buch."},
                           timeout=60, trust_env=False)
        assert reply.status_code == 200 and reply.json()["translation"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_command_rejects_bad_settings_before_listening(capsys):
    from transformer_course.cli import main

    if not CHECKPOINT.is_file():
        pytest.skip("no committed translator checkpoint")
    code = main(["translator", "serve", "--checkpoint", str(CHECKPOINT), "--max-batch-size", "0"])
    assert code == 2
    assert "max_batch_size must be >= 1" in capsys.readouterr().err
    for option, message in [("--max-queue", "max_queue must be >= 1"),
                            ("--timeout-s", "timeout_s must be > 0"),
                            ("--max-body-bytes", "max_body_bytes must be >= 1")]:
        code = main(["translator", "serve", "--checkpoint", str(CHECKPOINT), option, "0"])
        assert code == 2
        assert message in capsys.readouterr().err
    code = main(["translator", "serve", "--checkpoint", str(ROOT / "missing.pt")])
    assert code == 1
    assert "missing.pt" in capsys.readouterr().err


def test_serve_command_loads_the_model_in_the_thread_that_runs_it(monkeypatch):
    # Two threads running torch kernels made every decoding step 3x slower (model_thread).
    import threading

    from transformer_course import cli
    from transformer_course.recipes import translator
    from transformer_course.serving import service as serving

    threads = {}

    def fake_load(checkpoint, device=None):
        threads["load"] = threading.current_thread().name
        return "model"

    def fake_serve(model, *settings, **limits):
        executor = settings[-1]
        threads["run"] = executor.submit(lambda: threading.current_thread().name).result()
        assert model == "model"
        assert limits == {"max_queue": 128, "timeout_s": 30.0, "max_body_bytes": None}

    monkeypatch.setattr(translator, "load_translator", fake_load)
    monkeypatch.setattr(serving, "serve", fake_serve)
    assert cli.main(["translator", "serve", "--checkpoint", "any.pt"]) == 0
    assert threads["load"] == threads["run"] != threading.main_thread().name


# --- Limits: what one request can cost the others -------------------------------------------

JSON = {"content-type": "application/json"}
LONE_SURROGATE = b'{"text": "Ein Mann \\ud800 liest."}'  # valid JSON, but no UTF-8 for it


def post_bodies(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    """Send raw JSON bodies at once, one thread (and connection) per request."""
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(
            lambda body: httpx.post(f"{url}/translate", content=body, headers=JSON, timeout=60,
                                    trust_env=False),
            bodies))


def test_a_text_that_cannot_be_encoded_fails_alone(translator, expected):
    # It used to reach the tokenizer inside a batch: all 16 requests of the batch got a 500.
    good = [(SENTENCES * 2)[i] for i in range(15)]
    bodies = [json.dumps({"text": text}).encode() for text in good]
    bodies.insert(7, LONE_SURROGATE)
    app = create_app(translator, max_batch_size=16, max_wait_ms=300)
    with BackgroundServer(app) as url:
        replies = post_bodies(url, bodies)
        stats = httpx.get(f"{url}/stats", trust_env=False).json()
    codes = [r.status_code for r in replies]
    assert codes == [200] * 7 + [422] + [200] * 8
    assert "lone surrogate" in replies[7].json()["detail"]
    del replies[7]
    assert [r.json()["translation"] for r in replies] == [expected[t] for t in good]
    assert stats["requests"] == 15 and stats["failed"] == 0


def test_validation_errors_do_not_echo_what_cannot_be_encoded(translator):
    # FastAPI's 422 echoes the input: with a lone surrogate in it, encoding the answer failed
    # (500), and so did an infinite number (1e999).
    app = create_app(translator)
    with BackgroundServer(app) as url, httpx.Client(base_url=url, trust_env=False) as client:
        replies = {body: client.post("/translate", content=body, headers=JSON) for body in [
            b'{"text": "Hallo", "x": "\\ud800"}', b'{"text": "Hallo", "\\udfff": 1}',
            b'{"text": ["\\ud800"]}', b'{"text": 1e999}']}
    for body, reply in replies.items():
        assert reply.status_code == 422, (body, reply.text)
        assert all(set(error) == {"type", "msg", "loc"} for error in reply.json()["detail"])


def test_a_failing_batch_is_retried_one_request_at_a_time(translator, expected, monkeypatch):
    # Whatever makes a batch fail (here the tokenizer, past the service's own checks), only
    # the requests that fail on their own get an error: 422 for a ValueError, 500 otherwise.
    encode_sources = translator.encode_sources

    def fragile_encode(sentences):
        if "Gift" in sentences:
            raise ValueError("the tokenizer refuses this text")
        if "Bumm" in sentences:
            raise RuntimeError("something broke")
        return encode_sources(sentences)

    monkeypatch.setattr(translator, "encode_sources", fragile_encode)
    texts = SENTENCES[:3] + ["Gift"] + SENTENCES[3:6] + ["Bumm"]
    app = create_app(translator, max_batch_size=16, max_wait_ms=300)
    with BackgroundServer(app) as url:
        replies = post_all(url, texts)
        stats = httpx.get(f"{url}/stats", trust_env=False).json()
    codes = {text: r.status_code for text, r in zip(texts, replies, strict=True)}
    assert codes == {**{text: 200 for text in SENTENCES[:6]}, "Gift": 422, "Bumm": 500}
    assert replies[3].json()["detail"] == ("this text cannot be translated: the tokenizer "
                                           "refuses this text")
    assert "something broke" not in replies[7].text  # logged, not shown to the client
    assert [r.json()["translation"] for r in replies if r.status_code == 200] == [
        expected[t] for t in SENTENCES[:6]]
    assert stats["retried_batches"] >= 1 and stats["failed"] == 2


def test_a_text_the_translator_refuses_is_left_out_of_its_batch(translator, expected,
                                                               monkeypatch):
    # The translator's own check (too many tokens for the model, say) runs on each text before
    # the batch: the others are translated together, with no failed batch to retry.
    def source_pieces(text, number=1):
        if "Gift" in text:
            raise ValueError("text 1 is too long for the model")
        return [text]

    monkeypatch.setattr(translator, "source_pieces", source_pieces, raising=False)
    texts = SENTENCES[:3] + ["Gift"] + SENTENCES[3:6]
    app = create_app(translator, max_batch_size=16, max_wait_ms=300)
    with BackgroundServer(app) as url:
        replies = post_all(url, texts)
        stats = httpx.get(f"{url}/stats", trust_env=False).json()
    assert [r.status_code for r in replies] == [200] * 3 + [422] + [200] * 3
    assert replies[3].json()["detail"] == ("this text cannot be translated: text 1 is too "
                                           "long for the model")
    del replies[3]
    assert [r.json()["translation"] for r in replies] == [expected[t] for t in SENTENCES[:6]]
    assert stats["retried_batches"] == 0 and stats["failed"] == 1 and stats["requests"] == 6


def read_reply(sock: socket.socket) -> bytes:
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except ConnectionResetError:  # closed with our unread bytes: what came before counts
        pass
    return reply


def test_a_body_over_the_limit_is_refused_before_it_is_read(translator):
    # It used to be read and parsed whole before the 413: 400 MB took 1.6 GB of memory.
    app = create_app(translator, max_chars=100)  # max_body_bytes: 12 * 100 + 1024
    header = (b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    with BackgroundServer(app) as url:
        address = tuple(url.removeprefix("http://").split(":"))
        with socket.create_connection((address[0], int(address[1])), timeout=10) as sock:
            # Claims 400 MB and sends a few bytes: the answer comes without the rest.
            sock.sendall(header + b"Content-Length: 400000000\r\n\r\n{\"text")
            declared = read_reply(sock)
        with socket.create_connection((address[0], int(address[1])), timeout=10) as sock:
            # 64 MB of unknown length: the server stops reading long before the end.
            sock.sendall(header + b"Transfer-Encoding: chunked\r\n\r\n")
            sent = 0
            while sent < 64 * 2**20 and not select.select([sock], [], [], 0)[0]:
                try:
                    sock.sendall(b"10000\r\n" + b"x" * 65536 + b"\r\n")
                except OSError:  # reset: the server closed the connection
                    break
                sent += 65536
            streamed = read_reply(sock)
        # Most clients send the whole body before they read: a small excess is read and
        # dropped, and they get the 413 on a connection that stays usable.
        with httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
            big = client.post("/translate", content=b"x" * 2**20, headers=JSON)
            chunked = client.post("/translate", content=iter([b"x" * 65536] * 16),
                                  headers=JSON)
            just_below = client.post("/translate", json={"text": "Hallo " * 16})
    assert declared.startswith(b"HTTP/1.1 413")
    assert b"larger than 2224 bytes" in declared and b"connection: close" in declared
    assert streamed.startswith(b"HTTP/1.1 413")
    assert sent < 32 * 2**20  # not read whole: the client could not send it all
    assert big.status_code == chunked.status_code == 413
    assert "larger than 2224" in big.json()["detail"]
    assert "connection" not in big.headers  # kept alive: the small excess was read
    assert just_below.status_code == 200


def run_asgi(app, messages: list[dict], delay: float = 0.0) -> tuple[list[dict], int]:
    """Call an ASGI app with a POST whose body arrives as ``messages`` (each after ``delay``
    seconds); return what it sent and how many messages it received."""
    sent, received = [], 0

    async def receive():
        nonlocal received
        await asyncio.sleep(delay)
        received += 1
        return messages[received - 1]

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(app(scope, receive, send))
    return sent, received


def test_body_limit_middleware_stops_reading_at_the_limit():
    seen = []

    async def reader(scope, receive, send):  # reads the whole body, like request.body()
        try:
            while True:
                message = await receive()
                seen.append(len(message["body"]))
                if not message["more_body"]:
                    break
        except Exception:  # FastAPI turns a failed read into a 400: the middleware's 413 wins
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"parse error"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def body(sizes):
        return [{"type": "http.request", "body": b"x" * size, "more_body": i < len(sizes) - 1}
                for i, size in enumerate(sizes)]

    def headers(sent):
        return dict(sent[0]["headers"])

    # 4 KB in 400-byte chunks, limit 1000: the app sees two chunks; the middleware reads and
    # drops the rest while it fits in drain_bytes, then answers 413 and closes.
    sent, received = run_asgi(BodySizeLimit(reader, max_bytes=1000, drain_bytes=2000),
                              body([400] * 10))
    assert sent[0]["status"] == 413 and b"larger than 1000 bytes" in sent[1]["body"]
    assert len(sent) == 2  # the app's own answer (a 400 for a body it could not read) dropped
    assert sum(seen) == 800 and received == 6  # 2400 > 2000 bytes: nothing more read
    assert headers(sent)[b"connection"] == b"close"
    seen.clear()
    sent, received = run_asgi(BodySizeLimit(reader, max_bytes=1000, drain_bytes=4000),
                              body([400] * 10))
    assert sent[0]["status"] == 413 and received == 10  # all dropped: connection kept
    assert sum(seen) == 800 and b"connection" not in headers(sent)
    sent, _ = run_asgi(BodySizeLimit(reader, max_bytes=1000), body([1000]))
    assert sent[0]["status"] == 200  # exactly the limit is fine
    # A body sent slowly is cut off at the deadline: 408.
    sent, received = run_asgi(BodySizeLimit(reader, max_bytes=1000, timeout_s=0.2),
                              body([1] * 20), delay=0.05)
    assert sent[0]["status"] == 408 and received < 6


def test_body_limit_middleware_refuses_a_declared_length_without_reading():
    async def app(scope, receive, send):
        raise AssertionError("the app must not be called")

    def post(length: int, expect: bool = False):
        received = []

        async def receive():
            received.append(1)
            return {"type": "http.request", "body": b"x" * length, "more_body": False}

        sent = []

        async def send(message):
            sent.append(message)

        headers = [(b"content-length", str(length).encode())]
        if expect:
            headers.append((b"expect", b"100-continue"))
        scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
        asyncio.run(BodySizeLimit(app, max_bytes=100, drain_bytes=1000)(scope, receive, send))
        return sent[0]["status"], dict(sent[0]["headers"]).get(b"connection"), len(received)

    assert post(400_000_000) == (413, b"close", 0)  # nothing read at all
    assert post(500, expect=True) == (413, b"close", 0)  # it waits for a 100 Continue: none
    assert post(500) == (413, None, 1)  # small enough to drop: the connection stays usable


class Blocking:
    """Stands in for Translator.translate_with: blocks until released, records its batches."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.batches = []

    def __call__(self, sentences, decode, batch_size=64):
        self.batches.append(list(sentences))
        self.started.set()
        assert self.release.wait(30)
        return [s.upper() for s in sentences]


def wait_for(condition, timeout=10.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_a_full_queue_answers_503_with_retry_after(translator, monkeypatch):
    blocking = Blocking()
    monkeypatch.setattr(translator, "translate_with", blocking)
    app = create_app(translator, max_batch_size=1, max_wait_ms=0, max_queue=2, timeout_s=10)
    with BackgroundServer(app) as url, ThreadPoolExecutor(3) as pool:
        def post(text):
            return httpx.post(f"{url}/translate", json={"text": text}, timeout=60,
                              trust_env=False)

        def queued():
            return httpx.get(f"{url}/stats", trust_env=False).json()["queued"]

        try:
            first = pool.submit(post, "eins")
            assert blocking.started.wait(10)  # "eins" is being translated, the queue empty
            waiting = [pool.submit(post, "zwei"), pool.submit(post, "drei")]
            wait_for(lambda: queued() == 2)
            refused = post("vier")
        finally:
            blocking.release.set()
        answered = [first.result(), *(f.result() for f in waiting)]
        stats = httpx.get(f"{url}/stats", trust_env=False).json()
    assert refused.status_code == 503 and "queue is full" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    assert [r.status_code for r in answered] == [200, 200, 200]
    assert sorted(r.json()["translation"] for r in answered) == ["DREI", "EINS", "ZWEI"]
    assert stats["queue_full"] == 1 and stats["queued"] == 0


def test_a_request_past_its_deadline_gets_504_and_leaves_the_queue(translator, monkeypatch):
    blocking = Blocking()
    monkeypatch.setattr(translator, "translate_with", blocking)
    app = create_app(translator, max_batch_size=1, max_wait_ms=0, timeout_s=0.5)
    with BackgroundServer(app) as url, ThreadPoolExecutor(2) as pool:
        def post(text):
            return httpx.post(f"{url}/translate", json={"text": text}, timeout=60,
                              trust_env=False)

        try:
            started = time.perf_counter()
            running = pool.submit(post, "eins")  # in the model thread when its time is up
            assert blocking.started.wait(10)
            queued = pool.submit(post, "zwei")  # still waiting for a batch
            replies = [running.result(), queued.result()]
            waited = time.perf_counter() - started
        finally:
            blocking.release.set()
        wait_for(lambda: httpx.get(f"{url}/stats", trust_env=False).json()["batches"] == 1)
        time.sleep(0.1)  # time for the worker to take (and skip) "zwei"
        stats = httpx.get(f"{url}/stats", trust_env=False).json()
    assert [r.status_code for r in replies] == [504, 504]
    assert "within 0.5 s" in replies[0].json()["detail"]
    assert waited < 5
    assert blocking.batches == [["eins"]]  # "zwei" was dropped, never translated
    assert stats["timed_out"] == 2 and stats["queued"] == 0


def test_each_translation_is_capped_relative_to_its_own_source(translator, monkeypatch):
    # A model that never says </s> (here: a stub) must not run on to the model's 255
    # positions, nor to the limit of a long sentence it happens to be batched with.
    from transformer_course.serving import service as serving

    limits = []

    def never_ending(model, src, bos, eos, max_len, use_cache=True):
        limits.append(max_len)
        return [[7] * 1000 for _ in range(src.shape[0])]

    monkeypatch.setattr(serving, "greedy_decode", never_ending)
    monkeypatch.setattr(translator.tokenizer, "decode", lambda ids: str(len(ids)))
    short, long = "Ein Hund.", SENTENCES[4] * 2

    def cap(text):
        n = len(translator.tokenizer.encode(text, add_eos=True))
        return min(int(1.5 * n) + 10, translator.model.config.max_len - 1)

    async def run():
        batcher = BatchingTranslator(translator, max_batch_size=2, max_wait_ms=100)
        await batcher.start()
        try:
            return await asyncio.gather(batcher.translate(short), batcher.translate(long))
        finally:
            await batcher.stop()

    assert asyncio.run(run()) == [str(cap(short)), str(cap(long))]
    assert limits == [cap(long)] and cap(short) < cap(long) < 255
