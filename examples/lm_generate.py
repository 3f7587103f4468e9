#!/usr/bin/env python3
"""Continues a prompt with a language model bittorch-lm exported (or imported from Hugging Face):
bittorch.load_packed rebuilds it as bittorch.nn.TransformerLM, which runs the same ops as C++.

  bittorch-lm train --preset tiny --model ternary --export lm.btp
  python3 examples/lm_generate.py lm.btp --prompt "ROMEO:"
"""
import argparse
import sys

import torch

import bittorch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a packed model file of a TransformerLM (bittorch-lm export or train --export)")
    parser.add_argument("--prompt", default="ROMEO:", help="the text to continue (bytes, for byte-level models)")
    parser.add_argument("--tokens", type=int, default=40, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.8, help="0: the most likely token each time")
    parser.add_argument("--top-k", type=int, default=40, help="sample among the k most likely (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = bittorch.load_packed(args.model)
    if not isinstance(model, bittorch.nn.TransformerLM):
        sys.exit(f"lm_generate.py: {args.model} holds a {type(model).__name__}, not a language model")
    if model.options["vocab_size"] != 256:
        sys.exit(f"lm_generate.py: the model's vocabulary has {model.options['vocab_size']} tokens; this example "
                 "writes text as bytes (256)")
    prompt = torch.tensor(list(args.prompt.encode()))
    generator = torch.Generator().manual_seed(args.seed)
    new = model.generate(prompt, args.tokens, args.temperature, args.top_k, generator)
    sys.stdout.buffer.write(args.prompt.encode() + bytes(new.tolist()) + b"\n")


if __name__ == "__main__":
    main()
