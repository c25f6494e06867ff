"""One process against N (torchrun) on the same global batch: iteration time and samples per second.

Both runs are the real CLI with the HF sampler, the same seed, prompts per iteration and k; with N processes
each takes 1/N of the prompts (raftkit.distributed). The figures are rank 0's ``time/iteration`` from
metrics.jsonl, the first iteration left out (warm-up), so start-up and model loading are not counted.

    .venv/bin/python benchmarks/distributed.py                        # tiny random model, 2 processes
    .venv/bin/python benchmarks/distributed.py --model default --prompts 8 --k 4 --max-new-tokens 32

On a CPU the processes share its cores: with as many processes as cores nothing is gained per core; the
benchmark measures the overhead of the process group and the gathers as much as any speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tiny_model(folder: Path) -> str:
    """A 2-layer, 32-wide random Llama with the bundled model's tokenizer (as tests/conftest.py builds)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from raftkit.models import default_model_path

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(nproc: int, model: str, out: Path, args: argparse.Namespace) -> dict[str, float]:
    align = ["align", "--algo", args.algo, "--reward", "length", "--model", model, "--output", str(out),
             "--iterations", str(args.iterations), "--prompts-per-iteration", str(args.prompts),
             "--k", str(args.k), "--max-new-tokens", str(args.max_new_tokens), "--heldout", "0",
             "--sampler", "hf", "--seed", "0"]
    if nproc == 1:
        cmd = [sys.executable, "-m", "raftkit", *align]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(free_port()), "-m", "raftkit", *align]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    warm = lines[1:] or lines
    step = sum(m["time/iteration"] for m in warm) / len(warm)
    return {"step": step, "samples_per_s": args.prompts * args.k / step, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny' (random, built here), 'default' or a folder")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--algo", default="grpo")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=8, help="global prompts per iteration")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = tiny_model(root / "tiny") if args.model == "tiny" else args.model
        one = run(1, model, root / "one", args)
        many = run(args.nproc, model, root / "many", args)
    print(f"{args.algo}, {args.prompts} prompts x k={args.k}, {args.max_new_tokens} new tokens, "
          f"model {args.model}, {args.threads} thread(s) per process")
    print(f"{'processes':>10} {'step s':>8} {'samples/s':>10} {'wall s':>8}")
    for n, r in ((1, one), (args.nproc, many)):
        print(f"{n:>10} {r['step']:>8.2f} {r['samples_per_s']:>10.1f} {r['wall']:>8.1f}")
    print(f"speed-up (step time 1 / {args.nproc}): {one['step'] / many['step']:.2f}x")


if __name__ == "__main__":
    main()
