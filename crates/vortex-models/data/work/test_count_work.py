#!/usr/bin/env python3
"""count_work.py's per-op counts on tiny graphs built here, against figures worked out by hand.

Pinned versions (tested): Python 3.11.7, onnx==1.23.2, numpy==2.4.6 (nothing else: no torch,
no onnxruntime).
Run: python3 -m unittest discover -s crates/vortex-models/data/work -p 'test_*.py'
     (or, in this folder, python3 -m unittest test_count_work)
"""
import os
import sys
import unittest

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import count_work  # noqa: E402

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, inits=(), opset=20, domains=()):
    g = helper.make_graph(nodes, "t",
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                          initializer=list(inits))
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(g, opset_imports=ops)


def weight(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.zeros(shape, dtype), name)


class PerOp(unittest.TestCase):
    def test_conv_groups_stride_padding(self):
        # x [2, 8, 15, 15], W [12, 8/4, 3, 3], group 4, stride 2, pads 1:
        # out spatial floor((15 + 2 - 3) / 2) + 1 = 8 -> y [2, 12, 8, 8];
        # MACs = 2*12*8*8 (outputs) * 2*3*3 (Cin/group * kernel) = 1536 * 18 = 27,648.
        m = model([helper.make_node("Conv", ["x", "w", "b"], ["y"], group=4,
                                    strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[3, 3])],
                  [("x", F, [2, 8, 15, 15])], [("y", F, None)],
                  [weight("w", [12, 2, 3, 3]), weight("b", [12])])
        r = count_work.count(m)
        self.assertEqual(r["macs"], 27_648)
        self.assertEqual(r["elementwise"], 0)
        self.assertEqual(r["weight_bytes"], (12 * 2 * 9 + 12) * 4)
        self.assertEqual(r["per_op_type"]["Conv"]["nodes"], 1)

    def test_conv_depthwise_1d_with_dilation(self):
        # x [1, 6, 20], W [6, 1, 5], group 6, dilation 2, no pad:
        # out length 20 - 2*(5-1) = 12 -> 6*12 outputs * 1*5 = 360.
        m = model([helper.make_node("Conv", ["x", "w"], ["y"], group=6, dilations=[2])],
                  [("x", F, [1, 6, 20])], [("y", F, None)], [weight("w", [6, 1, 5])])
        self.assertEqual(count_work.count(m)["macs"], 360)

    def test_conv_transpose(self):
        # x [1, 4, 5, 5], W [4, 3, 4, 4] (Cin, Cout/group, k), stride 2, group 1:
        # every input element meets Cout*k*k weights: 4*5*5 * 3*4*4 = 100 * 48 = 4,800.
        m = model([helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])],
                  [("x", F, [1, 4, 5, 5])], [("y", F, None)], [weight("w", [4, 3, 4, 4])])
        r = count_work.count(m)
        self.assertEqual(r["macs"], 4_800)

    def test_conv_transpose_grouped(self):
        # x [1, 4, 3], W [4, 2, 3], group 2 (Cout = 4): 4*3 inputs * 2*3 = 72.
        m = model([helper.make_node("ConvTranspose", ["x", "w"], ["y"], group=2)],
                  [("x", F, [1, 4, 3])], [("y", F, None)], [weight("w", [4, 2, 3])])
        self.assertEqual(count_work.count(m)["macs"], 72)

    def test_matmul_batched_and_broadcast(self):
        # a [2, 3, 4, 5] @ b [3, 5, 6] -> [2, 3, 4, 6]: 2*3 batches * 4*5*6 = 720.
        m = model([helper.make_node("MatMul", ["a", "b"], ["y"])],
                  [("a", F, [2, 3, 4, 5]), ("b", F, [3, 5, 6])], [("y", F, None)])
        self.assertEqual(count_work.count(m)["macs"], 720)
        # a [7] @ b [7, 3] (1-D left operand): 7*3 = 21.
        m = model([helper.make_node("MatMul", ["a", "b"], ["y"])],
                  [("a", F, [7]), ("b", F, [7, 3])], [("y", F, None)])
        self.assertEqual(count_work.count(m)["macs"], 21)

    def test_matmul_symbolic_dims_set_from_the_slot(self):
        # a [batch, seq, 16] @ W [16, 32]: batch=2, seq=10 -> 2*10*16*32 = 10,240.
        m = model([helper.make_node("MatMul", ["a", "w"], ["y"])],
                  [("a", F, ["batch", "seq", 16])], [("y", F, None)], [weight("w", [16, 32])])
        r = count_work.count(m, dims={"batch": 2, "seq": 10})
        self.assertEqual(r["macs"], 10_240)
        self.assertEqual(r["inputs"], {"a": [2, 10, 16]})
        # --input replaces the dims instead
        r = count_work.count(m, inputs={"a": [1, 3, 16]})
        self.assertEqual(r["macs"], 1_536)
        # unset: not counted, and said so
        r = count_work.count(m)
        self.assertEqual(r["macs"], 0)
        self.assertEqual(len(r["uncounted"]), 1)

    def test_gemm_transposes(self):
        # A [6, 10] (transA=1: M = 10, K = 6), B [4, 6] (transB=1: N = 4): 10*6*4 = 240.
        m = model([helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=1, transB=1)],
                  [("a", F, [6, 10])], [("y", F, None)],
                  [weight("b", [4, 6]), weight("c", [4])])
        r = count_work.count(m)
        self.assertEqual(r["macs"], 240)
        self.assertEqual(r["weight_bytes"], (24 + 4) * 4)

    def test_matmul_nbits(self):
        # A [1, 5, 64], K = 64, N = 48, 4 bits, blocks of 32: 5 rows * 64 * 48 = 15,360.
        # Weight bytes: B uint8 [48, 2 blocks, 16] = 1,536; scales f16 [96] = 192;
        # zero points uint8 [48] (2 blocks of 4 bits per row) = 48.
        node = helper.make_node("MatMulNBits", ["a", "b", "s", "z"], ["y"],
                                domain="com.microsoft", K=64, N=48, bits=4, block_size=32)
        m = model([node, helper.make_node("Relu", ["y"], ["z2"])],
                  [("a", F, [1, 5, 64])], [("z2", F, None)],
                  [weight("b", [48, 2, 16], np.uint8), weight("s", [96], np.float16),
                   weight("z", [48], np.uint8)], domains=["com.microsoft"])
        r = count_work.count(m)
        self.assertEqual(r["macs"], 15_360)
        self.assertEqual(r["weight_bytes"], 1_536 + 192 + 48)
        # the contrib op's output shape is derived (onnx's inference does not know it), so
        # the Relu after it is counted: 5*48 elements
        self.assertEqual(r["elementwise"], 240)
        self.assertEqual(r["per_op_type"]["com.microsoft.MatMulNBits"]["macs"], 15_360)

    def test_grid_sample_2d_bilinear_and_5d_trilinear(self):
        # x [1, 3, 10, 10], grid [1, 4, 6, 2] -> y [1, 3, 4, 6]: 72 outputs * 4 = 288.
        m = model([helper.make_node("GridSample", ["x", "g"], ["y"], mode="linear")],
                  [("x", F, [1, 3, 10, 10]), ("g", F, [1, 4, 6, 2])], [("y", F, None)])
        self.assertEqual(count_work.count(m)["macs"], 288)
        # 5-D: x [1, 2, 4, 8, 8], grid [1, 3, 5, 5, 3] -> y [1, 2, 3, 5, 5]: 150 * 8 = 1,200.
        m = model([helper.make_node("GridSample", ["x", "g"], ["y"], mode="linear")],
                  [("x", F, [1, 2, 4, 8, 8]), ("g", F, [1, 3, 5, 5, 3])], [("y", F, None)])
        self.assertEqual(count_work.count(m)["macs"], 1_200)
        # nearest: no MACs, one elementwise op per output element
        m = model([helper.make_node("GridSample", ["x", "g"], ["y"], mode="nearest")],
                  [("x", F, [1, 3, 10, 10]), ("g", F, [1, 4, 6, 2])], [("y", F, None)])
        r = count_work.count(m)
        self.assertEqual((r["macs"], r["elementwise"]), (0, 72))

    def test_attention_as_matmuls(self):
        # q, k, v [1, 2 heads, 8, 4]: scores q @ k^T = 2*8*4*8 = 512, softmax over 2*8*8 =
        # 128 elements, probs @ v = 2*8*8*4 = 512: 1,024 MACs, 128 elementwise.
        nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
                 helper.make_node("MatMul", ["q", "kt"], ["s"]),
                 helper.make_node("Softmax", ["s"], ["p"], axis=-1),
                 helper.make_node("MatMul", ["p", "v"], ["y"])]
        m = model(nodes, [(n, F, [1, 2, 8, 4]) for n in "qkv"], [("y", F, None)])
        r = count_work.count(m)
        self.assertEqual(r["macs"], 1_024)
        self.assertEqual(r["elementwise"], 128)

    def test_multi_head_attention_contrib(self):
        # q [1, 8, 16], k, v [1, 12, 16], 2 heads: q k^T 8*12*16 + p v 8*12*16 = 3,072 MACs;
        # softmax over 2*8*12 = 192.
        node = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"],
                                domain="com.microsoft", num_heads=2)
        m = model([node], [("q", F, [1, 8, 16]), ("k", F, [1, 12, 16]), ("v", F, [1, 12, 16])],
                  [("y", F, None)], domains=["com.microsoft"])
        r = count_work.count(m)
        self.assertEqual((r["macs"], r["elementwise"]), (3_072, 192))

    def test_einsum(self):
        # "bij,bjk->bik", [2, 3, 4] x [2, 4, 5]: j summed: 2*3*4*5 = 120 MACs.
        m = model([helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik")],
                  [("a", F, [2, 3, 4]), ("b", F, [2, 4, 5])], [("y", F, None)])
        self.assertEqual(count_work.count(m)["macs"], 120)
        # an outer product sums nothing: elementwise 3*4 = 12
        m = model([helper.make_node("Einsum", ["a", "b"], ["y"], equation="i,j->ij")],
                  [("a", F, [3]), ("b", F, [4])], [("y", F, None)])
        r = count_work.count(m)
        self.assertEqual((r["macs"], r["elementwise"]), (0, 12))

    def test_lstm(self):
        # X [7 steps, 2 batch, 5], hidden 3, bidirectional: 2 dirs * 7 * 2 * 4*3 * (5 + 3)
        # = 2,688 MACs.
        m = model([helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=3,
                                    direction="bidirectional")],
                  [("x", F, [7, 2, 5])], [("y", F, None)],
                  [weight("w", [2, 12, 5]), weight("r", [2, 12, 3])])
        self.assertEqual(count_work.count(m)["macs"], 2_688)

    def test_normalizations_and_elementwise_are_not_macs(self):
        # x [2, 4, 3, 3] (72 elements): InstanceNorm 72 + Relu 72 + Add 72 + ReduceMean 72
        # + AveragePool 2x2 stride 1 (2*4*2*2 outputs * 4) 128; Reshape/Transpose: nothing.
        nodes = [helper.make_node("InstanceNormalization", ["x", "s", "b"], ["n"]),
                 helper.make_node("Relu", ["n"], ["r"]),
                 helper.make_node("Add", ["r", "x"], ["a"]),
                 helper.make_node("ReduceMean", ["a"], ["m"], keepdims=1),
                 helper.make_node("AveragePool", ["a"], ["p"], kernel_shape=[2, 2]),
                 helper.make_node("Transpose", ["p"], ["t"], perm=[0, 2, 3, 1])]
        m = model(nodes, [("x", F, [2, 4, 3, 3])], [("m", F, None), ("t", F, None)],
                  [weight("s", [4]), weight("b", [4])])
        r = count_work.count(m)
        self.assertEqual(r["macs"], 0)
        self.assertEqual(r["elementwise"], 72 * 4 + 128)
        self.assertNotIn("Transpose", r["per_op_type"])

    def test_shape_arithmetic_is_folded_so_reshapes_downstream_are_known(self):
        # y = Reshape(x, Concat(Shape(x)[0], -1)) @ W: the reshape's target is computed
        # (Shape -> Gather -> Unsqueeze -> Concat), so [batch=3, 4, 5] -> [3, 20] @ [20, 2]:
        # 3*20*2 = 120 MACs.
        c = helper.make_node
        nodes = [c("Shape", ["x"], ["sh"]),
                 c("Constant", [], ["i0"], value=numpy_helper.from_array(np.array(0))),
                 c("Gather", ["sh", "i0"], ["b"], axis=0),
                 c("Unsqueeze", ["b", "ax"], ["bu"]),
                 c("Concat", ["bu", "m1"], ["target"], axis=0),
                 c("Reshape", ["x", "target"], ["flat"]),
                 c("MatMul", ["flat", "w"], ["y"])]
        m = model(nodes, [("x", F, ["batch", 4, 5])], [("y", F, None)],
                  [numpy_helper.from_array(np.array([0], np.int64), "ax"),
                   numpy_helper.from_array(np.array([-1], np.int64), "m1"),
                   weight("w", [20, 2])])
        r = count_work.count(m, dims={"batch": 3})
        self.assertEqual(r["macs"], 120)
        self.assertEqual(r["uncounted"], [])

    def test_weight_inputs_named_by_a_manifest(self):
        # a weightless graph: W [16, 8] f32 is a graph input the manifest names: 512 bytes.
        m = model([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
                  [("x", F, [2, 8]), ("w", F, [16, 8])], [("y", F, None)])
        r = count_work.count(m, weight_names=["w"])
        self.assertEqual(r["weight_bytes"], 512)
        self.assertEqual(r["macs"], 2 * 8 * 16)
        self.assertEqual(list(r["inputs"]), ["x"])
        man = {"graphs": {"g": {"external_initializers": ["w"]}}}
        self.assertEqual(count_work.manifest_weights(man, "g"), ["w"])

    def test_an_embedding_table_counts_the_rows_gathered(self):
        # table [100, 8] f32 (3,200 bytes) read by Gather at ids [1, 5]: 5 rows * 32 bytes =
        # 160; the same table also read by a MatMul counts whole.
        m = model([helper.make_node("Gather", ["t", "ids"], ["y"], axis=0)],
                  [("ids", TensorProto.INT64, [1, 5])], [("y", F, None)],
                  [weight("t", [100, 8])])
        self.assertEqual(count_work.count(m)["weight_bytes"], 160)
        m = model([helper.make_node("Gather", ["t", "ids"], ["y"], axis=0),
                   helper.make_node("MatMul", ["y", "t2"], ["z"]),
                   helper.make_node("MatMul", ["x", "t"], ["u"])],
                  [("ids", TensorProto.INT64, [1, 5]), ("x", F, [2, 100])],
                  [("z", F, None), ("u", F, None)],
                  [weight("t", [100, 8]), weight("t2", [8, 2])])
        self.assertEqual(count_work.count(m)["weight_bytes"], 3_200 + 64)

    def test_per_scope_splits_by_node_name(self):
        # two Convs named as TorchScript names them: 1x1, [1, 2, 4, 4] -> 3 and -> 3
        # channels: 16*3*2 = 96 MACs in each scope.
        nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="/warp/conv/Conv"),
                 helper.make_node("Conv", ["x", "w2"], ["b"], name="/spade/conv/Conv")]
        m = model(nodes, [("x", F, [1, 2, 4, 4])], [("a", F, None), ("b", F, None)],
                  [weight("w1", [3, 2, 1, 1]), weight("w2", [3, 2, 1, 1])])
        r = count_work.count(m, scopes=1)
        self.assertEqual(r["per_scope"], {"warp": {"macs": 96, "elementwise": 0},
                                          "spade": {"macs": 96, "elementwise": 0}})

    def test_cli(self):
        import io
        import json
        import tempfile
        m = model([helper.make_node("MatMul", ["a", "w"], ["y"])],
                  [("a", F, ["batch", 16])], [("y", F, None)], [weight("w", [16, 4])])
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "g.onnx")
            with open(p, "wb") as f:
                f.write(m.SerializeToString())
            out, saved = io.StringIO(), sys.stdout
            sys.stdout = out
            try:
                count_work.main([p, "--dim", "batch=5"])
            finally:
                sys.stdout = saved
        r = json.loads(out.getvalue())
        self.assertEqual((r["macs"], r["weight_bytes"]), (5 * 16 * 4, 256))


class SlotWork(unittest.TestCase):
    """The committed slot_work.json (slot_work.py's output, which needs torch to rebuild):
    LivePortrait's per-frame figures against the independent count from the official
    architecture (617 GMAC a frame: warping 171, SPADE 446), within 10%, and the stages'
    sums."""

    @classmethod
    def setUpClass(cls):
        import json
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slot_work.json")
        with open(path) as f:
            cls.doc = json.load(f)

    def test_liveportrait_per_frame_within_10_percent_of_the_independent_count(self):
        f = self.doc["stages"]["video"]["per_frame"]
        for key, want in (("warping_spade_macs", 617e9), ("warping_module_macs", 171e9),
                          ("spade_generator_macs", 446e9)):
            self.assertLess(abs(f[key] / want - 1), 0.10, (key, f[key]))
        self.assertEqual(f["warping_module_macs"] + f["spade_generator_macs"],
                         f["warping_spade_macs"])

    def test_stages_are_their_graphs_times_their_calls(self):
        for name, st in self.doc["stages"].items():
            if name == "audio":  # pieces summed, then scaled to 45 s
                continue
            want = sum(st["graphs"][g]["macs"] * n for g, n in st["calls_per_slot"].items())
            self.assertEqual(st["macs"], want, name)
            self.assertEqual(st["flop"], 2 * st["macs"])
            for g in st["graphs"].values():
                self.assertNotIn("uncounted", g)
        video = self.doc["stages"]["video"]
        self.assertEqual(video["calls_per_slot"]["warping_spade"], 45 * 24)
        self.assertEqual(self.doc["total_macs"],
                         sum(st["macs"] for st in self.doc["stages"].values()))


if __name__ == "__main__":
    unittest.main()
