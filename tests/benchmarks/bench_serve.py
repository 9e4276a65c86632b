"""Serving throughput: requests/s and p50/p99 latency of single-item requests from concurrent clients
against `python -m litforge.serve` (a real uvicorn process), dynamic batching on and off, beside the
predictor's own forward throughput on batches of 32 (the ceiling), for the digits CNN and a tiny BERT
text classifier: `python -m tests.benchmarks.bench_serve [--quick] [--clients 16] [--seconds 5]`."""

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import QUIET, compose_config
from tests.serving.models import ONE_EPOCH, png_bytes

MODELS = {
    "digits CNN": ["data=digits", "model=image_classifier"],
    "tiny BERT text classifier": ["experiment=text_clf_offline", "data.num_examples=400", "data.max_length=64"],
    # a real-sized encoder (random weights), whose forward pass, not HTTP, is what a request costs
    "MiniLM-sized text classifier": [
        *("experiment=text_clf_offline", "data.num_examples=400", "data.max_length=64"),
        *("model.backbone.config.hidden_size=384", "model.backbone.config.num_hidden_layers=6"),
        *("model.backbone.config.num_attention_heads=12", "model.backbone.config.intermediate_size=1536"),
        "+model.backbone.config.vocab_size=30522",
    ],
}
DIRECT_BATCH = 32


def train(name: str, root: Path) -> Path:
    from litforge.train import train

    overrides = [*MODELS[name], *QUIET, *ONE_EPOCH, f"paths.data_dir={root / 'data'}"]
    cfg = compose_config(overrides, log_dir=root / "logs")
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def request_items(name: str, count: int) -> list[dict[str, Any]]:
    """Single-item bodies, all different: images base64-encoded PNGs, texts of review length."""
    if name == "digits CNN":
        return [{"images": [base64.b64encode(png_bytes(i, (8, 8), "L")).decode()]} for i in range(count)]
    words = "the film was great and moving but far too long and the acting dull".split()
    return [{"texts": [" ".join(words[(i + j) % len(words)] for j in range(20))]} for i in range(count)]


def direct_throughput(checkpoint: Path, bodies: list[dict[str, Any]], seconds: float) -> float:
    """Items/s of Predictor.predict on batches of DIRECT_BATCH decoded inputs (no HTTP)."""
    from litforge.serving.predictor import Predictor

    predictor = Predictor.from_checkpoint(checkpoint)
    items = [base64.b64decode(b["images"][0]) if "images" in b else b["texts"][0] for b in bodies]
    batch = (items * (DIRECT_BATCH // len(items) + 1))[:DIRECT_BATCH]
    predictor.predict(batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        predictor.predict(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: Path, wait_ms: int, log_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [f"ckpt_path={checkpoint}", f"serve.port={port}", f"serve.max_wait_ms={wait_ms}", f"paths.log_dir={log_dir}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "litforge.serve", *args, "extras=quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server did not start (exit {process.poll()})")


async def load(
    url: str, bodies: list[dict[str, Any]], clients: int, seconds: float
) -> tuple[float, list[float], dict[str, int]]:
    """`clients` concurrent clients, each sending one single-item request after the other. aiohttp (a
    dependency of datasets), not httpx: httpx spends more CPU per request than the server does, and
    client and server share the machine's cores."""
    import aiohttp

    latencies: list[float] = []
    payloads = [json.dumps(body).encode() for body in bodies]
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def one_client(offset: int, until: float, record: bool) -> None:
            i = offset
            while time.perf_counter() < until:
                start = time.perf_counter()
                async with session.post("/predict", data=payloads[i % len(payloads)], headers=headers) as answer:
                    answer.raise_for_status()
                    await answer.read()
                if record:
                    latencies.append(time.perf_counter() - start)
                i += clients

        warm = time.perf_counter() + min(1.0, seconds / 3)
        await asyncio.gather(*(one_client(c, warm, False) for c in range(clients)))
        start = time.perf_counter()
        await asyncio.gather(*(one_client(c, start + seconds, True) for c in range(clients)))
        elapsed = time.perf_counter() - start
        async with session.get("/stats") as answer:
            stats = await answer.json()
    return len(latencies) / elapsed, sorted(latencies), stats


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the digits CNN only, 1 s per measurement")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else args.seconds
    names = list(MODELS)[:1] if args.quick else args.models.split(",")
    root = Path(tempfile.mkdtemp())
    rows = []
    for name in names:
        checkpoint = train(name, root / name.replace(" ", "_"))
        bodies = request_items(name, 256)
        ceiling = direct_throughput(checkpoint, bodies, seconds)
        rows.append((name, f"direct predict, batches of {DIRECT_BATCH}", ceiling, None, None, None))
        for label, wait_ms in (("HTTP, batching on (5 ms)", 5), ("HTTP, batching off", 0)):
            process, url = start_server(checkpoint, wait_ms, str(root / "serve_logs"))
            try:
                rate, latencies, stats = asyncio.run(load(url, bodies, args.clients, seconds))
            finally:
                process.terminate()
                process.wait(timeout=30)
            per_pass = stats["items"] / max(stats["forward_passes"], 1)
            rows.append((name, label, rate, percentile(latencies, 0.5), percentile(latencies, 0.99), per_pass))
    print(f"\n{args.clients} concurrent clients, single-item requests, {seconds:g} s each; {os.cpu_count()} CPUs")
    print(f"{'model':<29} {'how':<30} {'items/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'items/pass':>10}")
    for name, label, rate, p50, p99, per_pass in rows:
        cells = [f"{v:>8.1f}" if v is not None else f"{'':>8}" for v in (p50, p99)]
        passes = f"{per_pass:>10.1f}" if per_pass is not None else f"{'':>10}"
        print(f"{name:<29} {label:<30} {rate:>9.0f} {cells[0]} {cells[1]} {passes}")


if __name__ == "__main__":
    main()
