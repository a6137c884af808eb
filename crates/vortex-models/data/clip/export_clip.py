#!/usr/bin/env python3
"""Export CLIP (transformers `CLIPModel`) as two ONNX graphs that read their weights by name.

Pinned versions (tested): Python 3.11.7, torch==2.15.0 (CPU), transformers==4.57.6,
onnx==1.23.2, onnxruntime==1.31.1, safetensors==0.8.0, numpy==2.4.6.

Usage:
    python export_clip.py --out DIR --config tiny|b32|l14 [--seed N] [--dtype f32|f16]
    python export_clip.py --out DIR --checkpoint LOCAL_HF_DIR [--dtype f32|f16]

  --config   builds CLIPModel(CLIPConfig(...)) from hyperparameters (b32: those of
             openai/clip-vit-base-patch32, l14: openai/clip-vit-large-patch14, tiny: a test
             fixture) with torch.manual_seed(seed), then re-initializes EVERY parameter with
             seeded normal noise (transformers' own init leaves biases at 0 and layer norms at
             1, which a golden could not tell apart from missing tensors):
               Linear / Conv weights  N(0, 1/fan_in)      (activations stay O(1))
               embeddings             N(0, 0.5^2)          (token, position, class)
               layer-norm weights     1 + 0.1 * N(0, 1)
               biases                 0.1 * N(0, 1)        (layer-norm biases too)
               logit_scale            log(1 / 0.07)
             drawn from torch.Generator().manual_seed(seed) in named_parameters() order.
  --checkpoint  CLIPModel.from_pretrained(LOCAL_HF_DIR): the full-size towers. Nothing is
             downloaded here; on a machine that can reach the hub, first
                 huggingface-cli download openai/clip-vit-base-patch32 --local-dir ./clip-b32
                 huggingface-cli download openai/clip-vit-large-patch14 --local-dir ./clip-l14
             then  python export_clip.py --checkpoint ./clip-b32 --out exports/clip-b32
  --dtype    f32 (default; what Vortex reads: the towers run on ONNX Runtime's CPU provider)
             or f16 (weights and graphs in half precision; inputs/outputs stay float32).

The text tower pools at the FIRST end-of-text token (id 49407): the text config gets
eos_token_id=49407, bos_token_id=49406, pad_token_id=1 (OpenAI's configs say eos 2, which makes
transformers pool at argmax(input_ids): the same position for tokenizer output, since 49407 is
the largest id).

Writes into DIR:
  weights.safetensors  every parameter (both towers, both projections, logit_scale) under its
                       state_dict name, contiguous, f32 (or f16); no buffers (no position_ids).
                       Written by hand, byte-identical on every run: tensors in name order,
                       header with sorted keys, padded to a multiple of 8 bytes.
  vision.onnx          pixel_values float32 [batch, 3, S, S] -> image_embeds float32
                       [batch, projection_dim] = get_image_features (projected, not normalized)
  text.onnx            input_ids int64 [batch, 77] -> text_embeds float32 [batch, projection_dim]
                       = get_text_features(input_ids) (no attention_mask: the causal mask makes
                       the first-EOS output independent of what follows it; checked below)
  clip.json            the manifest Vortex reads (crates/vortex-models/src/export.rs).

The property Vortex relies on: in both graphs every initializer that comes from a parameter IS
that parameter, under its Hugging Face name, with its shape and dtype (no transposed, folded,
renamed or deduplicated copies), stored as external data pointing at its bytes inside
weights.safetensors (location "weights.safetensors", offset 8 + header_len + data_offsets[0]),
so the graph files hold no weight bytes, load stand-alone next to the weights, and take every
weight by name from the caller (OrtApi AddInitializer / AddExternalInitializers). To get there the
export (TorchScript exporter, opset 20, no constant folding) patches, for its duration only:
  - nn.Linear.forward: flatten to 2-D, F.linear, reshape back -> Gemm(x, W, b, transB=1)
    (the 3-D form exports as MatMul(x, Transpose(W))); bias-free Linears (the projections)
    still come out as MatMul(x, Transpose(W)) and are rewritten to Gemm(x, W, transB=1) here;
  - the embeddings' forward: add position_embedding.weight itself (its rows 0..n-1 are what
    the Gather over position_ids reads), so no Gather over a constant that a runtime folds
    into a copy;
  - the exporter's initializer de-duplication (which would merge equal-valued parameters
    under one name) is switched off.
Then it checks: every parameter initializer has its exact shape/dtype and is read only by the
expected op (Gemm B/C, Conv W, LayerNormalization scale/bias, Gather data, Add, Expand); each
tower references every parameter of its own prefixes; any other initializer is small
(< 4 KiB, else the script fails). Finally it verifies ONNX Runtime (CPU provider; prepacking
off and default options; with every weight handed over by name from numpy arrays read from
weights.safetensors through AddExternalInitializers, the graph alone in an empty directory; and
through AddInitializer, the graph beside its weights) against torch.

Memory (measured on ORT 1.31.1, B/32 image tower, 335 MiB of weights, prepacking off): weights
handed over with AddInitializer are used in place (session creation +18 MiB, of which ~9 MiB
is ORT_ENABLE_ALL's NCHWc reorder of the patch-embedding Conv weight); AddExternalInitializers
and AddExternalInitializersFromMemory copy every weight (+344 MiB); prepacking also adds a
packed copy (+~340 MiB).
"""
import argparse
import contextlib
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import types
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
from onnx import TensorProto
from safetensors.numpy import load_file as load_numpy
from transformers import CLIPConfig, CLIPModel
from transformers.models.clip import modeling_clip

OPSET = 20
CONTEXT = 77
VOCAB = 49408
BOS, EOS, PAD = 49406, 49407, 1
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]
WEIGHTS = "weights.safetensors"
GRAPHS = {"vision": "vision.onnx", "text": "text.onnx"}
PREFIXES = {"vision": ("vision_model.", "visual_projection."),
            "text": ("text_model.", "text_projection.")}
SMALL = 4096  # bytes: a non-parameter initializer at least this big fails the export
TOLERANCE = {"f32": 1e-4, "f16": 1e-2}  # max |ORT - torch| / max |torch|

# (text width, layers, heads), (vision width, layers, heads, patch, image size), projection
CONFIGS = {
    "tiny": ((8, 1, 2), (16, 2, 2, 8, 32), 8),
    "b32": ((512, 12, 8), (768, 12, 12, 32, 224), 512),
    "l14": ((768, 12, 12), (1024, 24, 16, 14, 224), 768),
}


def clip_config(text, vision, projection_dim):
    """A CLIPConfig with CLIP's fixed choices (4x MLP, quick_gelu, eps 1e-5, BPE vocab, 77)."""
    (tw, tl, th), (vw, vl, vh, patch, size) = text, vision
    config = CLIPConfig(
        text_config=dict(hidden_size=tw, num_hidden_layers=tl, num_attention_heads=th,
                         intermediate_size=4 * tw, vocab_size=VOCAB,
                         max_position_embeddings=CONTEXT, hidden_act="quick_gelu",
                         layer_norm_eps=1e-5, eos_token_id=EOS, bos_token_id=BOS,
                         pad_token_id=PAD),
        vision_config=dict(hidden_size=vw, num_hidden_layers=vl, num_attention_heads=vh,
                           intermediate_size=4 * vw, patch_size=patch, image_size=size,
                           num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5),
        projection_dim=projection_dim, logit_scale_init_value=math.log(1 / 0.07))
    return config


def with_attention(config, attn="eager"):
    """Eager (plain matmul/softmax) attention is what the graphs hold; set before building."""
    config._attn_implementation = attn
    return config


def reinit(model, seed):
    """Every parameter from seeded noise (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, p in model.named_parameters():
            owner = modules[name.rsplit(".", 1)[0]] if "." in name else model
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name == "logit_scale":
                value = torch.full_like(noise, math.log(1 / 0.07))
            elif isinstance(owner, nn.LayerNorm):
                value = 1 + 0.1 * noise if name.endswith(".weight") else 0.1 * noise
            elif name.endswith(".bias"):
                value = 0.1 * noise
            elif isinstance(owner, (nn.Linear, nn.Conv2d)):
                value = noise / math.sqrt(p[0].numel())
            else:  # token / position embeddings, class_embedding
                value = 0.5 * noise
            p.copy_(value.to(p.dtype))


def build_seeded(name, seed):
    text, vision, proj = CONFIGS[name]
    torch.manual_seed(seed)
    model = CLIPModel(with_attention(clip_config(text, vision, proj)))
    reinit(model, seed)
    return model.eval()


def build_from_manifest(directory, attn="eager"):
    """CLIPModel rebuilt from DIR/clip.json + DIR/weights.safetensors (f32)."""
    with open(os.path.join(directory, "clip.json")) as f:
        m = json.load(f)
    t, v = m["text"], m["vision"]
    config = clip_config((t["width"], t["layers"], t["heads"]),
                         (v["width"], v["layers"], v["heads"], v["patch"], v["image_size"]),
                         m["projection_dim"])
    model = CLIPModel(with_attention(config, attn))
    state = {k: torch.from_numpy(a).float()
             for k, a in load_numpy(os.path.join(directory, m["weights"])).items()}
    model.load_state_dict(state, strict=True)
    return model.eval(), m


def check_supported(model):
    """The Rust side (crates/vortex-models/src/clip) assumes these; refuse anything else."""
    c = model.config
    for tower, cfg in (("text", c.text_config), ("vision", c.vision_config)):
        if cfg.intermediate_size != 4 * cfg.hidden_size:
            sys.exit(f"{tower}: intermediate_size {cfg.intermediate_size} is not 4 x width")
        if cfg.hidden_act != "quick_gelu":
            sys.exit(f"{tower}: hidden_act {cfg.hidden_act!r}, not quick_gelu")
        if abs(cfg.layer_norm_eps - 1e-5) > 1e-12:
            sys.exit(f"{tower}: layer_norm_eps {cfg.layer_norm_eps}, not 1e-5")
        if cfg.hidden_size % cfg.num_attention_heads:
            sys.exit(f"{tower}: width not a multiple of heads")
    t = c.text_config
    if t.vocab_size != VOCAB or t.max_position_embeddings != CONTEXT:
        sys.exit(f"text: vocab {t.vocab_size} / context {t.max_position_embeddings}, "
                 f"not {VOCAB} / {CONTEXT}")


# --- export -------------------------------------------------------------------------------

def _linear_2d(self, x):
    shape = x.shape
    y = F.linear(x.reshape(-1, shape[-1]), self.weight, self.bias)
    return y.reshape(*shape[:-1], y.shape[-1])


def _vision_embeddings(self, pixel_values, interpolate_pos_encoding=False):
    batch = pixel_values.shape[0]
    patches = self.patch_embedding(pixel_values.to(dtype=self.patch_embedding.weight.dtype))
    patches = patches.flatten(2).transpose(1, 2)
    cls = self.class_embedding.expand(batch, 1, -1)
    embeddings = torch.cat([cls, patches], dim=1)
    # position_ids is arange(num_positions): the Gather would read every row in order.
    return embeddings + self.position_embedding.weight


def _text_embeddings(self, input_ids=None, position_ids=None, inputs_embeds=None):
    assert position_ids is None and inputs_embeds is None
    if input_ids.shape[-1] != self.position_embedding.weight.shape[0]:
        raise ValueError("the export reads exactly max_position_embeddings tokens")
    return self.token_embedding(input_ids) + self.position_embedding.weight


@contextlib.contextmanager
def export_patches():
    """Patches that keep every parameter a graph initializer under its own name."""
    from torch.onnx._internal.torchscript_exporter import utils as ts_utils
    saved = [(nn.Linear, "forward", nn.Linear.forward),
             (modeling_clip.CLIPVisionEmbeddings, "forward",
              modeling_clip.CLIPVisionEmbeddings.forward),
             (modeling_clip.CLIPTextEmbeddings, "forward",
              modeling_clip.CLIPTextEmbeddings.forward)]
    dedup = ts_utils._C._jit_pass_onnx_deduplicate_initializers
    nn.Linear.forward = _linear_2d
    modeling_clip.CLIPVisionEmbeddings.forward = _vision_embeddings
    modeling_clip.CLIPTextEmbeddings.forward = _text_embeddings
    ts_utils._C._jit_pass_onnx_deduplicate_initializers = lambda graph, params, training: params
    try:
        yield
    finally:
        for owner, attr, fn in saved:
            setattr(owner, attr, fn)
        ts_utils._C._jit_pass_onnx_deduplicate_initializers = dedup


def export_tower(model, tower, path, size, half):
    """torch.onnx.export of one tower, straight from the CLIPModel (so names are its own)."""
    if tower == "vision":
        def forward(self, pixel_values):
            x = pixel_values.to(torch.float16) if half else pixel_values
            return self.get_image_features(pixel_values=x).float()
        example = torch.randn(2, 3, size, size)
        names = ("pixel_values", "image_embeds")
    else:
        def forward(self, input_ids):
            return self.get_text_features(input_ids=input_ids).float()
        example = torch.full((2, CONTEXT), EOS, dtype=torch.int64)
        example[:, 0] = BOS
        example[:, 1:4] = torch.tensor([320, 1125, 539])
        names = ("input_ids", "text_embeds")
    model.forward = types.MethodType(forward, model)
    try:
        with export_patches(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), path, input_names=[names[0]], output_names=[names[1]],
                dynamic_axes={names[0]: {0: "batch"}, names[1]: {0: "batch"}},
                opset_version=OPSET, do_constant_folding=False, export_params=True,
                keep_initializers_as_inputs=False, dynamo=False)
    finally:
        del model.forward


def fuse_projection_transposes(graph, params):
    """MatMul(x, Transpose(W)) of a bias-free Linear (x is 2-D: `_linear_2d`) -> Gemm(x, W,
    transB=1), so W is read as it is stored."""
    producers = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    dead = []
    for n in list(graph.node):
        if n.op_type != "MatMul":
            continue
        t = producers.get(n.input[1])
        if t is None or t.op_type != "Transpose" or t.input[0] not in params:
            continue
        perm = [a.ints for a in t.attribute if a.name == "perm"]
        if perm and list(perm[0]) != [1, 0]:
            continue
        if len(consumers[t.output[0]]) != 1:
            continue
        gemm = onnx.helper.make_node("Gemm", [n.input[0], t.input[0]], list(n.output),
                                     name=n.name.replace("MatMul", "Gemm"), transB=1)
        idx = list(graph.node).index(n)
        graph.node.remove(n)
        graph.node.insert(idx, gemm)
        dead.append(t)
    for t in dead:
        graph.node.remove(t)
    return len(dead)


# Where a parameter may be read: (op type, input index).
ALLOWED_USES = {("Gemm", 1), ("Gemm", 2), ("Conv", 1), ("LayerNormalization", 1),
                ("LayerNormalization", 2), ("Gather", 0), ("Add", 0), ("Add", 1),
                ("Expand", 0)}


def check_graph(model_proto, tower, params, problems):
    """(a) parameter initializers exact; (b) other initializers small; uses as expected;
    the tower reads every parameter of its prefixes."""
    g = model_proto.graph
    dtype = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16}
    found, others = set(), []
    for t in g.initializer:
        if t.name in params:
            a = params[t.name]
            if list(t.dims) != list(a.shape) or t.data_type != dtype[a.dtype]:
                problems.append(f"{tower}: {t.name} is {list(t.dims)} "
                                f"{TensorProto.DataType.Name(t.data_type)}, the parameter "
                                f"{list(a.shape)} {a.dtype}")
            found.add(t.name)
        else:
            nbytes = onnx.numpy_helper.to_array(t).nbytes
            others.append((t.name, list(t.dims), nbytes))
            if nbytes >= SMALL:
                problems.append(f"{tower}: non-parameter initializer {t.name} {list(t.dims)} "
                                f"of {nbytes} bytes")
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    nbytes = onnx.numpy_helper.to_array(a.t).nbytes
                    if nbytes >= SMALL:
                        problems.append(f"{tower}: Constant {n.output[0]} of {nbytes} bytes")
        for i, name in enumerate(n.input):
            if name in params:
                if (n.op_type, i) not in ALLOWED_USES:
                    problems.append(f"{tower}: {name} read by {n.op_type} input {i}")
                if n.op_type == "Gemm":
                    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
                    if i == 1 and (attrs.get("transB", 0) != 1 or attrs.get("transA", 0)):
                        problems.append(f"{tower}: {name} read by Gemm without transB=1")
    expected = {k for k in params if k.startswith(PREFIXES[tower])}
    if found != expected:
        problems.append(f"{tower}: parameters missing {sorted(expected - found)}, "
                        f"unexpected {sorted(found - expected)}")
    return others


def externalize(model_proto, params, offsets):
    """Parameter initializers -> external data at their bytes inside weights.safetensors."""
    for t in model_proto.graph.initializer:
        if t.name not in params:
            continue
        start, length = offsets[t.name]
        expect = params[t.name].tobytes()
        raw = t.raw_data if t.HasField("raw_data") else onnx.numpy_helper.to_array(t).tobytes()
        if raw != expect:
            sys.exit(f"{t.name}: graph bytes differ from weights.safetensors")
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in (("location", WEIGHTS), ("offset", str(start)), ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = k, v


def write_safetensors(path, arrays, metadata):
    """safetensors by hand, byte-identical on every run: tensors in name order, packed without
    gaps (all of one dtype, so each is aligned to its item size), the JSON header with sorted
    keys and no spaces, space-padded to a multiple of 8."""
    st_dtype = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}
    header, pos = {"__metadata__": metadata}, 0
    names = sorted(arrays)
    for name in names:
        a = arrays[name]
        header[name] = {"dtype": st_dtype[a.dtype], "shape": list(a.shape),
                        "data_offsets": [pos, pos + a.nbytes]}
        pos += a.nbytes
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name in names:
            a = arrays[name]
            f.write(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())


def safetensors_offsets(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: (8 + n + v["data_offsets"][0], v["data_offsets"][1] - v["data_offsets"][0])
            for k, v in header.items() if k != "__metadata__"}


# --- verification -------------------------------------------------------------------------

def session(path, prepacking, initializers=None, api="external"):
    """An ORT session as Vortex makes one (CPU provider, 2 threads, ORT_ENABLE_ALL), with the
    weights from the graph's external data, or handed over by name: api "external"
    (AddExternalInitializers: ORT 1.31 copies them into the session; the graph's external data
    need not exist) or "shared" (AddInitializer: used in place, what Vortex does; ORT still
    checks that the external-data file exists)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not prepacking:
        so.add_session_config_entry("session.disable_prepacking", "1")
    keep = None
    if initializers is not None:
        names = sorted(initializers)
        keep = [ort.OrtValue.ortvalue_from_numpy(initializers[n]) for n in names]
        if api == "external":
            so.add_external_initializers(names, keep)
        else:
            for n, v in zip(names, keep):
                so.add_initializer(n, v)
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    s._vortex_keep = keep  # the OrtValues must outlive the session
    return s


def text_inputs(seed):
    """A few token sequences: BOS, random ids, EOS, padded with EOS (and their masks)."""
    gen = torch.Generator().manual_seed(seed + 1)
    lengths = [1, 5, 30, 75]
    ids = torch.full((len(lengths), CONTEXT), EOS, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, 0] = BOS
        ids[row, 1:1 + n] = torch.randint(0, BOS, (n,), generator=gen)
        mask[row, :n + 2] = 1
    return ids, mask


def verify(model, out, size, seed, params, tolerance):
    """ORT (prepacking off, default, by-name weights) vs torch; returns the diffs."""
    gen = torch.Generator().manual_seed(seed + 2)
    pixels = torch.randn(3, 3, size, size, generator=gen)
    ids, mask = text_inputs(seed)
    with torch.inference_mode():
        ref = {"vision": model.get_image_features(pixel_values=pixels).float().numpy(),
               "text": model.get_text_features(input_ids=ids).float().numpy()}
        masked = model.get_text_features(input_ids=ids, attention_mask=mask).float().numpy()
    scale = float(np.abs(ref["text"]).max())
    mask_diff = float(np.abs(masked - ref["text"]).max())
    print(f"text: without vs with attention_mask (padded prompts): max |diff| {mask_diff:.3g} "
          f"(scale {scale:.3g})")
    if mask_diff > 1e-5 * scale:
        sys.exit("the attention mask changes the pooled first-EOS output")
    feeds = {"vision": ("pixel_values", pixels.numpy()), "text": ("input_ids", ids.numpy())}
    report = {"attention_mask_max_abs_diff": mask_diff}
    with tempfile.TemporaryDirectory() as alone:
        for tower, graph in GRAPHS.items():
            path = os.path.join(out, graph)
            lone = os.path.join(alone, graph)  # no weights.safetensors beside it
            shutil.copyfile(path, lone)
            own = {k: v for k, v in params.items() if k.startswith(PREFIXES[tower])}
            name, x = feeds[tower]
            outs = {}
            for label, s in (("ort_prepacking_off", session(path, False)),
                             ("ort_default", session(path, True)),
                             ("ort_by_name", session(lone, False, own)),
                             ("ort_by_name_default", session(lone, True, own)),
                             ("ort_shared", session(path, False, own, "shared"))):
                outs[label] = s.run(None, {name: x})[0]
            scale = float(np.abs(ref[tower]).max())
            r = {"scale": scale}
            for label, y in outs.items():
                d = float(np.abs(y - ref[tower]).max())
                r[label + "_max_abs_diff"] = d
                print(f"{tower}: {label:22s} vs torch: max |diff| {d:.3g} (relative "
                      f"{d / scale:.3g})")
                if not d <= tolerance * scale:
                    sys.exit(f"{tower}: {label} differs from torch by {d} (scale {scale})")
            same = float(np.abs(outs["ort_by_name"] - outs["ort_prepacking_off"]).max())
            r["by_name_vs_file_max_abs_diff"] = same
            shared = float(np.abs(outs["ort_shared"] - outs["ort_prepacking_off"]).max())
            r["shared_vs_file_max_abs_diff"] = shared
            print(f"{tower}: by-name vs file-backed weights: max |diff| {same:.3g} "
                  f"(AddExternalInitializers), {shared:.3g} (AddInitializer)")
            report[tower] = r
    return report


# --- main ---------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", choices=sorted(CONFIGS))
    src.add_argument("--checkpoint")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    args = ap.parse_args()
    if args.checkpoint and args.seed != 0:
        ap.error("--seed applies to --config only")
    half = args.dtype == "f16"

    if args.config:
        model = build_seeded(args.config, args.seed)
        source = f"seeded:{args.seed} ({args.config})"
    else:
        model = CLIPModel.from_pretrained(args.checkpoint, torch_dtype=torch.float32,
                                          attn_implementation="eager").eval()
        model.config.text_config.eos_token_id = EOS
        model.config.text_config.bos_token_id = BOS
        model.config.text_config.pad_token_id = PAD
        model.text_model.eos_token_id = EOS
        source = args.checkpoint
    check_supported(model)
    if half:
        model = model.half()

    out = args.out
    os.makedirs(out, exist_ok=True)
    c = model.config
    tc, vc = c.text_config, c.vision_config
    size = vc.image_size

    # weights.safetensors: parameters only, by state_dict name
    named = dict(model.named_parameters())
    state = model.state_dict()
    extra = sorted(set(state) - set(named))
    if extra:
        sys.exit(f"state_dict has non-parameter entries {extra}")
    wpath = os.path.join(out, WEIGHTS)
    write_safetensors(wpath, {k: v.detach().contiguous().numpy() for k, v in named.items()},
                      {"format": "pt", "source": source, "dtype": args.dtype})
    offsets = safetensors_offsets(wpath)
    params = load_numpy(wpath)  # also proves the file is what the safetensors library reads
    assert set(params) == set(named)
    for k, v in named.items():
        assert np.array_equal(params[k], v.detach().numpy()), k

    problems, summary = [], {}
    for tower, graph in GRAPHS.items():
        path = os.path.join(out, graph)
        export_tower(model, tower, path, size, half)
        proto = onnx.load(path)
        fused = fuse_projection_transposes(proto.graph, params)
        others = check_graph(proto, tower, params, problems)
        externalize(proto, params, offsets)
        with open(path, "wb") as f:
            f.write(proto.SerializeToString(deterministic=True))
        onnx.checker.check_model(path, full_check=True)
        ops = {}
        for n in proto.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        n_params = sum(1 for t in proto.graph.initializer if t.name in params)
        print(f"{graph}: {os.path.getsize(path)} bytes, {n_params} parameter initializers "
              f"(external), {len(others)} other initializers "
              f"({sum(o[2] for o in others)} bytes), {fused} projection MatMul+Transpose "
              f"-> Gemm")
        print("  ops:", dict(sorted(ops.items(), key=lambda kv: -kv[1])))
        summary[tower] = {"ops": ops, "other_initializers": others}
    if problems:
        for p in problems:
            print("PROBLEM:", p)
        sys.exit(1)

    manifest = {
        "kind": "clip", "format": 1, "dtype": args.dtype,
        "text": {"width": tc.hidden_size, "layers": tc.num_hidden_layers,
                 "heads": tc.num_attention_heads, "vocab": tc.vocab_size,
                 "context": tc.max_position_embeddings},
        "vision": {"width": vc.hidden_size, "layers": vc.num_hidden_layers,
                   "heads": vc.num_attention_heads, "patch": vc.patch_size,
                   "image_size": vc.image_size},
        "projection_dim": c.projection_dim,
        "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD,
        "source": source,
        "graphs": dict(GRAPHS),
        "weights": WEIGHTS,
        "versions": {"torch": torch.__version__.split("+")[0],
                     "transformers": transformers.__version__, "onnx": onnx.__version__},
    }
    with open(os.path.join(out, "clip.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")

    print(f"{WEIGHTS}: {os.path.getsize(wpath)} bytes, {len(params)} tensors")
    report = verify(model, out, size, args.seed, params, TOLERANCE[args.dtype])
    print(json.dumps({"verify": report}, indent=None))


if __name__ == "__main__":
    main()
