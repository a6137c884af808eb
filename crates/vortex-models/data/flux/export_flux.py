#!/usr/bin/env python3
"""Export FLUX.1-schnell (diffusers FluxPipeline's parts) as four ONNX graphs that read their
weights by name.

Pinned versions (tested): Python 3.11.7, torch==2.15.0 (CPU), transformers==4.57.6,
diffusers==0.36.0 (with huggingface-hub==0.36.2: diffusers 0.37+ wants huggingface-hub>=1.x,
which transformers 4.57 refuses), onnx==1.23.2, onnxruntime==1.31.1, safetensors==0.8.0,
numpy==2.4.6.
    pip install diffusers==0.36.0 "huggingface-hub>=0.34,<1.0"

Usage:
    python export_flux.py --out DIR --config tiny [--seed N] [--dtype f32|f16]
    python export_flux.py --out DIR --checkpoint LOCAL_DIFFUSERS_DIR [--dtype f32|f16]
                          [--no-verify] [--in-memory]

  --config tiny  builds the four networks from hyperparameters (CONFIGS["tiny"], a test
             fixture: CLIP text width 8 over CLIP's 49,408-token BPE vocabulary; T5 d_model 16,
             1 layer, over a 384-id byte vocabulary (ByT5's ids: utf-8 byte + 3, pad 0, </s> 1,
             unk 2; see T5 TOKENS below); transformer 1 double + 1 single block, 2 heads of 16,
             RoPE axes (4, 6, 6); VAE decoder/encoder with 4 levels (8, 8, 16, 16 channels, so
             the 8x scale factor of FLUX holds), 16 latent channels, FLUX's scaling and shift
             factors) with torch.manual_seed(seed), then re-initializes EVERY parameter with
             seeded normal noise (the libraries' own inits leave biases at 0 and norms at 1,
             which a golden could not tell apart from missing tensors):
               Linear / Conv weights  N(0, 1/fan_in)      (activations stay O(1))
               embeddings             N(0, 0.5^2)          (token, position, T5 relative bias)
               norm weights           1 + 0.1 * N(0, 1)    (LayerNorm, RMSNorm, GroupNorm)
               biases                 0.1 * N(0, 1)
               VAE decoder.conv_out   weight and bias x 0.5 more (keeps the tiny image
                                      mostly inside [-1, 1], so the uint8 golden is not clipped)
             drawn from torch.Generator().manual_seed(seed + k) for component k (0 CLIP text,
             1 T5, 2 transformer, 3 VAE), in named_parameters() order.
  --checkpoint  a local copy of the diffusers-format FLUX.1-schnell repository (subfolders
             text_encoder/, text_encoder_2/, transformer/, vae/, scheduler/). Nothing is
             downloaded here; on a machine that can reach the hub, first
                 huggingface-cli download black-forest-labs/FLUX.1-schnell --local-dir ./schnell
             The official weights are bf16; they are written as --dtype (f32, or f16: T5 keeps
             its "wo" Linears in f32, as transformers does for T5 in half precision).
             Streaming (the default): the float model is never held in memory. The four
             networks are built from the subfolders' config.json on the meta device, each
             parameter then replaced by a zero-stride placeholder (one element expanded to
             its shape, in its --dtype), and traced on CPU with export_params=False, so each
             parameter comes out a graph input under its name; those become the initializers
             (external data into weights.safetensors, as below). weights.safetensors is
             written from the shards' headers (header first, same order and alignment as
             write_safetensors) and then tensor by tensor (read, converted by torch, appended).
             The output is byte for byte what --in-memory writes (checked on a seeded tiny
             checkpoint in the diffusers layout, bf16 shards, f32 and f16). Memory: the trace
             needs about 2 GB RSS at full size (placeholders take no memory; each Linear's
             weight is made contiguous for one matmul at a time, at most ~0.5 GB), the
             writer about 3x the largest tensor's bf16 bytes (T5's shared embedding: ~0.8 GB
             in f32); disk: the output (67.4 GB in f32, 34 GB in f16). The verification (unless
             --no-verify) loads the checkpoint's components one at a time with
             from_pretrained and ORT sessions over the written weights: at full size about 2x
             the transformer's bytes in --dtype (~100 GB in f32), so pass --no-verify on a
             smaller machine.
             --in-memory: the old path, loading all four components whole with
             from_pretrained and tracing them: about 2x the weights' bytes of RAM (75 GB in
             f32, 40 GB in f16).
  --dtype    f32 (default) or f16: weights and graphs in that precision; graph inputs and
             outputs stay float32 / int64 either way.

Graphs (batch and sequence axes are dynamic):
  clip_text.onnx    input_ids int64 [batch, 77] -> pooler_output float32 [batch, width]
                    CLIPTextModel(input_ids).pooler_output: final-layer-normed hidden state at
                    the FIRST end-of-text token (eos_token_id set to 49407; OpenAI's config says
                    2, which pools at argmax(input_ids): the same place for tokenizer output).
  t5.onnx           input_ids int64 [batch, seq] -> last_hidden_state float32
                    [batch, seq, d_model] (T5EncoderModel, no attention mask, as FluxPipeline
                    calls it: the padded positions are attended to).
  transformer.onnx  hidden_states float32 [batch, img_seq, in_channels] (packed latents),
                    encoder_hidden_states float32 [batch, txt_seq, joint_attention_dim],
                    pooled_projections float32 [batch, pooled_projection_dim],
                    timestep float32 [batch] (sigma: FluxPipeline passes t / 1000),
                    img_ids float32 [img_seq, 3], txt_ids float32 [txt_seq, 3]
                    -> noise_pred float32 [batch, img_seq, out_channels]
                    (one FluxTransformer2DModel call, guidance=None as schnell has no guidance
                    embedder; RoPE is computed inside from the ids, in float64 as diffusers does)
  vae_decoder.onnx  latents float32 [batch, 16, h, w] (already unscaled:
                    packed_to_image(latents) / scaling_factor + shift_factor)
                    -> image float32 [batch, 3, 8h, 8w] in about [-1, 1]
                    (AutoencoderKL.decode(latents).sample)

Writes into DIR:
  weights.safetensors  every parameter of the four components under the diffusers /
                       transformers state_dict name prefixed by its component, as in the
                       official repository's layout: "transformer.", "text_encoder." (CLIP),
                       "text_encoder_2." (T5), "vae." (encoder included: no graph reads it).
                       Written by hand, byte-identical on every run: tensors ordered by item
                       size (largest first), then name; header with sorted keys, padded to a
                       multiple of 8 bytes, so every tensor is aligned to its item size.
  clip_text.onnx, t5.onnx, transformer.onnx, vae_decoder.onnx
  flux.json            manifest: hyperparameters, tokenizers, scheduler constants (schnell's
                       FlowMatchEulerDiscreteScheduler config), latent packing sizes, each
                       graph's inputs and outputs.
  t5_tokenizer.json    (--checkpoint only) the checkpoint's tokenizer_2/tokenizer.json, copied
                       byte for byte; when the checkpoint has only tokenizer_2/spiece.model,
                       T5TokenizerFast.from_pretrained(tokenizer_2/) (transformers' converter,
                       with its tokenizer_config.json) saved as tokenizer.json; with neither
                       the export is refused before it starts. tokenizers.t5 names it
                       ({"kind": "tokenizer.json", "file": "t5_tokenizer.json", "max_length":
                       256, "pad": 0, "eos": 1, "unk": 2, "padding", "note"}), and Vortex reads
                       T5's ids through it with the `tokenizers` crate, cut and padded to
                       max_length as FluxPipeline asks T5TokenizerFast. --config tiny writes no
                       file and uses ByT5 ids (utf-8 byte + 3) instead (tokenizers.t5 kind
                       "byt5").

The property Vortex relies on: in every graph each initializer that comes from a parameter IS
that parameter, under its prefixed name, with its shape and dtype (no transposed, folded,
reshaped, renamed or de-duplicated copies), stored as external data pointing at its bytes
inside weights.safetensors (location "weights.safetensors", offset 8 + header_len +
data_offsets[0]), so the graphs hold no weight bytes, load stand-alone next to the weights, and
take every weight by name from the caller. To get there the export (TorchScript exporter,
opset 20, no constant folding) patches, for its duration only:
  - nn.Linear.forward: flatten to 2-D, F.linear, reshape back -> Gemm(x, W, b, transB=1)
    (the 3-D form exports as MatMul(x, Transpose(W))); bias-free Linears (all of T5's) come
    out as MatMul(x, Transpose(W)) and are rewritten to Gemm(x, W, transB=1) here;
  - CLIP's text embeddings: add position_embedding.weight itself (no Gather over a constant
    position_ids that a runtime folds into a copy);
  - nn.GroupNorm.forward: normalize over the groups without affine, then x * weight + bias on
    a channels-last view (Transpose of the activation, never of the parameter), so the [C]
    weight and bias are read as they are stored (the exporter's own form Unsqueezes them,
    which a runtime folds into copies);
  - torch.nn.RMSNorm.forward (FLUX's q/k norms): the same arithmetic in plain ops
    (aten::rms_norm has no ONNX symbolic), weight read by Mul;
  - diffusers' apply_rotary_emb (FLUX's form): unflatten instead of
    reshape(*x.shape[:-1], -1, 2), which the tracer baked into constant shapes here;
  - the exporter's initializer de-duplication is switched off.
Then it checks that every parameter initializer has its exact shape/dtype/bytes and is read
only by Gemm (B with transB=1, C), Conv (W, B), LayerNormalization (scale, bias), Gather (data),
Mul or Add; that each graph reads every parameter of its component (the VAE decoder: all but
vae.encoder.*); that any other initializer or Constant is small (< 4 KiB, else it fails; but
the ones / zeros a LayerNorm without affine gets as LayerNormalization's scale / bias pass).
Finally (unless --no-verify) ONNX Runtime (CPU provider, prepacking off, weights handed over by
name from weights.safetensors with the graph alone in an empty directory; and file-backed) is
compared with torch.
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
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clip"))
import export_clip  # noqa: E402  (shared export helpers: Linear patch, CLIP embeddings, ...)

OPSET = 20
CLIP_CONTEXT = 77
CLIP_VOCAB = 49408
CLIP_BOS, CLIP_EOS, CLIP_PAD = 49406, 49407, 49407  # FLUX's CLIP tokenizer pads with EOS
WEIGHTS = "weights.safetensors"
SMALL = 4096  # bytes: a non-parameter initializer at least this big fails the export
TOLERANCE = {"f32": 1e-4, "f16": 2e-2}  # max |ORT - torch| / max |torch|

COMPONENTS = ("text_encoder", "text_encoder_2", "transformer", "vae")
GRAPHS = {"clip_text": "clip_text.onnx", "t5": "t5.onnx", "transformer": "transformer.onnx",
          "vae_decoder": "vae_decoder.onnx"}
GRAPH_COMPONENT = {"clip_text": "text_encoder", "t5": "text_encoder_2",
                   "transformer": "transformer", "vae_decoder": "vae"}
UNREAD = ("vae.encoder.", "vae.quant_conv.")  # parameters no graph reads

# FLUX.1-schnell's scheduler/scheduler_config.json (FlowMatchEulerDiscreteScheduler).
SCHNELL_SCHEDULER = {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False,
                     "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
                     "max_image_seq_len": 4096}
SCHNELL_STEPS = 4

# The official FLUX.1-schnell component configs (config.json of each subfolder).
SCHNELL = {
    "text_encoder": dict(  # CLIPTextModel (openai/clip-vit-large-patch14's text tower)
        hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
        max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu",
        layer_norm_eps=1e-5, projection_dim=768),
    "text_encoder_2": dict(  # T5EncoderModel (google/t5-v1_1-xxl's encoder)
        vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
        layer_norm_epsilon=1e-6, tie_word_embeddings=False),
    "transformer": dict(  # FluxTransformer2DModel
        patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
        attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
        pooled_projection_dim=768, guidance_embeds=False, axes_dims_rope=(16, 56, 56)),
    "vae": dict(  # AutoencoderKL
        in_channels=3, out_channels=3, latent_channels=16,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, act_fn="silu",
        norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
        use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=True,
        force_upcast=True),
}
SCHNELL_T5_MAX_LENGTH = 256  # FLUX.1-schnell's model card: max_sequence_length=256
SCHNELL_IMAGE = 512          # the actor's image

T5_BYTE_VOCAB = 384  # ByT5's: pad 0, </s> 1, unk 2, utf-8 byte b -> b + 3, 125 extra ids
CONFIGS = {
    "tiny": {
        "text_encoder": dict(SCHNELL["text_encoder"], hidden_size=8, intermediate_size=32,
                             num_attention_heads=2, num_hidden_layers=1, projection_dim=8),
        "text_encoder_2": dict(SCHNELL["text_encoder_2"], vocab_size=T5_BYTE_VOCAB, d_model=16,
                               d_kv=8, d_ff=32, num_layers=1, num_heads=2),
        "transformer": dict(SCHNELL["transformer"], num_layers=1, num_single_layers=1,
                            attention_head_dim=16, num_attention_heads=2,
                            joint_attention_dim=16, pooled_projection_dim=8,
                            axes_dims_rope=(4, 6, 6)),
        "vae": dict(SCHNELL["vae"], block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                    norm_num_groups=4, sample_size=64),
        "t5_max_length": 32,
        "image_size": 64,
        "t5_tokenizer": "byt5",
    },
}
SCHNELL_EXTRA = {"t5_max_length": SCHNELL_T5_MAX_LENGTH, "image_size": SCHNELL_IMAGE,
                 "t5_tokenizer": "t5-sentencepiece"}


# --- building -----------------------------------------------------------------------------

def clip_text_config(kw):
    from transformers import CLIPTextConfig
    config = CLIPTextConfig(**kw, eos_token_id=CLIP_EOS, bos_token_id=CLIP_BOS, pad_token_id=1)
    config._attn_implementation = "eager"
    return config


def t5_config(kw):
    from transformers import T5Config
    config = T5Config(**kw, is_encoder_decoder=False, use_cache=False, pad_token_id=0,
                      eos_token_id=1, decoder_start_token_id=0)
    config._attn_implementation = "eager"
    return config


def build_components(spec, device=None):
    """The four networks from a CONFIGS/SCHNELL-like spec (library default init)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel
    ctx = torch.device(device) if device else contextlib.nullcontext()
    with ctx:
        return {
            "text_encoder": CLIPTextModel(clip_text_config(spec["text_encoder"])),
            "text_encoder_2": T5EncoderModel(t5_config(spec["text_encoder_2"])),
            "transformer": FluxTransformer2DModel(**spec["transformer"]),
            "vae": AutoencoderKL(**spec["vae"]),
        }


NORMS = (nn.LayerNorm, nn.GroupNorm)


def _is_norm(module):
    name = type(module).__name__
    return isinstance(module, NORMS) or name in ("RMSNorm", "T5LayerNorm")


def reinit(model, seed, component):
    """Every parameter from seeded noise (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, p in model.named_parameters():
            owner = modules[name.rsplit(".", 1)[0]] if "." in name else model
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if _is_norm(owner):
                value = 1 + 0.1 * noise if name.endswith(".weight") else 0.1 * noise
            elif name.endswith(".bias"):
                value = 0.1 * noise
            elif isinstance(owner, (nn.Linear, nn.Conv2d)):
                value = noise / math.sqrt(p[0].numel())
            elif isinstance(owner, nn.Embedding):
                value = 0.5 * noise
            else:
                raise SystemExit(f"{component}.{name}: no init rule for {type(owner).__name__}")
            if component == "vae" and name.startswith("decoder.conv_out."):
                value = 0.5 * value
            p.copy_(value.to(p.dtype))


def build_seeded(name, seed):
    spec = CONFIGS[name]
    torch.manual_seed(seed)
    models = build_components(spec)
    for k, comp in enumerate(COMPONENTS):
        reinit(models[comp], seed + k, comp)
        models[comp].eval()
    return models


def scheduler_from(config):
    from diffusers import FlowMatchEulerDiscreteScheduler
    return FlowMatchEulerDiscreteScheduler(**config)


def load_component(directory, comp, dtype):
    """One component of a diffusers-format checkpoint as a torch module in dtype (eval)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel
    kw = dict(torch_dtype=dtype)
    if comp == "text_encoder":
        m = CLIPTextModel.from_pretrained(directory, subfolder=comp, attn_implementation="eager",
                                          **kw)
        m.config.eos_token_id = CLIP_EOS
        m.config.bos_token_id = CLIP_BOS
        m.text_model.eos_token_id = CLIP_EOS
    elif comp == "text_encoder_2":
        m = T5EncoderModel.from_pretrained(directory, subfolder=comp, attn_implementation="eager",
                                           **kw)
    elif comp == "transformer":
        m = FluxTransformer2DModel.from_pretrained(directory, subfolder=comp, **kw)
    elif comp == "vae":
        m = AutoencoderKL.from_pretrained(directory, subfolder=comp, **kw)
    else:
        raise KeyError(comp)
    return m.eval()


def read_scheduler_config(directory):
    with open(os.path.join(directory, "scheduler", "scheduler_config.json")) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def load_checkpoint(directory, dtype):
    """--in-memory: all four components loaded whole (about 2x the weights' bytes of RAM)."""
    models = {comp: load_component(directory, comp, dtype) for comp in COMPONENTS}
    return models, read_scheduler_config(directory)


class CheckpointModels(dict):
    """The checkpoint's components for verify(), loaded on first use, one at a time (the
    previous one is dropped), so the streaming export's verification holds at most one
    component in --dtype."""

    def __init__(self, directory, dtype):
        super().__init__()
        self.directory, self.dtype = directory, dtype

    def __missing__(self, comp):
        self.clear()
        m = load_component(self.directory, comp, self.dtype)
        self[comp] = m
        return m


# --- streaming (--checkpoint): placeholder modules, weights copied shard by shard ----------

def build_placeholders(directory, dtype):
    """The four networks from the checkpoint's config.json files, built on the meta device,
    then every parameter replaced by a zero-stride placeholder (one element, expanded to its
    shape: 4 bytes of storage however big), tied parameters staying tied, in the dtype
    load_component would give it (f16: T5's wo in f32, as transformers keeps them). The
    torch.onnx trace runs them for real on CPU (same Python control flow, same constants as
    the loaded model), with export_params=False; the weights never enter memory."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, T5Config
    from transformers import CLIPTextModel, T5EncoderModel
    clip = CLIPTextConfig.from_pretrained(directory, subfolder="text_encoder")
    clip.eos_token_id, clip.bos_token_id = CLIP_EOS, CLIP_BOS
    clip._attn_implementation = "eager"
    t5 = T5Config.from_pretrained(directory, subfolder="text_encoder_2")
    t5._attn_implementation = "eager"
    with torch.device("meta"):
        models = {
            "text_encoder": CLIPTextModel(clip),
            "text_encoder_2": T5EncoderModel(t5),
            "transformer": FluxTransformer2DModel.from_config(
                FluxTransformer2DModel.load_config(directory, subfolder="transformer")),
            "vae": AutoencoderKL.from_config(
                AutoencoderKL.load_config(directory, subfolder="vae")),
        }
    models["text_encoder"].text_model.eos_token_id = CLIP_EOS
    keep32 = set()
    if dtype == torch.float16:
        keep32 = {f"{n}.weight" for n, _ in models["text_encoder_2"].named_modules()
                  if n.endswith(".wo")}
    for comp, model in models.items():
        placeholders = {}
        for mname, mod in model.named_modules(remove_duplicate=False):
            for pname, p in list(mod._parameters.items()):
                if p is None:
                    continue
                full = f"{mname}.{pname}" if mname else pname
                if id(p) not in placeholders:
                    dt = torch.float32 if comp == "text_encoder_2" and full in keep32 else dtype
                    placeholders[id(p)] = nn.Parameter(
                        torch.zeros(1, dtype=dt).expand(p.shape), requires_grad=False)
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


ST_TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return 8 + n, json.loads(f.read(n))


def checkpoint_plan(directory, models):
    """Where each parameter's tensor lies in the checkpoint's shards: {prefixed name: (shard
    path, byte start, byte end, safetensors dtype, shape, target numpy dtype)}, from the
    shard headers alone. A tied parameter is found under any of its names; a missing one, or
    one whose shape differs from the module's, refuses the export."""
    plan, problems = {}, []
    for comp in COMPONENTS:
        folder = os.path.join(directory, comp)
        files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
        index = [f for f in os.listdir(folder) if f.endswith(".safetensors.index.json")]
        if index:
            with open(os.path.join(folder, index[0])) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        where = {}
        for fname in files:
            path = os.path.join(folder, fname)
            base, header = read_safetensors_header(path)
            for k, v in header.items():
                if k != "__metadata__":
                    where[k] = (path, base + v["data_offsets"][0], base + v["data_offsets"][1],
                                v["dtype"], list(v["shape"]))
        model = models[comp]
        aliases = {}
        for k, p in model.named_parameters(remove_duplicate=False):
            aliases.setdefault(id(p), []).append(k)
        used = set()
        for k, p in model.named_parameters():
            names = [a for a in [k] + aliases[id(p)] if a in where]
            if not names:
                problems.append(f"{comp}: {k} is not in the checkpoint")
                continue
            used.update(a for a in aliases[id(p)] if a in where)
            src = where[names[0]]
            if src[3] not in ST_TORCH or src[4] != list(p.shape):
                problems.append(f"{comp}: {names[0]} is {src[4]} {src[3]} in the checkpoint, "
                                f"the module's {list(p.shape)}")
                continue
            plan[f"{comp}.{k}"] = src + (np.dtype(str(p.dtype).replace("torch.", "")),)
        buffers = {k for k, _ in model.named_buffers()}
        unexpected = sorted(set(where) - used - buffers)
        if unexpected:  # from_pretrained ignores these too (with a warning)
            print(f"warning: {comp}: checkpoint tensors no parameter reads: {unexpected[:8]}"
                  f"{' ...' if len(unexpected) > 8 else ''}", file=sys.stderr)
    if problems:
        for p in problems:
            print("PROBLEM:", p)
        raise SystemExit(1)
    return plan


def safetensors_header_bytes(specs, metadata):
    """write_safetensors' header and tensor order for {name: (shape, numpy dtype)}: returns
    (header bytes, names in file order, {name: nbytes})."""
    size = {k: int(np.prod(shape, dtype=np.int64)) * dt.itemsize for k, (shape, dt) in
            specs.items()}
    names = sorted(specs, key=lambda k: (-specs[k][1].itemsize, k))
    header, pos = {"__metadata__": metadata}, 0
    for name in names:
        shape, dt = specs[name]
        header[name] = {"dtype": ST_DTYPE[dt], "shape": list(shape),
                        "data_offsets": [pos, pos + size[name]]}
        pos += size[name]
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    return hb, names, size


def stream_safetensors(path, plan, metadata):
    """weights.safetensors as write_safetensors writes it (same header, order, alignment),
    with the header computed from the shard headers first, then each tensor read from its
    shard, converted to its target dtype by torch (bf16 -> f32 exactly; -> f16 rounded to
    nearest even, as Tensor.to), and appended: about one tensor (source + converted) in
    memory at a time."""
    hb, names, size = safetensors_header_bytes(
        {k: (v[4], v[5]) for k, v in plan.items()}, metadata)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name in names:
            spath, start, end, st, shape, dt = plan[name]
            with open(spath, "rb") as src:
                src.seek(start)
                raw = bytearray(src.read(end - start))
            if len(raw) != end - start:
                raise SystemExit(f"{spath}: truncated at {name}")
            t = torch.frombuffer(raw, dtype=ST_TORCH[st]) if raw else \
                torch.empty(0, dtype=ST_TORCH[st])
            a = t.to(getattr(torch, dt.name)).numpy()
            if a.nbytes != size[name]:
                raise SystemExit(f"{name}: {a.nbytes} bytes, expected {size[name]}")
            # little-endian and contiguous already here: written without another copy
            f.write(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).data)
            del raw, t, a


def half_precision(models):
    """--dtype f16 for --config: everything f16 except T5's wo (as transformers keeps it)."""
    for m in models.values():
        m.half()
    for name, module in models["text_encoder_2"].named_modules():
        if name.endswith(".wo"):
            module.float()


def manifest_from_models(models):
    """Rebuild: the component hyperparameters as flux.json stores them."""
    c, t = models["text_encoder"].config, models["text_encoder_2"].config
    clip = dict(hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                num_attention_heads=c.num_attention_heads, num_hidden_layers=c.num_hidden_layers,
                max_position_embeddings=c.max_position_embeddings, vocab_size=c.vocab_size,
                hidden_act=c.hidden_act, layer_norm_eps=c.layer_norm_eps,
                projection_dim=c.projection_dim)
    t5 = dict(vocab_size=t.vocab_size, d_model=t.d_model, d_kv=t.d_kv, d_ff=t.d_ff,
              num_layers=t.num_layers, num_heads=t.num_heads,
              relative_attention_num_buckets=t.relative_attention_num_buckets,
              relative_attention_max_distance=t.relative_attention_max_distance,
              feed_forward_proj=t.feed_forward_proj, dense_act_fn=t.dense_act_fn,
              is_gated_act=t.is_gated_act, layer_norm_epsilon=t.layer_norm_epsilon,
              tie_word_embeddings=t.tie_word_embeddings)
    tr = {k: (list(v) if isinstance(v, tuple) else v)
          for k, v in models["transformer"].config.items() if not k.startswith("_")}
    vae = {k: (list(v) if isinstance(v, tuple) else v)
           for k, v in models["vae"].config.items() if not k.startswith("_")}
    return clip, t5, tr, vae


def build_from_manifest(directory):
    """The four networks rebuilt from DIR/flux.json + DIR/weights.safetensors (f32)."""
    from safetensors.numpy import load_file
    with open(os.path.join(directory, "flux.json")) as f:
        m = json.load(f)
    c = m["components"]
    spec = {"text_encoder": c["text_encoder"], "text_encoder_2": c["text_encoder_2"],
            "transformer": {k: (tuple(v) if isinstance(v, list) else v)
                            for k, v in c["transformer"].items()},
            "vae": {k: (tuple(v) if isinstance(v, list) else v) for k, v in c["vae"].items()}}
    models = build_components(spec)
    state = load_file(os.path.join(directory, m["weights"]))
    for comp, model in models.items():
        own = {k[len(comp) + 1:]: torch.from_numpy(v).float() for k, v in state.items()
               if k.startswith(comp + ".")}
        missing, unexpected = model.load_state_dict(own, strict=False)
        missing = [k for k in missing if k != "encoder.embed_tokens.weight"]  # tied to shared
        if missing or unexpected:
            raise SystemExit(f"{comp}: missing {missing}, unexpected {unexpected}")
        model.eval()
    return models, m


# --- export -------------------------------------------------------------------------------

def _group_norm(self, x):
    """GroupNorm that reads weight [C] and bias [C] as stored (see the module docstring)."""
    y = F.group_norm(x, self.num_groups, None, None, self.eps)
    if not self.affine:
        return y
    nd = y.dim()  # explicit non-negative perms (movedim exports a negative perm)
    y = y.permute(0, *range(2, nd), 1) * self.weight + self.bias
    return y.permute(0, nd - 1, *range(1, nd - 1))


def _rms_norm(self, x):
    """torch.nn.RMSNorm (FLUX's q/k norms) in plain ops: aten::rms_norm has no ONNX symbolic."""
    eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
    dims = tuple(range(-len(self.normalized_shape), 0))
    y = x.float()
    y = (y * torch.rsqrt(y.pow(2).mean(dims, keepdim=True) + eps)).to(x.dtype)
    return y * self.weight if self.weight is not None else y


def _apply_rotary_emb(x, freqs_cis, use_real=True, use_real_unbind_dim=-1, sequence_dim=2):
    """diffusers' apply_rotary_emb for FLUX's case (real, pairs interleaved, [B, S, H, D]) with
    unflatten instead of reshape(*x.shape[:-1], -1, 2), which the tracer bakes into constants
    here (batch and sequence length fixed in the graph)."""
    if not (use_real and use_real_unbind_dim == -1 and sequence_dim == 1):
        raise NotImplementedError("only FLUX's rotary embedding form is patched")
    cos, sin = freqs_cis  # [S, D]
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    x_real, x_imag = x.unflatten(-1, (-1, 2)).unbind(-1)
    x_rotated = torch.stack([-x_imag, x_real], dim=-1).flatten(3)
    return (x.float() * cos + x_rotated.float() * sin).to(x.dtype)


@contextlib.contextmanager
def export_patches():
    """export_clip's patches (Linear, CLIP embeddings, no de-duplication) + GroupNorm,
    RMSNorm and FLUX's rotary embedding."""
    from diffusers.models.transformers import transformer_flux
    saved = [(nn.GroupNorm, "forward", nn.GroupNorm.forward),
             (nn.RMSNorm, "forward", nn.RMSNorm.forward),
             (transformer_flux, "apply_rotary_emb", transformer_flux.apply_rotary_emb)]
    nn.GroupNorm.forward = _group_norm
    nn.RMSNorm.forward = _rms_norm
    transformer_flux.apply_rotary_emb = _apply_rotary_emb
    try:
        with export_clip.export_patches():
            yield
    finally:
        for owner, attr, fn in saved:
            setattr(owner, attr, fn)


class ClipText(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.text_encoder = m

    def forward(self, input_ids):
        out = self.text_encoder(input_ids=input_ids, output_hidden_states=False)
        return out.pooler_output.float()


class T5(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.text_encoder_2 = m

    def forward(self, input_ids):
        return self.text_encoder_2(input_ids, output_hidden_states=False)[0].float()


class Transformer(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.transformer = m

    def forward(self, hidden_states, encoder_hidden_states, pooled_projections, timestep,
                img_ids, txt_ids):
        dt = self.transformer.x_embedder.weight.dtype
        out = self.transformer(
            hidden_states=hidden_states.to(dt), encoder_hidden_states=encoder_hidden_states.to(dt),
            pooled_projections=pooled_projections.to(dt), timestep=timestep.to(dt),
            img_ids=img_ids, txt_ids=txt_ids, guidance=None, return_dict=False)[0]
        return out.float()


class VaeDecoder(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.vae = m

    def forward(self, latents):
        dt = self.vae.decoder.conv_in.weight.dtype
        return self.vae.decode(latents.to(dt), return_dict=False)[0].float()


def latent_image_ids(h2, w2):
    """FluxPipeline._prepare_latent_image_ids: row i*w2+j is (0, i, j)."""
    ids = np.zeros((h2, w2, 3), np.float32)
    ids[..., 1] = np.arange(h2, dtype=np.float32)[:, None]
    ids[..., 2] = np.arange(w2, dtype=np.float32)[None, :]
    return ids.reshape(h2 * w2, 3)


def example_inputs(graph, models, seed, other=False):
    """Inputs to trace with (other=False) and to verify on (other=True: every dynamic axis a
    different size from the trace's, so a size baked into the graph fails the check)."""
    rng = np.random.default_rng(seed + 100)
    batch = 1 if other else 2
    if graph == "clip_text":
        ids = np.full((batch, CLIP_CONTEXT), CLIP_EOS, np.int64)
        ids[:, 0] = CLIP_BOS
        for b in range(batch):
            n = 3 + 17 * b + 5 * other
            ids[b, 1:1 + n] = rng.integers(0, CLIP_BOS, n)
        return {"input_ids": ids}
    if graph == "t5":
        vocab = models["text_encoder_2"].config.vocab_size
        ids = rng.integers(3, vocab, (batch, 9 if other else 12)).astype(np.int64)
        ids[:, -3] = 1
        ids[:, -2:] = 0
        return {"input_ids": ids}
    if graph == "transformer":
        cfg = models["transformer"].config
        h2, w2, txt = (5, 2, 4) if other else (4, 3, 7)
        return {
            "hidden_states": rng.standard_normal((batch, h2 * w2, cfg.in_channels), np.float32),
            "encoder_hidden_states": rng.standard_normal((batch, txt, cfg.joint_attention_dim),
                                                         np.float32),
            "pooled_projections": rng.standard_normal((batch, cfg.pooled_projection_dim),
                                                      np.float32),
            "timestep": np.array([0.5] if other else [1.0, 0.75], np.float32),
            "img_ids": latent_image_ids(h2, w2),
            "txt_ids": np.zeros((txt, 3), np.float32),
        }
    if graph == "vae_decoder":
        c = models["vae"].config.latent_channels
        shape = (batch, c, 6, 2) if other else (batch, c, 4, 6)
        return {"latents": rng.standard_normal(shape, np.float32)}
    raise KeyError(graph)


IO = {  # graph -> (wrapper, input names, output names, dynamic axes)
    "clip_text": (ClipText, ["input_ids"], ["pooler_output"],
                  {"input_ids": {0: "batch"}, "pooler_output": {0: "batch"}}),
    "t5": (T5, ["input_ids"], ["last_hidden_state"],
           {"input_ids": {0: "batch", 1: "seq"}, "last_hidden_state": {0: "batch", 1: "seq"}}),
    "transformer": (Transformer,
                    ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep",
                     "img_ids", "txt_ids"], ["noise_pred"],
                    {"hidden_states": {0: "batch", 1: "img_seq"},
                     "encoder_hidden_states": {0: "batch", 1: "txt_seq"},
                     "pooled_projections": {0: "batch"}, "timestep": {0: "batch"},
                     "img_ids": {0: "img_seq"}, "txt_ids": {0: "txt_seq"},
                     "noise_pred": {0: "batch", 1: "img_seq"}}),
    "vae_decoder": (VaeDecoder, ["latents"], ["image"],
                    {"latents": {0: "batch", 2: "height", 3: "width"},
                     "image": {0: "batch", 2: "image_height", 3: "image_width"}}),
}


def export_graph(graph, models, path, seed, export_params=True):
    """torch.onnx.export of one graph; export_params=False (the streaming path's placeholder
    modules): every parameter is left a graph input under its name (params_as_initializers
    then makes it an external initializer)."""
    wrapper_cls, in_names, out_names, dyn = IO[graph]
    wrapper = wrapper_cls(models[GRAPH_COMPONENT[graph]]).eval()
    ex = example_inputs(graph, models, seed)
    args = tuple(torch.from_numpy(ex[n]) for n in in_names)
    with export_patches(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, args, path, input_names=in_names, output_names=out_names,
            dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=False,
            export_params=export_params, keep_initializers_as_inputs=False, dynamo=False)


def params_as_initializers(proto, graph, params, problems):
    """export_params=False leaves each parameter a graph input (after the graph's own inputs):
    move them to initializers with the parameter's shape and dtype (their data is set by
    externalize), in the order the exporter would have written them. Any other extra input
    is a problem."""
    _, in_names, _, _ = IO[graph]
    g = proto.graph
    kept, moved = [], []
    for v in g.input:
        if v.name in in_names:
            kept.append(v)
        elif v.name in params:
            moved.append(v.name)
        else:
            problems.append(f"{graph}: graph input {v.name} is neither an input nor a parameter")
            kept.append(v)
    del g.input[:]
    g.input.extend(kept)
    if len(g.initializer):
        problems.append(f"{graph}: {len(g.initializer)} initializers besides the parameters")
    inits = []
    for name in moved:
        a = params[name]
        t = TensorProto()
        t.name = name
        t.dims.extend(a.shape)
        t.data_type = ONNX_DTYPE[a.dtype]
        inits.append(t)
    g.initializer.extend(inits)
    return len(moved)


# Where a parameter may be read: (op type, input index).
ALLOWED_USES = {("Gemm", 1), ("Gemm", 2), ("Conv", 1), ("Conv", 2), ("LayerNormalization", 1),
                ("LayerNormalization", 2), ("Gather", 0), ("Add", 0), ("Add", 1), ("Mul", 0),
                ("Mul", 1)}
ONNX_DTYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16}


def initializer_bytes(t, base_dir):
    if t.data_location == TensorProto.EXTERNAL:
        info = {e.key: e.value for e in t.external_data}
        with open(os.path.join(base_dir, info["location"]), "rb") as f:
            f.seek(int(info.get("offset", 0)))
            return f.read(int(info["length"])) if "length" in info else f.read()
    if t.HasField("raw_data"):
        return t.raw_data
    return onnx.numpy_helper.to_array(t).tobytes()


def _affine_identity(value, consumers):
    """A LayerNorm without affine (FLUX's AdaLayerNormZero and norm2: elementwise_affine=False)
    exports as LayerNormalization with a Constant scale of ones and bias of zeros, [C] each
    (12 KiB at full size): no parameter's copy, so not held against SMALL."""
    if consumers == {("LayerNormalization", 1)}:
        return bool(np.all(value == 1))
    if consumers == {("LayerNormalization", 2)}:
        return bool(np.all(value == 0))
    return False


def check_graph(proto, graph, params, problems, base_dir, offsets=None):
    """(a) parameter initializers exact (shape, dtype, bytes; with offsets (the streaming
    path, whose parameter initializers are external from the start): shape, dtype and
    external data exactly the parameter's bytes in weights.safetensors); (b) other
    initializers and Constants small; (c) parameters read only as ALLOWED_USES; (d) every
    parameter of the component read. Returns (other initializers, use counts)."""
    g = proto.graph
    comp = GRAPH_COMPONENT[graph]
    found, others = set(), []
    for t in g.initializer:
        if t.name in params:
            a = params[t.name]
            if list(t.dims) != list(a.shape) or t.data_type != ONNX_DTYPE[a.dtype]:
                problems.append(f"{graph}: {t.name} is {list(t.dims)} "
                                f"{TensorProto.DataType.Name(t.data_type)}, the parameter "
                                f"{list(a.shape)} {a.dtype}")
            elif offsets is not None:
                ext = {e.key: e.value for e in t.external_data}
                start, length = offsets[t.name]
                if (t.data_location != TensorProto.EXTERNAL or t.HasField("raw_data")
                        or ext != {"location": WEIGHTS, "offset": str(start),
                                   "length": str(length)}
                        or length != a.nbytes):
                    problems.append(f"{graph}: {t.name}: not external data at the parameter's "
                                    f"bytes in {WEIGHTS}")
            elif initializer_bytes(t, base_dir) != a.tobytes():
                problems.append(f"{graph}: {t.name}: graph bytes differ from the parameter")
            found.add(t.name)
        else:
            n = int(np.prod(t.dims)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
            others.append((t.name, list(t.dims), n))
            if n >= SMALL:
                problems.append(f"{graph}: non-parameter initializer {t.name} {list(t.dims)} "
                                f"of {n} bytes")
    uses = {}
    consumers = {}
    for n in g.node:
        for i, name in enumerate(n.input):
            consumers.setdefault(name, set()).add((n.op_type, i))
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    v = onnx.numpy_helper.to_array(a.t)
                    if v.nbytes >= SMALL and not _affine_identity(v, consumers.get(n.output[0])):
                        problems.append(f"{graph}: Constant {n.output[0]} of {v.nbytes} bytes")
        for i, name in enumerate(n.input):
            if name not in params:
                continue
            key = (n.op_type, i)
            uses[f"{n.op_type}:{i}"] = uses.get(f"{n.op_type}:{i}", 0) + 1
            if key not in ALLOWED_USES:
                problems.append(f"{graph}: {name} read by {n.op_type} input {i}")
            if n.op_type == "Gemm" and i == 1:
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
                if attrs.get("transB", 0) != 1 or attrs.get("transA", 0):
                    problems.append(f"{graph}: {name} read by Gemm without transB=1")
    expected = {k for k in params if k.startswith(comp + ".") and not k.startswith(UNREAD)}
    if found != expected:
        problems.append(f"{graph}: parameters missing {sorted(expected - found)[:8]}, "
                        f"unexpected {sorted(found - expected)[:8]}")
    return others, uses


def externalize(proto, params, offsets):
    """Parameter initializers -> external data at their bytes inside weights.safetensors."""
    for t in proto.graph.initializer:
        if t.name not in params:
            continue
        start, length = offsets[t.name]
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in (("location", WEIGHTS), ("offset", str(start)), ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = k, v


ST_DTYPE = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.uint8): "U8",
            np.dtype(np.int64): "I64", np.dtype(np.int32): "I32"}


def write_safetensors(path, arrays, metadata):
    """safetensors by hand, byte-identical on every run: tensors ordered by item size (largest
    first) then name, packed without gaps (so each is aligned to its item size), the JSON
    header with sorted keys and no spaces, space-padded to a multiple of 8."""
    names = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    header, pos = {"__metadata__": metadata}, 0
    for name in names:
        a = arrays[name]
        header[name] = {"dtype": ST_DTYPE[a.dtype], "shape": list(a.shape),
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


safetensors_offsets = export_clip.safetensors_offsets
ST_NUMPY = {v: k for k, v in ST_DTYPE.items()}


def mmap_safetensors(path):
    """Every tensor of a safetensors file as a read-only numpy view over one memory map of the
    file (no copies: the full-size weights do not fit in RAM twice)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        start, end = v["data_offsets"]
        dt = np.dtype(ST_NUMPY[v["dtype"]])
        out[k] = mm[8 + n + start:8 + n + end].view(dt).reshape(v["shape"])
    return out


def graph_io(proto):
    def one(v):
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        dtype = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16",
                 TensorProto.INT64: "int64"}.get(t.elem_type,
                                                 TensorProto.DataType.Name(t.elem_type).lower())
        return {"name": v.name, "dtype": dtype, "shape": dims}
    return {"inputs": [one(v) for v in proto.graph.input],
            "outputs": [one(v) for v in proto.graph.output]}


# --- verification -------------------------------------------------------------------------

def session(path, prepacking=False, initializers=None, threads=2):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not prepacking:
        so.add_session_config_entry("session.disable_prepacking", "1")
    keep = None
    if initializers is not None:
        names = sorted(initializers)
        keep = [ort.OrtValue.ortvalue_from_numpy(initializers[n]) for n in names]
        so.add_external_initializers(names, keep)
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    s._vortex_keep = keep  # the OrtValues must outlive the session
    return s


def graph_params(proto_path, params):
    """The parameters a graph references (to hand over by name)."""
    proto = onnx.load(proto_path, load_external_data=False)
    return {t.name: params[t.name] for t in proto.graph.initializer if t.name in params}


def torch_run(graph, models, feeds):
    wrapper_cls, in_names, _, _ = IO[graph]
    w = wrapper_cls(models[GRAPH_COMPONENT[graph]]).eval()
    with torch.inference_mode():
        return w(*[torch.from_numpy(feeds[n]) for n in in_names]).numpy()


def verify(models, out, seed, params, tolerance):
    """ORT (file-backed; and by-name weights with the graph alone) vs torch, per graph."""
    report = {}
    with tempfile.TemporaryDirectory() as alone:
        for graph, fname in GRAPHS.items():
            path = os.path.join(out, fname)
            lone = os.path.join(alone, fname)
            shutil.copyfile(path, lone)
            own = graph_params(path, params)
            file_backed, by_name = session(path), session(lone, False, own)
            r = {}
            for shapes in ("trace", "other"):
                feeds = example_inputs(graph, models, seed + 7, other=shapes == "other")
                ref = torch_run(graph, models, feeds)
                outs = {f"ort_file_{shapes}": file_backed.run(None, feeds)[0],
                        f"ort_by_name_{shapes}": by_name.run(None, feeds)[0]}
                scale = float(np.abs(ref).max())
                r[f"scale_{shapes}"] = scale
                r[f"shape_{shapes}"] = list(ref.shape)
                check(graph, outs, ref, scale, tolerance, r)
            report[graph] = r
            # The next graph's sessions are made before these would be collected otherwise.
            del file_backed, by_name
    return report


def check(graph, outs, ref, scale, tolerance, r):
    for label, y in outs.items():
        if y.shape != ref.shape:
            raise SystemExit(f"{graph}: {label} has shape {y.shape}, torch {ref.shape}")
        d = float(np.abs(y - ref).max())
        r[label + "_max_abs_diff"] = d
        print(f"{graph}: {label:18s} {str(list(ref.shape)):16s} vs torch: max |diff| {d:.3g} "
              f"(relative {d / scale:.3g})")
        if not d <= tolerance * scale:
            raise SystemExit(f"{graph}: {label} differs from torch by {d} (scale {scale})")


# --- main ---------------------------------------------------------------------------------

def export_all(models, out, source, dtype_name, extra, scheduler_config, seed, verify_it,
               plan=None, reference=None):
    """plan None: models hold the weights (--config, --checkpoint --in-memory). plan (from
    checkpoint_plan): models are build_placeholders' and the weights are streamed from the
    checkpoint's shards; reference (CheckpointModels) is what verify compares with."""
    os.makedirs(out, exist_ok=True)
    named = {}
    for comp in COMPONENTS:
        model = models[comp]
        if plan is None:
            for k, v in model.named_parameters():
                named[f"{comp}.{k}"] = v.detach().contiguous().numpy()
        state = set(model.state_dict())
        extra_state = sorted(state - {k for k, _ in model.named_parameters()}
                             - {"encoder.embed_tokens.weight"})
        if extra_state:
            raise SystemExit(f"{comp}: state_dict has non-parameter entries {extra_state}")
    wpath = os.path.join(out, WEIGHTS)
    metadata = {"format": "pt", "source": source, "dtype": dtype_name}
    if plan is None:
        write_safetensors(wpath, named, metadata)
    else:
        stream_safetensors(wpath, plan, metadata)
    offsets = safetensors_offsets(wpath)
    params = mmap_safetensors(wpath)
    from safetensors import safe_open
    with safe_open(wpath, "numpy") as f:  # the file is what the safetensors library reads
        if plan is None:
            assert set(f.keys()) == set(named) == set(params)
            for k, v in named.items():
                t = f.get_tensor(k)
                assert (t.dtype == v.dtype and np.array_equal(t, v)
                        and np.array_equal(params[k], v)), k
        else:  # names, shapes, dtypes (reading every tensor back would double the time)
            assert set(f.keys()) == set(plan) == set(params)
            for k, v in plan.items():
                sl = f.get_slice(k)
                assert (list(sl.get_shape()) == list(v[4]) == list(params[k].shape)
                        and params[k].dtype == v[5]), k

    problems, graphs_info = [], {}
    for graph, fname in GRAPHS.items():
        path = os.path.join(out, fname)
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            tpath = os.path.join(tmp, fname)
            export_graph(graph, models, tpath, seed, export_params=plan is None)
            proto = onnx.load(tpath, load_external_data=False)
            if plan is not None:
                params_as_initializers(proto, graph, params, problems)
                externalize(proto, params, offsets)
            fused = export_clip.fuse_projection_transposes(proto.graph, params)
            others, uses = check_graph(proto, graph, params, problems, tmp,
                                       None if plan is None else offsets)
        if plan is None:
            externalize(proto, params, offsets)
        with open(path, "wb") as f:
            f.write(proto.SerializeToString(deterministic=True))
        onnx.checker.check_model(path, full_check=True)
        ops = {}
        for n in proto.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        n_params = sum(1 for t in proto.graph.initializer if t.name in params)
        print(f"{fname}: {os.path.getsize(path)} bytes, {n_params} parameter initializers "
              f"(external), {len(others)} other initializers "
              f"({sum(o[2] for o in others)} bytes), {fused} bias-free MatMul+Transpose -> Gemm")
        print("  ops:", dict(sorted(ops.items(), key=lambda kv: -kv[1])))
        print("  parameter uses:", uses)
        graphs_info[graph] = dict(file=fname, component=GRAPH_COMPONENT[graph],
                                  parameters=n_params, **graph_io(proto))
    if problems:
        for p in problems:
            print("PROBLEM:", p)
        raise SystemExit(1)

    clip, t5, tr, vae = manifest_from_models(models)
    vae_scale = 2 ** (len(vae["block_out_channels"]) - 1)
    size = extra["image_size"]
    lh = 2 * (size // (vae_scale * 2))
    sched = scheduler_from(scheduler_config)
    steps = SCHNELL_STEPS
    sigmas0 = np.linspace(1.0, 1 / steps, steps)
    seq = (lh // 2) * (lh // 2)
    c = sched.config
    m = c.base_shift + (c.max_shift - c.base_shift) / (c.max_image_seq_len - c.base_image_seq_len) \
        * (seq - c.base_image_seq_len)
    sched.set_timesteps(sigmas=sigmas0, mu=m)
    unread = sorted(k for k in params if k.startswith(UNREAD))
    manifest = {
        "kind": "flux", "format": 1, "dtype": dtype_name, "source": source,
        "weights": WEIGHTS,
        "graphs": graphs_info,
        "components": {"text_encoder": clip, "text_encoder_2": t5, "transformer": tr,
                       "vae": vae},
        "tokenizers": {
            "clip": {"kind": "clip-bpe", "context": CLIP_CONTEXT, "bos": CLIP_BOS,
                     "eos": CLIP_EOS, "pad": CLIP_PAD, "padding": "max_length 77, truncate to "
                     "75 tokens + BOS + EOS, pad with EOS"},
            "t5": t5_tokenizer_entry(extra, out),
        },
        "scheduler": {
            "class": "FlowMatchEulerDiscreteScheduler",
            "config": {k: c[k] for k in SCHNELL_SCHEDULER},
            "num_inference_steps": steps,
            "image_seq_len": seq, "mu": m,
            "sigmas": [float(s) for s in sched.sigmas.numpy()],
            "timesteps": [float(t) for t in sched.timesteps.numpy()],
            "transformer_timestep": "timesteps[i] / 1000 in float32 (= sigma for these)",
            "step": "latents = latents + (sigmas[i+1] - sigmas[i]) * noise_pred (float32)",
        },
        "latents": {
            "image_size": size, "vae_scale_factor": vae_scale,
            "latent_channels": vae["latent_channels"], "latent_height": lh, "latent_width": lh,
            "packed_tokens": seq, "packed_channels": vae["latent_channels"] * 4,
            "pack": "[B, C, H, W] -> view [B, C, H/2, 2, W/2, 2] -> permute (0, 2, 4, 1, 3, 5) "
                    "-> [B, H/2 * W/2, C * 4]",
            "img_ids": "[H/2 * W/2, 3], row i * (W/2) + j = (0, i, j)",
            "txt_ids": "[t5 max_length, 3] zeros",
            "scaling_factor": vae["scaling_factor"], "shift_factor": vae["shift_factor"],
            "decode_input": "unpack(latents) / scaling_factor + shift_factor",
            "to_uint8": "round_half_even(clamp(image * 0.5 + 0.5, 0, 1) * 255), NCHW -> HWC",
        },
        "unread_parameters": {"prefixes": list(UNREAD), "count": len(unread),
                              "bytes": int(sum(params[k].nbytes for k in unread))},
        "versions": {"torch": torch.__version__.split("+")[0],
                     "transformers": __import__("transformers").__version__,
                     "diffusers": __import__("diffusers").__version__,
                     "onnx": onnx.__version__},
    }
    with open(os.path.join(out, "flux.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"{WEIGHTS}: {os.path.getsize(wpath)} bytes, {len(params)} tensors "
          f"({len(unread)} not read by any graph: {manifest['unread_parameters']['bytes']} bytes)")
    if verify_it:
        report = verify(models if reference is None else reference, out, seed, params,
                        TOLERANCE[dtype_name])
        print(json.dumps({"verify": report}))
    return manifest


T5_TOKENIZER_FILE = "t5_tokenizer.json"


def t5_tokenizer_source(checkpoint):
    """The checkpoint's T5 tokenizer: ("tokenizer.json", path) or ("spiece.model", folder);
    refused with a clear message when tokenizer_2/ has neither (checked before the long
    export starts)."""
    folder = os.path.join(checkpoint, "tokenizer_2")
    if os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return "tokenizer.json", os.path.join(folder, "tokenizer.json")
    if os.path.isfile(os.path.join(folder, "spiece.model")):
        return "spiece.model", folder
    raise SystemExit(f"{folder}: neither tokenizer.json nor spiece.model; the checkpoint's T5 "
                     "tokenizer is needed (diffusers' FLUX.1 repository has both)")


def write_t5_tokenizer(checkpoint, target):
    """tokenizer_2/tokenizer.json copied byte for byte to target; without one,
    T5TokenizerFast.from_pretrained(tokenizer_2/) as FluxPipeline loads it (transformers'
    converter over spiece.model, with tokenizer_config.json's settings: FLUX.1's says
    legacy false, so "▁" goes before the first split only) saved as tokenizer.json. Returns
    how it was made."""
    kind, src = t5_tokenizer_source(checkpoint)
    if kind == "tokenizer.json":
        shutil.copyfile(src, target)
        return "the checkpoint's tokenizer_2/tokenizer.json, copied"
    from transformers import T5TokenizerFast
    with tempfile.TemporaryDirectory() as tmp:
        T5TokenizerFast.from_pretrained(src, local_files_only=True).save_pretrained(tmp)
        shutil.copyfile(os.path.join(tmp, "tokenizer.json"), target)
    return ("made from the checkpoint's tokenizer_2/spiece.model by T5TokenizerFast."
            "from_pretrained(tokenizer_2/) (transformers' converter), saved as tokenizer.json")


def t5_tokenizer_entry(extra, out):
    """The manifest's tokenizers.t5; for a checkpoint, its T5 tokenizer written into the
    export as t5_tokenizer.json (write_t5_tokenizer)."""
    if extra["t5_tokenizer"] == "byt5":
        return {"kind": "byt5", "max_length": extra["t5_max_length"],
                "pad": 0, "eos": 1, "unk": 2,
                "padding": "ids truncated to max_length - 1, then </s> (1), then pad (0) up "
                           "to max_length",
                "note": "byt5: id = utf-8 byte + 3 (transformers ByT5Tokenizer); the tiny "
                        "test vocabulary"}
    note = write_t5_tokenizer(extra["checkpoint"], os.path.join(out, T5_TOKENIZER_FILE))
    return {"kind": "tokenizer.json", "file": T5_TOKENIZER_FILE,
            "max_length": extra["t5_max_length"], "pad": 0, "eos": 1, "unk": 2,
            "padding": "T5TokenizerFast(prompt, padding='max_length', max_length, "
                       "truncation=True, add_special_tokens=True), as FluxPipeline: pieces "
                       "cut to max_length - 1, </s> (1), <pad> (0) up to max_length (the "
                       "tokenizers library: truncation max_length, padding fixed max_length "
                       "with pad id 0 / <pad>, encode with special tokens)",
            "note": note}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", choices=sorted(CONFIGS))
    src.add_argument("--checkpoint")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--in-memory", action="store_true",
                    help="--checkpoint: load the whole float model and trace it (the old path)")
    args = ap.parse_args()
    if args.checkpoint and args.seed != 0:
        ap.error("--seed applies to --config only")
    if args.in_memory and not args.checkpoint:
        ap.error("--in-memory applies to --checkpoint only")
    plan = reference = None
    if args.config:
        models = build_seeded(args.config, args.seed)
        if args.dtype == "f16":
            half_precision(models)
        source = f"seeded:{args.seed} ({args.config})"
        extra = {k: CONFIGS[args.config][k] for k in ("t5_max_length", "image_size",
                                                       "t5_tokenizer")}
        sched = dict(SCHNELL_SCHEDULER)
    else:
        t5_tokenizer_source(args.checkpoint)  # refuse before the long load and export
        dt = torch.float16 if args.dtype == "f16" else torch.float32
        if args.in_memory:
            models, sched = load_checkpoint(args.checkpoint, dt)
        else:
            models = build_placeholders(args.checkpoint, dt)
            sched = read_scheduler_config(args.checkpoint)
            plan = checkpoint_plan(args.checkpoint, models)  # refuse before the long export
            reference = CheckpointModels(args.checkpoint, dt)
        source = os.path.abspath(args.checkpoint)
        extra = dict(SCHNELL_EXTRA, checkpoint=args.checkpoint)
    torch.manual_seed(0)
    export_all(models, args.out, source, args.dtype, extra, sched, args.seed,
               not args.no_verify, plan=plan, reference=reference)


if __name__ == "__main__":
    main()
