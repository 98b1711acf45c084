"""Departments and their public keys in the database."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from gateway.core.keyring import DepartmentKey, KeyRing, KeyStatus, jwk_thumbprint
from gateway.core.policy import Department
from gateway.errors import InvalidInput
from gateway.storage.schema import department_keys, departments, seals

__all__ = [
    "MAX_ACTIVE_KEYS",
    "key_expiries",
    "keyring_revision",
    "load_keyring",
    "register_key",
    "retire_key",
    "revoke_key",
    "sync_registry",
]

#: Active keys one department may hold at once: the current one and a next one or two.
MAX_ACTIVE_KEYS = 4


def sync_registry(
    engine: sa.Engine,
    *,
    department_list: Iterable[Department],
    public_jwks: Mapping[str, list[dict[str, Any]]],
    now: dt.datetime,
) -> int:
    """Upsert departments and register public keys not yet known. Returns keys added.

    Keys already registered keep their status: retiring or revoking a key is an
    administrative act, not something a file on disk can undo.
    """
    added = 0
    with engine.begin() as conn:
        known_deps = set(conn.execute(sa.select(departments.c.id)).scalars())
        for d in department_list:
            row = {"name": d.name, "uscc": d.uscc, "roles": ",".join(d.roles), "updated_at": now}
            if d.id in known_deps:
                conn.execute(departments.update().where(departments.c.id == d.id).values(row))
            else:
                conn.execute(departments.insert().values(id=d.id, **row))
                known_deps.add(d.id)
        known_kids = set(conn.execute(sa.select(department_keys.c.kid)).scalars())
        for dep_id, jwks in public_jwks.items():
            if dep_id not in known_deps:
                continue
            for jwk in jwks:
                # Parse before storing: a key that cannot verify must not be registered.
                key = DepartmentKey.from_jwk(jwk, department=dep_id, status=KeyStatus.ACTIVE)
                if key.kid in known_kids:
                    continue
                conn.execute(
                    department_keys.insert().values(
                        kid=key.kid,
                        department_id=dep_id,
                        alg=key.alg,
                        jwk=json.dumps(dict(key.jwk)),
                        status=KeyStatus.ACTIVE,
                        created_at=now,
                        updated_at=now,
                    )
                )
                known_kids.add(key.kid)
                added += 1
    return added


def load_keyring(engine: sa.Engine) -> KeyRing:
    """Parse every registered key once into a :class:`KeyRing`."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                department_keys.c.department_id, department_keys.c.jwk, department_keys.c.status
            )
        ).all()
    keys = []
    for dep_id, jwk_text, status in rows:
        jwk = json.loads(jwk_text)
        key = DepartmentKey.from_jwk(jwk, department=dep_id, status=KeyStatus(status))
        assert key.kid == jwk_thumbprint(jwk)
        keys.append(key)
    return KeyRing(keys)


def keyring_revision(engine: sa.Engine) -> tuple[int, str]:
    """A cheap fingerprint of the registered keys: changes whenever one is added or changed."""
    with engine.connect() as conn:
        count, latest = conn.execute(
            sa.select(sa.func.count(), sa.func.max(department_keys.c.updated_at))
        ).one()
    return int(count), str(latest)


def revoke_key(engine: sa.Engine, *, department: str, kid: str, now: dt.datetime) -> KeyStatus:
    """Mark a department's key revoked; its status before. ``LookupError`` if it is not
    that department's key. Revocation is final: a revoked key is never reinstated."""
    with engine.begin() as conn:
        status = conn.execute(
            sa.select(department_keys.c.status).where(
                department_keys.c.kid == kid, department_keys.c.department_id == department
            )
        ).scalar()
        if status is None:
            raise LookupError(kid)
        conn.execute(
            department_keys.update()
            .where(department_keys.c.kid == kid)
            .values(status=KeyStatus.REVOKED, updated_at=now)
        )
    return KeyStatus(status)


def register_key(
    engine: sa.Engine,
    *,
    key: DepartmentKey,
    expires_at: dt.datetime | None,
    now: dt.datetime,
) -> None:
    """Register ``key`` as an active key of its department. :class:`InvalidInput` (field
    ``jwk``) if the key is registered already — for any department, in any status, or as
    an e-seal — or the department holds :data:`MAX_ACTIVE_KEYS` active keys; the department
    must be registered (``kid``: LookupError otherwise)."""
    with engine.begin() as conn:
        if (
            conn.execute(
                sa.select(departments.c.id).where(departments.c.id == key.department)
            ).first()
            is None
        ):
            raise LookupError(key.department)
        if (
            conn.execute(
                sa.select(department_keys.c.kid).where(department_keys.c.kid == key.kid)
            ).first()
            is not None
            or conn.execute(sa.select(seals.c.kid).where(seals.c.kid == key.kid)).first()
            is not None
        ):
            raise InvalidInput("jwk", "this key is registered already")
        active = conn.execute(
            sa.select(sa.func.count()).where(
                department_keys.c.department_id == key.department,
                department_keys.c.status == KeyStatus.ACTIVE,
            )
        ).scalar_one()
        if active >= MAX_ACTIVE_KEYS:
            raise InvalidInput(
                "jwk", f"the department holds {MAX_ACTIVE_KEYS} active keys: retire one first"
            )
        conn.execute(
            department_keys.insert().values(
                kid=key.kid,
                department_id=key.department,
                alg=key.alg,
                jwk=json.dumps(dict(key.jwk)),
                status=KeyStatus.ACTIVE,
                created_at=now,
                updated_at=now,
                expires_at=expires_at,
            )
        )


def retire_key(engine: sa.Engine, *, department: str, kid: str, now: dt.datetime) -> KeyStatus:
    """Retire an active key of ``department``; its status before. :class:`InvalidInput`
    (field ``kid``) if it is not that department's active key, or its only one (the
    department would have no key left to sign with)."""
    with engine.begin() as conn:
        status = conn.execute(
            sa.select(department_keys.c.status)
            .where(department_keys.c.kid == kid, department_keys.c.department_id == department)
            .with_for_update()
        ).scalar()
        if status is None:
            raise InvalidInput("kid", f"no key {kid} registered for {department}")
        if status != KeyStatus.ACTIVE:
            raise InvalidInput("kid", f"is {status}, not active")
        others = conn.execute(
            sa.select(sa.func.count()).where(
                department_keys.c.department_id == department,
                department_keys.c.status == KeyStatus.ACTIVE,
                department_keys.c.kid != kid,
            )
        ).scalar_one()
        if not others:
            raise InvalidInput("kid", "is the department's only active key: register another")
        conn.execute(
            department_keys.update()
            .where(department_keys.c.kid == kid)
            .values(status=KeyStatus.RETIRED, updated_at=now)
        )
    return KeyStatus(status)


def list_registry(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every registered department with its keys, oldest key first (synchronous)."""
    with engine.connect() as conn:
        deps = conn.execute(sa.select(departments).order_by(departments.c.id)).mappings().all()
        keys = (
            conn.execute(
                sa.select(department_keys).order_by(
                    department_keys.c.department_id, department_keys.c.created_at
                )
            )
            .mappings()
            .all()
        )
    by_department: dict[str, list[dict[str, Any]]] = {}
    for k in keys:
        by_department.setdefault(k["department_id"], []).append(
            {
                "kid": k["kid"],
                "alg": k["alg"],
                "status": k["status"],
                "created_at": k["created_at"],
                "updated_at": k["updated_at"],
                "expires_at": k["expires_at"],
            }
        )
    return [
        {
            "id": d["id"],
            "name": d["name"],
            "uscc": d["uscc"],
            "roles": [r for r in str(d["roles"]).split(",") if r],
            "keys": by_department.get(d["id"], []),
        }
        for d in deps
    ]


def key_expiries(engine: sa.Engine) -> dict[tuple[str, str], dt.datetime]:
    """When each active department key that has an ``expires_at`` stops being valid, by
    (department, kid) — what the metrics' expiry gauges show."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                department_keys.c.department_id,
                department_keys.c.kid,
                department_keys.c.expires_at,
            ).where(
                department_keys.c.status == KeyStatus.ACTIVE,
                department_keys.c.expires_at.is_not(None),
            )
        ).all()
    return {
        (dep, kid): at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
        for dep, kid, at in rows
    }
