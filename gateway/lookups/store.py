"""Closed cases in the database: the durable record behind the guard's fast check."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.errors import StoreUnavailable
from gateway.storage.schema import closed_cases

__all__ = ["record_closed_case"]


def record_closed_case(
    engine: sa.Engine,
    *,
    department: str,
    case: str,
    operator: str,
    reason: str,
    at: dt.datetime,
) -> bool:
    """Record the closure durably; ``False`` if the case was already closed."""
    try:
        with engine.begin() as conn:
            conn.execute(
                closed_cases.insert().values(
                    department=department,
                    case_number=case,
                    closed_at=at,
                    operator=operator,
                    reason=reason,
                )
            )
    except IntegrityError:
        return False
    except SQLAlchemyError:
        raise StoreUnavailable("database") from None
    return True
