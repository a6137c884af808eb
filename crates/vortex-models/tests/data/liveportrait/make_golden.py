#!/usr/bin/env python3
"""Tiny LivePortrait export + goldens for the Rust video stage.

Pinned versions (tested): Python 3.11.7, torch 2.15.0 (CPU), onnx 1.23.2,
onnxruntime 1.31.1, numpy 2.x, mimic-head 0.1.5 (`pip install --no-deps`).

Writes (next to this file):
  tiny/                     export_liveportrait.py --config tiny --seed 0: six graphs,
                            weights.safetensors, liveportrait.json
  tiny_golden.json          PyTorch outputs of every network for the source image below,
                            the transformed keypoints, a 4-frame clip driven by drive(),
                            the audio-envelope and natural-motion references, and the
                            ORT-vs-torch max |diff| of every graph and of the clip
  tiny_golden.safetensors   full tensors (F32): image, feature_3d, clip_frames, audio

Source image (deterministic integer formula), S = image_size, c in 0..3, y, x in 0..S:
  v = (7*x + 13*y + 29*c + 5*((x*y) % 17)) % 256          (an integer 0..255)
  image[0, c, y, x] = float32(v) / float32(255)            (RGB, CHW, in [0, 1])
i.e. what LivePortrait's prepare_source does to an HxWx3 uint8 image: /255, HWC -> CHW.

Session settings of every ORT run (the Rust engine's): CPU provider,
intra_op_num_threads=2, inter_op_num_threads=1, session.disable_prepacking=1.

Usage: python make_golden.py
"""
import hashlib
import json
import math
import os
import struct
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "data", "liveportrait"))
import export_liveportrait as X  # noqa: E402

OUT = os.path.join(HERE, "tiny")
SEED = 0
F32 = np.float32


# ======================================================================= reference
# Everything below up to "goldens" is the reference for the Rust port; all float32.

def source_image(size):
    c = np.arange(3).reshape(3, 1, 1)
    y = np.arange(size).reshape(1, size, 1)
    x = np.arange(size).reshape(1, 1, size)
    v = (7 * x + 13 * y + 29 * c + 5 * ((x * y) % 17)) % 256
    return (v.astype(F32) / F32(255))[None]  # [1,3,S,S]


def headpose_to_degree(bins):
    """66 pose logits -> degrees: softmax, expectation over bin index 0..65, *3 - 97.5
    (LivePortrait's headpose_pred_to_degree)."""
    b = bins.astype(F32).reshape(-1)
    e = np.exp(b - b.max())
    p = e / e.sum()
    return F32((p * np.arange(b.size, dtype=F32)).sum() * F32(3) - F32(97.5))


def rotation_matrix(pitch, yaw, roll):
    """Degrees -> the 3x3 matrix R that row-vector keypoints are multiplied by (x @ R).
    LivePortrait's get_rotation_matrix: R = (Rz(roll) @ Ry(yaw) @ Rx(pitch))^T with
      Rx = [[1,0,0],[0,cx,-sx],[0,sx,cx]]   Ry = [[cy,0,sy],[0,1,0],[-sy,0,cy]]
      Rz = [[cz,-sz,0],[sz,cz,0],[0,0,1]]   angles in radians = deg / 180 * pi (f32)."""
    pi = F32(np.pi)
    x, y, z = (F32(a) / F32(180) * pi for a in (pitch, yaw, roll))
    cx, sx, cy, sy, cz, sz = (F32(f(a)) for a in (x, y, z) for f in (np.cos, np.sin))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], F32)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], F32)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], F32)
    return ((rz @ ry) @ rx).T.copy()


def keypoints(kp, R, exp, scale, t):
    """Eqn. 2: x = scale * (kp @ R + exp), then x[:, 0:2] += t[0:2] (t_z is not used).
    kp, exp [K,3]; R [3,3]; scale scalar; t [3]."""
    x = (kp @ R + exp) * F32(scale)
    x[:, 0:2] += t[0:2]
    return x.astype(F32)


def prepare_source(nets, image):
    """Once per actor image (per slot): appearance features, canonical keypoints, pose."""
    f_s = nets.appearance(image)                                   # [1,C,D,h,w]
    m = nets.motion(image)                                         # raw graph outputs
    k = m["kp"].size // 3
    src = {
        "f_s": f_s, "raw": m, "num_kp": k,
        "kp": m["kp"].reshape(k, 3), "exp": m["exp"].reshape(k, 3),
        "t": m["t"].reshape(3), "scale": F32(m["scale"].reshape(())),
        "pitch": headpose_to_degree(m["pitch"]), "yaw": headpose_to_degree(m["yaw"]),
        "roll": headpose_to_degree(m["roll"]),
    }
    src["R_s"] = rotation_matrix(src["pitch"], src["yaw"], src["roll"])
    src["x_s"] = keypoints(src["kp"], src["R_s"], src["exp"], src["scale"], src["t"])
    return src


def drive(nets, src, lip_ratio, head, blink, source_eye_ratio=0.35, source_lip_ratio=0.0):
    """Per-frame driving: LivePortrait's image retargeting (gradio_pipeline
    execute_image_retargeting) applied frame by frame.

    lip_ratio[i]  target lip-open ratio (0 = closed; LivePortrait's sliders go to 0.8)
    head[i]       (d_pitch, d_yaw, d_roll) in degrees, added to the source pose
    blink[i]      0 = eyes as in the source, 1 = closed
    source_eye_ratio / source_lip_ratio: the actor's own eye-open / lip-open ratios
      (LivePortrait measures them with a landmark detector; here they are parameters).
    Returns per frame: the intermediate keypoints, the deltas and the frame [1,3,2S,2S]."""
    k = src["num_kp"]
    x_s = src["x_s"]
    xs_flat = x_s.reshape(1, 3 * k)
    c_s_eye, c_s_lip = F32(source_eye_ratio), F32(source_lip_ratio)
    out = []
    for i in range(len(lip_ratio)):
        dp, dy, dr = (F32(v) for v in head[i])
        # 1. head pose: the source's canonical keypoints, expression, scale and t under the
        #    rotated pose (zero deltas give x_d == x_s exactly)
        R_d = rotation_matrix(src["pitch"] + dp, src["yaw"] + dy, src["roll"] + dr)
        x_d = keypoints(src["kp"], R_d, src["exp"], src["scale"], src["t"])
        fr = {"R_d": R_d, "x_d_pose": x_d.copy(), "eye_delta": None, "lip_delta": None}
        # 2. blink through the eye retargeting MLP: feat = [x_s (3K), c_s, c_s, c_d]
        c_d_eye = F32(c_s_eye * (F32(1) - F32(blink[i])))
        if c_d_eye != c_s_eye:
            feat = np.concatenate([xs_flat, np.array([[c_s_eye, c_s_eye, c_d_eye]], F32)], 1)
            d = nets.retarget_eye(feat).reshape(k, 3)
            x_d = x_d + d
            fr["eye_delta"] = d
        # 3. mouth through the lip retargeting MLP: feat = [x_s (3K), c_s_lip, c_d_lip]
        c_d_lip = F32(lip_ratio[i])
        if c_d_lip != c_s_lip:
            feat = np.concatenate([xs_flat, np.array([[c_s_lip, c_d_lip]], F32)], 1)
            d = nets.retarget_lip(feat).reshape(k, 3)
            x_d = x_d + d
            fr["lip_delta"] = d
        # 4. stitching: feat = [x_s (3K), x_d (3K)] -> delta (3K + 2)
        d = nets.stitching(np.concatenate([xs_flat, x_d.reshape(1, 3 * k)], 1)).reshape(-1)
        x_d = x_d + d[:3 * k].reshape(k, 3)
        x_d[:, 0:2] += d[3 * k:3 * k + 2]
        fr["stitch_delta"] = d
        fr["x_d"] = x_d.astype(F32)
        # 5. warp + decode; frame values in (0,1) (sigmoid); to uint8 as LivePortrait's
        #    parse_output: u8 = trunc(clip(clip(v, 0, 1) * 255, 0, 255))
        fr["frame"] = nets.warping_spade(src["f_s"], x_s[None], fr["x_d"][None])
        out.append(fr)
    return out


def lip_ratios_from_audio(samples, sample_rate, fps, n_frames, lip_max=0.5, gate=0.1):
    """Audio envelope -> one lip-open ratio per video frame (integer fps).
    Frame i covers samples [i*sr//fps, (i+1)*sr//fps) (clipped to the audio);
    rms_i = sqrt(mean(x^2)) in f64 (0 for an empty window); ref = max_i rms_i;
    e_i = rms_i / ref; ratio_i = lip_max * clamp((e_i - gate) / (1 - gate), 0, 1);
    all zeros when ref <= 1e-6. Returned as f32."""
    x = np.asarray(samples, dtype=np.float64)
    rms = np.zeros(n_frames)
    for i in range(n_frames):
        a, b = i * sample_rate // fps, min((i + 1) * sample_rate // fps, x.size)
        if b > a:
            rms[i] = math.sqrt(float(np.mean(x[a:b] ** 2)))
    ref = rms.max() if n_frames else 0.0
    if ref <= 1e-6:
        return np.zeros(n_frames, F32), rms
    e = rms / ref
    return (lip_max * np.clip((e - gate) / (1 - gate), 0.0, 1.0)).astype(F32), rms


M64 = (1 << 64) - 1


class SplitMix64:
    """The seeded generator: state += 0x9E3779B97F4A7C15; z = state;
    z = (z ^ z>>30) * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB;
    out = z ^ z>>31 (all mod 2^64); uniform() = (out >> 11) * 2^-53 in [0,1)."""

    def __init__(self, seed):
        self.s = seed & M64

    def next_u64(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))


def natural_motion(seed, n_frames, fps=24, amp_deg=(2.0, 3.0, 1.5), blink_len=0.2):
    """Small head motion and blinks from a seed (f64 math, f32 result).
    Draw order: for each axis (pitch, yaw, roll): f1 = 0.1+0.2u, p1 = 2*pi*u,
    f2 = 0.3+0.4u, p2 = 2*pi*u; then blink starts: t = 0.5+2.5u, and while t < n/fps:
    record t, t += 2.0+3.0u. Frame i at time s = i/fps:
      angle = A * (0.7 sin(2 pi f1 s + p1) + 0.3 sin(2 pi f2 s + p2))
      blink = max over starts b of tri((s - b) / blink_len), tri(x) = 1 - |2x - 1| on
              [0, 1], else 0."""
    r = SplitMix64(seed)
    waves = []
    for _ in amp_deg:
        waves.append((0.1 + 0.2 * r.uniform(), 2 * math.pi * r.uniform(),
                      0.3 + 0.4 * r.uniform(), 2 * math.pi * r.uniform()))
    starts, t, dur = [], 0.5 + 2.5 * r.uniform(), n_frames / fps
    while t < dur:
        starts.append(t)
        t += 2.0 + 3.0 * r.uniform()
    head = np.zeros((n_frames, 3), F32)
    blink = np.zeros(n_frames, F32)
    for i in range(n_frames):
        s = i / fps
        for a, (amp, (f1, p1, f2, p2)) in enumerate(zip(amp_deg, waves)):
            head[i, a] = amp * (0.7 * math.sin(2 * math.pi * f1 * s + p1)
                                + 0.3 * math.sin(2 * math.pi * f2 * s + p2))
        b = 0.0
        for st in starts:
            xx = (s - st) / blink_len
            if 0.0 <= xx <= 1.0:
                b = max(b, 1.0 - abs(2.0 * xx - 1.0))
        blink[i] = b
    return head, blink, starts


# ======================================================================= networks

class TorchNets:
    def __init__(self, lp):
        self.lp = lp
        self.ws = X.WarpSpadeGraph(lp).eval()

    def _run(self, f, *a):
        with torch.no_grad():
            return f(*(torch.from_numpy(np.ascontiguousarray(x)) for x in a))

    def appearance(self, img):
        return self._run(self.lp.appearance_feature_extractor, img).numpy()

    def motion(self, img):
        d = self._run(self.lp.motion_extractor, img)
        return {k: d[k].numpy() for k in X.MOTION_OUTPUTS}

    def warping_spade(self, f, xs, xd):
        return self._run(self.ws, f, xs, xd).numpy()

    def _mlp(self, part, feat):
        return self._run(self.lp.stitching_retargeting_module[part], feat).numpy()

    def stitching(self, feat):
        return self._mlp("retarget_shoulder", feat)

    def retarget_lip(self, feat):
        return self._mlp("retarget_mouth", feat)

    def retarget_eye(self, feat):
        return self._mlp("retarget_eye", feat)


class OrtNets:
    def __init__(self, d):
        self.s = {g: X.ort_session(os.path.join(d, g + ".onnx")) for g in
                  ["appearance_feature_extractor", "motion_extractor", "warping_spade",
                   "stitching", "retarget_lip", "retarget_eye"]}

    def appearance(self, img):
        return self.s["appearance_feature_extractor"].run(None, {"image": img})[0]

    def motion(self, img):
        return dict(zip(X.MOTION_OUTPUTS, self.s["motion_extractor"].run(None, {"image": img})))

    def warping_spade(self, f, xs, xd):
        return self.s["warping_spade"].run(
            None, {"feature_3d": f, "kp_source": xs, "kp_driving": xd})[0]

    def stitching(self, feat):
        return self.s["stitching"].run(None, {"feat": feat})[0]

    def retarget_lip(self, feat):
        return self.s["retarget_lip"].run(None, {"feat": feat})[0]

    def retarget_eye(self, feat):
        return self.s["retarget_eye"].run(None, {"feat": feat})[0]


def package_cross_check(lp, src, lip, head, blink, frames, c_s_eye, c_s_lip):
    """Recompute the clip with mimic-head's own LivePortraitWrapper methods
    (transform_keypoint, retarget_eye/lip, stitching, warp_decode) in torch, as
    execute_image_retargeting does; returns max |diff| against drive()'s x_d and frames."""
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))  # imported, not used
    from mimic_head.live_portrait_wrapper import LivePortraitWrapper as W
    from mimic_head.utils.camera import get_rotation_matrix
    me = types.SimpleNamespace(
        stitching_retargeting_module={
            "stitching": lp.stitching_retargeting_module["retarget_shoulder"],
            "lip": lp.stitching_retargeting_module["retarget_mouth"],
            "eye": lp.stitching_retargeting_module["retarget_eye"]},
        warping_module=lp.warping_module, spade_generator=lp.spade_generator,
        cfg=types.SimpleNamespace(flag_use_half_precision=False))
    me.stitch = lambda a, b: W.stitch(me, a, b)
    raw = {k: torch.from_numpy(v) for k, v in src["raw"].items()}
    k = src["num_kp"]
    info = dict(raw)
    info["kp"] = raw["kp"].reshape(1, k, 3)
    info["exp"] = raw["exp"].reshape(1, k, 3)
    x_s = W.transform_keypoint(None, info)
    from mimic_head.utils.camera import headpose_pred_to_degree as h2d
    p, y, r = (h2d(raw[a])[:, None] for a in ("pitch", "yaw", "roll"))
    R_s = get_rotation_matrix(p, y, r)
    dx, df = 0.0, 0.0
    f_s = torch.from_numpy(src["f_s"])
    with torch.no_grad():
        for i in range(len(lip)):
            R_d = get_rotation_matrix(p + float(head[i][0]), y + float(head[i][1]),
                                      r + float(head[i][2]))
            R_new = (R_d @ R_s.permute(0, 2, 1)) @ R_s
            t = raw["t"].clone()
            t[..., 2] = 0
            x_d = raw["scale"] * (info["kp"] @ R_new + info["exp"]) + t
            c_d_eye = c_s_eye * (1 - blink[i])
            if c_d_eye != c_s_eye:
                x_d = x_d + W.retarget_eye(me, x_s, torch.tensor([[c_s_eye, c_s_eye, c_d_eye]],
                                                                 dtype=torch.float32)).reshape(1, k, 3)
            if lip[i] != c_s_lip:
                x_d = x_d + W.retarget_lip(me, x_s, torch.tensor([[c_s_lip, lip[i]]],
                                                                 dtype=torch.float32)).reshape(1, k, 3)
            x_d = W.stitching(me, x_s, x_d)
            out = W.warp_decode(me, f_s, x_s, x_d)["out"].numpy()
            dx = max(dx, float(np.abs(x_d.numpy()[0] - frames[i]["x_d"]).max()))
            df = max(df, float(np.abs(out - frames[i]["frame"]).max()))
    return {"x_s": float(np.abs(x_s.numpy()[0] - src["x_s"]).max()), "x_d": dx, "frame": df}


# ======================================================================= goldens

def fl(a):
    return [float(v) for v in np.asarray(a, dtype=F32).reshape(-1)]


def summary(a, full=False):
    a = np.asarray(a, dtype=F32)
    flat = a.reshape(-1)
    idx = [int(i * (flat.size - 1) // 15) for i in range(16)]
    s = {"shape": list(a.shape), "sum": float(flat.astype(np.float64).sum()),
         "mean": float(flat.astype(np.float64).mean()),
         "abs_mean": float(np.abs(flat.astype(np.float64)).mean()),
         "min": float(flat.min()), "max": float(flat.max()),
         "first": fl(flat[:16]), "sample_indices": idx, "samples": fl(flat[idx])}
    if full:
        s["values"] = fl(flat)
    return s


def write_safetensors(path, tensors):
    header, pos, blobs = {"__metadata__": {"about": "LivePortrait tiny goldens"}}, 0, []
    for k, v in tensors.items():
        b = np.ascontiguousarray(v, dtype=F32).tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [pos, pos + len(b)]}
        pos += len(b)
        blobs.append(b)
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def maxdiff(a, b):
    return float(np.abs(np.asarray(a, F32) - np.asarray(b, F32)).max())


def main():
    lp, manifest = X.export_all(OUT, "tiny", seed=SEED)
    c = X.CONFIGS["tiny"]
    tn, on = TorchNets(lp), OrtNets(OUT)
    img = source_image(c["image_size"])
    k = c["num_kp"]

    src = prepare_source(tn, img)
    src_o = prepare_source(on, img)
    x_s = src["x_s"]
    xs_flat = x_s.reshape(1, -1)

    # single-network goldens (inputs built from the source)
    mlp_in = {
        "stitching": np.concatenate([xs_flat, xs_flat], 1),
        "retarget_lip": np.concatenate([xs_flat, np.array([[0.0, 0.3]], F32)], 1),
        "retarget_eye": np.concatenate([xs_flat, np.array([[0.35, 0.35, 0.1]], F32)], 1),
    }
    mlp = {}
    for g, feat in mlp_in.items():
        ref, got = getattr(tn, g)(feat), getattr(on, g)(feat)
        mlp[g] = {"input": fl(feat), "output": fl(ref), "ort_max_abs_diff": maxdiff(ref, got)}
    ws_ref = tn.warping_spade(src["f_s"], x_s[None], x_s[None])
    ws_ort = on.warping_spade(src["f_s"], x_s[None], x_s[None])

    # the clip
    c_s_eye, c_s_lip = 0.35, 0.0
    lip = [0.0, 0.3, 0.6, 0.2]
    head = [(0.0, 0.0, 0.0), (2.0, -3.0, 1.0), (-1.5, 4.0, -2.0), (0.5, 1.0, 0.0)]
    blink = [0.0, 0.0, 1.0, 0.5]
    fr_t = drive(tn, src, lip, head, blink, c_s_eye, c_s_lip)
    fr_o = drive(on, src_o, lip, head, blink, c_s_eye, c_s_lip)
    pkg = package_cross_check(lp, src, lip, head, blink, fr_t, c_s_eye, c_s_lip)
    print("mimic-head wrapper vs drive():", pkg)
    assert max(pkg.values()) < 1e-4, pkg

    frames = []
    for i, (a, b) in enumerate(zip(fr_t, fr_o)):
        frames.append({
            "lip_ratio": lip[i], "head": list(head[i]), "blink": blink[i],
            "R_d": fl(a["R_d"]), "x_d_pose": fl(a["x_d_pose"]),
            "eye_delta": None if a["eye_delta"] is None else fl(a["eye_delta"]),
            "lip_delta": None if a["lip_delta"] is None else fl(a["lip_delta"]),
            "lip_delta_l2": 0.0 if a["lip_delta"] is None else
            float(np.linalg.norm(a["lip_delta"])),
            "stitch_delta": fl(a["stitch_delta"]), "x_d": fl(a["x_d"]),
            "frame": summary(a["frame"]),
            "frame_u8_mean": float(np.clip(np.clip(a["frame"], 0, 1) * 255, 0, 255)
                                   .astype(np.uint8).mean()),
            "ort_max_abs_diff": {"x_d": maxdiff(a["x_d"], b["x_d"]),
                                 "frame": maxdiff(a["frame"], b["frame"])},
        })

    # audio envelope -> lip ratios
    sr, fps, env = 24000, 24, [0.0, 0.05, 0.2, 0.6, 1.0, 0.7, 0.3, 0.0, 0.0, 0.8, 0.4, 0.1]
    n = np.arange(sr * len(env) // fps)
    audio = (np.array(env)[n * fps // sr] * np.sin(2 * np.pi * 220.0 * n / sr)).astype(F32)
    ratios, rms = lip_ratios_from_audio(audio, sr, fps, len(env))
    order_e = np.argsort(rms, kind="stable")
    assert np.all(np.diff(ratios[order_e]) >= 0), "lip ratio must follow the audio energy"

    nm_head, nm_blink, nm_starts = natural_motion(7, 96)

    ort_diffs = {
        "appearance_feature_extractor": maxdiff(src["f_s"], src_o["f_s"]),
        "motion_extractor": max(maxdiff(src["raw"][q], src_o["raw"][q]) for q in X.MOTION_OUTPUTS),
        "warping_spade": maxdiff(ws_ref, ws_ort),
        **{g: mlp[g]["ort_max_abs_diff"] for g in mlp},
        "x_s": maxdiff(src["x_s"], src_o["x_s"]),
        "clip_x_d": max(f["ort_max_abs_diff"]["x_d"] for f in frames),
        "clip_frames": max(f["ort_max_abs_diff"]["frame"] for f in frames),
    }
    print("ORT vs torch:", json.dumps(ort_diffs, indent=1))

    golden = {
        "about": "LivePortrait tiny goldens from mimic-head 0.1.5's PyTorch modules "
                 "(make_golden.py); drive() there is the reference for the Rust stage",
        "export": {"dir": "tiny", "config": "tiny", "seed": SEED,
                   "manifest_sha256": hashlib.sha256(
                       open(os.path.join(OUT, X.MANIFEST), "rb").read()).hexdigest(),
                   "weights_sha256": manifest["weights"]["sha256"]},
        "ort_session": {"provider": "CPUExecutionProvider", "intra_op_num_threads": 2,
                        "inter_op_num_threads": 1, "session.disable_prepacking": "1"},
        "image": {"formula": "image[0,c,y,x] = f32((7*x + 13*y + 29*c + 5*((x*y) % 17)) "
                             "% 256) / f32(255)", **summary(img)},
        "appearance_feature_extractor": {"feature_3d": summary(src["f_s"])},
        "motion_extractor": {q: fl(src["raw"][q]) for q in X.MOTION_OUTPUTS},
        "motion_shapes": {q: list(src["raw"][q].shape) for q in X.MOTION_OUTPUTS},
        "source": {"pitch_deg": float(src["pitch"]), "yaw_deg": float(src["yaw"]),
                   "roll_deg": float(src["roll"]), "R_s": fl(src["R_s"]),
                   "x_s": fl(src["x_s"]), "num_kp": k},
        "networks": {**mlp, "warping_spade": {
            "inputs": "feature_3d = appearance output, kp_source = kp_driving = x_s",
            "frame": summary(ws_ref), "ort_max_abs_diff": maxdiff(ws_ref, ws_ort)}},
        "clip": {"source_eye_ratio": c_s_eye, "source_lip_ratio": c_s_lip,
                 "lip_ratio": lip, "head": [list(h) for h in head], "blink": blink,
                 "frames": frames,
                 "full_frames": "tiny_golden.safetensors: clip_frames [4,1,3,2S,2S]"},
        "package_cross_check_max_abs_diff": pkg,
        "audio_envelope": {"sample_rate": sr, "fps": fps, "frame_envelope": env,
                           "formula": "x[n] = f32(env[n*fps//sr] * sin(2*pi*220*n/sr))",
                           "lip_max": 0.5, "gate": 0.1, "rms": [float(v) for v in rms],
                           "lip_ratio": fl(ratios),
                           "full_samples": "tiny_golden.safetensors: audio"},
        "natural_motion": {"seed": 7, "n_frames": 96, "fps": 24,
                           "amp_deg": [2.0, 3.0, 1.5], "blink_len": 0.2,
                           "blink_starts": nm_starts, "head": fl(nm_head),
                           "blink": fl(nm_blink)},
        "ort_vs_torch_max_abs_diff": ort_diffs,
    }
    with open(os.path.join(HERE, "tiny_golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    write_safetensors(os.path.join(HERE, "tiny_golden.safetensors"), {
        "image": img, "feature_3d": src["f_s"],
        "clip_frames": np.stack([fr["frame"] for fr in fr_t]), "audio": audio})
    print("wrote", OUT, "tiny_golden.json", "tiny_golden.safetensors")


if __name__ == "__main__":
    main()
