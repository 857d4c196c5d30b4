"""Chapter 17: the HTTP translation service and its request batching, on loopback."""

import asyncio
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from transformer_course.serving import BackgroundServer, BatchingTranslator, create_app
from transformer_course.translator import load_translator

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
    code = main(["translator", "serve", "--checkpoint", str(ROOT / "missing.pt")])
    assert code == 1
    assert "missing.pt" in capsys.readouterr().err


def test_serve_command_loads_the_model_in_the_thread_that_runs_it(monkeypatch):
    # Two threads running torch kernels made every decoding step 3x slower (model_thread).
    import threading

    from transformer_course import cli, serving, translator

    threads = {}

    def fake_load(checkpoint, device=None):
        threads["load"] = threading.current_thread().name
        return "model"

    def fake_serve(model, *settings):
        executor = settings[-1]
        threads["run"] = executor.submit(lambda: threading.current_thread().name).result()
        assert model == "model"

    monkeypatch.setattr(translator, "load_translator", fake_load)
    monkeypatch.setattr(serving, "serve", fake_serve)
    assert cli.main(["translator", "serve", "--checkpoint", "any.pt"]) == 0
    assert threads["load"] == threads["run"] != threading.main_thread().name
