import pytest

from regtool.errors import UsageError
from regtool.model.duration import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("45", 45)]
)
def test_parse_duration_accepts_the_documented_forms(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "2x", "h", "-1h"])
def test_parse_duration_refuses_anything_else(text):
    with pytest.raises(UsageError):
        parse_duration(text)


def test_weeks_are_a_unit():
    assert parse_duration("2w") == 14 * 86400.0
    assert parse_duration("1w1d") == 8 * 86400.0
