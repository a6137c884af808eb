#!/usr/bin/env python3
"""Writes matmul_1024.onnx: Y = A @ B with A, B and Y float32 [1024, 1024] (1024^3 =
1,073,741,824 multiply-adds, 2.15 GFLOP a call), no initializers. benches/matmul.rs runs it
through vortex_runtime on the CPU provider: the machine's peak as ONNX Runtime reaches it,
the baseline of `cargo xtask bench`'s efficiency lines.

Pinned versions (tested): Python 3.11.7, onnx==1.23.2.
Usage: python make_matmul.py [--n 1024] [--out matmul_1024.onnx]
"""
import argparse
import os

import onnx
from onnx import TensorProto, helper


def model(n):
    f = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["Y"], name="matmul")],
                              f"matmul_{n}", [f("A"), f("B")], [f("Y")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                          producer_name="vortex make_matmul.py")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--out")
    a = ap.parse_args()
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                f"matmul_{a.n}.onnx")
    onnx.save(model(a.n), out)


if __name__ == "__main__":
    main()
