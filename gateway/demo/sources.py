"""Builds the providers' own source databases for the demo district (SQLite files).

Each provider department keeps its records in its own database, with its own column names;
the gateway reaches them only through the SQL adapter and the catalogue's mapping.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import sqlalchemy as sa

from gateway.demo.population import SEED, companies, people

__all__ = ["SOURCE_FILES", "build_demo_sources"]

SOURCE_FILES = ("market", "police", "tax", "hrss", "realestate", "civil")


def _create(path: Path, table: sa.Table, rows: list[dict[str, object]]) -> None:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.delete())
            if rows:
                conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


def build_demo_sources(directory: Path, *, force: bool = False) -> list[Path]:
    """Create the demo providers' databases in ``directory`` (skipping existing ones
    unless ``force``). Returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED + 2)
    persons, firms = people(), companies()
    written: list[Path] = []

    def wanted(name: str) -> Path | None:
        path = directory / f"{name}.sqlite3"
        if path.exists() and not force:
            return None
        path.unlink(missing_ok=True)
        written.append(path)
        return path

    if path := wanted("market"):
        md = sa.MetaData()
        t = sa.Table(
            "enterprises",
            md,
            sa.Column("uscc", sa.String(18), primary_key=True),
            sa.Column("ent_name", sa.String),
            sa.Column("legal_representative", sa.String),
            sa.Column("registered_capital", sa.Float),
            sa.Column("established_on", sa.Date),
            sa.Column("address", sa.String),
            sa.Column("business_scope", sa.String),
            sa.Column("status", sa.String),
        )
        _create(
            path,
            t,
            [
                {
                    "uscc": c.uscc,
                    "ent_name": c.name,
                    "legal_representative": c.legal_representative.name,
                    "registered_capital": c.registered_capital,
                    "established_on": c.established_on,
                    "address": c.address,
                    "business_scope": c.business_scope,
                    "status": c.status,
                }
                for c in firms
            ],
        )

    if path := wanted("police"):
        md = sa.MetaData()
        residents = sa.Table(
            "residents",
            md,
            sa.Column("id_number", sa.String(18), primary_key=True),
            sa.Column("name", sa.String),
            sa.Column("gender", sa.String),
            sa.Column("birth_date", sa.Date),
            sa.Column("ethnicity", sa.String),
            sa.Column("household_address", sa.String),
        )
        records = sa.Table(
            "criminal_records",
            md,
            sa.Column("id_number", sa.String(18), primary_key=True),
            sa.Column("has_record", sa.Boolean),
            sa.Column("summary", sa.String),
        )
        _create(
            path,
            residents,
            [
                {
                    "id_number": p.id_number,
                    "name": p.name,
                    "gender": p.gender,
                    "birth_date": p.birth_date,
                    "ethnicity": p.ethnicity,
                    "household_address": p.address,
                }
                for p in persons
            ],
        )
        _create(
            path,
            records,
            [
                {"id_number": p.id_number, "has_record": True, "summary": "（合成数据）"}
                for p in persons[::40]
            ],
        )

    if path := wanted("tax"):
        md = sa.MetaData()
        t = sa.Table(
            "taxpayers",
            md,
            sa.Column("uscc", sa.String(18), primary_key=True),
            sa.Column("taxpayer_name", sa.String),
            sa.Column("tax_status", sa.String),
            sa.Column("in_arrears", sa.Boolean),
            sa.Column("credit_rating", sa.String),
        )
        _create(
            path,
            t,
            [
                {
                    "uscc": c.uscc,
                    "taxpayer_name": c.name,
                    "tax_status": "已清税"
                    if c.status == "注销"
                    else rng.choice(("正常",) * 9 + ("非正常",)),
                    "in_arrears": rng.random() < 0.08,
                    "credit_rating": rng.choice("AABBMCD"),
                }
                for c in firms
            ],
        )

    if path := wanted("hrss"):
        md = sa.MetaData()
        t = sa.Table(
            "insured_persons",
            md,
            sa.Column("id_number", sa.String(18), primary_key=True),
            sa.Column("name", sa.String),
            sa.Column("insured_status", sa.String),
            sa.Column("employer_uscc", sa.String(18)),
            sa.Column("months_paid", sa.Integer),
            sa.Column("last_paid_month", sa.String(7)),
        )
        _create(
            path,
            t,
            [
                {
                    "id_number": p.id_number,
                    "name": p.name,
                    "insured_status": rng.choice(("参保缴费",) * 6 + ("暂停缴费", "终止")),
                    "employer_uscc": rng.choice(firms).uscc,
                    "months_paid": rng.randint(1, 360),
                    "last_paid_month": f"2026-{rng.randint(1, 10):02d}",
                }
                for p in persons
                if rng.random() < 0.8
            ],
        )

    if path := wanted("realestate"):
        md = sa.MetaData()
        t = sa.Table(
            "owners",
            md,
            sa.Column("id_number", sa.String(18), primary_key=True),
            sa.Column("owner_name", sa.String),
            sa.Column("property_count", sa.Integer),
            sa.Column("total_area", sa.Float),
            sa.Column("has_mortgage", sa.Boolean),
        )
        _create(
            path,
            t,
            [
                {
                    "id_number": p.id_number,
                    "owner_name": p.name,
                    "property_count": (n := rng.randint(1, 3)),
                    "total_area": round(n * rng.uniform(45, 140), 2),
                    "has_mortgage": rng.random() < 0.4,
                }
                for p in persons
                if rng.random() < 0.6
            ],
        )

    if path := wanted("civil"):
        md = sa.MetaData()
        t = sa.Table(
            "marriages",
            md,
            sa.Column("id_number", sa.String(18), primary_key=True),
            sa.Column("marital_status", sa.String),
            sa.Column("registered_on", sa.Date),
        )
        rows: list[dict[str, object]] = []
        for p in persons:
            if p.birth_date.year > 2003:
                continue
            status = rng.choice(("已婚",) * 6 + ("未婚", "离异", "丧偶"))
            reg = None if status == "未婚" else p.birth_date + dt.timedelta(days=24 * 365)
            rows.append({"id_number": p.id_number, "marital_status": status, "registered_on": reg})
        _create(path, t, rows)
    return written
