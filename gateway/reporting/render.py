"""A report's publishable forms: its tables (for the page, CSV and XLSX), the CLI summary,
the server-drawn SVG charts, and the files ``gateway report`` writes.

Tables are built from a report *as JSON* (the full form, or the public one whose small cells
are ``"<5"``), so every form shows exactly the cells of the JSON it comes from. The XLSX
workbook is written here with the standard library (a minimal SpreadsheetML package: content
types, relationships, a workbook and one sheet per table, inline strings): no dependency
for four tables of text and numbers.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import msgspec

from gateway.console.officers_text import reason_words
from gateway.console.text import VERDICTS
from gateway.reporting.figures import COUNT_FIELDS
from gateway.reporting.report import Report, public_view, report_dict

__all__ = [
    "COUNT_WORDS",
    "Table",
    "charts",
    "csv_bytes",
    "summary_lines",
    "tables",
    "write_outputs",
    "xlsx_bytes",
]

Cell = str | int | float | None

#: The counts' names in the tables (Chinese: the report is for Chinese officials).
COUNT_WORDS: Mapping[str, str] = {
    "lookups_released": "共享查询（已提供数据）",
    "lookups_not_found": "查询无记录",
    "verifications": "电子证照核验",
    "manifests": "一次性告知清单",
    "materials_available": "清单材料：可在线获取",
    "materials_to_bring": "清单材料：仍需提交",
    "materials_not_granted": "清单材料：未获授权",
    "refusals": "拒绝",
    "materials_saved": "免提交材料",
    "applicants": "服务对象（去重）",
}
PROVIDER_WORDS = ("数据提供方", "共享资源", "已提供", "无记录", "源失败（502）", "源超时（504）",
                  "本期上传", "最近一次上传", "距今（天）")  # fmt: skip


@dataclass(frozen=True)
class Table:
    """One table of the report: a title, a header row and rows of cells."""

    key: str
    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[Cell]]


def _name(labels: Mapping[str, Any], kind: str, key: str) -> str:
    names = labels.get(kind, {}) if isinstance(labels, Mapping) else {}
    return str(names.get(key, key)) if key else "（未识别）"


def _verdict(code: str) -> str:
    return VERDICTS["zh"].get(code, code)


def _reason(code: str) -> str:
    words, shown = reason_words(code, "zh")
    return f"{words}（{shown}）" if shown else words or code


def _percent(row: Mapping[str, Any]) -> str:
    pct = row.get("percent")
    if pct is None:
        return "—"
    return f"{pct:+.1f}%"


def tables(doc: Mapping[str, Any]) -> list[Table]:
    """The report's tables, from its JSON (full or public form)."""
    labels = doc.get("labels", {})
    figures = doc["figures"]
    out = [
        Table(
            "summary",
            "一、总体情况",
            ("指标", "本期", "上期", "增减", "增减率"),
            [
                (COUNT_WORDS[c["name"]], c["now"], c["before"], c["delta"], _percent(c))
                for c in doc["change"]
            ],
        )
    ]

    def counts_table(key: str, title: str, kind: str, rows: list[Mapping[str, Any]]) -> Table:
        field = "department" if kind == "departments" else "item"
        body: list[list[Cell]] = []
        for row in rows:
            first: list[Cell] = [_name(labels, kind, row[field])]
            if kind == "items":
                first.insert(0, row[field])
            body.append(first + [row["counts"][c] for c in COUNT_FIELDS])
        total: list[Cell] = ["合计", ""] if kind == "items" else ["合计"]
        body.append(total + [figures["totals"][c] for c in COUNT_FIELDS])
        head = ("事项编码", "事项名称") if kind == "items" else ("部门",)
        return Table(key, title, (*head, *(COUNT_WORDS[c] for c in COUNT_FIELDS)), body)

    out.append(counts_table("departments", "二、各部门情况", "departments", figures["departments"]))
    out.append(counts_table("items", "三、各服务事项情况", "items", figures["items"]))

    def breakdown(key: str, title: str, field: str, words: Any) -> Table:
        groups = [
            ("部门", r["department"], "departments", r["counts"]) for r in figures["departments"]
        ]
        groups += [("事项", r["item"], "items", r["counts"]) for r in figures["items"]]
        groups.append(("合计", "", "", figures["totals"]))
        codes = sorted({code for *_, counts in groups for code in counts[field]})
        body: list[list[Cell]] = []
        for what, ident, kind, counts in groups:
            name = _name(labels, kind, ident) if kind else "全部"
            body.append([what, name, *(counts[field].get(code, 0) for code in codes)])
        return Table(key, title, ("类别", "名称", *(words(c) for c in codes)), body)

    out.append(breakdown("verdicts", "四、电子证照核验结论", "verdicts", _verdict))
    out.append(breakdown("refusals", "五、拒绝原因", "refusal_reasons", _reason))
    out.append(
        Table(
            "top_items",
            "六、免提交材料最多的服务事项",
            ("名次", "事项编码", "事项名称", "免提交材料"),
            [
                (i + 1, t["item"], _name(labels, "items", t["item"]), t["materials_saved"])
                for i, t in enumerate(figures["top_items"])
            ],
        )
    )
    out.append(
        Table(
            "providers",
            "七、数据提供方：使用、失败与上传时效",
            PROVIDER_WORDS,
            [
                (
                    _name(labels, "providers", p["provider"]),
                    _name(labels, "resources", p["resource"]),
                    p["released"],
                    p["not_found"],
                    p["failed"],
                    p["timed_out"],
                    p["uploads"],
                    (p["last_upload"] or "—")[:10],
                    "—" if p["upload_age_days"] is None else p["upload_age_days"],
                )
                for p in figures["providers"]
            ],
        )
    )
    return out


# --- CSV and XLSX ---------------------------------------------------------------------------


def _heading_rows(doc: Mapping[str, Any]) -> list[list[Cell]]:
    period, checkpoint = doc["period"], doc["checkpoint"]
    rows: list[list[Cell]] = [
        ["数据共享“免提交”工作情况通报"],
        ["期间", f"{period['start']} 至 {_last_day(period)}（北京时间）"],
        ["发布单位", doc.get("office", "")],
        ["审计日志检查点", f"前 {checkpoint['size']} 条", checkpoint["root"]],
    ]
    if doc.get("form") == "public":
        rows.append(["说明", f"小于 {doc['threshold']} 的数字显示为“<{doc['threshold']}”"])
    return rows


def _last_day(period: Mapping[str, Any]) -> str:
    import datetime as dt

    return (dt.date.fromisoformat(period["end"]) - dt.timedelta(days=1)).isoformat()


def csv_bytes(doc: Mapping[str, Any]) -> bytes:
    """Every table in one CSV (UTF-8 with a BOM, so Excel reads the Chinese), a blank line
    between tables."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(_heading_rows(doc))
    for table in tables(doc):
        writer.writerow([])
        writer.writerow([table.title])
        writer.writerow(table.header)
        writer.writerows(table.rows)
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"


def _column(n: int) -> str:
    name = ""
    n += 1
    while n:
        n, rest = divmod(n - 1, 26)
        name = chr(65 + rest) + name
    return name


def _sheet(rows: Sequence[Sequence[Cell]]) -> str:
    out = [f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{_NS}">'
           "<sheetData>"]  # fmt: skip
    for r, row in enumerate(rows, start=1):
        out.append(f'<row r="{r}">')
        for c, given in enumerate(row):
            ref = f"{_column(c)}{r}"
            value = "" if given is None else str(given) if isinstance(given, bool) else given
            if isinstance(value, (int, float)):
                out.append(f'<c r="{ref}"><v>{value}</v></c>')
            else:
                out.append(
                    f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">'
                    f"{escape(str(value))}</t></is></c>"
                )
        out.append("</row>")
    out.append("</sheetData></worksheet>")
    return "".join(out)


def xlsx_bytes(doc: Mapping[str, Any]) -> bytes:
    """The tables as an Excel workbook: a first sheet with the heading, one sheet per table."""
    sheets = [("通报", _heading_rows(doc))]
    for table in tables(doc):
        title = table.title.split("、", 1)[-1][:31]
        for bad in "[]:*?/\\":
            title = title.replace(bad, " ")
        sheets.append((title, [list(table.header), *map(list, table.rows)]))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{_CT}.worksheet+xml"/>'
            for i in range(1, len(sheets) + 1)
        )
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}.sheet.main+xml"/>'
            f"{overrides}</Types>",
        )
        z.writestr(
            "_rels/.rels",
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships '
            f'xmlns="{_PKG}"><Relationship Id="rId1" Type="{_REL}/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>',
        )
        z.writestr(
            "xl/workbook.xml",
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="{_NS}" '
            f'xmlns:r="{_REL}"><sheets>'
            + "".join(
                f'<sheet name="{escape(name, {chr(34): "&quot;"})}" sheetId="{i}" r:id="rId{i}"/>'
                for i, (name, _) in enumerate(sheets, start=1)
            )
            + "</sheets></workbook>",
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships '
            f'xmlns="{_PKG}">'
            + "".join(
                f'<Relationship Id="rId{i}" Type="{_REL}/worksheet" '
                f'Target="worksheets/sheet{i}.xml"/>'
                for i in range(1, len(sheets) + 1)
            )
            + "</Relationships>",
        )
        for i, (_, rows) in enumerate(sheets, start=1):
            z.writestr(f"xl/worksheets/sheet{i}.xml", _sheet(rows))
    return buffer.getvalue()


# --- the command's summary and files ----------------------------------------------------------


def summary_lines(report: Report) -> Iterator[str]:
    """What ``gateway report quarter`` prints: the period, the checkpoint, the figures."""
    doc = report_dict(report)
    period, checkpoint = doc["period"], doc["checkpoint"]
    yield f"数据共享“免提交”工作情况通报  {period['label']}"
    yield f"期间: {period['start']} 至 {_last_day(period)}（北京时间）  发布单位: {doc['office']}"
    yield (
        f"计算依据: 已签名检查点 size {checkpoint['size']} root {checkpoint['root']}"
        f" (signed {checkpoint['signed_at']})"
    )
    for table in tables(doc):
        yield ""
        yield table.title
        yield "  " + " | ".join(table.header)
        for row in table.rows:
            yield "  " + " | ".join("" if c is None else str(c) for c in row)


def write_outputs(
    report: Report,
    *,
    threshold: int,
    json_path: Path | None = None,
    public_path: Path | None = None,
    csv_path: Path | None = None,
    xlsx_path: Path | None = None,
) -> list[Path]:
    """Write the forms asked for; the paths written. CSV and XLSX hold the public tables."""
    written = []
    public = public_view(report, threshold=threshold)
    if json_path is not None:
        json_path.write_bytes(msgspec.json.format(msgspec.json.encode(report_dict(report))))
        written.append(json_path)
    if public_path is not None:
        public_path.write_bytes(msgspec.json.format(msgspec.json.encode(public)))
        written.append(public_path)
    if csv_path is not None:
        csv_path.write_bytes(csv_bytes(public))
        written.append(csv_path)
    if xlsx_path is not None:
        xlsx_path.write_bytes(xlsx_bytes(public))
        written.append(xlsx_path)
    return written


# --- charts ---------------------------------------------------------------------------------

_COLOURS = ("#0b4f8a", "#1e8449", "#c0392b", "#b9770e")
_W, _LEFT, _BAR, _GAP = 720, 170, 12, 10


def _number(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _bars(
    title: str, groups: Sequence[tuple[str, Sequence[tuple[str, Any]]]], series: Sequence[str]
) -> dict[str, Any]:
    """Horizontal grouped bars: one group per label, one bar per series (its value as text
    beside it; a suppressed value is drawn as zero and written as it is published)."""
    maximum = max((_number(v) for _, values in groups for _, v in values), default=0) or 1
    scale = (_W - _LEFT - 60) / maximum
    bars, labels = [], []
    y = 24
    for label, values in groups:
        labels.append({"x": 4, "y": y + _BAR * len(values) / 2 + 4, "text": label[:13]})
        for i, (name, value) in enumerate(values):
            width = round(_number(value) * scale, 1)
            bars.append({
                "x": _LEFT, "y": y, "w": max(width, 0.5), "h": _BAR - 2,
                "fill": _COLOURS[i % len(_COLOURS)], "title": f"{label} {name}: {value}",
                "text": str(value), "tx": round(_LEFT + width + 4, 1), "ty": y + _BAR - 3,
            })  # fmt: skip
            y += _BAR
        y += _GAP
    legend = [
        {"x": _LEFT + i * 150, "y": 4, "fill": _COLOURS[i % len(_COLOURS)], "text": name}
        for i, name in enumerate(series)
    ]
    return {"title": title, "width": _W, "height": y + 10, "bars": bars, "labels": labels,
            "legend": legend, "maximum": maximum, "left": _LEFT}  # fmt: skip


def charts(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report's charts, drawn on the server: materials saved and lookups released per
    department; this period against the one before."""
    labels = doc.get("labels", {})
    departments = [
        (
            _name(labels, "departments", r["department"]),
            [
                ("免提交材料", r["counts"]["materials_saved"]),
                ("共享查询", r["counts"]["lookups_released"]),
            ],
        )
        for r in doc["figures"]["departments"]
    ]
    change = [
        (COUNT_WORDS[c["name"]], [("本期", c["now"]), ("上期", c["before"])]) for c in doc["change"]
    ]
    return [
        _bars("图1  各部门免提交材料与共享查询", departments, ("免提交材料", "共享查询")),
        _bars("图2  本期与上期对比", change, ("本期", "上期")),
    ]
