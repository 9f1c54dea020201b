"""The filing path's reads run on the cursor (``store.direct``), never through the slower
``Connection.execute`` fallback: a constant ``IN`` list written as a plain list would
make every form an expanding parameter, silently costing each copy the slow path."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from bccd.ingest import filing
from bccd.store import direct


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()],
                         ids=["sqlite", "postgresql"])
def test_every_form_of_the_filing_read_compiles_for_the_cursor(dialect: Dialect) -> None:
    forms = [*filing._CONTEXT.values()]
    for n in filing._REF_FORMS:
        for fixed in (filing._CONTEXT_PERSONS[n], filing._CONTEXT_PERSONS_LOCKED[n]):
            stmt, _ = fixed(["dana@client.test"])
            forms.append(stmt)
    for stmt in forms:
        compiled = stmt.compile(dialect=dialect)
        given = tuple(name for name, bp in compiled.binds.items() if bp.required)
        form = direct._form(stmt, dialect, given, many=False)
        assert form.sql != direct._SQLALCHEMY, stmt
