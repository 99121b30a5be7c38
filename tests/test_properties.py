"""Properties checked on generated inputs (hypothesis): chat rendering and answer masking, the hash splits'
stability, packing never letting examples see each other, and exact resume at any step. (The tokenizer
round trip on any string is in test_tokenizer_basic.py.)"""

from __future__ import annotations

import jinja2
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fidan.artifacts.conversations import in_val_split
from fidan.artifacts.runs import read_metrics
from fidan.artifacts.tokenizer import add_special_tokens, load_tokenizer
from fidan.corpus.prepare import split_of
from fidan.model.gpt import GPT, GPTConfig
from fidan.text.chat_template import CHAT_TEMPLATE, CHAT_TOKENS, encode_chat
from fidan.training.sft_data import make_batch, pack_rows

TEXT = st.text(alphabet="abcçdefgğhıijklmnoöprsştuüvyzİIÇĞÖŞÜ '’.,?!0123456789", min_size=1, max_size=40)
SLOW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def chat_tok(tmp_path_factory, tokenizer_dir):
    out = tmp_path_factory.mktemp("chat") / "t"
    add_special_tokens(tokenizer_dir, out, CHAT_TOKENS, CHAT_TEMPLATE)
    return load_tokenizer(out)


def conversations():
    turn = st.tuples(TEXT, TEXT)
    return st.tuples(st.one_of(st.none(), TEXT), st.lists(turn, min_size=1, max_size=3)).map(
        lambda p: ([{"role": "system", "content": p[0]}] if p[0] else [])
        + [m for q, a in p[1] for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=conversations())
def test_chat_rendering_and_answer_masking(chat_tok, messages):
    ids, labels = encode_chat(chat_tok, messages)
    assert len(ids) == len(labels)
    # the ids decode to what the chat template (the one transformers uses) renders
    rendered = jinja2.Environment().from_string(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=False)
    assert chat_tok.decode(ids) == rendered
    # exactly the assistants' words and each closing </RESP> are supervised
    supervised = [t for t in labels if t != -100]
    answers = [chat_tok.encode(m["content"]) for m in messages if m["role"] == "assistant"]
    end = chat_tok.tokenizer.token_to_id("</RESP>")
    assert supervised == [t for a in answers for t in [*a, end]]


@settings(max_examples=200, deadline=None)
@given(text=TEXT, low=st.floats(0, 0.5), high=st.floats(0.5, 0.99))
def test_hash_splits_are_stable_and_nested(text, low, high):
    assert split_of(text, low) == split_of(text, low)  # the same document, the same side, every time
    if split_of(text, low) == "val":  # a larger share only adds documents to val
        assert split_of(text, high) == "val"
    assert split_of(text, 0.0) == "train"
    msgs = [{"role": "user", "content": text}, {"role": "assistant", "content": "x"}]
    assert not in_val_split(msgs, low) or in_val_split(msgs, high)


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 12), min_size=2, max_size=6), seed=st.integers(0, 1000))
def test_packed_examples_never_see_each_other(lengths, seed):
    torch.manual_seed(seed)
    for pos_emb in ("learned", "rope"):
        model = GPT(GPTConfig(vocab_size=50, block_size=64, n_layer=1, n_head=2, n_embd=16, pos_emb=pos_emb)).eval()
        g = torch.Generator().manual_seed(seed)
        examples = [(torch.randint(0, 50, (n,), generator=g).tolist(), [1] * n) for n in lengths]
        rows = pack_rows(lengths, list(range(len(examples))), 64)
        x, _, doc = make_batch(examples, rows, pad_id=0)
        with torch.no_grad():
            packed, _ = model(x, doc_ids=doc)
            for b, row in enumerate(rows):
                at = 0
                for i in row:
                    alone, _ = model(torch.tensor([examples[i][0]]))
                    n = len(examples[i][0])
                    assert torch.allclose(packed[b, at:at + n], alone[0], atol=1e-5)
                    at += n


@SLOW
@given(stop=st.integers(1, 9))
def test_resume_is_exact_at_any_step(tmp_path_factory, data_dir, tokenizer_dir, stop):
    from fidan.training.pretrain import pretrain

    args = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), max_steps=10, batch_size=2, block_size=16, depth=1,
                eval_every=5, eval_windows=2, warmup_steps=2, checkpoint_every=100, quiet=True, precision="fp32",
                peak_gflops=100.0, dropout=0.1)
    root = tmp_path_factory.mktemp("resume")
    pretrain(out=str(root / "whole"), **args)
    pretrain(out=str(root / "part"), until_step=stop, **args)
    pretrain(out=str(root / "part"), resume=True, **args)

    def losses(run):
        return [(r["step"], r["loss"]) for r in read_metrics(run) if r["kind"] == "train"]

    assert losses(root / "part") == losses(root / "whole")
