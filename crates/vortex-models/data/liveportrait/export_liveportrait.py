#!/usr/bin/env python3
"""Export LivePortrait's five networks (human model) as ONNX graphs whose weights live in
one safetensors file under the official checkpoint names.

Architecture: `mimic-head`'s copy of KwaiVGI/LivePortrait `src/modules/` (PyPI,
`pip install --no-deps mimic-head==0.1.5`; the modules need only torch), hyperparameters as
in its `config/models.yaml` (checked against that file when PyYAML is installed).

Pinned versions (tested): Python 3.11.7, torch 2.15.0 (CPU), onnx 1.23.2,
onnxruntime 1.31.1, numpy 2.x, mimic-head 0.1.5.

Usage:
  python export_liveportrait.py --out DIR --config tiny [--seed N] [--dtype f32|f16]
  python export_liveportrait.py --out DIR --config official [--seed N]   # random weights
  python export_liveportrait.py --out DIR --checkpoints CKPT_DIR           # official weights
--dtype f32 (default) is what ONNX Runtime's CPU provider runs. --dtype f16 (for the CUDA
provider; needs onnxconverter-common 1.16.0) converts each traced graph with
onnxconverter-common's float16 converter: weights and compute in half precision, graph
inputs and outputs stay float32 (Cast nodes at the edges), and GridSample stays float32
between Casts (ONNX Runtime's CUDA GridSample kernel is registered for float only). The
weights file then holds each weight exactly as the converted graph reads it (F16, values
clamped to F16's finite range by the converter). An f16 export is checked against torch's
f32 output on ONNX's reference evaluator (numpy, computing in f16), not on ONNX Runtime's
CPU provider, which lacks f16 kernels for most of these ops and would run them in f32
between the Casts it inserts (hiding f16's rounding).
CKPT_DIR holds the official release files appearance_feature_extractor.pth,
motion_extractor.pth, warping_module.pth, spade_generator.pth and
stitching_retargeting_module.pth (KwaiVGI/LivePortrait `pretrained_weights/liveportrait/
base_models/` + `retargeting_models/`).

Writes into DIR:
  appearance_feature_extractor.onnx  image [1,3,S,S] -> feature_3d [1,C,D,S/4,S/4]
  motion_extractor.onnx              image -> kp, pitch, yaw, roll, t, exp, scale
  warping_spade.onnx                 feature_3d, kp_source, kp_driving -> frame [1,3,2S,2S]
                                     (warping module + SPADE generator in one graph)
  stitching.onnx                     feat [1,6K] -> delta [1,3K+2]
  retarget_lip.onnx                  feat [1,3K+2] -> delta [1,3K]
  retarget_eye.onnx                  feat [1,3K+3] -> delta [1,3K]
  weights.safetensors                every tensor of the five official state dicts (F32,
                                     num_batches_tracked I64), keys prefixed by the
                                     network's name (see CHECKPOINT MAP below)
  liveportrait.json                  manifest: config, graphs with inputs/outputs, weights

Graph properties (asserted here):
  * opset 20, TorchScript exporter (dynamo=False), do_constant_folding=False, exported with
    keep_initializers_as_inputs=True (so no initializer is de-duplicated or renamed; they are
    removed from the graph inputs afterwards). Eval mode: BatchNorm stays
    BatchNormalization with its running statistics as initializers (no Conv+BN folding);
    spectral norm is computed in the graph from weight_orig/weight_u/weight_v.
  * every initializer that comes from the state dict has exactly the tensor's name, shape
    and bytes, and is external data: data_location=EXTERNAL, location="weights.safetensors",
    offset = 8 + header_len + data_offsets[0], length = its byte size, so the graph holds no
    weight bytes and still loads stand-alone next to weights.safetensors. Linear layers
    on 2-D inputs are Gemm(transB=1) on the tensor itself; on 4-D inputs (ConvNeXt's
    pwconv) a Transpose node reads the tensor.
  * any other initializer / Constant node < 4 KiB; uniform constants >= 4 KiB (the all-ones
    / all-zeros scale and bias InstanceNormalization gets) become ConstantOfShape; anything
    else >= 4 KiB fails the export.
  * each 5-D grid sample is one GridSample node (two in warping_spade.onnx).

CHECKPOINT MAP (official file -> names in weights.safetensors / the graphs):
  appearance_feature_extractor.pth  key k -> "appearance_feature_extractor." + k
  motion_extractor.pth              key k -> "motion_extractor." + k   (k = "detector....")
  warping_module.pth                key k -> "warping_module." + k
  spade_generator.pth               key k -> "spade_generator." + k
                                    (spectral-norm convs: k.weight_orig/_u/_v)
  stitching_retargeting_module.pth  a dict of three state dicts; "module." is removed from
                                    their keys (as LivePortrait's remove_ddp_dumplicate_key):
      ["retarget_shoulder"][k] -> "stitching_retargeting_module.retarget_shoulder." + k'
      ["retarget_mouth"][k]    -> "stitching_retargeting_module.retarget_mouth." + k'
      ["retarget_eye"][k]      -> "stitching_retargeting_module.retarget_eye." + k'
  Floating tensors are stored as F32 (F16 with --dtype f16).
"""
import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from mimic_head.modules import motion_extractor as _me_mod
from mimic_head.modules.appearance_feature_extractor import AppearanceFeatureExtractor
from mimic_head.modules.convnextv2 import ConvNeXtV2
from mimic_head.modules.motion_extractor import MotionExtractor
from mimic_head.modules.spade_generator import SPADEDecoder
from mimic_head.modules.stitching_retargeting_network import StitchingRetargetingNetwork
from mimic_head.modules.util import SPADE
from mimic_head.modules.warping_network import WarpingNetwork

OPSET = 20
WEIGHTS = "weights.safetensors"
MANIFEST = "liveportrait.json"
THRESHOLD = 4096  # bytes: no non-weight tensor this large may stay in a graph
NETWORKS = ["appearance_feature_extractor", "motion_extractor", "warping_module",
            "spade_generator", "stitching_retargeting_module"]
SR_PARTS = ["retarget_shoulder", "retarget_mouth", "retarget_eye"]

# Flat hyperparameters (the same fields as vortex-models' LivePortraitConfig). F, W and G
# share block_expansion / max_features / num_down_blocks as in models.yaml; G's last SPADE
# block outputs block_expansion channels (SPADEDecoder's out_channels, 64 = 64 officially).
CONFIGS = {
    "official": dict(
        image_size=256, num_kp=21, block_expansion=64, max_features=512, num_down_blocks=2,
        reshape_channel=32, reshape_depth=16, num_resblocks=6,
        dense_block_expansion=32, dense_num_blocks=5, dense_max_features=1024, compress=4,
        convnext_depths=[3, 3, 9, 3], convnext_dims=[96, 192, 384, 768], num_bins=66,
        spade_hidden=128, upscale=2,
        stitching_hidden=[128, 128, 64], eye_hidden=[256, 256, 128, 128, 64]),
    # Same structure, scaled so the five networks hold < 2 MB of f32. num_kp is 8, not 21:
    # the dense-motion mask conv alone is (num_kp+1) x (hourglass out) x 7^3, > 1.3 MB at 21.
    "tiny": dict(
        image_size=64, num_kp=8, block_expansion=4, max_features=16, num_down_blocks=2,
        reshape_channel=4, reshape_depth=4, num_resblocks=2,
        dense_block_expansion=8, dense_num_blocks=3, dense_max_features=16, compress=2,
        convnext_depths=[1, 1, 2, 1], convnext_dims=[8, 16, 24, 32], num_bins=66,
        spade_hidden=4, upscale=2,
        stitching_hidden=[32, 32, 16], eye_hidden=[32, 32, 16, 16, 16]),
}


def module_params(c):
    """models.yaml-shaped constructor arguments for mimic-head's modules."""
    k = c["num_kp"]
    assert c["max_features"] == c["reshape_channel"] * c["reshape_depth"]
    return {
        "appearance_feature_extractor_params": dict(
            image_channel=3, block_expansion=c["block_expansion"],
            num_down_blocks=c["num_down_blocks"], max_features=c["max_features"],
            reshape_channel=c["reshape_channel"], reshape_depth=c["reshape_depth"],
            num_resblocks=c["num_resblocks"]),
        "motion_extractor_params": dict(
            num_kp=k, backbone="convnextv2", depths=list(c["convnext_depths"]),
            dims=list(c["convnext_dims"]), num_bins=c["num_bins"]),
        "warping_module_params": dict(
            num_kp=k, block_expansion=c["block_expansion"], max_features=c["max_features"],
            num_down_blocks=c["num_down_blocks"], reshape_channel=c["reshape_channel"],
            estimate_occlusion_map=True,
            dense_motion_params=dict(
                block_expansion=c["dense_block_expansion"],
                max_features=c["dense_max_features"], num_blocks=c["dense_num_blocks"],
                reshape_depth=c["reshape_depth"], compress=c["compress"])),
        "spade_generator_params": dict(
            upscale=c["upscale"], block_expansion=c["block_expansion"],
            max_features=c["max_features"], num_down_blocks=c["num_down_blocks"],
            out_channels=c["block_expansion"]),
        "stitching_retargeting_module_params": dict(
            stitching=dict(input_size=6 * k, hidden_sizes=list(c["stitching_hidden"]),
                           output_size=3 * k + 2),
            lip=dict(input_size=3 * k + 2, hidden_sizes=list(c["stitching_hidden"]),
                     output_size=3 * k),
            eye=dict(input_size=3 * k + 3, hidden_sizes=list(c["eye_hidden"]),
                     output_size=3 * k)),
    }


def check_official_against_yaml():
    """The official flat config must reproduce mimic-head's config/models.yaml."""
    try:
        import yaml
    except ImportError:
        print("PyYAML missing: models.yaml cross-check skipped")
        return
    import mimic_head
    path = os.path.join(os.path.dirname(mimic_head.__file__), "config", "models.yaml")
    y = yaml.safe_load(open(path))["model_params"]
    mine = module_params(CONFIGS["official"])
    for key, val in y.items():
        m = dict(mine[key])
        if key == "motion_extractor_params":
            assert val == {"num_kp": 21, "backbone": "convnextv2_tiny"}, val
            continue
        if key == "spade_generator_params":
            m.pop("out_channels")  # SPADEDecoder's default, 64
        assert m == val, (key, m, val)
    print("official config == mimic-head config/models.yaml")


# mimic-head's MotionExtractor picks its backbone by name; this name builds the same
# ConvNeXtV2 with explicit depths/dims (officially [3,3,9,3] x [96,192,384,768] =
# convnextv2_tiny).
_me_mod.model_dict["convnextv2"] = lambda **kw: ConvNeXtV2(**kw)


def set_spade_hidden(gen, hidden):
    """SPADE's hidden width is fixed at 128 in the module; rebuild its three convs."""
    for m in gen.modules():
        if isinstance(m, SPADE):
            if m.mlp_shared[0].out_channels == hidden:
                continue
            lab, nc = m.mlp_shared[0].in_channels, m.mlp_gamma.out_channels
            m.mlp_shared[0] = nn.Conv2d(lab, hidden, kernel_size=3, padding=1)
            m.mlp_gamma = nn.Conv2d(hidden, nc, kernel_size=3, padding=1)
            m.mlp_beta = nn.Conv2d(hidden, nc, kernel_size=3, padding=1)


class LivePortrait(nn.Module):
    """The five networks; state_dict() keys == the names in weights.safetensors."""

    def __init__(self, c):
        super().__init__()
        p = module_params(c)
        self.appearance_feature_extractor = AppearanceFeatureExtractor(
            **p["appearance_feature_extractor_params"])
        self.motion_extractor = MotionExtractor(**p["motion_extractor_params"])
        self.warping_module = WarpingNetwork(**p["warping_module_params"])
        self.spade_generator = SPADEDecoder(**p["spade_generator_params"])
        set_spade_hidden(self.spade_generator, c["spade_hidden"])
        s = p["stitching_retargeting_module_params"]
        self.stitching_retargeting_module = nn.ModuleDict({
            "retarget_shoulder": StitchingRetargetingNetwork(**s["stitching"]),
            "retarget_mouth": StitchingRetargetingNetwork(**s["lip"]),
            "retarget_eye": StitchingRetargetingNetwork(**s["eye"]),
        })
        self.eval()


# ---------------------------------------------------------------- weights

def seeded_init(model, seed):
    """Re-initialise every tensor of the state dict from one seeded generator, in
    state_dict order: weights N(0,1)/sqrt(fan_in); biases, BN/LN/GRN shifts N(0,0.1^2);
    BN/LN scales 1+N(0,0.1^2); running_mean N(0,0.1^2); running_var 0.5+|N(0,0.5^2)|;
    spectral-norm u/v unit-norm N(0,1); the last Linear of each stitching/retargeting
    MLP, of the motion heads and of SPADE's conv_img scaled by 0.1 / 0.5 / 0.25 so deltas
    and keypoints stay small and few output pixels saturate the sigmoid."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            if name.endswith("num_batches_tracked"):
                continue
            r = torch.randn(t.shape, generator=g, dtype=torch.float32)
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_var":
                v = 0.5 + 0.5 * r.abs()
            elif leaf == "running_mean":
                v = 0.1 * r
            elif leaf in ("weight_u", "weight_v"):
                v = r / r.norm().clamp_min(1e-12)
            elif leaf in ("weight", "weight_orig") and t.dim() >= 2:
                fan_in = int(np.prod(t.shape[1:]))
                v = r / np.sqrt(fan_in)
                if ".detector.fc_" in name:
                    v = v * 0.5
                if name.startswith("spade_generator.conv_img."):
                    v = v * 0.25
                if name.startswith("stitching_retargeting_module"):
                    last = max(int(n.split(".")[3]) for n in sd
                               if n.startswith(name.rsplit(".", 2)[0] + "."))
                    if int(name.split(".")[3]) == last:
                        v = v * 0.1
            elif leaf == "weight":  # 1-D: BatchNorm / LayerNorm scale
                v = 1.0 + 0.1 * r
            elif leaf in ("gamma", "beta"):  # GRN
                v = 0.1 * r
            elif leaf == "bias":
                v = 0.1 * r
            else:
                raise SystemExit(f"seeded_init: no rule for {name}")
            t.copy_(v.to(t.dtype))


def load_checkpoints(model, ckdir):
    sd = {}
    for net in NETWORKS[:4]:
        s = torch.load(os.path.join(ckdir, net + ".pth"), map_location="cpu",
                       weights_only=True)
        for k, v in s.items():
            sd[f"{net}.{k}"] = v
    s = torch.load(os.path.join(ckdir, "stitching_retargeting_module.pth"),
                   map_location="cpu", weights_only=True)
    for part in SR_PARTS:
        for k, v in s[part].items():
            sd[f"stitching_retargeting_module.{part}.{k.replace('module.', '')}"] = v
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True)


def weight_dict(model):
    """name -> contiguous numpy array (F32, or I64 for num_batches_tracked)."""
    out = {}
    for k, v in model.state_dict().items():
        a = v.detach().contiguous().cpu().numpy()
        if a.dtype == np.float64 or a.dtype == np.float16:
            a = a.astype(np.float32)
        assert a.dtype in (np.float32, np.int64), (k, a.dtype)
        out[k] = np.ascontiguousarray(a)
    return out


def write_safetensors(path, tensors, metadata):
    """Deterministic safetensors: I64 tensors first, then F32, each group in state-dict
    order, packed; JSON header with sorted keys, no spaces, space-padded to 8 bytes."""
    names = {np.dtype(np.int64): "I64", np.dtype(np.float32): "F32",
             np.dtype(np.float16): "F16"}
    assert all(t.dtype in names for t in tensors.values())
    order = [k for k in tensors if tensors[k].dtype == np.int64] + \
            [k for k in tensors if tensors[k].dtype != np.int64]
    header, pos = {"__metadata__": metadata}, 0
    for k in order:
        n = tensors[k].nbytes
        header[k] = {"dtype": names[tensors[k].dtype],
                     "shape": list(tensors[k].shape), "data_offsets": [pos, pos + n]}
        pos += n
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for k in order:
            f.write(tensors[k].tobytes())
    return 8 + len(hb), header


# ---------------------------------------------------------------- graphs

class AppearanceGraph(nn.Module):
    def __init__(self, lp):
        super().__init__()
        self.appearance_feature_extractor = lp.appearance_feature_extractor

    def forward(self, image):
        return self.appearance_feature_extractor(image)


MOTION_OUTPUTS = ["kp", "pitch", "yaw", "roll", "t", "exp", "scale"]


class MotionGraph(nn.Module):
    def __init__(self, lp):
        super().__init__()
        self.motion_extractor = lp.motion_extractor

    def forward(self, image):
        d = self.motion_extractor(image)
        return tuple(d[k] for k in MOTION_OUTPUTS)


class WarpSpadeGraph(nn.Module):
    def __init__(self, lp):
        super().__init__()
        self.warping_module = lp.warping_module
        self.spade_generator = lp.spade_generator

    def forward(self, feature_3d, kp_source, kp_driving):
        w = self.warping_module(feature_3d, kp_driving=kp_driving, kp_source=kp_source)
        return self.spade_generator(feature=w["out"])


class MlpGraph(nn.Module):
    def __init__(self, lp, part):
        super().__init__()
        self.stitching_retargeting_module = lp.stitching_retargeting_module
        self.part = part

    def forward(self, feat):
        return self.stitching_retargeting_module[self.part](feat)


def graph_specs(lp, c):
    s, k = c["image_size"], c["num_kp"]
    h = s // (2 ** c["num_down_blocks"])
    f3d = (1, c["reshape_channel"], c["reshape_depth"], h, h)
    g = torch.Generator().manual_seed(1234)
    img = torch.rand(1, 3, s, s, generator=g)
    kps = 0.5 * torch.randn(1, k, 3, generator=g)
    return [
        ("appearance_feature_extractor", AppearanceGraph(lp), (img,), ["image"],
         ["feature_3d"]),
        ("motion_extractor", MotionGraph(lp), (img,), ["image"], MOTION_OUTPUTS),
        ("warping_spade", WarpSpadeGraph(lp),
         (torch.randn(*f3d, generator=g), kps, kps + 0.05 * torch.randn(1, k, 3, generator=g)),
         ["feature_3d", "kp_source", "kp_driving"], ["frame"]),
        ("stitching", MlpGraph(lp, "retarget_shoulder"),
         (0.5 * torch.randn(1, 6 * k, generator=g),), ["feat"], ["delta"]),
        ("retarget_lip", MlpGraph(lp, "retarget_mouth"),
         (0.5 * torch.randn(1, 3 * k + 2, generator=g),), ["feat"], ["delta"]),
        ("retarget_eye", MlpGraph(lp, "retarget_eye"),
         (0.5 * torch.randn(1, 3 * k + 3, generator=g),), ["feat"], ["delta"]),
    ]


def uniform_constants_to_constant_of_shape(model):
    """Constant nodes >= THRESHOLD bytes holding one repeated value (InstanceNorm's
    scale/bias) -> ConstantOfShape(shape) so the graph carries no such payload."""
    g = model.graph
    n_rewritten = 0
    for i, node in enumerate(list(g.node)):
        if node.op_type != "Constant":
            continue
        attr = [a for a in node.attribute if a.name == "value"]
        if not attr:
            continue
        arr = numpy_helper.to_array(attr[0].t)
        if arr.nbytes < THRESHOLD:
            continue
        flat = arr.reshape(-1)
        if not np.all(flat == flat[0]):
            raise SystemExit(f"constant {node.output[0]}: {arr.nbytes} bytes, not uniform")
        shape_name = node.output[0] + "_shape"
        shape_node = helper.make_node(
            "Constant", [], [shape_name],
            value=numpy_helper.from_array(np.array(arr.shape, dtype=np.int64)))
        cos = helper.make_node(
            "ConstantOfShape", [shape_name], [node.output[0]],
            value=numpy_helper.from_array(flat[:1].copy()))
        idx = list(g.node).index(node)
        g.node.remove(node)
        g.node.insert(idx, cos)
        g.node.insert(idx, shape_node)
        n_rewritten += 1
    return n_rewritten


def tensor_shape(vi):
    dims = []
    for d in vi.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else d.dim_param)
    return dims


F16_MIN_POSITIVE = 5.96e-08  # F16's smallest subnormal: no weight is flushed to zero
F16_MAX_FINITE = 65504.0
# Ops that stay float32 between Casts in an f16 export: GridSample (ONNX Runtime's CUDA
# kernel is float-only) and the normalizations, whose variance overflows F16 when computed
# in it (SPADE's activations reach a few hundred; ONNX's reference evaluator, which computes
# in the tensor's type, gave a broken frame with them in f16).
F16_KEEP_F32 = ["GridSample", "InstanceNormalization", "LayerNormalization"]
# The most an f16 graph's output may differ from torch's f32 one (the tiny config's frame
# differs by 0.025 of its (0, 1) range).
F16_TOLERANCE = 0.05


def trace_graph(name, module, args, in_names, out_names, out_dir, dtype):
    """The traced graph with its weights inline (converted to f16 when dtype is f16) and
    the number of uniform constants replaced by ConstantOfShape."""
    tmp = os.path.join(out_dir, name + ".onnx.tmp")
    with torch.no_grad():
        torch.onnx.export(module, args, tmp, dynamo=False, opset_version=OPSET,
                          do_constant_folding=False, export_params=True,
                          keep_initializers_as_inputs=True,
                          input_names=in_names, output_names=out_names)
    m = onnx.load(tmp)
    os.remove(tmp)
    g = m.graph
    init_names = {t.name for t in g.initializer}
    # initializers are not graph inputs
    keep = [i for i in g.input if i.name not in init_names]
    del g.input[:]
    g.input.extend(keep)
    assert [i.name for i in g.input] == in_names, [i.name for i in g.input]
    n_cos = uniform_constants_to_constant_of_shape(m)
    if dtype == "f16":
        from onnxconverter_common import float16
        m = float16.convert_float_to_float16(
            m, min_positive_val=F16_MIN_POSITIVE, max_finite_val=F16_MAX_FINITE,
            keep_io_types=True,
            op_block_list=float16.DEFAULT_OP_BLOCK_LIST + F16_KEEP_F32)
    return m, n_cos


def f16_weights(weights, traced):
    """The weights as the converted graphs read them: each initializer that is a weight,
    taken from the graph (the converter's rounding and clamping), the rest as they were."""
    out = dict(weights)
    for m, _ in traced:
        for t in m.graph.initializer:
            if t.name in weights:
                arr = numpy_helper.to_array(t)
                if t.name in out and out[t.name].dtype == arr.dtype and \
                        out[t.name].tobytes() != arr.tobytes():
                    raise SystemExit(f"{t.name}: two graphs read it differently")
                out[t.name] = np.ascontiguousarray(arr)
    return out


def export_graph(name, traced, weights, wheader, base, out_dir):
    path = os.path.join(out_dir, name + ".onnx")
    m, n_cos = traced
    g = m.graph

    ext, small = [], []
    for t in g.initializer:
        arr = numpy_helper.to_array(t)
        if t.name in weights:
            w = weights[t.name]
            if arr.dtype != w.dtype or list(arr.shape) != list(w.shape) or \
                    arr.tobytes() != w.tobytes():
                raise SystemExit(f"{name}: initializer {t.name} differs from the weight")
            h = wheader[t.name]
            start, end = h["data_offsets"]
            t.ClearField("raw_data")
            for fld in ("float_data", "int64_data", "int32_data", "double_data"):
                t.ClearField(fld)
            t.data_location = TensorProto.EXTERNAL
            del t.external_data[:]
            for k, v in (("location", WEIGHTS), ("offset", str(base + start)),
                         ("length", str(end - start))):
                e = t.external_data.add()
                e.key, e.value = k, v
            ext.append(t.name)
        else:
            if arr.nbytes >= THRESHOLD:
                raise SystemExit(f"{name}: non-weight initializer {t.name} is "
                                 f"{arr.nbytes} bytes (>= {THRESHOLD})")
            small.append((t.name, arr.nbytes))
    for node in g.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                nb = numpy_helper.to_array(a.t).nbytes
                if nb >= THRESHOLD:
                    raise SystemExit(f"{name}: {node.op_type} {node.output[0]} holds {nb} B")
        if node.domain not in ("", "ai.onnx"):
            raise SystemExit(f"{name}: node {node.op_type} in domain {node.domain}")

    # GridSample: one node per grid sample, 5-D input, opset 20 semantics
    inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim)
             for vi in list(inferred.graph.value_info) + list(inferred.graph.input)
             + list(inferred.graph.output)}
    gs = [n for n in g.node if n.op_type == "GridSample"]
    for n in gs:
        if ranks.get(n.input[0]) != 5 or ranks.get(n.input[1]) != 5:
            raise SystemExit(f"{name}: GridSample {n.name} is not 5-D")
    if name == "warping_spade" and len(gs) != 2:
        raise SystemExit(f"{name}: expected 2 GridSample nodes, found {len(gs)}")
    if name != "warping_spade" and gs:
        raise SystemExit(f"{name}: unexpected GridSample")
    assert m.opset_import[0].version == OPSET

    data = m.SerializeToString(deterministic=True)
    with open(path, "wb") as f:
        f.write(data)

    def io(vs):
        return [{"name": v.name, "dtype": "float32", "shape": tensor_shape(v)} for v in vs]

    for v in list(g.input) + list(g.output):
        assert v.type.tensor_type.elem_type == TensorProto.FLOAT
    # Each GridSample reads and writes float32 (its Casts are the converter's, f16 or not).
    elem = {vi.name: vi.type.tensor_type.elem_type
            for vi in list(inferred.graph.value_info) + list(inferred.graph.input)
            + list(inferred.graph.output)}
    for n in gs:
        if elem.get(n.input[0]) != TensorProto.FLOAT or elem.get(n.output[0]) != TensorProto.FLOAT:
            raise SystemExit(f"{name}: GridSample {n.name} is not float32")
    ops = {}
    for n in g.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    info = {
        "file": name + ".onnx",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "inputs": io(g.input),
        "outputs": io(g.output),
        "nodes": len(g.node),
        "grid_sample_nodes": len(gs),
        "external_initializers": ext,
        "inline_initializers": len(small),
        "inline_initializer_bytes": sum(b for _, b in small),
    }
    print(f"{name}: {len(g.node)} nodes, {len(ext)} external initializers, "
          f"{len(small)} inline ({info['inline_initializer_bytes']} B), "
          f"{len(gs)} GridSample, {n_cos} uniform constants -> ConstantOfShape, "
          f"graph {len(data)} B")
    return path, info, ops


def ort_session(path, threads=2):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def verify(path, module, args, in_names, dtype="f32"):
    """Largest |difference| between torch's f32 outputs and the graph's: on ONNX Runtime's
    CPU provider for f32, on ONNX's reference evaluator (numpy) for f16."""
    feeds = {n: a.numpy() for n, a in zip(in_names, args)}
    if dtype == "f16":
        from onnx.reference import ReferenceEvaluator
        got = ReferenceEvaluator(path).run(None, feeds)
    else:
        got = ort_session(path).run(None, feeds)
    with torch.no_grad():
        ref = module(*args)
    if isinstance(ref, torch.Tensor):
        ref = (ref,)
    return max(float(np.abs(r.numpy() - o.astype(np.float32)).max()) for r, o in zip(ref, got))


def export_all(out_dir, config_name, seed=None, checkpoints=None, do_verify=True, dtype="f32"):
    c = CONFIGS[config_name]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    lp = LivePortrait(c)
    if checkpoints:
        load_checkpoints(lp, checkpoints)
        source = {"kind": "checkpoints", "files": [n + ".pth" for n in NETWORKS]}
    else:
        seeded_init(lp, seed)
        source = {"kind": "seeded", "seed": seed}
    lp.eval()
    weights = weight_dict(lp)
    specs = graph_specs(lp, c)
    traced = []
    for name, module, args, ins, outs in specs:
        module.eval()
        traced.append(trace_graph(name, module, args, ins, outs, out_dir, dtype))
    if dtype == "f16":
        weights = f16_weights(weights, traced)
    meta = {"format": "vortex-liveportrait-1", "config": config_name,
            "source": json.dumps(source, sort_keys=True)}
    if dtype != "f32":
        meta["dtype"] = dtype
    base, wheader = write_safetensors(os.path.join(out_dir, WEIGHTS), weights, meta)

    graphs, used, all_ops = {}, set(), {}
    for (name, module, args, ins, outs), t in zip(specs, traced):
        path, info, ops = export_graph(name, t, weights, wheader, base, out_dir)
        if do_verify:
            key = "verify_max_abs_diff_ort_vs_torch" if dtype == "f32" else \
                "verify_max_abs_diff_onnx_reference_f16_vs_torch_f32"
            info[key] = verify(path, module, args, ins, dtype)
            print(f"  {key} = {info[key]:.3g}")
            if dtype == "f16" and not info[key] <= F16_TOLERANCE:
                raise SystemExit(f"{name}: f16 output differs from torch's by {info[key]:.3g} "
                                 f"(> {F16_TOLERANCE})")
        graphs[name] = info
        used.update(info["external_initializers"])
        for k, v in ops.items():
            all_ops[k] = all_ops.get(k, 0) + v
    unused = [k for k in weights if k not in used]
    assert all(k.endswith("num_batches_tracked") for k in unused), \
        [k for k in unused if not k.endswith("num_batches_tracked")]

    wbytes = open(os.path.join(out_dir, WEIGHTS), "rb").read()
    n_f32 = sum(int(np.prod(w.shape)) for w in weights.values() if w.dtype == np.float32)
    n_f16 = sum(int(np.prod(w.shape)) for w in weights.values() if w.dtype == np.float16)
    manifest = {
        "kind": "liveportrait",
        "format": "vortex-liveportrait-1",
        "dtype": dtype,
        "config_name": config_name,
        "source": source,
        "opset": OPSET,
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "dynamo": False, "do_constant_folding": False},
        "config": c,
        "module_params": module_params(c),
        "weights": {"file": WEIGHTS, "sha256": hashlib.sha256(wbytes).hexdigest(),
                    "bytes": len(wbytes), "data_start": base, "tensors": len(weights),
                    "f32_elements": n_f32, "f16_elements": n_f16,
                    "unused_by_graphs": unused},
        "checkpoint_map": {
            "appearance_feature_extractor.pth": "appearance_feature_extractor.<key>",
            "motion_extractor.pth": "motion_extractor.<key>",
            "warping_module.pth": "warping_module.<key>",
            "spade_generator.pth": "spade_generator.<key>",
            "stitching_retargeting_module.pth": {
                p: f"stitching_retargeting_module.{p}.<key without 'module.'>"
                for p in SR_PARTS},
        },
        "graphs": graphs,
        "ops": dict(sorted(all_ops.items())),
    }
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"{WEIGHTS}: {len(weights)} tensors, {n_f32} f32 elements, {n_f16} f16 elements, "
          f"{len(wbytes)} B")
    return lp, manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    grp = ap.add_mutually_exclusive_group(required=True)
    grp.add_argument("--config", choices=sorted(CONFIGS))
    grp.add_argument("--checkpoints", help="directory with the official .pth files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    a = ap.parse_args()
    check_official_against_yaml()
    if a.checkpoints:
        export_all(a.out, "official", checkpoints=a.checkpoints, do_verify=not a.no_verify,
                   dtype=a.dtype)
    else:
        export_all(a.out, a.config, seed=a.seed, do_verify=not a.no_verify, dtype=a.dtype)


if __name__ == "__main__":
    sys.exit(main())
