"""The one URL redactor: no password, however it is spelled, survives it."""
from __future__ import annotations

from hypothesis import assume, example, given
from hypothesis import strategies as st

from schemas.redact import redact_url

HOST = "db.example:8123/pulse"
# Printable text with the characters that confuse URL parsers, and non-ASCII letters.
SECRET_TEXT = st.text(alphabet=st.one_of(st.sampled_from("/?#@:%&=;"), st.characters(codec="utf-8",
                      categories=("L", "N", "P", "S"))), min_size=1, max_size=30)


@given(user=SECRET_TEXT, password=SECRET_TEXT, scheme=st.sampled_from(["http://", "https://", "chdb://", ""]),
       query=st.sampled_from(["", "?database=pulse", "#frag"]))
def test_no_generated_password_appears_in_the_output(user: str, password: str, scheme: str, query: str) -> None:
    rest = HOST + query
    # A password equal to "8" is in the port, one equal to "@" or "*" in the mask's "***@": found in any output.
    assume(password not in scheme + rest + "***@" and user not in scheme + rest + "***@")
    url = f"{scheme}{user}:{password}@{rest}"
    for shown in (redact_url(url), redact_url(url, mask=None), redact_url(url, mask=None, keep_query=False)):
        assert password not in shown and user not in shown, shown


@given(password=SECRET_TEXT.filter(lambda text: not set(text) & set("&;#")))
@example(password="@0")  # found by Hypothesis: the `@` was taken for the end of user:password, and `0` shown
def test_a_password_in_the_query_string_is_masked(password: str) -> None:
    # A password that is part of the fixed text or of the mask ("*", "@") would be "found" in any output.
    assume(password not in "https://h/db?user=u&password=" and password not in "***@")
    assert password not in redact_url(f"https://h/db?user=u&password={password}")


def test_what_it_keeps() -> None:
    assert redact_url("http://u:p/q#r@h:8123/db") == "http://***@h:8123/db"
    assert redact_url("http://u:p@h:8123/db", mask=None) == "http://h:8123/db"
    assert redact_url("https://u:p@grafana.example/sub?orgId=1#x", mask=None, keep_query=False) == \
        "https://grafana.example/sub"
    # An `@` in a secret parameter's value: which side of it is the secret cannot be told, so neither is shown.
    assert redact_url("https://h/db?user=u&password=p@ss") == "https://***"
    assert redact_url("https://u:p&key=x@h/db") == "https://***"
    assert redact_url("chdb:///var/lib/pulse/clickhouse") == "chdb:///var/lib/pulse/clickhouse"
    assert redact_url("https://h/db?user=u&Password=pw&x=1") == "https://h/db?user=u&Password=***&x=1"
