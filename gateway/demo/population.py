"""Synthetic, deterministic people and companies whose identifiers carry valid check characters.

Nothing here is real: names are drawn from common characters, identifiers are built with the
check-character rules of GB 11643 and GB 32100 (``gateway.core.identifiers``), and the same
seed always gives the same district, so the demo and the tests can name known subjects.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from functools import cache

from gateway.core.identifiers import resident_id_check_character, uscc_check_character

__all__ = ["Company", "Person", "companies", "people"]

SEED = 20260601
DIVISIONS = ("430602", "430603", "430611", "430621", "430671")
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余"
    "杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙"
    "史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国文斌宇浩凯健俊帆帅旭宁坤"
_TRADES = ("商贸", "食品", "建材", "物流", "餐饮", "科技", "农业", "港口服务", "医药", "文化传媒")
_FORMS = ("有限公司", "有限责任公司", "股份有限公司", "个人独资企业")
_ETHNICITIES = ("汉族",) * 18 + ("土家族", "苗族")
_STREETS = ("城陵矶路", "洞庭大道", "港口路", "松阳湖路", "金凤路", "滨江路", "通海路")


@dataclass(frozen=True, slots=True)
class Person:
    """A synthetic resident."""

    id_number: str
    name: str
    gender: str
    birth_date: dt.date
    ethnicity: str
    address: str


@dataclass(frozen=True, slots=True)
class Company:
    """A synthetic enterprise."""

    uscc: str
    name: str
    legal_representative: Person
    registered_capital: float
    established_on: dt.date
    address: str
    business_scope: str
    status: str


def _name(rng: random.Random) -> str:
    given = "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))
    return rng.choice(_SURNAMES) + given


def _address(rng: random.Random) -> str:
    return f"湖南省岳阳市城陵矶新港区{rng.choice(_STREETS)}{rng.randint(1, 999)}号"


@cache
def people(count: int = 320) -> tuple[Person, ...]:
    """``count`` synthetic residents with valid resident ID numbers."""
    rng = random.Random(SEED)
    result: list[Person] = []
    seen: set[str] = set()
    while len(result) < count:
        birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 55 * 365))
        seq = rng.randint(1, 999)
        body = f"{rng.choice(DIVISIONS)}{birth:%Y%m%d}{seq:03d}"
        id_number = body + resident_id_check_character(body)
        if id_number in seen:
            continue
        seen.add(id_number)
        result.append(
            Person(
                id_number=id_number,
                name=_name(rng),
                gender="男" if seq % 2 else "女",  # GB 11643: odd sequence = male
                birth_date=birth,
                ethnicity=rng.choice(_ETHNICITIES),
                address=_address(rng),
            )
        )
    return tuple(result)


_ORG_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


@cache
def companies(count: int = 160) -> tuple[Company, ...]:
    """``count`` synthetic enterprises with valid USCCs; representatives are from people()."""
    rng = random.Random(SEED + 1)
    residents = people()
    result: list[Company] = []
    seen: set[str] = set()
    while len(result) < count:
        org = "".join(rng.choice(_ORG_ALPHABET) for _ in range(9))
        body = f"91{rng.choice(DIVISIONS)}{org}"
        uscc = body + uscc_check_character(body)
        if uscc in seen:
            continue
        seen.add(uscc)
        trade = rng.choice(_TRADES)
        status = rng.choices(("存续", "注销", "吊销"), weights=(90, 7, 3))[0]
        result.append(
            Company(
                uscc=uscc,
                name=f"岳阳{rng.choice(_SURNAMES)}{rng.choice(_GIVEN)}{trade}{rng.choice(_FORMS)}",
                legal_representative=rng.choice(residents),
                registered_capital=float(rng.choice((10, 50, 100, 200, 500, 1000, 3000))),
                established_on=dt.date(2000, 1, 1) + dt.timedelta(days=rng.randint(0, 9000)),
                address=_address(rng),
                business_scope=f"{trade}相关业务；一般项目：货物进出口",
                status=status,
            )
        )
    return tuple(result)
