"""A transformers base with its own chat template (ChatML here, as Qwen's): `fidan sft` tunes it in that
format unless asked for fidan's, supervising each answer and the end of its turn; chat and serve use it."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import write_hf_causal_lm

from fidan.artifacts.tokenizer import add_special_tokens, load_tokenizer
from fidan.errors import FidanError
from fidan.text.chat_template import CHAT_TOKENS, ChatFormat
from fidan.training.sft import sft

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")
CONVERSATION = [{"role": "system", "content": "Kısa yanıt ver."}, {"role": "user", "content": "Başkent neresi?"},
                {"role": "assistant", "content": "Ankara."}, {"role": "user", "content": "Ya en büyük şehir?"},
                {"role": "assistant", "content": "İstanbul."}]


@pytest.fixture(scope="module")
def chatml_base(tmp_path_factory, tokenizer_dir):
    root = tmp_path_factory.mktemp("chatml")
    tok = add_special_tokens(tokenizer_dir, root / "tok", ["<|im_start|>", "<|im_end|>"], CHATML)
    return write_hf_causal_lm(root / "base", tok.path, shard=None)


def test_a_template_supervises_each_answer_and_the_end_of_its_turn(chatml_base):
    tok = load_tokenizer(chatml_base)
    fmt = ChatFormat(tok)
    assert fmt.kind == "template" and tok.tokenizer.token_to_id("<|im_end|>") in fmt.stop_ids
    ids, labels = fmt.encode(CONVERSATION)
    supervised = [i for i, y in zip(ids, labels, strict=True) if y != -100]
    assert tok.decode(supervised) == "Ankara.<|im_end|>İstanbul.<|im_end|>"
    assert tok.decode(ids) == fmt.render(CONVERSATION)
    prompt, _ = fmt.encode(CONVERSATION[:2], add_generation_prompt=True)
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")


def test_sft_tunes_a_base_in_its_own_template_unless_asked_for_fidans(tmp_path, chatml_base):
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": CONVERSATION}, ensure_ascii=False) + "\n" for _ in range(12)),
                    encoding="utf-8")
    common = dict(model=str(chatml_base), data=str(data), max_steps=2, batch_size=2, eval_every=2, quiet=True,
                  val_fraction=0.0)
    own = tmp_path / "own"
    sft(out=str(own), **common)
    tok = load_tokenizer(own / "tokenizer")
    assert all(tok.tokenizer.token_to_id(t) is None for t in CHAT_TOKENS)  # no fidan markers added
    assert yaml.safe_load((own / "config.yaml").read_text(encoding="utf-8"))["chat_format"] == "template"
    from fidan.artifacts.loader import load
    from fidan.conversation.repl import ChatSession

    loaded = load(own)
    session = ChatSession(loaded.model, loaded.tok, max_new_tokens=3)
    assert tok.tokenizer.token_to_id("<|im_end|>") in session.stop_ids
    assert isinstance(session.reply("Başkent neresi?"), str)
    fidan_format = tmp_path / "fidan"
    sft(out=str(fidan_format), chat_template="fidan", **common)
    assert ChatFormat(load_tokenizer(fidan_format / "tokenizer")).kind == "fidan"
    with pytest.raises(FidanError, match="has no chat template of its own"):
        sft(out=str(tmp_path / "x"), chat_template="base", **{**common, "model": str(own.parent / "fidan")})
