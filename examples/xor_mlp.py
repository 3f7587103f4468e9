#!/usr/bin/env python3
"""A 2-4-1 MLP learns XOR from noisy points around the corners of the unit square with
bittorch.nn.TernaryLinear layers (--compare: beside torch.nn.Linear), as bittorch-xor does."""
import argparse
import sys

import torch

from bittorch.nn import TernaryLinear


def make_data(seed, device, points_per_corner=250, noise=0.1):
    torch.manual_seed(seed)
    corners = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0])
    corner_of_point = torch.arange(4).repeat_interleave(points_per_corner)
    points = corners[corner_of_point] + noise * torch.randn(4 * points_per_corner, 2)
    return points.to(device), labels[corner_of_point].unsqueeze(1).to(device)


def make_model(kind, threshold_factor):
    def layer(i, o):
        return TernaryLinear(i, o, threshold_factor=threshold_factor) if kind == "ternary" else torch.nn.Linear(i, o)
    return torch.nn.Sequential(layer(2, 4), torch.nn.ReLU(), layer(4, 1))


def train(kind, points, labels, args):
    torch.manual_seed(args.seed)
    model = make_model(kind, args.threshold_factor).to(points.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    for step in range(1, args.steps + 1):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(points), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 500 == 0 or step == args.steps:
            print(f"{kind}: step {step}/{args.steps}, loss {loss.item():.4f}", flush=True)
    with torch.no_grad():
        logits = model(points)
        accuracy = 100.0 * ((logits > 0).float() == labels).float().mean().item()
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).item(), accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cuda", action="store_true", help="train on the GPU")
    parser.add_argument("--compare", action="store_true", help="also train a torch.nn.Linear model")
    parser.add_argument("--steps", type=int, default=2000, help="full-batch Adam steps (default 2000)")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    parser.add_argument("--threshold-factor", type=float, default=0.05, help="ternary threshold (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="data and initial weights (default 0)")
    args = parser.parse_args()
    if args.steps < 1 or args.lr <= 0:
        parser.error("--steps must be at least 1 and --lr positive")
    if args.cuda and not torch.cuda.is_available():
        parser.error("--cuda: no CUDA GPU on this machine")
    points, labels = make_data(args.seed, torch.device("cuda" if args.cuda else "cpu"))
    results = [(kind, *train(kind, points, labels, args)) for kind in (["fp32"] if args.compare else []) + ["ternary"]]
    print(f"\n{'model':<8}  {'final loss':>10}  {'accuracy':>9}")
    for kind, loss, accuracy in results:
        print(f"{kind:<8}  {loss:>10.4f}  {accuracy:>8.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
