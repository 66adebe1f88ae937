"""``data=wiki``: the English Wikipedia excerpt shipped inside gensim, cleaned and split into sentences.

gensim's wiki utilities parse the MediaWiki dump; the markup they leave is removed here, and
pysbd splits each paragraph into sentences. Sentences that do not look like clean prose are
skipped and counted.
"""

from __future__ import annotations

import bz2
import html
import os
import re
from collections.abc import Iterator

from bertstory.data.packaged import gensim_datapath
from bertstory.data.segments import take_usable
from bertstory.errors import BertstoryError

WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"

# Sections whose content is references and link lists, not prose.
_WIKI_STOP_SECTIONS = {
    "references", "notes", "footnotes", "citations", "sources", "bibliography", "further reading",
    "external links", "see also", "notes and references", "references and notes", "works cited",
    "selected works", "works", "publications", "discography", "filmography", "gallery",
}
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*=+\s*$")
# Lines that are not paragraphs: list items, definitions, indented text, table rows and markup.
_NON_PROSE_LINE = re.compile(r"^\s*(?:[*#:;|!{}]|=|\[\[|__)")
_LEFTOVER_MARKUP = [
    (re.compile(r"'{2,}"), ""),  # bold / italic quotes
    (re.compile(r"\{\{[^{}]*\}\}"), ""),  # a template that survived
    (re.compile(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]"), r"\1"),  # a link that survived
    (re.compile(r"\{\{|\}\}|\[\[|\]\]"), ""),  # unbalanced template / link brackets
    (re.compile(r"</?\w+[^>]*>"), ""),  # leftover html tags
    (re.compile(r"__[A-Z]+__"), ""),  # magic words (__NOTOC__)
]
_PARENS = re.compile(r"\(([^()]*)\)")
_SENTENCE_GAP = re.compile(r"([.!?][\"'\u201d\u2019)]*)\s{2,}")
_TERMINAL = re.compile(r"[.!?][\"'\u201d\u2019)]*$")
_MARKUP_CHARS = re.compile(r"[=|{}\[\]<>]|''|&\w+;|thumb|https?:|www\.")
# Traces of a removed template in the middle of a sentence ("from the Greek , i.e.", "some  south
# of"): the text around it is damaged, so such sentences are rejected rather than patched up.
_DAMAGE = re.compile(r"\S\s{2,}\S|\s[,;:)]|\s\.(?!\.\.)|\(\s|\s\)")

MIN_WORDS = 5
MIN_LETTER_SHARE = 0.75


def _repair_parens(match: re.Match) -> str:
    """``( ; , Akhilleus, )`` -> ``(Akhilleus)``; ``()`` -> removed (pronunciation templates)."""
    inner = match.group(1).strip(" \t,;:")
    return f"({inner})" if inner else "\0"


def _clean_paragraph(line: str) -> str:
    """Strip the markup that gensim's ``filter_wiki`` leaves in a paragraph."""
    text = html.unescape(line).replace("\t", " ").replace("\u00a0", " ").replace("\u200b", "")
    for pattern, repl in _LEFTOVER_MARKUP:
        text = pattern.sub(repl, text)
    text = _PARENS.sub(_repair_parens, text)
    text = re.sub(r" ?\0", "", text)  # an emptied pair of parentheses and the space before it
    text = _SENTENCE_GAP.sub(r"\1 ", text)
    return text.strip()


def is_prose(sentence: str) -> bool:
    """Whether a sentence looks like clean English prose.

    At least ``MIN_WORDS`` words, starts with an upper-case letter, a digit or an opening quote,
    ends with terminal punctuation, balanced parentheses, no markup characters, and at least
    ``MIN_LETTER_SHARE`` of its non-space characters are letters.
    """
    words = sentence.split()
    if len(words) < MIN_WORDS:
        return False
    first = sentence[0]
    if not (first.isupper() or first.isdigit() or first in "\"'\u201c\u2018("):
        return False
    if not _TERMINAL.search(sentence):
        return False
    if _MARKUP_CHARS.search(sentence):
        return False
    if sentence.count("(") != sentence.count(")") or sentence.count('"') % 2:
        return False
    if _DAMAGE.search(sentence):
        return False
    chars = [c for c in sentence if not c.isspace()]
    letters = sum(c.isalpha() for c in chars)
    return letters >= MIN_LETTER_SHARE * len(chars)


def _wiki_paragraphs(path: str) -> Iterator[str]:
    """Paragraphs of the article pages of a MediaWiki dump, markup removed, in page order."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    with bz2.BZ2File(path) as f:
        # namespace "0" = articles; others (Talk:, User:, Template:, ...) come back as "".
        for _title, raw, _pageid in extract_pages(f, filter_namespaces=("0",)):
            if not raw or raw.lstrip()[:9].upper() == "#REDIRECT":
                continue
            text = filter_wiki(raw)
            skip_section = False
            for line in text.split("\n"):
                line = line.strip()
                if not line:
                    continue
                heading = _HEADING.match(line)
                if heading:
                    skip_section = heading.group(2).strip().lower() in _WIKI_STOP_SECTIONS
                    continue
                if skip_section or _NON_PROSE_LINE.match(line) or "thumb|" in line:
                    continue
                yield _clean_paragraph(line)


def iter_wiki_candidates(path: str | None = None) -> Iterator[tuple[str, bool]]:
    """Every pysbd sentence of the wiki excerpt's article paragraphs, with whether it is prose.

    Lazy: parsing stops as soon as the consumer stops iterating.
    """
    import pysbd

    if path is None:
        path = gensim_datapath(WIKI_FILE)
    if not os.path.isfile(path):
        raise BertstoryError(f"wiki dump {path} not found: reinstall gensim (pip install -U gensim)")
    segmenter = pysbd.Segmenter(language="en", clean=False)
    for paragraph in _wiki_paragraphs(path):
        if not paragraph:
            continue
        for sentence in segmenter.segment(paragraph):
            sentence = sentence.strip()
            if sentence:
                yield sentence, is_prose(sentence)


def iter_wiki(path: str | None = None) -> Iterator[str]:
    """The clean sentences of the wiki excerpt, in article and sentence order (lazy)."""
    for sentence, ok in iter_wiki_candidates(path):
        if ok:
            yield sentence

def read_wiki(limit: int | None = None, path: str | None = None) -> tuple[list[str], int]:
    """The first ``limit`` clean wiki sentences (all when None) and how many were rejected.

    ``skipped`` counts the pysbd sentences that failed ``is_prose`` before the limit was reached
    (headings, list items, tables and reference sections are dropped earlier and not counted).
    """
    return take_usable((sentence if ok else None for sentence, ok in iter_wiki_candidates(path)), limit)

