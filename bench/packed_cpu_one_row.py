"""The CPU packed layer alone at one input row, as the decode step calls it: microseconds per
bittorch::packed_ternary_linear call (float32 activations, best of 7 x 300 calls) on the
language models' shapes. For A/B runs of two builds of the library on a machine without the
CUDA toolkit that bittorch-bench-packed needs; the Python package loads the library named.

    PYTHONPATH=python python3 bench/packed_cpu_one_row.py build/libbittorch.so.0 THREADS [LABEL]
"""
import os
import sys
import time

import torch


def main():
    os.environ["BITTORCH_LIBRARY"] = sys.argv[1]
    from bittorch import pack_ternary
    torch.set_num_threads(int(sys.argv[2]))
    label = sys.argv[3] if len(sys.argv) > 3 else sys.argv[1]
    figures = []
    for k, n in [(384, 384), (384, 1152), (768, 768), (768, 3072), (3072, 768)]:
        packed = pack_ternary(torch.randint(-1, 2, (n, k)))
        scale, x = torch.rand(n) + 0.5, torch.randn(1, k)

        def call():
            return torch.ops.bittorch.packed_ternary_linear(x, packed, scale, None, k, "none", "auto", "none")

        for _ in range(50):
            call()
        best = float("inf")
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(300):
                call()
            best = min(best, (time.perf_counter() - start) / 300)
        figures.append(f"{k}x{n} {best * 1e6:.2f} us")
    print(f"{label}, {sys.argv[2]} threads: " + "; ".join(figures))


if __name__ == "__main__":
    main()
