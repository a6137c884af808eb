#!/usr/bin/env python3
"""The Python baselines for CLIP's image tower: an export written by
crates/vortex-models/data/clip/export_clip.py (DIR holds clip.json, vision.onnx,
weights.safetensors), run on BATCH images of [3, S, S] per run.

Modes:
  ort          Python onnxruntime on DIR/vision.onnx with the session settings Vortex uses
               (CPU provider, 2 intra-op threads, 1 inter-op, ORT_ENABLE_ALL, prepacking off,
               no spinning, denormals as zero); the weights come from weights.safetensors through the graph's
               external-data references.
  ort-prepack  the same with ONNX Runtime's default prepacking (weights repacked at session
               creation: faster GEMMs, a second copy of the weights in memory).
  torch        transformers CLIPModel rebuilt from DIR/clip.json + DIR/weights.safetensors
               (transformers' default attention), torch.set_num_threads(2),
               torch.inference_mode(), get_image_features.

Pinned: onnxruntime==1.31.1 and numpy for ort; torch==2.15.0 (CPU), transformers==4.57.6,
safetensors==0.8.0 for torch.

Usage: clip_worker.py ort|ort-prepack|torch DIR BATCH
Prints "ready ..." once loaded; then one line per run on stdin ("run"), answered
"done N" (N images embedded) after each run. Any other line ends it.
"""
import json
import os
import sys

import numpy as np

mode, directory, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(os.path.join(directory, "clip.json")) as f:
    manifest = json.load(f)
size = manifest["vision"]["image_size"]
pixels = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)

if mode in ("ort", "ort-prepack"):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if mode == "ort":
        so.add_session_config_entry("session.disable_prepacking", "1")
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    session = ort.InferenceSession(os.path.join(directory, manifest["graphs"]["vision"]), so,
                                   providers=["CPUExecutionProvider"])

    def run():
        return session.run(["image_embeds"], {"pixel_values": pixels})[0]

    version = "onnxruntime " + ort.__version__
elif mode == "torch":
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPConfig, CLIPModel

    torch.set_num_threads(2)
    t, v = manifest["text"], manifest["vision"]
    # CLIP's fixed choices, as export_clip.py builds and checks them.
    config = CLIPConfig(
        text_config=dict(hidden_size=t["width"], num_hidden_layers=t["layers"],
                         num_attention_heads=t["heads"], intermediate_size=4 * t["width"],
                         vocab_size=t["vocab"], max_position_embeddings=t["context"],
                         hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=49407,
                         bos_token_id=49406, pad_token_id=1),
        vision_config=dict(hidden_size=v["width"], num_hidden_layers=v["layers"],
                           num_attention_heads=v["heads"], intermediate_size=4 * v["width"],
                           patch_size=v["patch"], image_size=v["image_size"],
                           hidden_act="quick_gelu", layer_norm_eps=1e-5),
        projection_dim=manifest["projection_dim"])
    model = CLIPModel(config)
    state = {k: w.float() for k, w in
             load_file(os.path.join(directory, manifest["weights"])).items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.from_numpy(pixels)

    def run():
        with torch.inference_mode():
            return model.get_image_features(pixel_values=x).numpy()

    version = "torch " + torch.__version__
else:
    sys.exit(f"mode {mode!r}: ort, ort-prepack or torch")

out = run()  # warm-up; also checks the shape
assert out.shape == (batch, manifest["projection_dim"]), out.shape
print("ready", version, flush=True)
for line in sys.stdin:
    if line.strip() != "run":
        break
    out = run()
    print("done", out.shape[0], flush=True)
