"""The language model bittorch-lm trains (C++: bittorch::nn::TransformerLM), as bittorch.load_packed
rebuilds it from a packed model file: the file's modules are its children, and its forward
composes them with the same ops as the C++ model (torch.ops.bittorch.rotary_embedding and
squared_relu, the packed layers' kernel, RMSNorm, scaled-dot-product attention)."""
import math

import torch
import torch.nn.functional as F

_MLP_KINDS = ("squared_relu", "swiglu", "gated_squared_relu")
# The TransformerLM record's integers (docs/packed-format.md): 7 options, the ternary flag, the
# 3 QuantConfig integers, then 4 later options that older files lack.
_OPTION_INTS, _QUANT_INTS, _LATER_INTS = 7, 3, 4


def transformer_options(ints, reals) -> dict:
    """The options a packed file's TransformerLM record holds; ValueError if they describe none."""
    base = _OPTION_INTS + 1 + _QUANT_INTS
    if len(ints) not in (base, base + _LATER_INTS) or len(reals) != 3:
        raise ValueError(f"a TransformerLM is described by {base + _LATER_INTS} (or, in older files, {base}) "
                         f"integers and 3 reals, not {len(ints)} and {len(reals)}")
    vocab_size, layers, width, heads, context, mlp_ratio, mlp = ints[:_OPTION_INTS]
    later = ints[base:] if len(ints) > base else [0, 0, 0, 0]
    options = dict(vocab_size=vocab_size, layers=layers, width=width, heads=heads, context=context,
                   mlp_ratio=mlp_ratio, rope_base=reals[0], norm_eps=reals[1], kv_heads=later[0] or heads,
                   mlp_hidden=later[1], sub_norms=bool(later[2]), tied_embeddings=bool(later[3]))
    if not 0 <= mlp < len(_MLP_KINDS):
        raise ValueError(f"invalid MLP kind {mlp}")
    options["mlp"] = _MLP_KINDS[mlp]
    if min(vocab_size, layers, width, heads, context) < 1 or width % heads or (width // heads) % 2:
        raise ValueError(f"the sizes describe no model: {options}")
    if heads % options["kv_heads"] or not math.isfinite(reals[0]) or reals[0] <= 1:
        raise ValueError(f"the options describe no model: {options}")
    return options


class TransformerLM(torch.nn.Module):
    """tokens [batch, T] (int64) -> logits [batch, T, vocab_size]. Built by bittorch.load_packed
    for a file bittorch-lm (or bittorch::save_packed of a TransformerLM) wrote; its children,
    as in C++: embedding, blocks.N.{attention_norm, attention.{q, k, v, o, sub_norm}, mlp_norm,
    mlp.{gate, up, down, sub_norm}}, norm, head (absent when the embeddings are tied)."""

    def __init__(self, options: dict):
        super().__init__()
        self.options = dict(options)
        head_size = options["width"] // options["heads"]
        angles = torch.outer(torch.arange(options["context"], dtype=torch.float64),
                             options["rope_base"] ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size))
        # The tables of nn::functional::rotary_tables, computed in float64, kept in float32.
        self.register_buffer("rotary_cos", torch.cat([angles.cos(), angles.cos()], 1).float(), persistent=False)
        self.register_buffer("rotary_sin", torch.cat([-angles.sin(), angles.sin()], 1).float(), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.dtype != torch.int64 or not 1 <= tokens.shape[1] <= self.options["context"]:
            raise ValueError(f"bittorch.nn.TransformerLM: expected int64 tokens [batch, T] with T at most the context "
                             f"{self.options['context']}, got {tokens.dtype} {tuple(tokens.shape)}")
        x = self.embedding(tokens)
        for index in range(self.options["layers"]):
            block = getattr(self.blocks, str(index))
            h = x + self._attention(block.attention, block.attention_norm(x))
            x = h + self._mlp(block.mlp, block.mlp_norm(h))
        weight = self.embedding.weight if self.options["tied_embeddings"] else self.head.weight
        return F.linear(self.norm(x), weight.to(x.dtype))

    def _attention(self, attention, x):
        batch, steps, width = x.shape
        head_size = width // self.options["heads"]

        def heads(projection):
            y = projection(x)
            return y.view(batch, steps, y.shape[-1] // head_size, head_size).transpose(1, 2)

        q, k = torch.ops.bittorch.rotary_embedding(heads(attention.q), heads(attention.k), self.rotary_cos[:steps],
                                                   self.rotary_sin[:steps])
        v = heads(attention.v)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=steps > 1, enable_gqa=k.shape[1] != q.shape[1])
        y = y.transpose(1, 2).reshape(batch, steps, width)
        return attention.o(attention.sub_norm(y) if self.options["sub_norms"] else y)

    def _mlp(self, mlp, x):
        up = mlp.up(x)
        kind = self.options["mlp"]
        if kind == "swiglu":
            hidden = F.silu(mlp.gate(x)) * up
        elif kind == "gated_squared_relu":
            hidden = torch.ops.bittorch.squared_relu(mlp.gate(x)) * up
        else:
            hidden = torch.ops.bittorch.squared_relu(up)
        return mlp.down(mlp.sub_norm(hidden) if self.options["sub_norms"] else hidden)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
                 generator: torch.Generator = None) -> torch.Tensor:
        """The tokens after `prompt` (int64 [T]): each from the last position's logits, the most likely
        one when temperature is 0, else sampled at `temperature` among the `top_k` most likely
        (0: all). The whole sequence is recomputed each step (no KV cache): for checks and small
        models, not for speed."""
        if prompt.dim() != 1 or prompt.numel() < 1 or prompt.numel() + max_new_tokens > self.options["context"]:
            raise ValueError(f"bittorch.nn.TransformerLM.generate: the prompt ({tuple(prompt.shape)}) and "
                             f"{max_new_tokens} new tokens must fit the context of {self.options['context']}")
        sequence = prompt.to(torch.int64)
        for _ in range(max_new_tokens):
            logits = self(sequence[None])[0, -1].float()
            if temperature == 0:
                token = logits.argmax()
            else:
                if top_k > 0:
                    threshold = logits.topk(min(top_k, logits.numel())).values[-1]
                    logits = logits.masked_fill(logits < threshold, -math.inf)
                # Shifted so that the largest is 0: no temperature overflows the scores.
                largest = logits.max()
                scores = torch.where(logits == largest, 0.0, (logits - largest) / temperature)
                token = torch.multinomial(scores.softmax(-1), 1, generator=generator)[0]
            sequence = torch.cat([sequence, token.view(1)])
        return sequence[prompt.numel():]

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.options.items())
