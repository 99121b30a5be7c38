"""The language filter of `fidan data prepare` on Turkish and on Azerbaijani, Turkmen, German and English:
which paragraphs it keeps at a confidence threshold, per language.

    pip download --no-deps django==5.2.19 -d /tmp/wheels
    python benchmarks/language_id.py --po-wheel /tmp/wheels/django-5.2.19-py3-none-any.whl
    python benchmarks/language_id.py --po-wheel ... --detector py3langid    # needs: pip install py3langid

Turkish comes from the bundled corpora: speech paragraphs (100 characters or more), treebank sentences
grouped four at a time into paragraphs, and the single treebank sentences as `data prepare` sees them.
The other languages come from the only real offline text found for Azerbaijani and Turkmen: the
translations Django ships (`django/**/locale/{az,tk,de,tr}/LC_MESSAGES/django.po`, read from the wheel
without installing it; English is the `msgid` side). They are interface messages ("Enter a valid email
address."), written by human translators, with placeholders and markup removed, grouped into paragraphs
of about 300 characters; the Turkish translations are a check that such text is not dropped for its style.
"""

from __future__ import annotations

import argparse
import ast
import re
import time
import zipfile
from collections import Counter

from fidan.corpus.language import identify, other_turkic, sample
from fidan.text.bundled import speeches, treebank_sentences
from fidan.text.turkish import normalize_text

_PLACEHOLDER = re.compile(r"%\([^)]*\)[sdrf]|%[sdrf]|\{[^}]*\}|<[^>]+>|&[a-z]+;")
_LETTER = re.compile(r"[^\W\d_]")


def po_messages(po: str) -> list[tuple[str, str]]:
    """(msgid, msgstr) pairs of a .po file, plural forms as their first form, the header skipped."""
    pairs, key, parts, current = [], None, {}, None
    for line in po.splitlines() + [""]:
        line = line.strip()
        m = re.match(r'^(msgid|msgstr)(?:\[0\])?\s+(".*")$', line)
        if m:
            key = m.group(1)
            parts[key] = ast.literal_eval(m.group(2))
            current = key
        elif line.startswith('"') and current:
            parts[current] += ast.literal_eval(line)
        elif line.startswith(("msgid_plural", "msgstr[")):
            current = None
        elif not line:
            if parts.get("msgid") and parts.get("msgstr"):
                pairs.append((parts["msgid"], parts["msgstr"]))
            parts, current, key = {}, None, None
    return pairs


def clean(message: str) -> str:
    text = " ".join(_PLACEHOLDER.sub(" ", message).split())
    return text if len(text) >= 15 and len(_LETTER.findall(text)) >= 10 else ""


def paragraphs(messages: list[str], size: int = 300) -> list[str]:
    out, current = [], ""
    for m in dict.fromkeys(filter(None, map(clean, messages))):
        current = f"{current} {m}".strip()
        if len(current) >= size:
            out.append(current)
            current = ""
    return out


def django_text(wheel: str) -> dict[str, list[str]]:
    """Paragraphs per language (az, tk, de, en, tr-ui) from a Django wheel's message catalogues."""
    by_lang: dict[str, list[str]] = {"az": [], "tk": [], "de": [], "en": [], "tr-ui": []}
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            m = re.search(r"/locale/(az|tk|de|tr)/LC_MESSAGES/django\.po$", name)
            if not m:
                continue
            pairs = po_messages(z.read(name).decode("utf-8"))
            lang = "tr-ui" if m.group(1) == "tr" else m.group(1)
            by_lang[lang] += [s for _, s in pairs]
            if lang == "de":
                by_lang["en"] += [i for i, _ in pairs]
    out = {k: paragraphs(v) for k, v in by_lang.items()}
    for k in ("az", "tk", "de", "en"):  # single messages, short like the treebank's sentences
        out[f"{k}-1"] = [m for m in dict.fromkeys(filter(None, map(clean, by_lang[k]))) if len(m) >= 20][:500]
    return out


def turkish_text() -> dict[str, list[str]]:
    speech = [p for d in speeches() for p in normalize_text(d["text"]).split("\n") if len(p.strip()) >= 100]
    sentences = [normalize_text(d["text"]) for d in treebank_sentences()]
    sentences = [s for s in sentences if len(s) >= 20]
    grouped = [" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4)]
    return {"tr-speech": speech, "tr-treebank-4": grouped, "tr-treebank-1": sentences}


def py3langid_judge():
    """The same judgement with py3langid (pip install py3langid), restricted to the same languages, with the
    same Azerbaijani/Turkmen letter check, for comparison."""
    from py3langid.langid import _load_identifier

    from fidan.corpus.language import LANGUAGES

    ident = _load_identifier(norm_probs=True)
    codes = {"TURKISH": "tr", "AZERBAIJANI": "az", "KAZAKH": "kk", "ENGLISH": "en", "GERMAN": "de", "FRENCH": "fr",
             "SPANISH": "es", "ITALIAN": "it", "DUTCH": "nl", "PORTUGUESE": "pt", "RUSSIAN": "ru", "UKRAINIAN": "uk",
             "BULGARIAN": "bg", "GREEK": "el", "ARABIC": "ar", "PERSIAN": "fa", "ALBANIAN": "sq", "BOSNIAN": "bs",
             "ROMANIAN": "ro", "HUNGARIAN": "hu", "INDONESIAN": "id", "POLISH": "pl"}
    ident.set_languages([codes[name] for name in LANGUAGES])

    def judge(text: str) -> tuple[str, float]:
        text = sample(text, 1000)
        dist = dict(ident.rank(text))
        top = max(dist, key=dist.get)
        if top == "tr" and other_turkic(text):
            return other_turkic(text), 0.0
        return top, float(dist.get("tr", 0.0))

    return judge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--po-wheel", required=True, help="a Django wheel (pip download --no-deps django)")
    ap.add_argument("--min-confidence", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--show", type=int, default=5, help="wrongly judged paragraphs to print per language")
    ap.add_argument("--detector", choices=("lingua", "py3langid"), default="lingua",
                    help="lingua: fidan's filter; py3langid: the same rule with py3langid, for comparison")
    args = ap.parse_args()
    judge = identify if args.detector == "lingua" else py3langid_judge()
    sets = {**turkish_text(), **django_text(args.po_wheel)}
    t0 = time.time()
    judged = {k: [(judge(p), p) for p in v] for k, v in sets.items()}
    seconds = time.time() - t0
    n = sum(map(len, sets.values()))
    chars = sum(len(p) for v in sets.values() for p in v)
    print(f"{n} paragraphs, {chars:,} characters judged in {seconds:.1f} s ({1000 * seconds / n:.2f} ms each)")
    header = "| set | paragraphs | most likely language (top 4) | " + " | ".join(
        f"kept at {t}" for t in args.min_confidence) + " |"
    print(header + "\n|" + "---|" * (3 + len(args.min_confidence)))
    for name, rows in judged.items():
        top = Counter(code for (code, _), _ in rows).most_common(4)
        kept = [sum(conf >= t for (_, conf), _ in rows) for t in args.min_confidence]
        print(f"| {name} | {len(rows)} | {', '.join(f'{c} {k}' for c, k in top)} | "
              + " | ".join(f"{k} ({100 * k / max(1, len(rows)):.1f}%)" for k in kept) + " |")
    for name, rows in judged.items():
        if not name.startswith("tr"):
            print(f"{name}: highest Turkish confidence {max(conf for (_, conf), _ in rows):.3f}")
    t = args.min_confidence[len(args.min_confidence) // 2]
    print(f"\nwrongly judged at {t}:")
    for name, rows in judged.items():
        turkish = name.startswith("tr")
        wrong = [(c, conf, p) for (c, conf), p in rows if (conf >= t) != turkish]
        for code, conf, p in sorted(wrong, key=lambda w: w[1], reverse=not turkish)[:args.show]:
            print(f"  {name}: {code} tr={conf:.3f} {p[:150]!r}")


if __name__ == "__main__":
    main()
