"""Smart fields (SPEC §12): only the listed fields, the default filter, HTML-escaped values,
fallbacks, never ``None``, bounded output; everything else refused at save, naming it."""

from __future__ import annotations

import pytest

from bccd.compose.fields import FIELD_NAMES, MAX_OUTPUT, check, render
from bccd.compose.recipients import envelope, parse
from bccd.errors import Invalid


def test_every_listed_field_renders_its_value() -> None:
    values = {"person": {"name": "Dana Client", "first_name": "Dana", "email": "dana@x.test"},
              "organization": {"name": "Client Co"}, "deal": {"title": "Big", "value": "12 EUR"},
              "lead": {"title": "Warm"}, "project": {"title": "Roll-out"},
              "user": {"name": "Alice", "email": "alice@acme.test"}}
    source = " ".join(f"{{{{{f}}}}}" for f in FIELD_NAMES)
    check(source, "html")
    assert render(source, values, html=True) == ("Dana Client Dana dana@x.test Client Co Big "
                                                 "12 EUR Warm Roll-out Alice alice@acme.test")


def test_values_and_fallbacks_are_html_escaped_in_html_not_in_the_subject() -> None:
    tpl = '{{person.name}} {{deal.title | default("<none>")}}'
    check(tpl, "html")
    assert render(tpl, {"person": {"name": "<b>Bob</b> & Co"}}, html=True) == \
        "&lt;b&gt;Bob&lt;/b&gt; &amp; Co &lt;none&gt;"
    assert render(tpl, {"person": {"name": "A & B"}}, html=False) == "A & B <none>"


def test_an_empty_field_renders_its_fallback_or_nothing_never_none() -> None:
    tpl = 'Hi {{person.first_name | default("there")}}{{organization.name}}!'
    assert render(tpl, {}, html=True) == "Hi there!"
    assert render(tpl, {"person": {"first_name": ""}}, html=True) == "Hi there!"
    assert "None" not in render("{{deal.value}}{{person.email}}", {"deal": {"value": None}},  # type: ignore[dict-item]
                                html=True)


@pytest.mark.parametrize(("source", "words"), [
    ("{{person.age}}", "unknown field {{person.age}}"),
    ("{{ customer.name }}", "unknown field {{customer.name}}"),
    ("{{person}}", "unknown field {{person}}"),
    ("{{ person.name.__class__.__mro__ }}", "unknown field"),
    ("{{ person.name | upper }}", "only the default filter"),
    ("{{ person.name | default(person.email) }}", "default takes one quoted text"),
    ("{{ 7 * 7 }}", "may hold only a smart field"),
    ("{{ lipsum() }}", "may hold only a smart field"),
    ("{% for i in range(10) %}x{% endfor %}", "not {% … %} statements"),
    ("{% set x = 1 %}", "not {% … %} statements"),
    ("{{ person.name", "line 1:"),
])
def test_anything_but_fields_is_refused_at_save_naming_it(source: str, words: str) -> None:
    with pytest.raises(Invalid) as exc:
        check(source, "html")
    assert str(exc.value).startswith("html: ") and words in str(exc.value)


def test_output_is_bounded() -> None:
    tpl = "{{person.name}}" * 50_000
    check(tpl, "html")
    with pytest.raises(Invalid, match="renders to more than"):
        render(tpl, {"person": {"name": "x" * 255}}, html=True)
    assert MAX_OUTPUT == 1024 * 1024


def test_recipients_are_parsed_strictly_and_named_by_field_and_position() -> None:
    got = parse(["Dana <Dana@Client.TEST>, bob@x.test", '"Smith, Ann" <ann@x.test>'], "to")
    assert [(r.email, r.address, r.name) for r in got] == [
        ("dana@client.test", "Dana@client.test", "Dana"), ("bob@x.test", "bob@x.test", ""),
        ("ann@x.test", "ann@x.test", "Smith, Ann")]
    for bad, where in [("bob@", "to[0]"), ("a@b.test c@d.test", "to[0]"), ("<a@b.test", "to[0]"),
                       ("a@@b.test", "to[0]"), ("a@b.test\r\nBcc: x@y.test", "to[0]")]:
        with pytest.raises(Invalid, match=rf"^{where.replace('[', '.').replace(']', '.')}"):
            parse([bad], "to")
    assert [r.email for r in envelope(got, parse(["DANA@client.test"], "cc"))] == \
        ["dana@client.test", "bob@x.test", "ann@x.test"]
    with pytest.raises(Invalid, match="at most 100"):
        parse([f"u{i}@x.test" for i in range(101)], "bcc")
