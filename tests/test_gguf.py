"""`fidan export gguf`: llama.cpp's names, shapes and metadata, read back with the gguf package's reader;
the same logits through transformers' GGUF loader; refusals; the Ollama Modelfile; and llama.cpp itself
(logits, tokenization, end tokens) through llama-cpp-python, where that is installed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fidan.adapt.gguf import export_gguf
from fidan.adapt.gguf_tensors import RELU2_SCALE
from fidan.adapt.gguf_vocab import pre_tokenizer_name
from fidan.artifacts.tokenizer import add_special_tokens, load_tokenizer
from fidan.cli import main as cli
from fidan.errors import BadInput
from fidan.model.gpt import GPTConfig, config_from_preset
from fidan.text.chat_template import CHAT_TEMPLATE, CHAT_TOKENS, RESP_END

gguf = pytest.importorskip("gguf")
from test_export import make_run  # noqa: E402  (a tiny run, its weights moved off their initialisation)

SMALL = dict(n_layer=2, n_embd=64, n_head=2, block_size=64)


def llama_cfg(vocab: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab, **SMALL, bias=False, pos_emb="rope", norm="rmsnorm", mlp="swiglu")


@pytest.fixture(scope="module")
def chat_tok(tokenizer_dir, tmp_path_factory):
    return add_special_tokens(tokenizer_dir, tmp_path_factory.mktemp("gguf") / "chat-tok", CHAT_TOKENS, CHAT_TEMPLATE)


def field(reader, key):
    return reader.fields[key].contents()


def tensors(reader) -> dict:
    return {t.name: t for t in reader.tensors}


def weights(t) -> np.ndarray:
    return gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(int(n) for n in reversed(t.shape)))


@pytest.mark.parametrize("preset", ["hizli", "qwen3", "ders"])
def test_gguf_reads_back_with_llama_cpp_names_metadata_and_vocabulary(preset, chat_tok, tmp_path):
    cfg = config_from_preset(preset, chat_tok.vocab_size, **SMALL)
    make_run(tmp_path / "run", chat_tok.path, cfg)
    result = export_gguf(model=str(tmp_path / "run"), out=str(tmp_path / "g"))
    r = gguf.GGUFReader(tmp_path / "g" / "model.gguf")
    arch = {"hizli": "qwen3", "qwen3": "qwen3", "ders": "gpt2"}[preset]
    assert field(r, "general.architecture") == result["architecture"] == arch
    assert field(r, f"{arch}.context_length") == 64 and field(r, f"{arch}.block_count") == 2
    assert field(r, f"{arch}.embedding_length") == 64 and field(r, f"{arch}.feed_forward_length") == cfg.mlp_hidden
    assert field(r, f"{arch}.attention.head_count") == field(r, f"{arch}.attention.head_count_kv") == 2
    if arch == "gpt2":
        assert field(r, "gpt2.attention.layer_norm_epsilon") == pytest.approx(1e-5)
    else:
        assert field(r, "qwen3.rope.freq_base") == cfg.rope_base and field(r, "qwen3.attention.key_length") == 32
        assert field(r, "qwen3.attention.layer_norm_rms_epsilon") == pytest.approx(torch.finfo(torch.float32).eps)
    tok = chat_tok.tokenizer
    assert field(r, "tokenizer.ggml.model") == "gpt2" and field(r, "tokenizer.ggml.pre") == "llama-bpe"
    assert field(r, "tokenizer.ggml.tokens") == [tok.id_to_token(i) for i in range(chat_tok.vocab_size)]
    types = field(r, "tokenizer.ggml.token_type")
    assert {types[tok.token_to_id(t)] for t in [*CHAT_TOKENS, "<|endoftext|>"]} == {3}  # CONTROL
    assert types[tok.token_to_id("a")] == 1  # NORMAL
    merges = json.loads(tok.to_str())["model"]["merges"]  # every merge, in rank order, as "left right"
    assert field(r, "tokenizer.ggml.merges") == [m if isinstance(m, str) else " ".join(m) for m in merges]
    assert len(merges) > 100
    assert field(r, "tokenizer.ggml.eos_token_id") == chat_tok.eos_id == field(r, "tokenizer.ggml.bos_token_id")
    assert field(r, "tokenizer.ggml.eot_token_id") == tok.token_to_id(RESP_END)
    assert field(r, "tokenizer.ggml.add_bos_token") is False
    assert field(r, "tokenizer.chat_template") == CHAT_TEMPLATE
    t = tensors(r)
    blocks = ({"attn_norm", "ffn_norm", "attn_qkv", "attn_output", "ffn_up", "ffn_down"} if arch == "gpt2" else
              {"attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm",
               "ffn_gate", "ffn_up", "ffn_down"})
    names = {n.rsplit(".", 1)[0] for n in t}
    top = {"token_embd", "output_norm"} | ({"output"} if not cfg.tie_embeddings else set()) \
        | ({"position_embd"} if arch == "gpt2" else set())
    assert names == top | {f"blk.{i}.{b}" for i in range(2) for b in blocks}
    assert list(t["token_embd.weight"].shape) == [64, chat_tok.vocab_size]  # ggml order: (in, out)
    for name, tensor in t.items():  # matrices in f16, vectors in f32
        kind = gguf.GGMLQuantizationType.F16 if len(tensor.shape) == 2 else gguf.GGMLQuantizationType.F32
        assert tensor.tensor_type == kind, name


def test_f16_weights_equal_the_model_after_undoing_the_mapping(chat_tok, tmp_path):
    """hizli (qwen3: ReLU² as a scaled gated MLP) and a Llama-shaped run (q/k rows interleaved per head)."""
    for name, cfg in (("hizli", config_from_preset("hizli", chat_tok.vocab_size, **SMALL)),
                      ("llama", llama_cfg(chat_tok.vocab_size))):
        model = make_run(tmp_path / name, chat_tok.path, cfg)
        export_gguf(model=str(tmp_path / name), out=str(tmp_path / f"{name}-g"))
        t = tensors(gguf.GGUFReader(tmp_path / f"{name}-g" / "model.gguf"))
        sd = {k: v.float().numpy() for k, v in model.state_dict().items()}

        def close(ours, theirs, scale=1.0):  # f16 rounding: half a unit in the last place, or of the
            # subnormal spacing 2^-24 (times the factor a weight was divided by before rounding)
            np.testing.assert_allclose(theirs, ours, rtol=2 ** -11, atol=2 ** -25 * scale)

        close(sd["wte.weight"], weights(t["token_embd.weight"]))
        close(sd["lm_head.weight"], weights(t["output.weight"]))
        d = 32
        for i in range(2):
            b, g = f"blocks.{i}.", f"blk.{i}."
            q, k, v = np.split(sd[b + "attn.qkv.weight"], 3)
            got_q, got_k = weights(t[g + "attn_q.weight"]), weights(t[g + "attn_k.weight"])
            if name == "llama":  # rows (2j, 2j+1) of a head hold fidan's rows (j, j + d/2)
                got_q, got_k = (w.reshape(2, d // 2, 2, 64).transpose(0, 2, 1, 3).reshape(64, 64) for w in (got_q, got_k))
            close(q, got_q), close(k, got_k), close(v, weights(t[g + "attn_v.weight"]))
            fc, proj = sd[b + "mlp.fc.weight"], sd[b + "mlp.proj.weight"]
            if name == "hizli":
                s = RELU2_SCALE ** 0.5
                close(fc, weights(t[g + "ffn_gate.weight"]) / RELU2_SCALE)
                close(fc, weights(t[g + "ffn_up.weight"]) * s, s), close(proj, weights(t[g + "ffn_down.weight"]) * s, s)
                assert np.all(weights(t[g + "attn_q_norm.weight"]) == 1)
            else:
                close(sd[b + "mlp.gate.weight"], weights(t[g + "ffn_gate.weight"]))
                close(fc, weights(t[g + "ffn_up.weight"])), close(proj, weights(t[g + "ffn_down.weight"]))
            close(sd[b + "ln1.weight"], weights(t[g + "attn_norm.weight"]))


def test_q8_0_stays_within_half_a_step(chat_tok, tmp_path):
    """q8_0 stores blocks of 32 values as int8 multiples of a float16 step, max|block|/127; a row that is
    not a whole number of blocks (width 48) stays f16."""
    cfg = config_from_preset("hizli", chat_tok.vocab_size, n_layer=1, n_embd=48, n_head=2, block_size=32)
    model = make_run(tmp_path / "run", chat_tok.path, cfg)
    export_gguf(model=str(tmp_path / "run"), out=str(tmp_path / "g"), quant="q8_0")
    r = gguf.GGUFReader(tmp_path / "g" / "model.gguf")
    t = tensors(r)
    assert field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    assert t["blk.0.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0  # rows of 192
    assert t["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.F16  # rows of 48
    ours = model.state_dict()["blocks.0.mlp.proj.weight"].numpy() / RELU2_SCALE ** 0.5
    got = weights(t["blk.0.ffn_down.weight"])
    step = np.abs(ours.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
    err = np.abs(got - ours).reshape(-1, 32)
    # half a step, plus 127 times the float16 rounding of the step itself (relative 2^-11, or 2^-25 subnormal)
    bound = 0.5 * step + 127 * np.maximum(step * 2.0 ** -11, 2.0 ** -25)
    assert np.all(err <= bound) and err.max() > 0.25 * step.min()


@pytest.mark.parametrize("name", ["llama", "hizli"])
def test_transformers_reads_the_gguf_to_the_same_logits(name, chat_tok, tmp_path):
    """An independent GGUF reader: transformers undoes llama's interleaving and computes qwen3's gated MLP.
    f32 weights: equal logits (hizli: the ReLU² stand-in, 6.7e-6 per hidden unit at most)."""
    transformers = pytest.importorskip("transformers")
    cfg = llama_cfg(chat_tok.vocab_size) if name == "llama" else config_from_preset("hizli", chat_tok.vocab_size, **SMALL)
    model = make_run(tmp_path / "run", chat_tok.path, cfg)
    export_gguf(model=str(tmp_path / "run"), out=str(tmp_path / "g"), quant="f32")
    # transformers' reader ignores attention.key_length and takes Qwen3's default head size: pass it
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "g"), gguf_file="model.gguf",
                                                           head_dim=32).eval()
    x = torch.randint(0, chat_tok.vocab_size, (1, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (hf(x).logits - model(x)[0]).abs().max().item()
    assert diff <= 1e-4, diff


def test_modelfile_chat_template_and_stops(chat_tok, tokenizer_dir, tmp_path):
    cfg = config_from_preset("qwen3", chat_tok.vocab_size, **SMALL)
    make_run(tmp_path / "chat", chat_tok.path, cfg)
    export_gguf(model=str(tmp_path / "chat"), out=str(tmp_path / "g"))
    lines = (tmp_path / "g" / "Modelfile").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "FROM ./model.gguf" and "PARAMETER num_ctx 64" in lines
    assert 'PARAMETER stop "<|endoftext|>"' in lines and f'PARAMETER stop "{RESP_END}"' in lines
    template = next(line for line in lines if line.startswith("TEMPLATE"))
    order = [template.index(m) for m in ("<SYS>", "</SYS>", "<INST>", "</INST><RESP>", "</RESP>")]
    assert order == sorted(order)
    # a base run (no chat markers): the raw prompt, only end-of-text stops, no template or eot in the file
    base_cfg = config_from_preset("qwen3", load_tokenizer(tokenizer_dir).vocab_size, **SMALL)
    make_run(tmp_path / "base", tokenizer_dir, base_cfg)
    export_gguf(model=str(tmp_path / "base"), out=str(tmp_path / "b"))
    text = (tmp_path / "b" / "Modelfile").read_text(encoding="utf-8")
    assert 'TEMPLATE """{{ .Prompt }}"""' in text and RESP_END not in text
    r = gguf.GGUFReader(tmp_path / "b" / "model.gguf")
    assert "tokenizer.chat_template" not in r.fields and "tokenizer.ggml.eot_token_id" not in r.fields
    # another chat format (ChatML): its Jinja template goes in the file, and Ollama reads it from there
    chatml = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    other = add_special_tokens(tokenizer_dir, tmp_path / "chatml-tok", ["<|im_start|>", "<|im_end|>"], chatml)
    make_run(tmp_path / "chatml", other.path, config_from_preset("qwen3", other.vocab_size, **SMALL))
    export_gguf(model=str(tmp_path / "chatml"), out=str(tmp_path / "c"))
    assert "TEMPLATE" not in (tmp_path / "c" / "Modelfile").read_text(encoding="utf-8")
    assert field(gguf.GGUFReader(tmp_path / "c" / "model.gguf"), "tokenizer.chat_template") == chatml


def test_unsupported_shapes_and_existing_out_are_refused(chat_tok, tmp_path, capsys):
    vocab = chat_tok.vocab_size
    cases = {"rope-layernorm": (GPTConfig(vocab_size=vocab, **SMALL, pos_emb="rope"), "norm=layernorm"),
             "learned-swiglu": (GPTConfig(vocab_size=vocab, **SMALL, mlp="swiglu"), "mlp=swiglu"),
             "rope-bias": (GPTConfig(vocab_size=vocab, **SMALL, pos_emb="rope", norm="rmsnorm", mlp="swiglu"), "bias")}
    for name, (cfg, why) in cases.items():
        make_run(tmp_path / name, chat_tok.path, cfg)
        assert cli(["export", "gguf", "--model", str(tmp_path / name), "--out", str(tmp_path / f"{name}-g")]) == 2
        err = capsys.readouterr().err
        assert why in err and "presets hizli, qwen3" in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / f"{name}-g").exists()
    make_run(tmp_path / "ok", chat_tok.path, llama_cfg(vocab))
    (tmp_path / "taken").mkdir()
    assert cli(["export", "gguf", "--model", str(tmp_path / "ok"), "--out", str(tmp_path / "taken")]) == 2
    assert "--force" in capsys.readouterr().err and not (tmp_path / "taken" / "model.gguf").exists()
    assert cli(["export", "gguf", "--model", str(tmp_path / "ok"), "--out", str(tmp_path / "taken"), "--force",
                "--quant", "q8_0"]) == 0
    r = gguf.GGUFReader(tmp_path / "taken" / "model.gguf")
    assert field(r, "general.architecture") == "llama" and field(r, "general.file_type") == 7


def test_tokenizers_llama_cpp_cannot_read_are_refused(tmp_path):
    from tokenizers import AddedToken, Tokenizer, models

    tok = Tokenizer(models.Unigram([("a", -1.0), ("b", -2.0)], unk_id=0))
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    (tmp_path / "tok").mkdir()
    tok.save(str(tmp_path / "tok" / "tokenizer.json"))
    make_run(tmp_path / "run", tmp_path / "tok", llama_cfg(3))
    with pytest.raises(BadInput, match="byte-level BPE tokenizers; this run's is Unigram"):
        export_gguf(model=str(tmp_path / "run"), out=str(tmp_path / "g"))


def test_pre_tokenizer_names():
    from fidan.adapt.gguf_vocab import QWEN
    from fidan.tokenizer.pretokenize import make_pretokenizer

    def spec(pre) -> dict:
        return {"pre_tokenizer": json.loads(pre.__getstate__())}

    assert pre_tokenizer_name(spec(make_pretokenizer("bytelevel"))) == ("gpt-2", True)
    assert pre_tokenizer_name(spec(make_pretokenizer("turkish"))) == ("llama-bpe", False)
    assert pre_tokenizer_name(spec(make_pretokenizer("turkish-digits"))) == ("llama-bpe", False)
    qwen = {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": QWEN}},
                                                  {"type": "ByteLevel", "use_regex": False}]}
    assert pre_tokenizer_name({"pre_tokenizer": qwen}) == ("qwen2", True)
    with pytest.raises(BadInput, match="pre-tokenizer"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Whitespace"}})


# llama.cpp itself, through llama-cpp-python where it is installed (it builds from source: no extra has it).
# max |logit difference| allowed, for logits up to about 2 (measured: docs/gguf.md). f32 weights with an
# f32 KV cache are fidan's model up to float rounding, except for the ReLU² stand-in (hizli, 1.6e-5) and
# llama.cpp's tanh GELU (gpt2, 7.6e-4); f16 rounds the weights, q8_0 the weights and the activations.
LLAMA_TOLERANCE = {"f32": 5e-5, "f16": 5e-3, "q8_0": 0.1}


def open_llama(path, **options):
    """llama.cpp without its extra weight layouts (AMX, repacked blocks): those are speed paths only, and
    a virtual machine may report AMX without enabling it, which kills the process (SIGILL)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    default = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    llama_cpp.llama_cpp.llama_model_default_params = params
    try:
        return llama_cpp.Llama(model_path=str(path), verbose=False, **options)
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = default


def llama_logits(path, ids: list[int], n_ctx: int) -> np.ndarray:
    # an f32 KV cache (type 0): llama.cpp's default f16 cache alone moves logits by about 1e-3
    llm = open_llama(path, n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, n_threads=1, type_k=0, type_v=0)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


@pytest.mark.parametrize("name", ["hizli", "qwen3", "llama", "ders"])
def test_llama_cpp_gives_fidans_logits_on_fidans_ids(name, chat_tok, tmp_path):
    pytest.importorskip("llama_cpp")
    cfg = llama_cfg(chat_tok.vocab_size) if name == "llama" else config_from_preset(name, chat_tok.vocab_size, **SMALL)
    model = make_run(tmp_path / "run", chat_tok.path, cfg)
    ids = torch.randint(0, chat_tok.vocab_size, (64,), generator=torch.Generator().manual_seed(2)).tolist()
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0][0].numpy()
    for quant, tol in LLAMA_TOLERANCE.items():
        export_gguf(model=str(tmp_path / "run"), out=str(tmp_path / quant), quant=quant)
        diff = np.abs(llama_logits(tmp_path / quant / "model.gguf", ids, 64) - ours).max()
        print(f"{name} {quant}: max |logit difference| {diff:.2e}, logits up to {np.abs(ours).max():.2f}")
        # gpt2: llama.cpp's GELU is the tanh approximation (from a float16 table), fidan's the exact one
        assert diff <= (max(tol, 2e-3) if name == "ders" else tol), (quant, diff)


@pytest.fixture(scope="module")
def plain_chat_tok(data_dir, tmp_path_factory):
    """A --plain BPE: at 400 tokens only it has merges across a space and digits (" 1"), which llama-bpe cuts."""
    from fidan.tokenizer.train import train_tokenizer

    plain = tmp_path_factory.mktemp("plain") / "tok"
    train_tokenizer(data=str(data_dir), out=str(plain), vocab_size=400, plain=True)
    return add_special_tokens(plain, tmp_path_factory.mktemp("gguf") / "chat-tok", CHAT_TOKENS, CHAT_TEMPLATE)


def test_llama_cpp_tokenizes_and_stops_as_documented(plain_chat_tok, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    chat_tok = plain_chat_tok
    make_run(tmp_path / "run", chat_tok.path, config_from_preset("qwen3", chat_tok.vocab_size, **SMALL))
    export_gguf(model=str(tmp_path / "run"), out=str(tmp_path / "g"))
    llm = open_llama(tmp_path / "g" / "model.gguf", n_ctx=64, vocab_only=True)

    def theirs(text: str, special: bool = False) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    # plain Turkish prose splits the same way under llama-bpe's pattern and fidan's
    plain = "Türkiye Cumhuriyeti yılında kuruldu ve güzel sokaklarında yürüdük, çünkü hava güzeldi."
    assert theirs(plain) == chat_tok.encode(plain)
    # llama-bpe cuts an apostrophe suffix after a leading d, t, s or m ('d + a), and a space from the
    # number after it; fidan keeps 'da and " 123" whole
    for text in ("İstanbul'da", "Belge numarası 123."):
        assert theirs(text) != chat_tok.encode(text), text
        assert llm.detokenize(theirs(text)).decode("utf-8") == text  # other ids, the same text
    # the chat markers are single special tokens, and </RESP> and end-of-text end generation
    turn = "<INST>Merhaba</INST><RESP>"
    assert theirs(turn, special=True) == chat_tok.encode(turn)
    vocab = llm._model.vocab
    resp_end = chat_tok.tokenizer.token_to_id(RESP_END)
    assert llama_cpp.llama_vocab_is_eog(vocab, resp_end) and llama_cpp.llama_vocab_is_eog(vocab, chat_tok.eos_id)
    assert not llama_cpp.llama_vocab_is_eog(vocab, chat_tok.tokenizer.token_to_id("<RESP>"))
