"""Cost of taking the MEDS fingerprint in the log-prob pass: hooks vs ``output_hidden_states``.

Both variants run the same forward pass of a randomly initialised Qwen2-architecture model over a
batch of prompt + response sequences and produce the same fingerprints:

* ``hooks`` (ours, ``agents.fingerprint.FingerprintCapture``): forward hooks copy out only the
  hidden state at the ``{`` position of each sequence; one LM-head row per layer is applied.
* ``output_hidden_states`` (the peer: what a trainer gets from Hugging Face without hooks): every
  layer's full (B, T, H) hidden states are returned, and the LM head is applied to the position.

Printed: median wall time of each over several repeats and their ratio, and the bytes each keeps
alive beyond the logits (the retained hidden-state tensors, summed from the actual objects).

Run from the repository root (``agents`` is a top-level package of the clone):
``python -m benchmarks.agent_step [--layers 8 --hidden 256 --batch 8 --length 256]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from agents.fingerprint import FingerprintCapture, selected_layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 3,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=args.length,
        tie_word_embeddings=False,
    )
    model = AutoModelForCausalLM.from_config(config).to(args.device).eval()
    input_ids = torch.randint(0, args.vocab, (args.batch, args.length), device=args.device)
    attention = torch.ones_like(input_ids)
    generator = torch.Generator().manual_seed(1)
    positions = torch.randint(args.length // 2, args.length - 1, (args.batch,), generator=generator)
    positions = positions.to(args.device)
    layers = selected_layers(args.layers)
    rows = torch.arange(args.batch, device=args.device)
    next_tokens = input_ids[rows, positions + 1]

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    @torch.no_grad()
    def with_hooks() -> tuple[np.ndarray, int]:
        with FingerprintCapture(model, positions) as capture:
            logits = model(input_ids=input_ids, attention_mask=attention).logits
        features = capture.features(logits, input_ids, attention)
        kept = sum(t.numel() * t.element_size() for t in capture.hidden_at.values())
        return features, kept

    @torch.no_grad()
    def with_hidden_states() -> tuple[np.ndarray, int]:
        out = model(input_ids=input_ids, attention_mask=attention, output_hidden_states=True)
        head = model.get_output_embeddings()
        columns = [head(out.hidden_states[n][rows, positions])[rows, next_tokens] for n in layers]
        features = torch.stack(columns, dim=1).float().cpu().numpy()
        kept = sum(t.numel() * t.element_size() for t in out.hidden_states[1:])
        return features, kept

    timings: dict[str, list[float]] = {"hooks": [], "output_hidden_states": []}
    results = {}
    for _ in range(args.repeats):
        for name, run in (("hooks", with_hooks), ("output_hidden_states", with_hidden_states)):
            sync()
            start = time.perf_counter()
            results[name] = run()
            sync()
            timings[name].append(time.perf_counter() - start)
    hooks_features, hooks_bytes = results["hooks"]
    peer_features, peer_bytes = results["output_hidden_states"]
    gap = float(np.max(np.abs(hooks_features - peer_features)))
    print(
        f"model: Qwen2 config, {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}; "
        f"batch {args.batch} x length {args.length}; device {args.device}, threads {args.threads}"
    )
    print(f"fingerprint layers: {layers[0]}..{layers[-1]}; max |hooks - peer| = {gap:.2e}")
    hooks_time = statistics.median(timings["hooks"])
    peer_time = statistics.median(timings["output_hidden_states"])
    print(
        f"median time  hooks {hooks_time * 1e3:9.1f} ms   output_hidden_states "
        f"{peer_time * 1e3:9.1f} ms   ratio peer/hooks {peer_time / hooks_time:6.2f}"
    )
    print(
        f"kept memory  hooks {hooks_bytes / 2**20:9.3f} MiB  output_hidden_states "
        f"{peer_bytes / 2**20:9.1f} MiB  ratio peer/hooks {peer_bytes / hooks_bytes:8.1f}"
    )


if __name__ == "__main__":
    main()
