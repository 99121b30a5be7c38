"""The inference engine: the KV cache gives the cache-less path's tokens, batches equal rows alone, rows stop
on ids and strings, streamed text is whole characters, and HF models decode as `transformers` does."""

from __future__ import annotations

import pytest
import torch

from fidan.errors import FidanError
from fidan.inference import Engine, Sampling, TextStream, check_sampling
from fidan.model.gpt import GPT, config_from_preset

GREEDY = Sampling(temperature=0.0)


def tiny(preset: str, vocab: int = 97, block: int = 16) -> GPT:
    """A small model of the preset's architecture with weights large enough to give varied, tie-free tokens
    (``hizli`` starts its projections at zero, which would make every block the identity)."""
    torch.manual_seed(0)
    model = GPT(config_from_preset(preset, vocab, block_size=block, n_layer=2, n_embd=32, n_head=2))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


@torch.no_grad()
def cacheless(model: GPT, prompt: list[int], n: int) -> list[int]:
    """The path before the KV cache, as `GPT.generate` ran it: the whole window again for every token."""
    idx = torch.tensor([prompt])
    for _ in range(n):
        logits, _ = model(idx[:, -model.config.block_size:])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx[0, len(prompt):].tolist()


@pytest.mark.parametrize("preset", ["ders", "hizli"])
def test_greedy_equals_the_cacheless_path_past_the_block(preset):
    model = tiny(preset)
    prompt = [3, 14, 15, 92, 65]
    want = cacheless(model, prompt, 40)  # 45 tokens in all: the 16-token window slides 29 times
    got = Engine(model).generate([prompt], 40, GREEDY)[0]
    assert got.tokens == want and got.reason == "length"
    long_prompt = list(range(1, 25))  # a prompt longer than the block starts from its last window
    assert Engine(model).generate([long_prompt], 5, GREEDY)[0].tokens == cacheless(model, long_prompt, 5)


@pytest.mark.parametrize("preset", ["ders", "hizli"])
def test_a_batch_equals_each_row_alone(preset):
    model = tiny(preset)
    prompts = [[7], [1, 2, 3, 4], [9, 8, 7, 6, 5, 4, 3, 2, 1], list(range(20, 35))]
    batch = Engine(model).generate(prompts, 12, GREEDY)  # rows cross the 16-token block at different steps
    for prompt, row in zip(prompts, batch, strict=True):
        assert row.tokens == cacheless(model, prompt, 12)


def test_sampling_is_fixed_by_seed_and_per_row_generators_match_rows_alone():
    model = tiny("ders")
    engine = Engine(model)
    s = Sampling(temperature=1.0, top_k=20, top_p=0.9, repetition_penalty=1.2)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8]]

    def gens(seeds):
        return [torch.Generator().manual_seed(x) for x in seeds]

    batch = engine.generate(prompts, 20, s, gens([5, 6]))
    assert batch == engine.generate(prompts, 20, s, gens([5, 6]))
    for prompt, seed, row in zip(prompts, [5, 6], batch, strict=True):
        assert engine.generate([prompt], 20, s, torch.Generator().manual_seed(seed))[0].tokens == row.tokens
    assert batch[0].tokens != engine.generate(prompts[:1], 20, s, gens([7]))[0].tokens


def test_repetition_penalty_discourages_repeats():
    model = tiny("ders")
    plain = Engine(model).generate([[1, 2, 3]], 40, GREEDY)[0].tokens
    penalized = Engine(model).generate([[1, 2, 3]], 40, Sampling(0.0, repetition_penalty=5.0))[0].tokens
    assert len(set(penalized)) > len(set(plain))


def test_rows_stop_at_their_own_stop_ids():
    model = tiny("ders")
    prompts = [[1, 2, 3], [40, 41]]
    free = Engine(model).generate(prompts, 20, GREEDY)
    stop = free[0].tokens[6]
    first = free[0].tokens.index(stop)
    events = list(Engine(model).stream(prompts, 20, GREEDY, stop_ids={stop}))
    row0 = [e for e in events if e.row == 0]
    assert [e.token for e in row0] == free[0].tokens[:first + 1]  # the stop id is reported, then the row ends
    assert row0[-1].done and row0[-1].reason == "stop_id"
    out = Engine(model).generate(prompts, 20, GREEDY, stop_ids={stop})
    assert out[0].tokens == free[0].tokens[:first] and out[0].reason == "stop_id"
    want1 = free[1].tokens[:free[1].tokens.index(stop)] if stop in free[1].tokens else free[1].tokens
    assert out[1].tokens == want1  # the other row runs on undisturbed


def letters(ids: list[int]) -> str:
    return "".join(chr(ord("a") + i % 26) for i in ids)


def test_stop_strings_cut_the_text_and_are_never_streamed():
    model = tiny("ders")
    free = Engine(model, decode=letters).generate([[1, 2]], 30, GREEDY)[0]
    stop = free.text[10:13]
    cut = free.text.index(stop)
    pieces: list[str] = []
    out = Engine(model, decode=letters).generate([[1, 2]], 30, GREEDY, stop_strings=[stop],
                                                 on_event=lambda e: pieces.append(e.piece))
    assert out[0].text == free.text[:cut] and out[0].reason == "stop_string"
    assert "".join(pieces) == out[0].text
    with pytest.raises(FidanError, match="decode function"):
        Engine(model).generate([[1]], 3, GREEDY, stop_strings=["x"])


TURKISH = "Ağaçların gölgesinde şöyle dedi: «Işık, ılık süt, çörek; İstanbul'da güzel günler!» 🌳"


def utf8_bytes(ids: list[int]) -> str:
    """A byte-level decoder: token i is byte i, and a character whose bytes have not all arrived is U+FFFD."""
    return bytes(ids).decode("utf-8", errors="replace")


def test_streaming_never_breaks_a_character_and_pieces_join_to_the_text():
    stream = TextStream(utf8_bytes)
    pieces = [stream.push(b) for b in TURKISH.encode("utf-8")] + [stream.finish()]
    assert "".join(pieces) == stream.text == TURKISH
    assert all("\ufffd" not in p for p in pieces)
    first = TURKISH.encode("utf-8").index("ğ".encode())  # one push per byte: piece i is byte i's
    assert pieces[first:first + 2] == ["", "ğ"]  # two bytes, one whole letter

    stream = TextStream(utf8_bytes, stop_strings=["günler"])
    pieces = [stream.push(b) for b in TURKISH.encode("utf-8") if not stream.stopped] + [stream.finish()]
    assert stream.text == TURKISH[:TURKISH.index("günler")] == "".join(pieces)
    # Pieces cannot be taken back, so joining to the cut text means "gün" was never shown; "gü" of "güzel"
    # was held back as a possible start of the stop string until "z" ruled that out.
    assert "güz" in pieces


def test_streaming_with_a_real_tokenizer(tokenizer_dir):
    from fidan.artifacts.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    stream = TextStream(tok.decode)
    pieces = [stream.push(t) for t in tok.encode(TURKISH)] + [stream.finish()]
    assert "".join(pieces) == TURKISH and all("\ufffd" not in p for p in pieces)


def test_settings_are_checked_in_one_place():
    for kwargs, flag in [(dict(max_new_tokens=0, temperature=1.0), "--max-new-tokens"),
                         (dict(max_new_tokens=5, temperature=-1.0), "--temperature"),
                         (dict(max_new_tokens=5, temperature=1.0, top_p=0.0), "--top-p"),
                         (dict(max_new_tokens=5, temperature=1.0, top_k=-3), "--top-k"),
                         (dict(max_new_tokens=5, temperature=1.0, repetition_penalty=0.0), "--repetition-penalty")]:
        with pytest.raises(FidanError, match=flag):
            check_sampling(**kwargs)
    model = tiny("ders")
    with pytest.raises(FidanError, match="--temperature"):
        Engine(model).generate([[1]], 3, Sampling(temperature=-0.5))
    with pytest.raises(FidanError, match="at least one token"):
        Engine(model).generate([[1], []], 3, GREEDY)


def test_training_samples_through_the_engine():
    """`fidan pretrain` samples mid-training through the engine: fixed by the seed, model mode restored."""
    model = tiny("hizli").train()

    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        return Engine(model).generate([[5, 6, 7]], 48, Sampling(temperature=0.8, top_k=50), gen, stop_ids={0})[0]

    first = draw(1)
    assert first.tokens == draw(1).tokens and 0 < len(first.tokens) <= 48
    assert model.training  # the model is put back in the mode it was in
    for _ in Engine(model).stream([[5, 6, 7]], 3):  # between tokens, the caller's own autograd mode holds
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_hf_model_through_the_engine_equals_transformers_generate(hf_llama):
    prompts = [[1, 5, 9, 23, 42], [1, 77], [1, 3, 4, 5, 6, 7, 8, 9, 10, 11]]
    engine = Engine(hf_llama)
    for s in (GREEDY, Sampling(0.0, repetition_penalty=1.5)):
        batch = engine.generate(prompts, 12, s)
        for prompt, row in zip(prompts, batch, strict=True):
            want = hf_llama.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                     max_new_tokens=12, min_new_tokens=12, do_sample=False, eos_token_id=None,
                                     pad_token_id=0, repetition_penalty=s.repetition_penalty)
            assert row.tokens == want[0, len(prompt):].tolist()


def test_hf_model_past_the_window_equals_the_cacheless_path(hf_llama):
    """Past the window an HF model slides as a fidan one does: its last `window` tokens again, from position 0."""
    prompts = [[1, 5, 9, 23, 42], [1, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]]  # the second starts past it
    got = Engine(hf_llama, window=12).generate(prompts, 20, GREEDY)
    for prompt, row in zip(prompts, got, strict=True):
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(20):
                ids.append(int(hf_llama(torch.tensor([ids[-12:]])).logits[0, -1].argmax()))
        assert row.tokens == ids[len(prompt):]


def test_inverse_transform_draws_follow_the_probabilities():
    from fidan.inference.sampling import draw

    probs = torch.tensor([[0.5, 0.0, 0.2, 0.3]]).expand(20_000, 4)
    picks = draw(probs, torch.rand(20_000, generator=torch.Generator().manual_seed(0)))[:, 0]
    freq = torch.bincount(picks, minlength=4).float() / 20_000
    assert freq[1] == 0  # a token of probability 0 is never drawn
    assert torch.allclose(freq, probs[0], atol=0.015)
    assert draw(torch.tensor([[0.0, 1.0]]), torch.tensor([0.9999999])).item() == 1  # never past the end


def test_cache_rows_after_a_ragged_plan_share_the_memory():
    """`KVCache.rows` still works after a plan with rows at different positions (it once overwrote itself)."""
    from fidan.model.cache import KVCache

    model = tiny("ders")
    cache = KVCache(model.config, batch=3, length=8)
    cache.plan([0, 2, 5], 1)  # ragged: the scattering path
    k = torch.ones(3, model.config.n_head, 1, model.config.n_embd // model.config.n_head)
    cache.write(0, k, 2 * k)
    assert cache.k[0, 1, :, 2].eq(1).all() and cache.v[0, 2, :, 5].eq(2).all() and cache.k[0, 0, :, 1].eq(0).all()
    view = cache.rows(1, 3)  # a cache of rows 1 and 2 over the same memory
    view.plan([3, 3], 1)
    view.write(0, 3 * k[:2], 4 * k[:2])
    assert cache.k[0, 1, :, 3].eq(3).all() and cache.v[0, 2, :, 3].eq(4).all() and cache.k[0, 0, :, 3].eq(0).all()
