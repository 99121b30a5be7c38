"""Quality filters of `fidan data prepare`: each rule on small Turkish examples, the reference index of the
bundled speeches, manifest counts, switches, bad settings, and `fidan data inspect`."""

from __future__ import annotations

import json

import pytest

from fidan.artifacts.datadir import iter_split
from fidan.cli import main
from fidan.corpus.prepare import prepare_data
from fidan.corpus.quality import RULES, QualityFilter, resolve
from fidan.errors import BadInput

PROSE = ("Ankara'da kış bu yıl da çok soğuk geçti ve şehrin sokakları günlerce karla kaplı kaldı. "
         "Çocuklar okula gitmek için sabah erkenden yola çıktı, bir kısmı da evde kalıp kitap okudu. ")
LONG_PROSE = PROSE * 1 + ("Belediye yolları açmak için gece gündüz çalıştı; esnaf ise dükkânlarının önünü "
                          "kendi temizledi. Bahar geldiğinde herkes bu zor kışı gülümseyerek andı. ") * 1
INDEX = " ".join(f"{name} (C-II){i}, (C-I){i + 7}," for i, name in zip(range(10, 400, 7), ["Ankara", "Sivas"] * 30,
                                                                        strict=False))


def run(text: str, **settings) -> tuple[str | None, QualityFilter]:
    q = QualityFilter(resolve(settings=[f"{k}={v}" for k, v in settings.items()]))
    return q.apply(text, 20), q


def test_reference_index_is_cut_from_a_long_line_and_the_prose_kept():
    doc = LONG_PROSE + "Büyük Meclis; başarılar dilerim DİZİN " + INDEX
    kept, q = run(doc)
    assert kept is not None and "(C-II)" not in kept and "(C-I)" not in kept
    assert kept.startswith(LONG_PROSE.strip()[:100]) and "Bahar geldiğinde" in kept
    assert q.removed["numeric_lines"].lines == 1 and q.removed["numeric_lines"].documents == 0
    assert "(C-II)10" in q.samples["numeric_lines"][0]
    # A separate line of numbers goes too; a date line and prose with a few numbers stay.
    table = "27 Haziran 1919\n" + PROSE + "\n12 45 78 90 11 23 45 67\n1923 yılında 13 vilayette 250 okul açıldı ve 40 bin öğrenci okudu."
    kept, _ = run(table)
    assert "12 45 78" not in kept and "27 Haziran 1919" in kept and "250 okul" in kept


def test_lines_repeated_across_documents():
    banner = "Bu site çerezleri kullanır; devam ederek çerez politikamızı kabul etmiş olursunuz."
    docs = [f"{PROSE.strip()} Haber {i}: bugün {i} yeni park açıldı.\n{banner}" for i in range(6)]
    q = QualityFilter(resolve())
    for d in docs:
        q.count_lines(d)
    q.finish_counting()
    kept = [q.apply(d, 20) for d in docs]
    assert all(k is not None and banner not in k and "yeni park" in k for k in kept)
    assert q.removed["repeated_lines"].lines == 6
    # Below min_documents the line stays.
    q = QualityFilter(resolve(settings=["repeated_lines.min_documents=7"]))
    for d in docs:
        q.count_lines(d)
    q.finish_counting()
    assert banner in q.apply(docs[0], 20)


@pytest.mark.parametrize(("name", "bad"), [
    ("word_length", "a b c d e f g h i j k l m n o p r s t u v y z ç ğ ı ö ş ü ve bu da"),
    ("word_length", " ".join(["Çekoslovakyalılaştıramadıklarımızdan"] * 3 + ["mısınız", "acaba", "sahiden", "şimdi",
                                                                            "burada", "yoksa", "orada"])),
    ("symbols", " ".join(["#kampanya #indirim bu ve bir ..."] * 20)),
    ("ellipsis_lines", "Bir varmış bir yokmuş...\nEvvel zaman içinde...\nKalbur saman içinde...\nDeve tellal iken...\n"
                       "Pire berber iken."),
    ("repetition", "\n".join([PROSE.strip()] * 5)),
    ("repetition", (PROSE + " ".join(["ucuz uçak bileti ucuz uçak bileti"] * 20))),
    ("stop_words", " ".join(["Ankara İstanbul İzmir Bursa Antalya Konya Adana Gaziantep Mersin Kayseri"] * 11)),
    ("placeholder", "Lorem ipsum dolor sit amet, consectetur adipiscing elit ve bu da bir örnek metin."),
    ("code", "function selam() { return 'merhaba dünya'; } ve bu da bir örnek."),
])
def test_document_rules_drop_bad_text(name, bad):
    kept, q = run(bad)
    assert kept is None, name
    assert q.removed[name].documents == 1 and q.samples[name], {n: vars(r) for n, r in q.removed.items()}


@pytest.mark.parametrize("good", [
    PROSE.strip(),
    LONG_PROSE + "Yazın ise sıcaklar bastırdı ve göl kıyısı tatilcilerle doldu; köylüler hasadı bir ayda bitirdi.",
    "Sayın Milletvekilleri! Hepinizi sevgi ve saygı ile selamlarım…",
    "İsterseniz indirebiliyorsunuz.",
    "1923 yılında Cumhuriyet ilan edildi.",
    "Gerçi henüz son raporları okumadım...\nFakat sulh mutlaka olacaktır.\nÇünkü bütün dünya yoruldu.",
])
def test_real_prose_is_kept(good):
    kept, q = run(good)
    assert kept == good.strip(), {n: vars(r) for n, r in q.removed.items() if r.documents or r.lines}


def test_settings_change_a_rule_and_skipping_turns_it_off():
    text = "Ankara İstanbul İzmir Bursa Antalya Konya Adana Gaziantep Mersin Kayseri ve bu."
    assert run(text)[0] is not None  # under min_words: the stop-word rule does not apply
    assert run(text, **{"stop_words.min_words": 5, "stop_words.min_count": 3})[0] is None
    assert "stop_words" not in resolve(skip=["stop_words"])
    assert resolve(quality=False) == {}
    assert set(resolve()) == set(RULES)


def write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return str(path)


def corpus(tmp_path):
    """30 documents from one template (near-duplicates by construction: the tests pass near_dup=0) and three
    that the filters remove or cut."""
    docs = [f"{PROSE}Bugün {i}. gün, hava güzel." for i in range(30)]
    docs += ["Lorem ipsum dolor sit amet, bu bir deneme ve örnek metindir.",
             "fonksiyon { a = b; } ve bu bir kod satırıdır, içinde süslü parantez var.",
             LONG_PROSE + "DİZİN " + INDEX]
    return write_jsonl(tmp_path / "c.jsonl", docs), docs


def test_manifest_counts_add_up_and_samples_are_kept(tmp_path):
    src, docs = corpus(tmp_path)
    m = prepare_data(source=[src], out=str(tmp_path / "d"), val_fraction=0.2, near_dup=0)
    kept = [d for s in ("train", "val") for d in iter_split(tmp_path / "d", s)]
    assert not any("(C-II)" in d or "Lorem" in d or "{" in d for d in kept)
    assert any(d.startswith(LONG_PROSE.strip()[:80]) for d in kept)  # the prose before the index stays
    d = m["dropped"]
    assert m["documents_read"] == len(docs) == d["too_short"] + d["duplicates"] + d["low_quality"] + len(kept)
    filters = m["quality"]["filters"]
    assert set(filters) == set(RULES)
    assert d["low_quality"] == sum(f["removed"]["documents"] for f in filters.values()) == 2
    assert filters["placeholder"]["removed"]["documents"] == filters["code"]["removed"]["documents"] == 1
    assert filters["numeric_lines"]["removed"]["lines"] == 1
    assert filters["stop_words"]["settings"] == {"min_count": 2, "min_words": 100}
    samples = [json.loads(line) for line in (tmp_path / "d" / "removed.jsonl").read_text("utf-8").splitlines()]
    assert {s["filter"] for s in samples} == {"placeholder", "code", "numeric_lines"}
    off = prepare_data(source=[src], out=str(tmp_path / "e"), val_fraction=0.2, quality=False, near_dup=0)
    assert off["quality"] == {"enabled": False} and "low_quality" not in off["dropped"]
    assert not (tmp_path / "e" / "removed.jsonl").exists()
    assert any("(C-II)" in t for s in ("train", "val") for t in iter_split(tmp_path / "e", s))
    some = prepare_data(source=[src], out=str(tmp_path / "f"), val_fraction=0.2, skip_filter=["code"], near_dup=0)
    assert "code" not in some["quality"]["filters"] and some["dropped"]["low_quality"] == 1


def test_nothing_left_after_filtering_is_one_clear_error(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", ["Lorem ipsum dolor sit amet, bu bir deneme metnidir.",
                                             "Lorem ipsum ikinci kez, yine bir deneme metni."])
    with pytest.raises(BadInput, match="2 removed by quality filters: placeholder 2 documents.*--no-quality"):
        prepare_data(source=[src], out=str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--skip-filter", "spam"], "unknown filter 'spam' in --skip-filter; filters are numeric_lines"),
    (["--quality-set", "spam.x=1"], "unknown filter 'spam'"),
    (["--quality-set", "stop_words.max=1"], "filter 'stop_words' has no setting 'max'"),
    (["--quality-set", "numeric_lines.max_number_words=2"], "must be a number in [0, 1]"),
    (["--quality-set", "stop_words.min_count=1.5"], "must be a whole number"),
    (["--quality-set", "stop_words.min_count"], "NAME.SETTING=VALUE"),
    (["--quality-set", "word_length.min=abc"], "'abc' is not a number"),
    (["--quality-set", "word_length.min=20"], "word_length.min must not exceed word_length.max"),
])
def test_bad_filter_names_and_settings(tmp_path, capsys, args, needle):
    src, _ = corpus(tmp_path)
    code = main(["data", "prepare", "--source", src, "--out", str(tmp_path / "d"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("fidan: error:") and needle in err[0], err
    assert not (tmp_path / "d").exists()


def test_inspect_shows_counts_and_examples(tmp_path, capsys):
    src, _ = corpus(tmp_path)
    assert main(["data", "prepare", "--source", src, "--out", str(tmp_path / "d"), "--val-fraction", "0.2",
                 "--near-dup", "0"]) == 0
    capsys.readouterr()
    assert main(["data", "inspect", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "dropped: too_short 0, duplicates 0, low_quality 2" in out
    assert "placeholder [document] no settings: removed 1 documents" in out
    assert "numeric_lines [line] max_number_words=0.6, min_words=6: removed 0 documents, 1 lines" in out
    assert "  - Lorem ipsum dolor sit amet" in out and "(C-II)10" in out
    assert main(["data", "inspect", str(tmp_path / "d"), "--filter", "code", "--samples", "0"]) == 0
    out = capsys.readouterr().out
    assert "code [document]" in out and "placeholder" not in out and "  - " not in out
    assert main(["data", "inspect", str(tmp_path / "d"), "--filter", "spam"]) == 2
    assert "no quality filter 'spam'" in capsys.readouterr().err


def test_cutting_lines_keeps_at_most_one_blank_line_and_finds_new_duplicates(tmp_path):
    text = f"{PROSE.strip()}\n\n12 34 56 78 90 12 34\n\nBahar geldiğinde herkes bu zor kışı andı."
    kept, _ = run(text)
    assert kept == f"{PROSE.strip()}\n\nBahar geldiğinde herkes bu zor kışı andı."
    src = write_jsonl(tmp_path / "c.jsonl", [kept, text, PROSE + "Başka bir gün."])  # near-copies: near_dup=0
    m = prepare_data(source=[src], out=str(tmp_path / "d"), val_fraction=0, near_dup=0)
    assert m["dropped"]["duplicates"] == 1 and m["splits"]["train"]["documents"] == 2  # a copy once cut


def test_settings_from_a_config_file(tmp_path):
    src, _ = corpus(tmp_path)
    config = tmp_path / "q.yaml"
    config.write_text("skip_filter: [code]\nquality_set: ['placeholder.x=1']\n", encoding="utf-8")
    assert main(["data", "prepare", "--config", str(config), "--source", src, "--out", str(tmp_path / "d")]) == 2
    config.write_text("skip_filter: [code, placeholder]\nquality_set: ['numeric_lines.max_number_words=0.9']\n",
                      encoding="utf-8")
    assert main(["data", "prepare", "--config", str(config), "--source", src, "--out", str(tmp_path / "d"),
                 "--val-fraction", "0.2"]) == 0
    m = json.loads((tmp_path / "d" / "manifest.json").read_text("utf-8"))
    assert set(m["quality"]["filters"]) == set(RULES) - {"code", "placeholder"}
    assert m["quality"]["filters"]["numeric_lines"]["settings"]["max_number_words"] == 0.9
    assert m["quality"]["filters"]["numeric_lines"]["removed"]["lines"] == 0  # 0.67 here (word_length drops it)


def test_repeated_lines_end_to_end_reads_the_source_twice(tmp_path):
    banner = "Ana sayfa | Haberler | Spor | Ekonomi | Bize ulaşın | Çerez politikası"
    docs = [f"{banner}\n{PROSE}Bugün {i}. haber: şehirde {i} yeni kütüphane açıldı.\n— 42 —" for i in range(8)]
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    m = prepare_data(source=[src], out=str(tmp_path / "d"), val_fraction=0, near_dup=0)  # templated: near-copies
    kept = list(iter_split(tmp_path / "d", "train"))
    assert len(kept) == 8 and not any(banner in d or "42" in d for d in kept)
    assert all(d.startswith(PROSE.strip()[:40]) for d in kept)
    removed = m["quality"]["filters"]
    assert removed["repeated_lines"]["removed"] == {"documents": 0, "lines": 8, "characters": 8 * len(banner)}
    assert removed["numeric_lines"]["removed"]["lines"] == 8  # the "— 42 —" page-number lines
