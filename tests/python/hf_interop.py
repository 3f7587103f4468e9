"""Hugging Face interoperability, the Python half (transformers, safetensors from PyPI are the
references). CTest runs it around the C++ half (tests/interop/test_hf_interop.cpp):

  hf_interop.py make DIR    small random BitNet checkpoints in transformers' layout, each with
                            transformers' logits on fixed tokens, and a safetensors file of every
                            dtype written by the safetensors package;
  hf_interop.py check DIR BITTORCH_LM   reads what the C++ half wrote back with the
                            safetensors package, and runs bittorch-lm import on a checkpoint.

The values of the dtype files follow one formula on both sides (dtype_values)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # transformers' BitNet kernels are torch.compile'd: run them eagerly
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Eight sequences of 12 tokens, drawn once by a seeded generator (the same on every machine).
TOKENS = torch.randint(0, 64, (8, 12), generator=torch.Generator().manual_seed(12)).tolist()
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}


def check_logits(what, theirs, ours, eight_bit):
    """Another implementation's logits [sequences, positions, vocab] against ours: within 1e-5 of
    their scale. With 8-bit activations a value within rounding error of the midpoint between two
    codes can take the neighbouring code on one side (we divide by max / 127, transformers
    multiplies by 127 / max, and the values before differ in their last bits); that sequence's
    later logits then move by about 2e-3 of the scale. So there, two of the eight sequences may
    differ by up to 2e-2, the others not: a wrong formula moves them all. The C++ half checks the
    same (expect_logits_match)."""
    scale = ours.abs().max().item()
    errors = (theirs - ours).abs().flatten(1).amax(1)
    near = int((errors <= 1e-5 * scale).sum())
    print(f"hf_interop.py: {what}: logits differ by {errors.max().item():.2e} of up to {scale:.2f}; "
          f"{near} of {len(errors)} sequences within 1e-5 of it")
    if eight_bit:
        assert near >= len(errors) - 2 and errors.max().item() <= 2e-2 * scale, (what, errors.tolist(), scale)
    else:
        assert near == len(errors), (what, errors.tolist(), scale)


def dtype_values(name, numel):
    """(i % 7 - 3) / 2 in the dtype (integers: i % 7 - 3, unsigned: i % 7; bool: i odd)."""
    i = torch.arange(numel, dtype=torch.float64)
    dtype = DTYPES[name]
    if dtype == torch.bool:
        return (i.remainder(2) == 1)
    if dtype == torch.uint8:
        return i.remainder(7).to(dtype)
    if dtype.is_floating_point:
        return ((i.remainder(7) - 3) / 2).to(dtype)
    return (i.remainder(7) - 3).to(dtype)


def config(**changes):
    from transformers import BitNetConfig
    settings = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5,
                    rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, tie_word_embeddings=False,
                    bos_token_id=None, eos_token_id=None)
    settings.update(changes)
    return BitNetConfig(**settings)


def random_model(cfg, seed):
    """transformers' BitNet model with weights large enough that the logits differ clearly."""
    from transformers import BitNetForCausalLM
    torch.manual_seed(seed)
    model = BitNetForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.2 * torch.randn_like(p) if p.dim() == 1 else 0.3 * torch.randn_like(p))
    return model.eval()


def logits_of(folder):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor(TOKENS)).logits.float()


def make(out):
    from transformers.integrations.bitnet import pack_weights
    shutil.rmtree(out, ignore_errors=True)  # nothing of an earlier run is read
    out.mkdir(parents=True)
    references = {"tokens": torch.tensor(TOKENS)}
    # Full precision: plain linear layers.
    random_model(config(), 1).save_pretrained(out / "fp")
    references["fp"] = logits_of(out / "fp")
    # Master weights ternarized in every forward (autobitlinear, online), tied embeddings.
    online = config(tie_word_embeddings=True, quantization_config={
        "quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"})
    random_model(online, 2).save_pretrained(out / "online")
    references["online"] = logits_of(out / "online")
    # Packed 2-bit codes and a weight_scale per layer (bitlinear, offline), written as the
    # published packed checkpoints are: the codes packed by transformers' own pack_weights.
    packed_dir = out / "packed"
    packed_dir.mkdir(exist_ok=True)
    packed = config(quantization_config={"quant_method": "bitnet", "linear_class": "bitlinear",
                                         "quantization_mode": "offline"})
    source = random_model(config(), 3)
    torch.manual_seed(4)
    tensors = {}
    for name, p in source.state_dict().items():
        if name.endswith("_proj.weight"):
            codes = torch.randint(-1, 2, p.shape, dtype=torch.int8)
            tensors[name] = pack_weights(codes.clone())
            tensors[name.replace(".weight", ".weight_scale")] = torch.rand(1) * 4 + 2
        else:
            tensors[name] = p.contiguous()
    save_file(tensors, packed_dir / "model.safetensors", metadata={"format": "pt"})
    (packed_dir / "config.json").write_text(json.dumps(packed.to_dict(), indent=2))
    references["packed"] = logits_of(packed_dir)
    save_file(references, out / "reference_logits.safetensors")
    # Every dtype, by the safetensors package, for the C++ reader.
    save_file({name: dtype_values(name, 15).reshape(3, 5) for name in DTYPES} | {"empty": torch.zeros(0, 4)},
              out / "dtypes.safetensors", metadata={"written_by": "safetensors"})
    make_tokenizers(out)
    print(f"hf_interop.py: wrote {sorted(p.name for p in out.iterdir())}")


def run_lm(lm, *args, expect_code=0):
    # Generated tokens may end inside a character: bytes decoded as the tokenizers package
    # decodes them (invalid sequences as U+FFFD).
    result = subprocess.run([lm, *map(str, args)], capture_output=True)
    stdout, stderr = (stream.decode("utf-8", errors="replace") for stream in (result.stdout, result.stderr))
    assert result.returncode == expect_code, (args, result.returncode, stdout, stderr)
    return stdout + stderr


# Llama 3's split pattern (as BitNet b1.58 2B4T's tokenizer.json has it).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|eot_id|>"]
GREEDY_PROMPT = "ROMEO: But soft, what light"


def tokenizer_text():
    """A few hundred kilobytes of varied text: held-out Shakespeare, other scripts, emoji,
    combining marks, digits, contractions, whitespace runs and the special tokens."""
    import gzip
    shakespeare = gzip.decompress((ROOT / "data" / "shakespeare" / "val.txt.gz").read_bytes()).decode()[:250_000]
    varied = ("Ça va? Grüße aus Köln, naïve café — «quotes» 'n' “curly” ‘ones’.\n"
              "日本語のテキスト、中文文本，한국어 텍스트. Ελληνικά και русский текст; עברית ועربية.\n"
              "Emoji: 👍🏽 👨‍👩‍👧 🇫🇷 ✨ e\u0301 a\u0308 (combining), ﬁ ligature, ＦＵＬＬ width.\n"
              "Numbers 1234567 3.14159 1,000,000 0x1F; contractions I'm you're they've he'd we'll IT'S.\n"
              "Whitespace:   three spaces\t\ttabs\n\n\nnewlines \r\n crlf   \u00a0nbsp\u2003em  trailing   \n"
              "<|begin_of_text|>User: hi<|eot_id|>Assistant: hello<|eot_id|><|eot_id|>x<|begin_of_text|>\n")
    return shakespeare + varied * 20


def make_tokenizers(out):
    """Two byte-level BPE tokenizers trained on Shakespeare by the tokenizers package (Llama 3's
    layout: a Split by its pattern then ByteLevel, ignore_merges; and GPT-2's: ByteLevel with its
    own pattern), and the package's ids of tokenizer_text() under each."""
    import gzip
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: F811
    corpus = gzip.decompress((ROOT / "data" / "shakespeare" / "train.txt.gz").read_bytes()).decode()[:400_000]
    text = tokenizer_text()
    (out / "tokenizer_text.txt").write_text(text, encoding="utf-8")
    ids = {}
    for name in ("llama3", "gpt2"):
        tokenizer = Tokenizer(models.BPE(ignore_merges=name == "llama3"))
        if name == "llama3":
            tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        else:
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(corpus.splitlines(keepends=True), trainer)
        tokenizer.save(str(out / f"tokenizer_{name}.json"))
        ids[name] = torch.tensor(tokenizer.encode(text, add_special_tokens=False).ids, dtype=torch.int64)
        assert tokenizer.decode(ids[name].tolist(), skip_special_tokens=False) == text
    save_file(ids, out / "tokenizer_ids.safetensors")
    # A checkpoint of that vocabulary with the Llama 3-layout tokenizer beside it, as published
    # models come, and transformers' greedy continuation of a prompt.
    folder = out / "with_tokenizer"
    model = random_model(config(vocab_size=1500, max_position_embeddings=64), 7)
    model.save_pretrained(folder)
    shutil.copy(out / "tokenizer_llama3.json", folder / "tokenizer.json")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    prompt = tokenizer.encode(GREEDY_PROMPT, add_special_tokens=False).ids
    with torch.no_grad():
        generated = model.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False)[0, len(prompt):]
    (out / "greedy.txt").write_text(GREEDY_PROMPT + tokenizer.decode(generated.tolist(), skip_special_tokens=False),
                                    encoding="utf-8")


def check(out, lm):
    """What the C++ half wrote with io::write_safetensors, read by the safetensors package; then
    bittorch-lm import as a user runs it."""
    tensors = load_file(out / "from_cpp.safetensors")
    for name in DTYPES:
        expected = dtype_values(name, 15).reshape(3, 5)
        got = tensors[name]
        assert got.dtype == expected.dtype and torch.equal(got, expected), (name, got, expected)
    assert tensors["transposed"].shape == (5, 3) and torch.equal(
        tensors["transposed"], dtype_values("F32", 15).reshape(3, 5).t()), tensors["transposed"]
    print(f"hf_interop.py: the safetensors package reads the C++ file's {len(tensors)} tensors")
    # Our exports, loaded by transformers: its logits against ours (the C++ test's tolerances).
    ours = load_file(out / "export_logits.safetensors")
    from transformers import AutoModelForCausalLM
    for name in ("fp", "ternary", "packed"):
        model = AutoModelForCausalLM.from_pretrained(out / f"export_{name}", dtype=torch.float32).eval()
        with torch.no_grad():
            theirs = model(ours["tokens"]).logits
        check_logits(f"export {name}, transformers", theirs, ours[name], eight_bit=name != "fp")
    output = out / "cli.btp"
    log = run_lm(lm, "import", "--hf", out / "packed", "--output", output)
    assert output.stat().st_size > 0 and "gated_squared_relu" in log, log
    message = run_lm(lm, "sample", "--packed", output, expect_code=1)
    assert "vocabulary of 64 tokens" in message, message
    message = run_lm(lm, "import", "--hf", out / "missing", "--output", out / "x.btp", expect_code=1)
    assert f"'{out / 'missing'}' is not a folder" in message, message
    assert "give --hf and --output" in run_lm(lm, "import", "--hf", out / "packed", expect_code=2)
    print("hf_interop.py: bittorch-lm import: ok")
    # The C++ test's packed files of the imported checkpoints, loaded by the Python package: its
    # TransformerLM gives transformers' logits too (fp, online with tied embeddings, packed).
    import bittorch
    references = load_file(out / "reference_logits.safetensors")
    for name in ("fp", "online", "packed"):
        model = bittorch.load_packed(out / f"{name}.btp")
        assert isinstance(model, bittorch.nn.TransformerLM), type(model)
        with torch.no_grad():
            logits = model(references["tokens"])
        check_logits(f"Python bittorch.load_packed({name}.btp)", logits, references[name], eight_bit=name != "fp")
    # A published-style folder (weights and tokenizer.json) imported and sampled greedily with its
    # tokenizer: transformers' greedy text.
    output = out / "with_tokenizer.btp"
    log = run_lm(lm, "import", "--hf", out / "with_tokenizer", "--output", output, "--dtype", "float32")
    assert "--tokenizer" in log, log
    text = run_lm(lm, "sample", "--packed", output, "--tokenizer", out / "with_tokenizer" / "tokenizer.json",
                  "--prompt", GREEDY_PROMPT, "--tokens", "24", "--temperature", "0", "--log-level", "off")
    expected = (out / "greedy.txt").read_text(encoding="utf-8")
    assert text.rstrip("\n") == expected, (text, expected)
    print(f"hf_interop.py: bittorch-lm sample --tokenizer continues as transformers does: {expected!r}")
    # A model trained by bittorch-lm in BitNet's shape (ternary, one scale per layer, 8-bit
    # activations), exported for transformers, which loads and runs it.
    checkpoint, folder = out / "trained.ckpt", out / "trained_hf"
    run_lm(lm, "train", "--preset", "tiny", "--mlp", "gated_squared_relu", "--sub-norms", "--kv-heads", "1",
           "--per-tensor", "--activation-bits", "8", "--steps", "3", "--batch-size", "2", "--eval-interval", "3",
           "--eval-windows", "2", "--no-progress", "--threads", "1", "--save", checkpoint)
    run_lm(lm, "export", "--checkpoint", checkpoint, "--hf", folder, "--dtype", "float32")
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert model.config.num_key_value_heads == 1 and model.config.hidden_act == "relu2", model.config
    with torch.no_grad():
        logits = model(torch.tensor([list(b"To be, or not")])).logits
    assert logits.shape == (1, 13, 256) and torch.isfinite(logits).all(), logits.shape
    message = run_lm(lm, "export", "--checkpoint", checkpoint, expect_code=2)
    assert "one of --output, --hf and --gguf" in message, message
    print("hf_interop.py: bittorch-lm train + export --hf: transformers runs the model")
    check_gguf(out, lm)
    check_training_with_a_tokenizer(out, lm)


def check_training_with_a_tokenizer(out, lm):
    """bittorch-lm train --tokenizer: the model's vocabulary is the tokenizer's, bits per byte
    follow from the loss per token and the validation text's bytes per token, a checkpoint
    resumes with the same tokenizer and is refused with another, and samples with it."""
    import json
    import math
    checkpoint, metrics = out / "tokens.ckpt", out / "tokens.json"
    common = ["--preset", "tiny", "--steps", "4", "--batch-size", "2", "--eval-interval", "2", "--eval-windows", "2",
              "--no-progress", "--threads", "1", "--save", checkpoint]
    output = run_lm(lm, "train", *common, "--tokenizer", out / "tokenizer_gpt2.json", "--stop-after-eval", "1",
                    "--metrics-json", metrics)
    assert "bytes per token" in output, output
    document = json.loads(metrics.read_text())
    assert document["model"]["vocab_size"] == 1500 and document["tokenizer"].endswith("tokenizer_gpt2.json"), document
    bytes_per_token = document["val_bytes_per_token"]
    assert 2 < bytes_per_token < 6, bytes_per_token
    evaluation = document["runs"][0]["evaluations"][0]
    assert math.isclose(evaluation["val_bits_per_byte"], evaluation["val_loss"] / math.log(2) / bytes_per_token)
    output = run_lm(lm, "train", *common, "--tokenizer", out / "tokenizer_llama3.json", "--resume", checkpoint,
                    expect_code=1)
    assert "train_crc32" in output, output
    run_lm(lm, "train", *common, "--tokenizer", out / "tokenizer_gpt2.json", "--resume", checkpoint)
    text = run_lm(lm, "sample", "--checkpoint", checkpoint, "--tokenizer", out / "tokenizer_gpt2.json", "--prompt",
                  "ROMEO:", "--tokens", "12", "--log-level", "warn")
    assert text.startswith("ROMEO:"), text
    print(f"hf_interop.py: bittorch-lm train --tokenizer: {bytes_per_token:.2f} bytes per token, resumed, sampled")


# llama.cpp's BitNet model (src/models/bitnet.cpp, llama_model_bitnet::load_arch_tensors): the
# shape, innermost first as GGUF records it, of each tensor it loads, by name after "blk.N.".
def llama_cpp_bitnet_shapes(n_embd, n_embd_gqa, n_ff):
    return {"attn_norm.weight": [n_embd], "attn_sub_norm.weight": [n_embd],
            "attn_q.weight": [n_embd, n_embd], "attn_k.weight": [n_embd, n_embd_gqa],
            "attn_v.weight": [n_embd, n_embd_gqa], "attn_output.weight": [n_embd, n_embd],
            "ffn_norm.weight": [n_embd], "ffn_sub_norm.weight": [n_ff], "ffn_gate.weight": [n_embd, n_ff],
            "ffn_down.weight": [n_ff, n_embd], "ffn_up.weight": [n_embd, n_ff],
            **{f"{name}.scale": [1] for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down",
                                                 "ffn_up")}}


def check_gguf(out, lm):
    """The GGUF file the C++ half wrote (model.gguf), read back by the gguf package: the
    metadata llama.cpp reads, every tensor llama.cpp's BitNet model loads with its shape and
    type, the TQ2_0 weights dequantized by the package equal to our ternary codes, the scales,
    norms and embedding equal to ours, the tokenizer's vocabulary and merges; and bittorch-lm
    export --gguf of the same model's packed file writes the same bytes."""
    import json

    import gguf
    import numpy as np
    reader = gguf.GGUFReader(out / "model.gguf")
    fields = {name: field.contents() for name, field in reader.fields.items()}
    n_embd, n_head, n_head_kv, n_ff, n_layer, n_vocab = 256, 4, 2, 512, 2, 1500
    for key, value in {"general.architecture": "bitnet", "bitnet.block_count": n_layer,
                       "bitnet.embedding_length": n_embd, "bitnet.feed_forward_length": n_ff,
                       "bitnet.attention.head_count": n_head, "bitnet.attention.head_count_kv": n_head_kv,
                       "bitnet.rope.dimension_count": n_embd // n_head, "bitnet.context_length": 64,
                       "bitnet.vocab_size": n_vocab, "bitnet.hidden_activation": "relu2",
                       "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe",
                       "general.file_type": gguf.LlamaFileType.MOSTLY_TQ2_0}.items():
        assert fields[key] == value, (key, fields[key], value)
    assert np.isclose(fields["bitnet.rope.freq_base"], 500000.0), fields["bitnet.rope.freq_base"]
    assert np.isclose(fields["bitnet.attention.layer_norm_rms_epsilon"], 1e-5)
    vocabulary = json.loads((out / "tokenizer_llama3.json").read_text(encoding="utf-8"))
    ids = {**vocabulary["model"]["vocab"], **{t["content"]: t["id"] for t in vocabulary["added_tokens"]}}
    tokens = fields["tokenizer.ggml.tokens"]
    assert len(tokens) == n_vocab and all(tokens[i] == token for token, i in ids.items()), "tokens differ"
    assert all(tokens[i] == f"[PAD{i}]" for i in range(len(ids), n_vocab)), tokens[len(ids):]
    types = fields["tokenizer.ggml.token_type"]
    assert all(types[i] == gguf.TokenType.CONTROL for i in (t["id"] for t in vocabulary["added_tokens"])), types
    merges = [m if isinstance(m, str) else " ".join(m) for m in vocabulary["model"]["merges"]]
    assert fields["tokenizer.ggml.merges"] == merges, "merges differ"

    expected = load_file(out / "gguf_expected.safetensors")
    shapes = {"token_embd.weight": [n_embd, n_vocab], "output_norm.weight": [n_embd]}
    ours = {"token_embd.weight": "embedding.weight", "output_norm.weight": "norm.weight"}
    block = {"attn_norm": "attention_norm", "attn_sub_norm": "attention.sub_norm", "attn_q": "attention.q",
             "attn_k": "attention.k", "attn_v": "attention.v", "attn_output": "attention.o", "ffn_norm": "mlp_norm",
             "ffn_sub_norm": "mlp.sub_norm", "ffn_gate": "mlp.gate", "ffn_up": "mlp.up", "ffn_down": "mlp.down"}
    for i in range(n_layer):
        for name, shape in llama_cpp_bitnet_shapes(n_embd, n_embd * n_head_kv // n_head, n_ff).items():
            shapes[f"blk.{i}.{name}"] = shape
            part, kind = name.rsplit(".", 1)
            ours[f"blk.{i}.{name}"] = f"blocks.{i}.{block[part]}." + {"weight": "weight", "scale": "scale"}[kind]
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == sorted(shapes), sorted(set(tensors) ^ set(shapes))
    for name, tensor in tensors.items():
        assert list(tensor.shape) == shapes[name], (name, list(tensor.shape), shapes[name])
        values = torch.from_numpy(np.array(gguf.dequantize(tensor.data, tensor.tensor_type))).float()
        key = ours[name]
        if tensor.tensor_type == gguf.GGMLQuantizationType.TQ2_0:
            want = expected[key.replace(".weight", ".codes")]
        elif name.endswith(".scale"):
            want = expected[key][:1]
        else:
            want = expected[key]
        want_type = gguf.GGMLQuantizationType.F16 if name == "token_embd.weight" else (
            gguf.GGMLQuantizationType.TQ2_0 if name.endswith(".weight") and key.rsplit(".", 2)[-2] in
            ("q", "k", "v", "o", "gate", "up", "down") else gguf.GGMLQuantizationType.F32)
        assert tensor.tensor_type == want_type, (name, tensor.tensor_type, want_type)
        if name == "token_embd.weight":
            want = want.half().float()
        assert values.shape == want.shape and torch.equal(values, want), (name, values.shape, want.shape)
    print(f"hf_interop.py: the gguf package reads the GGUF file: {len(tensors)} tensors as llama.cpp's BitNet "
          "model loads them, TQ2_0 weights equal to our ternary codes")
    run_lm(lm, "export", "--packed", out / "gguf_model.btp", "--gguf", out / "cli.gguf", "--tokenizer",
           out / "tokenizer_llama3.json", "--dtype", "float16")
    assert (out / "cli.gguf").read_bytes() == (out / "model.gguf").read_bytes(), "export --gguf wrote other bytes"
    message = run_lm(lm, "export", "--packed", out / "gguf_model.btp", "--gguf", out / "refused.gguf",
                     expect_code=1)
    assert "give its tokenizer" in message, message
    print("hf_interop.py: bittorch-lm export --gguf writes the same file")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(Path(sys.argv[2]))
    else:
        check(Path(sys.argv[2]), sys.argv[3])
