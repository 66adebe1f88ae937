"""The wiki reader: clean prose sentences from gensim's Wikipedia excerpt."""

from __future__ import annotations

import re

import pytest

from bertstory.data import read_corpus
from bertstory.data.wiki import _clean_paragraph, is_prose, read_wiki
from tests.data.conftest import MARKUP


def test_wiki_sentences_are_clean(wiki250):
    texts, skipped = wiki250
    assert len(texts) == 250
    assert skipped > 0  # headings' leftovers, captions, damaged sentences were rejected
    for s in texts:
        assert not any(m in s for m in MARKUP), s
        assert len(s.split()) >= 5, s
        assert s == s.strip() and "  " not in s, s
        assert s[-1] in ".!?\"')\u201d", s
        assert not re.search(r"\(\s*[,;]?\s*\)", s), s  # no empty parentheses
        assert is_prose(s)
    assert texts[0].startswith("Anarchism is a political philosophy")
    assert len(set(texts)) > 240  # sentences, not one repeated line


def test_wiki_limit_and_determinism(wiki250):
    texts, _ = wiki250
    first, skipped = read_wiki(limit=40)
    assert first == texts[:40]
    assert 0 <= skipped <= wiki250[1]
    assert read_wiki(limit=40) == (first, skipped)


def test_wiki_pairs_and_limit():
    corpus = read_corpus("wiki", limit=10, pairs=True)
    texts, _ = read_wiki(limit=20)
    assert corpus.pairs and len(corpus.segments) == 10
    assert corpus.segments == list(zip(texts[0::2], texts[1::2], strict=True))


def test_clean_paragraph_strips_leftover_markup():
    line = "'''Alabama''' () is a {{tpl|x}} state [[Link|linked]] &amp; (; , Akhilleus, ) here."
    out = _clean_paragraph(line)
    assert out == "Alabama is a  state linked & (Akhilleus) here."
    assert not is_prose(out)  # the removed template left a double space: damaged, rejected


@pytest.mark.parametrize(
    "sentence, ok",
    [
        ("The first known use of this word was in 1539.", True),
        ('Zhuangzi wrote, "A petty thief is put in jail."', True),
        ("==History== The term was used a lot.", False),
        ("The term is derived from the Greek , i.e. anarchy.", False),
        ("Too short.", False),
        ("woodcut from a Diggers document by William Everard", False),
        ("| style=text-align:center | one two three four.", False),
        ("1999 2000 2001 2002 2003 2004 2005.", False),
    ],
)
def test_is_prose(sentence, ok):
    assert is_prose(sentence) is ok
