#!/usr/bin/env python3
"""A 784-256-128-10 MLP on the MNIST images the project embeds (data/mnist-10k: the first
10,000 training images, all 10,000 test images) with bittorch.nn.TernaryLinear layers
(--compare: beside torch.nn.Linear, on the same batches), as bittorch-mnist does."""
import argparse
import gzip
import math
import sys
import time
from pathlib import Path

import torch

from bittorch.nn import TernaryLinear

DATA = Path(__file__).resolve().parent.parent / "data" / "mnist-10k"
MEAN, STD = 0.1307, 0.3081


def read_idx(path, magic, dims):
    """An IDX file (gzip): big-endian magic, dims, then unsigned bytes."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as error:
        sys.exit(f"mnist_mlp_ternary.py: cannot read {path}: {error}")
    header = 4 * (1 + dims)
    fields = [int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in range(1 + dims)]
    shape = fields[1:]
    if fields[0] != magic or len(raw) != header + math.prod(shape):
        sys.exit(f"mnist_mlp_ternary.py: {path} is not an IDX file of {dims} dimensions (or is truncated)")
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(shape)


def load(split, device):
    images = read_idx(DATA / f"{split}-images-idx3-ubyte.gz", 2051, 3)
    labels = read_idx(DATA / f"{split}-labels-idx1-ubyte.gz", 2049, 1)
    if images.shape[0] != labels.shape[0]:
        sys.exit(f"mnist_mlp_ternary.py: {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    x = (images.reshape(images.shape[0], -1).float() / 255 - MEAN) / STD
    return x.to(device), labels.long().to(device)


def make_model(kind, threshold_factor):
    sizes = [784, 256, 128, 10]
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(TernaryLinear(a, b, threshold_factor=threshold_factor) if kind == "ternary"
                      else torch.nn.Linear(a, b))
        if i + 2 < len(sizes):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


@torch.no_grad()
def accuracy(model, x, y):
    return 100.0 * (model(x).argmax(1) == y).float().mean().item()


def train(kind, train_set, test_set, args):
    torch.manual_seed(args.seed)
    model = make_model(kind, args.threshold_factor).to(train_set[0].device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    batches = math.ceil(train_set[0].shape[0] / args.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * batches)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(train_set[0].shape[0], generator=torch.Generator().manual_seed(args.seed + epoch))
        total = 0.0
        for b in range(batches):
            index = order[b * args.batch_size:(b + 1) * args.batch_size].to(train_set[0].device)
            loss = torch.nn.functional.cross_entropy(model(train_set[0][index]), train_set[1][index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        print(f"{kind}: epoch {epoch}/{args.epochs}: loss {total / batches:.4f}, "
              f"test accuracy {accuracy(model, *test_set):.2f}%, {time.perf_counter() - start:.1f} s", flush=True)
    return accuracy(model, *test_set)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compare", action="store_true", help="also train a torch.nn.Linear model")
    parser.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate, cosine decay (default 1e-3)")
    parser.add_argument("--threshold-factor", type=float, default=0.2,
                        help="ternary threshold (default 0.2, the C++ trainer's recipe)")
    parser.add_argument("--train-limit", type=int, default=0, help="use only the first N training images")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order (default 0)")
    parser.add_argument("--cuda", action="store_true", help="train on the GPU")
    args = parser.parse_args()
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0 or args.train_limit < 0:
        parser.error("--epochs and --batch-size must be at least 1, --lr positive, --train-limit not negative")
    if args.cuda and not torch.cuda.is_available():
        parser.error("--cuda: no CUDA GPU on this machine")
    device = torch.device("cuda" if args.cuda else "cpu")
    train_set, test_set = load("train", device), load("t10k", device)
    if args.train_limit:
        train_set = (train_set[0][:args.train_limit], train_set[1][:args.train_limit])
    results = [(kind, train(kind, train_set, test_set, args))
               for kind in (["fp32"] if args.compare else []) + ["ternary"]]
    print(f"\n{'model':<8}  {'test accuracy':>13}")
    for kind, acc in results:
        print(f"{kind:<8}  {acc:>12.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
