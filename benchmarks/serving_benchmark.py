"""The translation service under load: latency percentiles and throughput with and without
request batching, at several concurrency levels.

For each server setting (batching: up to --max-batch-size requests collected for up to
--max-wait-ms; no batching: one request at a time) the script starts
``transformer-course translator serve`` in a subprocess, then, for each concurrency level C,
runs C clients in a closed loop (each sends a sentence, waits for the reply, sends the next)
until C x --requests-per-client requests are answered. Sentences come from Multi30k's
test_2016_flickr; decoding is greedy.

    python benchmarks/serving_benchmark.py          # writes results/serving_benchmark.json
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time

import httpx
from common import ROOT, use_local_data, write_result

from transformer_course.utils.dataset import load_multi30k


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args, max_batch_size: int, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "transformer_course", "translator", "serve",
               "--checkpoint", str(ROOT / args.checkpoint), "--port", str(port), "--max-batch-size",
               str(max_batch_size), "--max-wait-ms", str(args.max_wait_ms)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    process = subprocess.Popen(command, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", trust_env=False).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise RuntimeError("the server did not start")
        time.sleep(0.2)


async def load_test(url: str, sentences: list[str], concurrency: int, per_client: int) -> dict:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120,
                                 trust_env=False) as client:
        async def one_client(offset: int) -> None:
            for i in range(per_client):
                text = sentences[(offset * per_client + i) % len(sentences)]
                start = time.perf_counter()
                reply = await client.post("/translate", json={"text": text})
                latencies.append(time.perf_counter() - start)
                reply.raise_for_status()

        await one_client(concurrency)  # warm-up: connections, first batches
        latencies.clear()
        before = (await client.get("/stats")).json()
        start = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(concurrency)))
        wall = time.perf_counter() - start
        after = (await client.get("/stats")).json()
    batches = after["batches"] - before["batches"]
    requests = after["requests"] - before["requests"]
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "throughput_rps": len(latencies) / wall,
        "latency_ms": {"mean": 1000 * statistics.mean(latencies),
                       "p50": 1000 * statistics.median(latencies),
                       "p90": 1000 * quantiles[89], "p99": 1000 * quantiles[98]},
        "mean_batch_size": requests / batches if batches else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/translator-cpu/model.pt")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--requests-per-client", type=int, default=8)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None, help="the server's torch threads")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    use_local_data()
    sentences = [de for de, _ in load_multi30k("test_2016_flickr")]

    settings = {"batching": args.max_batch_size, "no_batching": 1}
    rows = []
    for name, max_batch_size in settings.items():
        process = start_server(args, max_batch_size, port := free_port())
        try:
            for concurrency in args.concurrency:
                row = asyncio.run(load_test(f"http://127.0.0.1:{port}", sentences, concurrency,
                                            args.requests_per_client))
                row["setting"] = name
                rows.append(row)
                print(f"{name:>11}, {concurrency:>2} clients: {row['throughput_rps']:6.1f} "
                      f"requests/s, p50 {row['latency_ms']['p50']:6.0f} ms, p90 "
                      f"{row['latency_ms']['p90']:6.0f} ms, p99 {row['latency_ms']['p99']:6.0f} "
                      f"ms, mean batch {row['mean_batch_size']:.1f}", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)
    for concurrency in args.concurrency:
        pair = {r["setting"]: r for r in rows if r["concurrency"] == concurrency}
        ratio = pair["batching"]["throughput_rps"] / pair["no_batching"]["throughput_rps"]
        print(f"{concurrency:>2} clients: batching gives {ratio:.2f}x the throughput")
    write_result("serving_benchmark", {
        "measured": "HTTP translation service (greedy), closed-loop clients on loopback; "
                    "request batching vs one request at a time",
        "checkpoint": args.checkpoint, "max_batch_size": args.max_batch_size,
        "max_wait_ms": args.max_wait_ms, "requests_per_client": args.requests_per_client,
        "server_threads": args.threads, "rows": rows,
    }, args.output)


if __name__ == "__main__":
    main()
