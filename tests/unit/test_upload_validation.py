"""Uploaded files row by row: options, CSV and JSON Lines checks, and the loader's duplicate
detection and version flips on a real SQLite file."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from gateway.core.identifiers import resident_id_check_character, uscc_check_character
from gateway.core.policy import Field, FieldType, Resource, SharingClass
from gateway.errors import ConfigurationError, InvalidInput
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from gateway.uploads import store
from gateway.uploads.claims import UploadFormat, parse_upload_claims
from gateway.uploads.options import UploadOptions
from gateway.uploads.validation import MAX_LINE_BYTES, Accepted, Rejected, read_rows


def person(n: int) -> str:
    born = dt.date(1950, 1, 1) + dt.timedelta(days=n // 1000)
    body = f"430602{born:%Y%m%d}{n % 1000:03d}"
    return body + resident_id_check_character(body)


def company(n: int) -> str:
    body = f"91430602MA{n:07d}"
    return body + uscc_check_character(body)


def resource(subject: str = "resident-id", **source: Any) -> Resource:
    return Resource(
        id="roster",
        name="roster",
        provider="hrss",
        sharing=SharingClass.UNCONDITIONAL,
        subject=subject,
        fields=(
            Field("name", FieldType.STRING),
            Field("months", FieldType.INTEGER, column="months_paid"),
            Field("amount", FieldType.NUMBER),
            Field("active", FieldType.BOOLEAN),
            Field("since", FieldType.DATE),
        ),
        source={"adapter": "upload", "key": "id_number", **source},
    )


OPTIONS = UploadOptions.from_resource(resource(required=["name"]))


def rows(text: str | bytes, fmt: UploadFormat = UploadFormat.CSV) -> list[Accepted | Rejected]:
    data = text.encode() if isinstance(text, str) else text
    return list(read_rows(io.BytesIO(data), fmt, OPTIONS))


def problems(item: Accepted | Rejected) -> dict[str, str]:
    assert isinstance(item, Rejected), item
    return {p.field: p.code for p in item.problems}


HEADER = "id_number,name,months_paid,amount,active,since\n"


# --- options --------------------------------------------------------------------------------


def test_options_have_defaults_and_are_checked() -> None:
    options = UploadOptions.from_resource(resource())
    assert (options.key, options.keep_versions, options.required) == ("id_number", 3, frozenset())
    assert [f.column for f in options.fields] == [
        "name",
        "months_paid",
        "amount",
        "active",
        "since",
    ]
    with pytest.raises(ConfigurationError) as err:
        UploadOptions.from_resource(
            resource(keep_version=2, keep_versions=0, required=["nme"], max_bytes=-1)
        )
    text = str(err.value)
    assert "unknown upload options keep_version" in text
    assert "keep_versions must be 1..100" in text
    assert "unknown fields ['nme']" in text
    assert "max_bytes" in text
    with pytest.raises(ConfigurationError, match="share a column"):
        UploadOptions.from_resource(resource(key="name"))


def test_upload_claims_are_typed() -> None:
    good = {"resource": "roster", "sha256": "a" * 64, "format": "jsonl", "operator": "o"}
    assert parse_upload_claims("hrss", good).format is UploadFormat.JSONL
    for bad, field in (
        ({**good, "sha256": "A" * 64}, "sha256"),
        ({**good, "format": "xlsx"}, "format"),
        ({**good, "rows": -1}, "rows"),
        ({k: v for k, v in good.items() if k != "operator"}, "operator"),
    ):
        with pytest.raises(InvalidInput) as err:
            parse_upload_claims("hrss", bad)
        assert err.value.field == field


# --- CSV ------------------------------------------------------------------------------------


def test_a_good_csv_file_gives_typed_values() -> None:
    text = (
        "\ufeff"  # a byte-order mark, as spreadsheet programs write it
        + HEADER
        + f"{person(1)},张三,12,1234.5,true,2020-02-29\n"
        + "\n"
        + f'{person(2)},"李四, ""小李""\nsecond line",,1e3,0,\n'
        + f"{person(3)},王五,-7,.5,TRUE,1999-12-31\n"
    )
    one, two, three = rows(text)
    assert isinstance(one, Accepted)
    assert (one.line, one.key) == (2, person(1))
    assert msgspec.json.decode(one.data) == {
        "name": "张三",
        "months": 12,
        "amount": 1234.5,
        "active": True,
        "since": "2020-02-29",
    }
    assert isinstance(two, Accepted)
    assert two.line == 4  # after the blank line 3
    assert msgspec.json.decode(two.data) == {
        "name": '李四, "小李"\nsecond line',
        "months": None,
        "amount": 1000.0,
        "active": False,
        "since": None,
    }
    assert isinstance(three, Accepted)
    assert three.line == 6  # the quoted cell took two lines


@pytest.mark.parametrize(
    ("cells", "field", "code"),
    [
        ("{id},x,twelve,1,true,2020-01-01", "months_paid", "type"),
        ("{id},x,1.0,1,true,2020-01-01", "months_paid", "type"),
        ("{id},x,1,1_000,true,2020-01-01", "amount", "type"),
        ("{id},x,1,nan,true,2020-01-01", "amount", "type"),
        ("{id},x,1,1e999,true,2020-01-01", "amount", "type"),
        ("{id},x,1,1,yes,2020-01-01", "active", "type"),
        ("{id},x,1,1,true,2021-02-29", "since", "type"),
        ("{id},x,1,1,true,2021/02/01", "since", "type"),
        ("{id},,1,1,true,2020-01-01", "name", "missing"),
        ("{id}," + "x" * 4097 + ",1,1,true,2020-01-01", "name", "too-long"),
        (",x,1,1,true,2020-01-01", "id_number", "missing"),
        ("{bad},x,1,1,true,2020-01-01", "id_number", "identifier"),
        ("43060219801301001X,x,1,1,true,2020-01-01", "id_number", "identifier"),
        ("{id},x,1,1,true", "", "malformed"),
    ],
)
def test_a_bad_csv_row_is_rejected_with_its_reason(cells: str, field: str, code: str) -> None:
    good = person(1)
    bad = good[:17] + ("0" if good[17] != "0" else "1")
    [item] = rows(HEADER + cells.format(id=good, bad=bad) + "\n")
    assert problems(item) == {field: code}
    assert isinstance(item, Rejected)
    assert item.line == 2


def test_every_bad_field_of_a_row_is_reported() -> None:
    [item] = rows(HEADER + f"{person(1)},,x,y,z,w\n")
    assert problems(item) == {
        "name": "missing",
        "months_paid": "type",
        "amount": "type",
        "active": "type",
        "since": "type",
    }
    assert isinstance(item, Rejected)
    assert {p.key for p in item.problems} == {person(1)}


def test_the_key_is_trimmed_and_upper_cased() -> None:
    n = next(n for n in range(1000) if person(n).endswith("X"))
    [item] = rows(HEADER + f" {person(n).lower()} ,x,,,,\n")
    assert isinstance(item, Accepted)
    assert item.key == person(n)


def test_uscc_keys() -> None:
    options = UploadOptions.from_resource(resource(subject="uscc"))
    good, bad = company(5), company(5)[:17] + "Z"
    text = HEADER + f"{good},a,,,,\n{bad},b,,,,\n"
    first, second = read_rows(io.BytesIO(text.encode()), UploadFormat.CSV, options)
    assert isinstance(first, Accepted)
    assert problems(second) == {"id_number": "identifier"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        ("name,months_paid\n", "must name the key column 'id_number'"),
        ("id_number,name,month_paid\n", "unknown columns 'month_paid'"),
        ("id_number,name,name\n", "repeats columns: name"),
        ("id_number,since\n", "required columns are missing: name"),
        (HEADER + 'x,"unclosed\n', "CSV error"),
        (HEADER + 'x,"a"b,1,1,1,2020-01-01\n', "CSV error"),
    ],
)
def test_a_bad_csv_file_is_refused_whole(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as err:
        rows(text)
    assert err.value.field == "body"
    assert reason in err.value.reason


def test_lines_are_bounded_and_must_be_utf8() -> None:
    long_line = HEADER + person(1) + ",x" + "y" * MAX_LINE_BYTES + ",,,,\n"
    with pytest.raises(InvalidInput, match="line 2 is longer than"):
        rows(long_line)
    with pytest.raises(InvalidInput, match="line 2 is not UTF-8"):
        rows(HEADER.encode() + person(1).encode() + ",\xd5\xc5\xc8\xfd,,,,\n".encode("latin-1"))


def test_columns_may_come_in_any_order_and_optional_ones_may_be_left_out() -> None:
    [item] = rows(f"since,name,id_number\n2020-01-01,x,{person(1)}\n")
    assert isinstance(item, Accepted)
    assert msgspec.json.decode(item.data)["since"] == "2020-01-01"
    assert msgspec.json.decode(item.data)["months"] is None


# --- JSON Lines -----------------------------------------------------------------------------


def jsonl(*records: Any) -> list[Accepted | Rejected]:
    lines = [r if isinstance(r, str) else msgspec.json.encode(r).decode() for r in records]
    return rows("\n".join(lines) + "\n", UploadFormat.JSONL)


def test_json_lines_use_json_types() -> None:
    record = {
        "id_number": person(1),
        "name": "张三",
        "months_paid": 3,
        "amount": 2,
        "active": False,
        "since": "2020-01-01",
    }
    first, blank_skipped = jsonl(record, "", {**record, "id_number": person(2), "since": None})
    assert isinstance(first, Accepted)
    assert msgspec.json.decode(first.data) == {
        "name": "张三",
        "months": 3,
        "amount": 2.0,
        "active": False,
        "since": "2020-01-01",
    }
    assert isinstance(blank_skipped, Accepted)
    assert blank_skipped.line == 3


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"months_paid": "3"}, "months_paid", "type"),
        ({"months_paid": 3.0}, "months_paid", "type"),
        ({"months_paid": True}, "months_paid", "type"),
        ({"months_paid": 2**64}, "months_paid", "type"),
        ({"amount": "2.5"}, "amount", "type"),
        ({"active": 1}, "active", "type"),
        ({"since": 20200101}, "since", "type"),
        ({"name": 5}, "name", "type"),
        ({"name": None}, "name", "missing"),
        ({"id_number": 430602}, "id_number", "type"),
        ({"id_number": None}, "id_number", "missing"),
        ({"nmae": "typo"}, "nmae", "unknown-field"),
    ],
)
def test_a_bad_json_line_is_rejected_with_its_reason(
    change: dict[str, Any], field: str, code: str
) -> None:
    [item] = jsonl({"id_number": person(1), "name": "x", **change})
    assert problems(item) == {field: code}


def test_a_line_that_is_not_an_object_is_malformed() -> None:
    items = jsonl("[1, 2]", "{not json", '"text"')
    assert [problems(i) for i in items] == [{"": "malformed"}] * 3
    assert [i.line for i in items] == [1, 2, 3]


# --- loading versions (a real SQLite file) --------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    e = create_database_engine(f"sqlite:///{tmp_path / 'g.sqlite3'}")
    migrations.upgrade(e)
    return e


NOW = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)


def load(engine: sa.Engine, text: str) -> tuple[int, store.VersionLoader]:
    version = store.begin_version(
        engine,
        resource="roster",
        fmt="csv",
        sha256="0" * 64,
        size=len(text),
        uploader="hrss",
        operator="o",
        at=NOW,
    )
    loader = store.VersionLoader(engine, resource="roster", version=version, key_column="id_number")
    for item in read_rows(io.BytesIO(text.encode()), UploadFormat.CSV, OPTIONS):
        loader.add(item)
    loader.finish()
    return version, loader


def current(engine: sa.Engine, subject: str) -> store.CurrentRow | None:
    with engine.connect() as conn:
        return store.read_current(conn, resource="roster", subject=subject)


def test_duplicates_across_chunks_reject_every_row_of_the_key(engine: sa.Engine) -> None:
    unique = 2 * store.CHUNK_ROWS + 10
    keys = [person(i) for i in range(unique)]
    keys.insert(6, person(5))  # again right away: the same chunk
    keys += [person(0)] * 3 + [person(1)]  # again much later: another chunk
    text = HEADER + "".join(f"{k},x,,,,\n" for k in keys)
    version, loader = load(engine, text)
    report = [
        p
        for page in store.iter_rejections(engine, resource="roster", version=version, page=7)
        for p in page
    ]
    assert all(p.code == "duplicate" and p.field == "id_number" for p in report)
    expected = sorted((i + 2, k) for i, k in enumerate(keys) if keys.count(k) > 1)
    assert [(p.line, p.key) for p in report] == expected
    assert len(expected) == 4 + 2 + 2
    assert (loader.accepted, loader.rejected) == (unique - 3, 8)
    flip = store.make_current(
        engine,
        resource="roster",
        version=version,
        accepted=loader.accepted,
        rejected=loader.rejected,
        at=NOW,
    )
    assert flip == store.Flip(None, True)
    for repeated in (0, 1, 5):
        assert current(engine, person(repeated)) is None
    row = current(engine, person(2))
    assert row is not None
    assert row.version == version
    assert row.uploaded_at == NOW


def test_an_older_version_finishing_late_does_not_replace_a_newer_one(engine: sa.Engine) -> None:
    older, _ = load(engine, HEADER + f"{person(1)},old,,,,\n")
    newer, _ = load(engine, HEADER + f"{person(1)},new,,,,\n")
    first = store.make_current(
        engine, resource="roster", version=newer, accepted=1, rejected=0, at=NOW
    )
    late = store.make_current(
        engine, resource="roster", version=older, accepted=1, rejected=0, at=NOW
    )
    assert first == store.Flip(None, True)
    assert late == store.Flip(newer, False)
    row = current(engine, person(1))
    assert row is not None
    assert msgspec.json.decode(row.data)["name"] == "new"
    info = store.version_info(engine, resource="roster", version=older)
    assert info is not None
    assert info.state is store.VersionState.REPLACED


def test_pruning_keeps_recent_loading_versions_and_drops_stale_ones(engine: sa.Engine) -> None:
    loading, _ = load(engine, HEADER + f"{person(9)},slow,,,,\n")  # never finished
    for name in ("a", "b", "c"):
        version, _ = load(engine, HEADER + f"{person(1)},{name},,,,\n")
        store.make_current(
            engine, resource="roster", version=version, accepted=1, rejected=0, at=NOW
        )
    assert store.prune_versions(engine, resource="roster", keep=1, now=NOW) == [2, 3]
    info = store.version_info(engine, resource="roster", version=loading)
    assert info is not None
    assert info.state is store.VersionState.LOADING
    later = NOW + dt.timedelta(days=2)
    assert store.prune_versions(engine, resource="roster", keep=1, now=later) == [loading]
    # The stale upload can no longer become current.
    with pytest.raises(store.VersionPruned):
        store.make_current(
            engine, resource="roster", version=loading, accepted=1, rejected=0, at=later
        )
    row = current(engine, person(1))
    assert row is not None
    assert msgspec.json.decode(row.data)["name"] == "c"
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT DISTINCT version FROM upload_rows")).scalars().all()
    assert left == [4]


def test_a_refused_version_keeps_its_report_only(engine: sa.Engine) -> None:
    version, loader = load(engine, HEADER + f"{person(1)},x,,,,\n{person(2)},,,,,\n")
    store.refuse_version(
        engine,
        resource="roster",
        version=version,
        detail="test",
        rejected=loader.rejected,
        at=NOW,
        keep_report=True,
    )
    assert current(engine, person(1)) is None
    [problem] = store.first_rejections(engine, resource="roster", version=version, limit=5)
    assert (problem.line, problem.field, problem.code) == (3, "name", "missing")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM upload_rows")).scalar_one() == 0
