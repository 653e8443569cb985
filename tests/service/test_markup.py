"""Kept spans of the LibreTranslate surface: markup and Weblate markers become placeholders
the model's masking handles, and come back verbatim."""

from __future__ import annotations

import pytest

from service.markup import TooManySpans, protect, restore
from service.placeholders import MAX_SENTINELS, mask, unmask


def test_html_tags_references_and_script_become_shared_tokens() -> None:
    html = ('<p class="x">Open <kbd>Ctrl</kbd>+<kbd>O</kbd> &amp; '
            "<script>var a = '<b>';</script><!-- note --></p>")
    kept = protect(html, html=True)
    assert kept.text == "{LT0}Open {LT1}Ctrl{LT2}+{LT1}O{LT2} {LT3} {LT4}{LT5}{LT6}"
    assert kept.spans == ('<p class="x">', "<kbd>", "</kbd>", "&amp;",
                          "<script>var a = '<b>';</script>", "<!-- note -->", "</p>")
    assert restore(kept.text, kept) == html
    # each token is one placeholder of the model's masking
    assert len(mask(kept.text).placeholders) == len(kept.spans)


def test_plain_text_keeps_only_weblate_markers() -> None:
    text = "Could not open [X15X]: <kbd>[X18X]</kbd> [X15X]"
    kept = protect(text, html=False)
    assert kept.text == "Could not open {LT0}: <kbd>{LT1}</kbd> {LT0}"
    assert restore("{LT1} konnte {LT0} nicht {LT0}", kept) == \
        "[X18X] konnte [X15X] nicht [X15X]"


def test_tokens_never_collide_with_the_texts_own_braces() -> None:
    text = "Keep {LT0} and {LTX1} as they are, <b>bold</b>"
    kept = protect(text, html=True)
    assert kept.prefix == "LTXX"
    assert restore(kept.text, kept) == text
    masked = mask(kept.text)  # the text's own {LT0} is a placeholder like any {name}
    assert restore(unmask(masked.text, masked.placeholders), kept) == text


def test_too_many_distinct_spans_are_refused_not_garbled() -> None:
    fits = "".join(f"<t{i}>" for i in range(MAX_SENTINELS))
    assert restore(protect(fits, html=True).text, protect(fits, html=True)) == fits
    with pytest.raises(TooManySpans, match=f"more than {MAX_SENTINELS} distinct"):
        protect(fits + "%s", html=True)  # one more placeholder of another kind


def test_plain_placeholders_alone_are_never_refused() -> None:
    text = " ".join(f"{{p{i}}}" for i in range(MAX_SENTINELS + 4))  # as POST /translate
    assert protect(text, html=False).text == text


def test_multi_line_and_upper_case_markup_is_one_span() -> None:
    html = "<SCRIPT>\nif (a < b) go();\n</Script> Open <!--\n a note\n--><B>it</b>"
    kept = protect(html, html=True)
    assert kept.spans == ("<SCRIPT>\nif (a < b) go();\n</Script>", "<!--\n a note\n-->",
                          "<B>", "</b>")
    assert restore(kept.text, kept) == html


def test_a_token_the_model_invented_stays_as_written() -> None:
    kept = protect("Open <b>it</b>", html=True)
    assert len(kept.spans) == 2
    assert restore("{LT1} {LT2} {LT0}", kept) == "</b> {LT2} <b>"
