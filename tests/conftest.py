"""Fixtures shared by the tests."""
import pytest

POEM = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;"""


@pytest.fixture
def poem(tmp_path):
    p = tmp_path / "poem.txt"
    p.write_text(POEM, encoding="utf-8")
    return str(p)
