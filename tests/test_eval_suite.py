"""The Turkish evaluation suite: its sets are what their rules say, built from real forms, absent from
every built-in source, deterministic, listed, run on a model with standard errors and floors, and shown
in the report card.

zemberek loads once (about 11 s) for the module; each set is built with its first ``N`` items into a
temporary FIDAN_CACHE, where `--list`, `--data tr-suite` and the single sets then read them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from types import SimpleNamespace

import pytest

from fidan.cli import main
from fidan.errors import MissingExtra
from fidan.evaluation.mc import eval_mc
from fidan.evaluation.suite import SETS, build_items, content_hash, load_set, plan, store_set
from fidan.text.turkish import casefold_tr

pytest.importorskip("zemberek")
pytest.importorskip("WordNet")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N = 40  # items per set here; the real sets hold several hundred (their plans are checked)
GENERATED = [name for name in SETS if name != "tr-harmony"]  # tr-harmony's wrong forms are misspellings by design


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    cache = tmp_path_factory.mktemp("suite-cache")
    before = os.environ.get("FIDAN_CACHE")
    os.environ["FIDAN_CACHE"] = str(cache)
    try:
        plans = {name: plan(name) for name in SETS}
        built = {name: store_set(name, build_items(name, N, plans[name])) for name in SETS}
        yield SimpleNamespace(plans=plans, built=built, cache=cache)
    finally:
        if before is None:
            os.environ.pop("FIDAN_CACHE", None)
        else:
            os.environ["FIDAN_CACHE"] = before


def analyses(word: str) -> list[set[str]]:
    """The morpheme ids of each of zemberek's analyses of ``word``."""
    from fidan.evaluation.suite.forms import morphology

    return [{m.morpheme.id_ for m in a.morpheme_data_list} for a in morphology().analyze(word).analysis_results]


def has(word: str, *ids: str) -> bool:
    return any(set(ids) <= a for a in analyses(word))


def test_every_set_plans_several_hundred_items_and_builds_well_formed_ones(suite):
    for name in SETS:
        assert len(suite.plans[name]) >= 216 if name == "tr-harmony" else len(suite.plans[name]) >= 480, name
        items = suite.built[name]["items"]
        assert len(items) == N
        for it in items:
            assert it["context"] and not it["context"].endswith(" ")
            assert 0 <= it["answer"] < len(it["choices"]) and len(set(it["choices"])) == len(it["choices"]) >= 2
            assert all(c.startswith(" ") and not c.startswith("  ") for c in it["choices"])
        positions = {it["answer"] for it in items}
        assert len(positions) >= min(3, len(items[0]["choices"])), f"{name}: the answer sits in {positions} only"


def test_distractors_are_real_forms_not_misspellings(suite):
    from fidan.evaluation.suite.forms import is_real_form

    words = {w for name in GENERATED for it in suite.built[name]["items"]
             for c in it["choices"] for w in re.findall(r"\w+", c)}
    assert len(words) > 300
    assert [w for w in sorted(words) if not is_real_form(w)] == []
    assert not is_real_form("kitapı") and not is_real_form("evlarda")  # the check can fail


# The rules, written here apart from the sets' own tables: a wrong entry there fails here.
PRONOUN_PERSON = {"ben": "A1sg", "sen": "A2sg", "o": "A3sg", "biz": "A1pl", "siz": "A2pl"}
GENITIVE_POSSESSIVE = {"benim": "P1sg", "senin": "P2sg", "onun": "P3sg", "bizim": "P1pl", "sizin": "P2pl"}
HARMONY = {"a": "ı", "ı": "ı", "o": "u", "u": "u", "e": "i", "i": "i", "ö": "ü", "ü": "ü"}


def tense_of(adverb: str) -> str:
    if adverb.startswith(("Dün", "Geçen", "Bugün", "Az önce")) or adverb.endswith("önce"):
        return "Past"
    if adverb.startswith(("Yarın", "Gelecek", "Seneye", "Haftaya", "Birazdan", "Bu akşam")) or adverb.endswith("sonra"):
        return "Fut"
    return {"Şimdi": "Prog1", "Şu anda": "Prog1", "Her gün": "Aor", "Genellikle": "Aor"}[adverb]


def test_right_answers_carry_the_morphology_their_rule_asks_for(suite):
    """Analysed back by zemberek's analyzer, independently of the generator that built them."""
    from fidan.evaluation.suite.case import GOVERNS  # checked against the treebank below

    def right(it):
        return it["choices"][it["answer"]].split()

    def opening(it, words):  # the context's adverb (one or two words) and the pronoun after it
        w = it["context"].split()
        return (" ".join(w[:2]), w[2]) if w[1] not in words else (w[0], w[1])

    for it in suite.built["tr-case"]["items"]:
        post = it["id"].split(":")[0]
        assert has(right(it)[0], GOVERNS[post]) and right(it)[1].rstrip(".") == post, it
    for it in suite.built["tr-possessive"]["items"]:
        assert has(right(it)[0], GENITIVE_POSSESSIVE[it["context"].split()[-1]]), it
    for it in suite.built["tr-person"]["items"]:
        adverb, pron = opening(it, PRONOUN_PERSON)
        assert has(right(it)[0].rstrip("."), tense_of(adverb), PRONOUN_PERSON[pron]), it
    for it in suite.built["tr-tense"]["items"]:
        adverb, person = it["id"].split(":")[0], it["id"].split("+")[-1]
        assert has(right(it)[0].rstrip("."), tense_of(adverb), person), it
    for it in suite.built["tr-question"]["items"]:
        verb, particle = right(it)
        assert particle[1] == HARMONY[[c for c in verb if c in HARMONY][-1]], it
        adverb, pron = opening(it, PRONOUN_PERSON)
        tense, person = tense_of(adverb), PRONOUN_PERSON[pron]
        on_verb = tense == "Past" or person == "A3sg"  # the past keeps the person on the verb
        assert has(verb, tense, person if on_verb else "A3sg"), it
        assert has(particle.rstrip("?"), "Ques", "A3sg" if on_verb else person), it
    for it in suite.built["tr-order"]["items"]:
        words = right(it)
        assert all(c.split()[-1] != words[-1] for j, c in enumerate(it["choices"]) if j != it["answer"])
        assert all(sorted(c.rstrip(".").split()) == sorted(" ".join(words).rstrip(".").split())
                   for c in it["choices"])  # the same words, reordered


def test_case_government_matches_the_treebank_gold_annotation():
    from collections import Counter, defaultdict

    from fidan.evaluation.suite.case import GOVERNS
    from fidan.text.treebank import SECTIONS, treebank_file

    seen: dict[str, Counter] = defaultdict(Counter)
    for section in SECTIONS:
        for line in treebank_file(section).read_text(encoding="utf-8").splitlines():
            cols = line.split("\t")
            if len(cols) >= 10 and cols[3] == "ADP" and cols[2] in GOVERNS:
                feats = dict(f.split("=", 1) for f in cols[5].split("|") if "=" in f)
                seen[cols[2]][feats.get("ComplementType")] += 1
    for post, case in GOVERNS.items():
        assert dict(seen[post]) == {f"C{case}": sum(seen[post].values())} and sum(seen[post].values()) >= 5, post


# No item may be in fidan's training material: every built-in corpus document and instruction message
# (all KeNet definitions the builder can emit, whatever --kenet-max) is cut into sentences, normalized and
# hashed; an item's whole text, its sentences and any quoted definition must miss them all.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


def _key(folded: str) -> bytes | None:
    norm = " ".join(folded.split()).strip(" .!?…:;,\"'«»“”")
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=12).digest() if norm else None


def _pieces(text: str) -> list[str]:
    folded = casefold_tr(text)  # once per text: NFC and Turkish lower case
    return [folded, *_SENTENCE_END.split(folded)]


@pytest.fixture(scope="module")
def training_material():
    from fidan.corpus.instructions import SOURCES
    from fidan.corpus.sources import BUILTIN

    texts: dict[str, list[str]] = {}
    for name, source in BUILTIN.items():
        try:
            texts[name] = list(source.read())
        except MissingExtra:  # tr-manpages and tr-news come from make install, not pip
            continue
    for name, (_, _, build) in SOURCES.items():
        chats = build(10**9) if name == "kenet" else build()
        texts[name] = [message["content"] for chat in chats for message in chat]
    keys = {k for docs in texts.values() for text in docs for k in map(_key, _pieces(text)) if k}
    # tr-kenet's lines are "word, word: definition.": the definition alone is a key too
    keys |= {_key(casefold_tr(line.split(": ", 1)[1])) for text in texts["tr-kenet"] for line in text.splitlines()}
    return SimpleNamespace(texts=texts, keys=keys)


def contaminated(items: list[dict], keys: set[bytes]) -> list[str]:
    found = []
    for it in items:
        whole = it["context"] + it["choices"][it["answer"]]
        quoted = [casefold_tr(q) for q in re.findall(r'"([^"]+)"', it["context"])]
        if any(_key(p) in keys for p in [*_pieces(whole), *quoted]):
            found.append(it["id"])
    return found


def test_no_item_is_in_a_builtin_corpus_or_instruction_source(suite, training_material):
    from fidan.text.turkish import upper_tr

    assert {"tr-speeches", "tr-treebank", "tr-kenet", "kenet", "dialogs", "speeches", "food-safety"} <= set(
        training_material.texts)
    items = [it for b in suite.built.values() for it in b["items"]]
    assert contaminated(items, training_material.keys) == []
    # The check finds what it should: a treebank sentence split into a context and an answer, and a
    # definition the instruction builder uses (whatever its case and spacing) quoted in a context.
    sentence = training_material.texts["tr-treebank"][0]
    definition = training_material.texts["kenet"][11].rstrip(".")  # an answer: messages alternate
    planted = [{"context": sentence[:20], "choices": [sentence[20:], " x"], "answer": 0, "id": "treebank"},
               {"context": f'"{upper_tr(definition)}"  anlamına gelen kelime:', "choices": [" a", " b"], "answer": 1,
                "id": "kenet"}]
    # and a definition of the tr-kenet corpus source, as the set would quote it
    line = next(x for x in training_material.texts["tr-kenet"][5].splitlines() if len(x.split(": ", 1)[1]) > 20)
    planted.append({"context": f'"{line.split(": ", 1)[1]}" anlamına gelen kelime:', "choices": [" a", " b"],
                    "answer": 0, "id": "tr-kenet"})
    assert contaminated(planted, training_material.keys) == ["treebank", "kenet", "tr-kenet"]


def test_content_hash_is_deterministic_and_names_the_content(suite):
    for name in ("tr-case", "tr-order", "tr-definition"):
        again = build_items(name, N, suite.plans[name])
        assert content_hash(again) == suite.built[name]["hash"] == load_set(name)["hash"]
    items = suite.built["tr-case"]["items"]
    changed = [dict(it) for it in items]
    changed[3]["answer"] = (changed[3]["answer"] + 1) % 3
    assert content_hash(changed) != content_hash(items)


def test_list_prints_every_set_with_its_count_chance_floors_hash_and_rule(suite, capsys):
    assert main(["eval", "mc", "--list"]) == 0
    out = capsys.readouterr().out
    for name, b in suite.built.items():
        line = next(x for x in out.splitlines() if x.startswith(name + " "))
        assert f" {N} " in line and b["hash"][:23] in line and b["rule"] in line
        assert f"{b['chance']:.1%}" in line and f"{b['unigram']['accuracy']:.1%}" in line
    assert main(["eval", "mc", "--data", "tr-suite"]) == 2  # a model is needed unless --list
    assert "needs --model and --data" in capsys.readouterr().err


def test_reference_beats_chance_and_unigram_where_local_context_decides(suite):
    """The character 7-gram sees six characters back: enough for a suffix's vowel, a postposition's case,
    the question particle and phrase order; not for agreement across words (measured, in the docs)."""
    from fidan.evaluation.suite.floors import reference_model, standard_error
    from fidan.evaluation.suite.ngram import bits_per_char

    for name in ("tr-harmony", "tr-case", "tr-question", "tr-order"):
        b = suite.built[name]
        acc = b["reference"]["accuracy"]
        assert acc - 2 * standard_error(acc, N) > max(b["chance"], b["unigram"]["accuracy"]), (name, b["reference"])
    assert suite.built["tr-order"]["unigram"]["accuracy"] < 0.4  # the same words in every choice: no signal
    model = reference_model()
    assert 0.8 < bits_per_char(model, "Türkiye Cumhuriyeti'nin başkenti Ankara'dır.") < 4.0
    probs = [math.exp(model.logprob("Dün akşam ", chr(c))) for c in range(0x20, 0x2FF)]
    assert 0.98 < sum(probs) <= 1.0 + 1e-9  # the rest goes to the boundary and unknown symbols


def test_trigger_reference_learns_agreement_tense_and_meaning_where_the_7_gram_cannot(suite):
    """Agreement across words, tense after an adverb and a word for its definition are out of the 7-gram's
    reach; the trigger model, which learns from the corpus which words go with which person, tense,
    possessor and lemma, passes them: the sets can be learned (the full sets' figures are in the docs)."""
    from fidan.evaluation.mc import mc_accuracy
    from fidan.evaluation.suite.floors import learnable, standard_error, trigger_scores

    for name in ("tr-possessive", "tr-person", "tr-tense"):
        b = suite.built[name]
        acc = b["trigger"]["accuracy"]
        assert acc - 2 * standard_error(acc, N) > max(b["chance"], b["unigram"]["accuracy"]), (name, b["trigger"])
        assert learnable(b) == "trigger" and b["reference"]["accuracy"] < acc
    assert learnable(suite.built["tr-case"]) == "7-gram"
    # A definition's word needs more items to tell from chance: the first 200.
    items = build_items("tr-definition", 200, suite.plans["tr-definition"])
    acc = mc_accuracy(items, trigger_scores(items))["accuracy"]
    assert acc - 2 * standard_error(acc, len(items)) > 0.25, acc


def test_trigger_model_learns_which_words_go_with_which_label():
    """On a corpus written here (no zemberek: the lexicon is given), the person after *ben* and *sen* is
    learned from the sentences alone, and a word the corpus never saw near its label gains nothing."""
    from fidan.evaluation.suite.trigger import Lexicon, TriggerModel, labels_of

    assert labels_of(["[gitmek:Verb] git:Verb+ti:Past+m:A1sg"]) == {"lemma=gitmek": 1.0, "tense=Past": 1.0,
                                                                    "agr=A1sg": 1.0}
    assert labels_of(["[araba:Noun] araba:Noun+A3sg+m:P1sg", "[araba:Adj] araba:Adj|Zero→Noun+A3sg+m:P1sg"]) == {
        "lemma=araba": 1.0, "poss=P1sg": 1.0}
    lexicon = Lexicon(None)
    verbs = {"geldim": "A1sg", "geldin": "A2sg", "gittim": "A1sg", "gittin": "A2sg"}
    lexicon.table = {w: {f"agr={p}": 1.0, "tense=Past": 1.0, "lemma=x": 1.0} for w, p in verbs.items()}
    lexicon.table.update({w: {f"lemma={w}": 1.0} for w in ("ben", "sen", "dün", "eve", "okula", "o")})
    texts = ["Ben dün eve geldim. Sen okula gittin. Ben okula gittim. Sen dün geldin."] * 5
    model = TriggerModel(texts, lexicon)
    assert model.score("Dün ben eve", " gittim.") > model.score("Dün ben eve", " gittin.")
    assert model.score("Dün sen eve", " gittin.") > model.score("Dün sen eve", " gittim.")
    assert model.score("o", " gittim.") == pytest.approx(model.score("o", " gittin."))  # never seen: only the prior


def test_the_lexicon_analyses_in_worker_processes_alike(monkeypatch):
    """Many word types are labelled by several processes, chunk by chunk, with the labels one process gives."""
    import fidan.evaluation.suite.trigger as trigger

    types = ["geldim", "gittin", "evlerimizden", "kitabımla", "okulda", "xqzvw", "güzelce"]
    monkeypatch.setattr(trigger, "CHUNK", 3)
    assert trigger._analyse(types, workers=2) == trigger._analyse(types, workers=1)
    assert trigger._analyse(types, workers=1)["geldim"]["agr=A1sg"] == 1.0


@pytest.fixture(scope="module")
def suite_run(suite, tmp_path_factory, data_dir, tokenizer_dir):
    from fidan.training.pretrain import pretrain

    out = tmp_path_factory.mktemp("suiterun") / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(out), max_steps=2, batch_size=2,
             block_size=128, depth=1, eval_every=2, eval_windows=2, warmup_steps=1, precision="fp32",
             peak_gflops=100.0, device="cpu", quiet=True)
    return out


def test_suite_run_gives_every_accuracy_with_its_error_and_floors(suite, suite_run, capsys):
    assert main(["eval", "mc", "--model", str(suite_run), "--data", "tr-suite", "--batch-size", "64"]) == 0
    out = capsys.readouterr().out
    r = json.loads((suite_run / "eval" / "mc-tr-suite.json").read_text(encoding="utf-8"))
    assert r["task"] == "mc-suite" and [s["set"] for s in r["sets"]] == list(SETS)
    for s in r["sets"]:
        b = suite.built[s["set"]]
        assert s["items"] == N and s["hash"] == b["hash"] and s["chance"] == pytest.approx(b["chance"])
        assert s["standard_error"] == pytest.approx(math.sqrt(s["accuracy"] * (1 - s["accuracy"]) / N))
        right = sum(p["pred"] == p["answer"] for p in s["predictions"])
        assert s["accuracy"] == pytest.approx(right / N) and 0 <= s["untrained"]["accuracy"] <= 1
        floors = [s["chance"], s["unigram"]["accuracy"], s["untrained"]["accuracy"]]
        assert s["above_floors"] == all(s["accuracy"] - 2 * s["standard_error"] > f for f in floors)
        line = next(x for x in out.splitlines() if x.startswith(s["set"] + " "))
        assert f"{s['accuracy']:.1%} ± {s['standard_error']:.1%}" in line
    # One set alone: the same items and figures as in the suite, with the error and the floors.
    one = eval_mc(model=str(suite_run), data="tr-case", out=str(suite_run.parent / "case.json"))
    case = next(s for s in r["sets"] if s["set"] == "tr-case")
    assert one["data_hash"] == case["hash"] and one["accuracy"] == pytest.approx(case["accuracy"])
    assert one["standard_error"] == pytest.approx(case["standard_error"]) and one["unigram"] == case["unigram"]


def test_report_card_shows_the_suite_with_its_floors(suite, suite_run):
    from fidan.reporting.report import report

    if not (suite_run / "eval" / "mc-tr-suite.json").exists():
        eval_mc(model=str(suite_run), data="tr-suite", baseline=True)
    r = json.loads((suite_run / "eval" / "mc-tr-suite.json").read_text(encoding="utf-8"))
    md = report(str(suite_run)).read_text(encoding="utf-8")
    assert "## Turkish evaluation suite" in md
    for s in r["sets"]:
        row = next(x for x in md.splitlines() if x.startswith(f"| {s['set']} |"))
        for figure in (f"{s['accuracy']:.1%} ± {s['standard_error']:.1%}", f"{s['chance']:.1%}",
                       f"{s['untrained']['accuracy']:.1%}", f"{s['unigram']['accuracy']:.1%}", s["hash"][7:19]):
            assert figure in row, (figure, row)
