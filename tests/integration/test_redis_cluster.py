"""The server setup on a real Redis Cluster (three masters, ``tests.cluster``).

Two gateway hosts of one deployment — one PostgreSQL database, one key prefix, each with its
own copy of the policy files and its client seeded with a different node of the cluster —
share what lives in Redis: a token used on one is a replay on the other, a case closed on one
is closed on the other, the rate limit is one budget, a record cached by one is a hit on the
other and an invalidation through either hides it, a policy change made on one is in force
on the other within two seconds. Each department's keys stay in one hash slot, and the
departments spread over the nodes. A flushed node means a reload, a frozen or lost node 503,
never a wrong answer.

The behaviour tests that exercise Redis through one gateway run on the cluster too (marked
``tests.inprocess.ALSO_ON_CLUSTER``, and the guard's own tests in ``test_guards``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from gateway.app.factory import create_app
from gateway.demo.population import people
from gateway.sdk import Forbidden
from gateway.settings import Settings
from tests.cluster import RedisCluster, private_redis_cluster
from tests.inprocess import BASE_URL, InProcessGateway, district_settings, in_process_gateway
from tests.integration.test_lookups import QUERY, post_raw
from tests.integration.test_policy_reload import RELOAD_DEADLINE, _widen
from tests.support import GatewayProcess, copy_policies, gateway_command, postgres_database

#: One budget for both hosts, spent by `hrss` alone in this module (the other departments
#: here stay well under it). A window of an hour: the test cannot straddle two windows
#: unless it runs across the hour, which the test checks for.
RATE_LIMIT = 24
RATE_WINDOW_SECONDS = 3600

#: The tax office's lookup of the same company (its own grant and service item).
TAX_QUERY = {**QUERY, "item": "000109001000"}
JWT = {"Content-Type": "application/jwt"}


def _another_host(first: InProcessGateway, *, redis_url: str, policies_dir: Path) -> Settings:
    """The settings of another host of ``first``'s deployment: its database, keys, key
    prefix, limits and the demo district's sources (in its data directory); its own policy
    files and Redis seed."""
    return district_settings(
        first.data_dir,
        first.keys_dir,
        database_url=first.database_url,
        redis_url=redis_url,
        redis_key_prefix=first.settings.redis_key_prefix,
        policies_dir=str(policies_dir),
        rate_limit=first.settings.rate_limit,
        rate_window_seconds=first.settings.rate_window_seconds,
    )


@pytest.fixture(scope="module")
def hosts(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path, redis_cluster: RedisCluster
) -> Iterator[tuple[InProcessGateway, InProcessGateway]]:
    """Host A seeded with the node that holds the policy keys, host B with another one."""
    root = tmp_path_factory.mktemp("cluster-hosts")
    policy_node = redis_cluster.nodes.index(redis_cluster.node_of("{policy}"))
    with in_process_gateway(
        root / "a",
        keys_dir,
        server=True,
        redis_url=redis_cluster.url(policy_node),
        policies_dir=str(copy_policies(root / "policies-a")),
        rate_limit=RATE_LIMIT,
        rate_window_seconds=RATE_WINDOW_SECONDS,
    ) as a:
        settings = _another_host(
            a,
            redis_url=redis_cluster.url((policy_node + 1) % 3),
            policies_dir=copy_policies(root / "policies-b"),
        )
        with TestClient(create_app(settings), base_url=BASE_URL) as http:
            yield a, InProcessGateway(settings=settings, http=http)


def _status(gw: InProcessGateway, token: str) -> int:
    return post_raw(gw, token.encode()).status_code


def _cache_hit(gw: InProcessGateway) -> bool:
    with gw.client("service-centre") as c:
        answer = c.lookup(**{**QUERY, "fields": ["name"]})
    hit: bool = answer.claims["provenance"]["cache"]["hit"]
    return hit


def _invalidate(gw: InProcessGateway) -> None:
    with gw.client("market") as provider:
        provider.invalidate(resource="enterprise-registration", reason="corrected", operator="m-7")


def test_each_departments_keys_stay_on_one_node_and_departments_spread(
    hosts: tuple[InProcessGateway, InProcessGateway], redis_cluster: RedisCluster
) -> None:
    a, b = hosts
    with a.client("service-centre") as c:
        c.lookup(**{**QUERY, "fields": ["name"]})
    with b.client("tax") as t:
        t.lookup(**{**TAX_QUERY, "fields": ["name"]})
    prefix = a.settings.redis_key_prefix
    where: dict[str, set[int]] = {}
    for node in redis_cluster.nodes:
        for key in node.keys(f"{prefix}:*"):
            tag = key[key.index("{") + 1 : key.index("}")]
            where.setdefault(tag, set()).add(node.port)
    # Every key of a department (jti, rate window, warm mark, cache, generations) and both
    # policy keys sit in one slot: the node the cluster's slot table gives for the tag.
    for tag, ports in where.items():
        assert ports == {redis_cluster.node_of("{" + tag + "}").port}, (tag, ports)
    assert {"service-centre", "tax", "policy"} <= set(where)
    # The cluster is really used: these two departments live on different masters.
    assert where["service-centre"] != where["tax"]
    assert len(set().union(*where.values())) >= 2


def test_a_token_used_on_one_host_is_a_replay_on_the_other(
    hosts: tuple[InProcessGateway, InProcessGateway],
) -> None:
    a, b = hosts
    with a.client("service-centre") as c:
        token = c.lookup_token(**{**QUERY, "fields": ["name"]})
    assert _status(a, token) == 200
    assert _status(b, token) == 409
    assert _status(a, token) == 409


def test_a_case_closed_on_one_host_is_closed_on_the_other(
    hosts: tuple[InProcessGateway, InProcessGateway],
) -> None:
    a, b = hosts
    case = f"CL-{uuid.uuid4().hex[:10]}"
    with a.client("service-centre") as c:
        c.lookup(**{**QUERY, "case": case, "fields": ["name"]})
        c.close_case(case=case, reason="办结", operator="c-4")
    with b.client("service-centre") as c, pytest.raises(Forbidden) as err:
        c.lookup(**{**QUERY, "case": case, "fields": ["name"]})
    assert err.value.reason == "case-closed"


def test_a_cached_record_and_its_invalidation_are_shared_by_hosts_on_different_nodes(
    hosts: tuple[InProcessGateway, InProcessGateway],
) -> None:
    a, b = hosts
    _invalidate(a)
    assert _cache_hit(a) is False
    assert _cache_hit(b) is True  # cached by A
    _invalidate(b)
    assert _cache_hit(a) is False


def test_the_rate_limit_is_one_budget_for_both_hosts(
    hosts: tuple[InProcessGateway, InProcessGateway],
) -> None:
    a, b = hosts
    person = people()[3]
    started = time.time()
    statuses: list[int] = []
    with a.client("hrss") as c:
        for n in range(RATE_LIMIT + 2):
            token = c.lookup_token(
                resource="resident-identity",
                subject=("resident-id", person.id_number),
                fields=["name"],
                item="000111003000",
                case="RL-1",
                reason="退休审批核验身份",
                operator="clerk-9",
            )
            response = post_raw((a, b)[n % 2], token.encode())
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
    if int(started // RATE_WINDOW_SECONDS) != int(time.time() // RATE_WINDOW_SECONDS):
        pytest.skip("the run straddled two rate windows")
    assert statuses == [200] * RATE_LIMIT + [429, 429]


def test_a_policy_change_on_one_host_is_in_force_on_the_other_within_two_seconds(
    hosts: tuple[InProcessGateway, InProcessGateway],
    redis_cluster: RedisCluster,
    tmp_path: Path,
) -> None:
    a, b = hosts
    before = _policy_version(b)
    _widen(Path(a.settings.policies_dir))
    after, took = _wait_for_policy(b, before)
    assert took < RELOAD_DEADLINE
    assert _policy_version(a) == after
    with b.client("service-centre") as c:
        answer = c.lookup(**{**QUERY, "fields": ["registered_capital"]})
    assert answer.claims["policy_version"] == after
    # `gateway policy publish`, its client seeded with the third node, reaches both hosts.
    edited = copy_policies(tmp_path / "edited")  # the district's set: not widened
    third = ({0, 1, 2} - {_seed(a, redis_cluster), _seed(b, redis_cluster)}).pop()
    published = gateway_command(
        "policy",
        "publish",
        "--dir",
        str(edited),
        env={
            "GATEWAY_REDIS_URL": redis_cluster.url(third),
            "GATEWAY_REDIS_KEY_PREFIX": a.settings.redis_key_prefix,
        },
    )
    assert published.returncode == 0, published.stderr
    final, took = _wait_for_policy(a, after)
    assert took < RELOAD_DEADLINE
    assert final in published.stdout
    assert _wait_for_policy(b, after)[0] == final


def _seed(gw: InProcessGateway, cluster: RedisCluster) -> int:
    """Which node ``gw``'s client was told of first."""
    return next(i for i in range(3) if gw.settings.redis_url == cluster.url(i))


def _policy_version(gw: InProcessGateway) -> str:
    version: str = gw.http.get("/readyz").json()["policy_version"]
    return version


def _wait_for_policy(gw: InProcessGateway, old: str) -> tuple[str, float]:
    started = time.monotonic()
    while time.monotonic() - started < 10:
        version = _policy_version(gw)
        if version != old:
            return version, time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("the new policy set never took effect")


# --- a served gateway: uvicorn's workers on the cluster ---------------------------------------


@pytest.mark.long
def test_a_served_gateway_with_two_workers_shares_the_cluster_between_them(
    tmp_path: Path, keys_dir: Path, redis_cluster: RedisCluster
) -> None:
    """``gateway serve`` as a host runs it (two worker processes, uvloop): what one worker
    admitted, closed or cached, the other sees — through the cluster. Fresh connections,
    so that both workers answer."""
    with postgres_database() as database:
        gw = GatewayProcess(
            data_dir=tmp_path,
            keys_dir=keys_dir,
            env={
                "GATEWAY_DATABASE_URL": database,
                "GATEWAY_REDIS_URL": redis_cluster.url(1, 2),
                "GATEWAY_REDIS_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
                "GATEWAY_WORKERS": "2",
            },
        )
        gw.start()
        try:
            assert httpx.get(gw.url + "/readyz", timeout=10).json()["checks"]["cache"] is True
            with gw.client("service-centre") as c:
                token = c.lookup_token(**{**QUERY, "fields": ["name"]})
            statuses = [_post_fresh(gw, token) for _ in range(6)]
            assert sorted(statuses) == [200] + [409] * 5
            case = f"SV-{uuid.uuid4().hex[:8]}"
            with gw.client("service-centre") as c:
                c.close_case(case=case, reason="办结", operator="c-4")
                closed = [
                    _post_fresh(gw, c.lookup_token(**{**QUERY, "case": case, "fields": ["name"]}))
                    for _ in range(4)
                ]
            assert closed == [403] * 4
            with gw.client("market") as provider:
                provider.invalidate(resource="enterprise-registration", reason="x", operator="m")
            hits = []
            for _ in range(4):
                with gw.client("service-centre") as c:
                    answer = c.lookup(**{**QUERY, "fields": ["name"]})
                hits.append(answer.claims["provenance"]["cache"]["hit"])
            assert hits == [False, True, True, True]
        finally:
            gw.stop()


def _post_fresh(gw: GatewayProcess, token: str) -> int:
    """POST over a new connection (uvicorn's workers share the socket: either may answer)."""
    with httpx.Client(timeout=30) as http:
        return http.post(gw.url + "/v1/lookups", content=token, headers=JWT).status_code


# --- a node flushed, a node lost -------------------------------------------------------------


@pytest.fixture(scope="module")
def lone_cluster() -> Iterator[RedisCluster]:
    """A cluster of this module's own: its nodes are flushed and killed."""
    with private_redis_cluster() as cluster:
        yield cluster


def _wait_for(gw: InProcessGateway, token_of: Callable[[], str], status: int) -> int:
    """Send fresh tokens until one gets ``status`` (the client finding the layout again);
    every answer on the way must be a 503 — nothing else, above all no other answer."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = _status(gw, token_of())
        if got == status:
            return got
        assert got == 503, got
        time.sleep(0.1)
    raise AssertionError(f"no {status} within 10 s")


@pytest.mark.long
def test_a_flushed_or_lost_node_means_a_reload_or_503_never_a_wrong_answer(
    tmp_path: Path, keys_dir: Path, lone_cluster: RedisCluster
) -> None:
    with (
        in_process_gateway(tmp_path, keys_dir, server=True, redis_url=lone_cluster.url()) as gw,
        gw.client("service-centre") as c,
        gw.client("tax") as t,
    ):
        node = lone_cluster.node_of("{service-centre}")
        prefix = gw.settings.redis_key_prefix

        def centre(case: str = "FL-OPEN") -> str:
            return c.lookup_token(**{**QUERY, "case": case, "fields": ["name"]})

        def tax() -> str:
            return t.lookup_token(**{**TAX_QUERY, "fields": ["name"]})

        used = centre()
        assert _status(gw, used) == 200
        closed = f"FL-{uuid.uuid4().hex[:8]}"
        c.lookup(**{**QUERY, "case": closed, "fields": ["name"]})
        c.close_case(case=closed, reason="办结", operator="c-4")
        assert node.keys(f"{prefix}:{{service-centre}}:case:{closed}")

        # Flushed: the node forgot the department's copy; the guard finds its warm mark
        # gone and reloads it from the database before it admits anything.
        node.flush()
        assert not node.keys(f"{prefix}:{{service-centre}}:*")
        assert _status(gw, centre(closed)) == 403  # the closed case, reloaded
        assert node.keys(f"{prefix}:{{service-centre}}:case:{closed}")
        assert _status(gw, used) == 409  # the used token: the durable check refuses it
        assert _status(gw, centre()) == 200

        # Frozen: the department's node holds its connections and answers nothing. The
        # client's 1 s timeout and its one retry after a fresh look at the layout: 503
        # within about two seconds.
        node.freeze()
        try:
            started = time.monotonic()
            assert _status(gw, centre()) == 503
            assert time.monotonic() - started < 3
        finally:
            node.thaw()
        lone_cluster.wait_ok()
        _wait_for(gw, centre, 200)

        # Lost: the department's node is gone. Its requests get 503 — fast, nothing
        # released — and readiness says the cache is down.
        node.kill()
        started = time.monotonic()
        refused = centre()
        down = post_raw(gw, refused.encode())
        assert down.status_code == 503
        assert time.monotonic() - started < 3
        assert down.headers["Retry-After"] == "1"
        assert down.json().get("token_consumed") is not True
        ready = gw.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["cache"] is False
        # Another department's keys live on a live node: answered until the cluster marks
        # the node failed (then the whole cluster refuses: CLUSTERDOWN), never a wrong answer.
        assert lone_cluster.node_of("{tax}") is not node
        for _ in range(5):
            assert _status(gw, tax()) in (200, 503)
        # Once the others have marked the node failed, every slot is refused (CLUSTERDOWN):
        # 503 for every department, not a 500, not an answer.
        live = [n for n in lone_cluster.nodes if n is not node]
        lone_cluster.wait_state("fail", among=live)
        assert _status(gw, tax()) == 503

        # Back, empty (the node keeps its slots: nodes.conf): the promises hold.
        node.start()
        lone_cluster.wait_ok()
        _wait_for(gw, centre, 200)
        assert _status(gw, centre(closed)) == 403
        assert _status(gw, used) == 409
        assert _status(gw, refused) == 200  # nothing was released for it: it is still good
        assert gw.http.get("/readyz").status_code == 200
