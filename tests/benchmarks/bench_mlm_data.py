"""Masked-LM data preparation on generated corpora of growing size: peak memory and tokens/s.

    python -m tests.benchmarks.bench_mlm_data [--sizes 10 200] [--num-proc 1] [--quick]

Each size gets a generated .txt corpus (lines of facts and review sentences) and a fresh process
that prepares it as `data=mlm_text_file` does (read into Arrow, a WordPiece tokenizer trained on
it, tokenised into 128-token blocks, validation and test masked once): its wall time, its peak
RSS (the kernel's high-water mark, which counts pages of memory-mapped files it has read) and its
peak anonymous RSS (sampled every 10 ms: the memory the process itself holds). Then, on the same
training split and tokenizer, the tokenising step timed beside Hugging Face's run_mlm recipe
(`datasets.map` of the tokenizer, then of group_texts) with the same `num_proc`: tokens/s of each.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
import resource
corpus, data_dir, num_proc, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
from litforge.data.text.masked_lm import MaskedLMDataModule
settings = dict(source="files", train_file=corpus, vocab_size=8000, max_length=128, line_by_line=False,
                num_proc=num_proc, data_dir=data_dir, tokenizer_dir=data_dir + "/tokenizer")
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
dm = MaskedLMDataModule(**settings)
start = time.perf_counter()
if mode == "prepare":
    dm.setup("fit")
    print(json.dumps({"seconds": time.perf_counter() - start, "imported_kb": imported,
                      "train_texts": len(dm.texts["train"]), "train_blocks": len(dm.splits["train"])}))
    sys.exit()
import shutil
from itertools import chain
import pyarrow.compute as pc
dm.setup("fit")
shutil.rmtree(Path(data_dir) / "mlm_cache" / "tokens")
texts, tokenizer = dm.texts["train"], dm.tokenizer
def tokens(ds):
    return int(pc.sum(pc.list_value_length(ds.with_format("arrow")[:]["input_ids"])).as_py())
start = time.perf_counter()
ours, _ = dm._tokenize("train")
ours_s = time.perf_counter() - start
block = 128
def tokenize(batch):
    return tokenizer(batch["text"], return_special_tokens_mask=True)
def group_texts(batch):
    joined = {k: list(chain(*batch[k])) for k in batch}
    total = len(joined["input_ids"]) // block * block
    return {k: [v[i : i + block] for i in range(0, total, block)] for k, v in joined.items()}
proc = num_proc if num_proc > 1 else None
start = time.perf_counter()
theirs = texts.map(tokenize, batched=True, num_proc=proc, remove_columns=["text"], load_from_cache_file=False,
                   cache_file_name=str(Path(data_dir) / "hf" / "tokens.arrow"))
theirs = theirs.map(group_texts, batched=True, num_proc=proc, load_from_cache_file=False,
                    cache_file_name=str(Path(data_dir) / "hf" / "groups.arrow"))
hf_s = time.perf_counter() - start
print(json.dumps({"ours_tokens": tokens(ours), "ours_s": ours_s, "hf_tokens": tokens(theirs), "hf_s": hf_s}))
"""


def write_corpus(path: Path, megabytes: float, seed: int = 0) -> None:
    """Lines of 1-6 generated sentences until the file holds `megabytes` MB."""
    from litforge.data.text.masked_lm_sources import generate_corpus

    sentences = generate_corpus(20_000, seed)
    rng = random.Random(seed)
    target, written = int(megabytes * 1e6), 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            lines = [" ".join(rng.choices(sentences, k=rng.randint(1, 6))) + "\n" for _ in range(1_000)]
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk.encode())


def anon_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_child(corpus: Path, data_dir: Path, num_proc: int, mode: str) -> tuple[dict, int, int]:
    """The child's JSON line, its peak RSS and its sampled peak anonymous RSS (kB)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(corpus), str(data_dir), str(num_proc), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    peak_anon, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak_anon
        while not done.is_set():
            peak_anon = max(peak_anon, anon_kb(proc.pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"the {mode} child failed (exit {proc.returncode}) on {corpus}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss, peak_anon


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[10, 200], help="corpus sizes in MB")
    parser.add_argument("--num-proc", type=int, default=1, help="data.num_proc of both sides")
    parser.add_argument("--quick", action="store_true", help="0.2 and 0.5 MB (CI: the code runs)")
    args = parser.parse_args(argv)
    sizes = [0.2, 0.5] if args.quick else args.sizes
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            corpus = Path(tmp) / f"corpus-{size:g}mb.txt"
            write_corpus(corpus, size)
            data_dir = Path(tmp) / f"data-{size:g}"
            prep, peak, anon = run_child(corpus, data_dir, args.num_proc, "prepare")
            speed, _, _ = run_child(corpus, data_dir, args.num_proc, "tokens")
            rows.append((size, prep, peak, anon, speed))
            print(f"{size:g} MB done in {prep['seconds']:.1f} s", file=sys.stderr, flush=True)
    print(f"\nmasked-LM data preparation, num_proc={args.num_proc} (blocks of 128 tokens, WordPiece 8000)")
    print(
        f"{'corpus MB':>9} {'texts':>9} {'prep s':>7} {'peak RSS MB':>11} {'after import':>12} "
        f"{'peak anon MB':>12} {'litforge tok/s':>14} {'HF map tok/s':>12} {'ratio':>6}"
    )
    for size, prep, peak, anon, speed in rows:
        ours, hf = speed["ours_tokens"] / speed["ours_s"], speed["hf_tokens"] / speed["hf_s"]
        print(
            f"{size:>9g} {prep['train_texts']:>9} {prep['seconds']:>7.1f} {peak / 1024:>11.0f} "
            f"{prep['imported_kb'] / 1024:>12.0f} {anon / 1024:>12.0f} {ours:>14.0f} {hf:>12.0f} {ours / hf:>6.2f}"
        )
    (first, *_, last) = rows if len(rows) > 1 else rows * 2
    print(f"peak RSS {last[0]:g} MB / {first[0]:g} MB corpus: {last[2] / first[2]:.2f}; anon {last[3] / first[3]:.2f}")


if __name__ == "__main__":
    main()
