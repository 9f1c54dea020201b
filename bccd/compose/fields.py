"""Smart fields in templates (SPEC §12): ``{{person.first_name | default("there")}}``.

A template may hold text and these fields only — ``{{person.name}}``,
``{{person.first_name}}``, ``{{person.email}}``, ``{{organization.name}}``,
``{{deal.title}}``, ``{{deal.value}}``, ``{{lead.title}}``, ``{{project.title}}``,
``{{user.name}}``, ``{{user.email}}`` — each optionally with ``| default("fallback")``.

- ``check(source, where)`` reads the template with Jinja2's parser and refuses (``Invalid``
  naming ``where`` and the field) anything else: an unknown field, another filter, a
  statement (``{% … %}``), a call, an expression. So a saved template can do nothing but
  put these values in, and its output is bounded by its own size and the values'.
- ``render(source, values, html=…)`` renders in Jinja2's ``SandboxedEnvironment`` (the
  second wall) with autoescape on for HTML (values and fallbacks are HTML-escaped), off
  for the subject; a field without a value renders its fallback, or nothing — never
  ``None``; output over ``MAX_OUTPUT`` characters is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from bccd.errors import Invalid

FIELDS: dict[str, tuple[str, ...]] = {
    "person": ("name", "first_name", "email"),
    "organization": ("name",),
    "deal": ("title", "value"),
    "lead": ("title",),
    "project": ("title",),
    "user": ("name", "email"),
}
FIELD_NAMES = tuple(f"{obj}.{attr}" for obj, attrs in FIELDS.items() for attr in attrs)
MAX_OUTPUT = 1024 * 1024
Values = Mapping[str, Mapping[str, str]]


def _fallback(value: Any, fallback: str = "") -> str:
    """``default``: the fallback when the field has no value (empty, not only undefined)."""
    return fallback if value in (None, "") else str(value)


def _env(html: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=html, keep_trailing_newline=True)
    env.filters = {"default": _fallback, "d": _fallback}
    env.globals = {}
    env.tests = {}
    return env


_HTML = _env(True)
_PLAIN = _env(False)


def _field_of(node: nodes.Node) -> str | None:
    if (isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name)
            and node.node.ctx == "load"):
        return f"{node.node.name}.{node.attr}"
    return None


def _describe(node: nodes.Node) -> str:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{_describe(node.node)}.{node.attr}"
    return "…"


def _check_expr(node: nodes.Node, where: str) -> None:
    if isinstance(node, nodes.Filter):
        if node.name not in ("default", "d") or node.node is None:
            raise Invalid(f"{where}: only the default filter may be used, not {node.name!r}")
        if node.kwargs or node.dyn_args or node.dyn_kwargs or len(node.args) > 1 or not all(
                isinstance(a, nodes.Const) and isinstance(a.value, str) for a in node.args):
            raise Invalid(f"{where}: default takes one quoted text, "
                          'e.g. {{person.first_name | default("there")}}')
        _check_expr(node.node, where)
        return
    name = _field_of(node)
    if name is None and not isinstance(node, nodes.Name | nodes.Getattr):
        raise Invalid(f"{where}: {{{{ }}}} may hold only a smart field; the fields are "
                      + ", ".join(FIELD_NAMES))
    if name is None:
        raise Invalid(f"{where}: unknown field {{{{{_describe(node)}}}}}; the fields are "
                      + ", ".join(FIELD_NAMES))
    if name not in FIELD_NAMES:
        raise Invalid(f"{where}: unknown field {{{{{name}}}}}; the fields are "
                      + ", ".join(FIELD_NAMES))


def check(source: str, where: str) -> None:
    """Refuse a template that is not text and smart fields (module docstring)."""
    try:
        tree = _HTML.parse(source)
    except TemplateSyntaxError as exc:
        raise Invalid(f"{where}: line {exc.lineno}: {exc.message}") from None
    for stmt in tree.body:
        if not isinstance(stmt, nodes.Output):
            raise Invalid(f"{where}: only text and smart fields like {{{{person.name}}}} are "
                          "allowed, not {% … %} statements")
        for child in stmt.nodes:
            if isinstance(child, nodes.TemplateData):
                continue
            _check_expr(child, where)


def render(source: str, values: Values, *, html: bool) -> str:
    """Render a checked template (``check``) with ``values`` ({"person": {"name": …}})."""
    env = _HTML if html else _PLAIN
    context = {obj: {attr: str((values.get(obj) or {}).get(attr) or "") for attr in attrs}
               for obj, attrs in FIELDS.items()}
    out: list[str] = []
    size = 0
    for chunk in env.from_string(source).generate(context):
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise Invalid(f"the template renders to more than {MAX_OUTPUT} characters")
        out.append(chunk)
    return "".join(out)
