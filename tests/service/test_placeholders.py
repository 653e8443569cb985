from hypothesis import given
from hypothesis import strategies as st

from service.placeholders import (
    MAX_SENTINELS,
    find_placeholders,
    keeps_placeholders,
    mask,
    mask_with,
    unmask,
)

PLACEHOLDERS = ["%s", "%1", "%d", "%.2f", "$(ARG1)", "{name}", "{}", "<b>", "</b>", "<br/>",
                "%PRODUCTNAME", "$file$", "\n", "\t", "&amp;", "#1"]
WORDS = ["Open", "file", "Datei", "ü", "50", "a", "—", "🙂", "שלום", " ", "(", ")", "<", ">", "%"]

text_with_placeholders = st.lists(st.sampled_from(PLACEHOLDERS + WORDS), max_size=30).map("".join)


@given(text_with_placeholders)
def test_mask_unmask_round_trip(text: str) -> None:
    masked = mask(text)
    assert unmask(masked.text, masked.placeholders) == text


@given(st.text(max_size=80).filter(lambda t: "<ph" not in t))
def test_round_trip_on_arbitrary_text(text: str) -> None:
    masked = mask(text)
    assert unmask(masked.text, masked.placeholders) == text


def test_identical_placeholders_share_a_sentinel_and_target_reuses_source_table() -> None:
    masked = mask("%1 of %1 in $(ARG1)")
    assert masked.text == "<ph0> of <ph0> in <ph1>"
    assert mask_with("$(ARG1): %1 von %1 %s", masked.placeholders) == "<ph1>: <ph0> von <ph0> %s"


def test_unknown_sentinel_is_dropped_and_overflow_stays_literal() -> None:
    assert unmask("<ph0> und <ph7>", ("%s",)) == "%s und "
    assert unmask("<ph1> <ph0> <ph2>", ("%s", "%d")) == "%d %s "  # one past the table too
    many = " ".join(f"%{i}" for i in range(MAX_SENTINELS + 2))
    masked = mask(many)
    assert len(masked.placeholders) == MAX_SENTINELS
    assert masked.text.endswith(f"%{MAX_SENTINELS} %{MAX_SENTINELS + 1}")


def test_find_placeholders_ignores_plain_angle_text_and_percentages() -> None:
    assert find_placeholders("<All> <Kein Modul> 50% of a < b") == []
    assert find_placeholders('<a href="x">link</a> %PRODUCTNAME %s') == [
        '<a href="x">', "</a>", "%PRODUCTNAME", "%s"]


def test_keeps_placeholders_counts_multiplicity() -> None:
    assert keeps_placeholders("%1 and %1", "%1 und %1")
    assert not keeps_placeholders("%1 and %1", "%1 und")
    assert keeps_placeholders("no placeholder", "kein Platzhalter")
