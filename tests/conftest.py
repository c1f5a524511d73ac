"""Session fixtures for the real services `make test` starts (see infra/local.py).

Integration tests talk to a real Apache Kafka broker and a real redis-server. When
they are not reachable the tests fail (never skip): `make test` always starts them.
Isolation: every test gets unique topic names and a unique Redis key prefix, and
the Redis database is flushed before each test that asks for a client.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from infra.settings import LocalInfraSettings

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration so `-m "not integration"` works."""
    for item in items:
        if "tests/integration" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def infra_settings() -> LocalInfraSettings:
    """Connection settings of the services under test (from the PIPELINE_ environment)."""
    return LocalInfraSettings()


@pytest.fixture(scope="session")
def kafka_bootstrap(infra_settings: LocalInfraSettings) -> str:
    """Bootstrap servers of the live broker; fails the test if the broker is down."""
    bootstrap = infra_settings.kafka_bootstrap_servers
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Kafka at {bootstrap} is not reachable ({exc}); run the tests with `make test`")
    return bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    """An admin client connected to the live broker."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def tmp_topic(kafka_admin: AdminClient) -> Iterator[Callable[..., str]]:
    """Factory of unique, freshly created topics; they are deleted after the test."""
    created: list[str] = []

    def make(partitions: int = 3, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        fut = kafka_admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        fut[name].result(timeout=30)
        created.append(name)
        # The create call returns once the controller has the topic; the broker's metadata
        # can lag a moment, and a test listing topics right away would not see it yet.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            meta = kafka_admin.list_topics(name, timeout=10).topics.get(name)
            if meta is not None and meta.error is None and len(meta.partitions) == partitions:
                return name
            time.sleep(0.05)
        pytest.fail(f"topic {name} not in the broker's metadata 30 s after its creation")

    yield make
    if created:
        for fut in kafka_admin.delete_topics(created, operation_timeout=30).values():
            fut.result(timeout=30)


@pytest.fixture
def make_producer(kafka_bootstrap: str) -> Iterator[Callable[..., Producer]]:
    """Factory of producers on the live broker; flushed after the test."""
    producers: list[Producer] = []

    def make(**conf: object) -> Producer:
        producer = Producer({"bootstrap.servers": kafka_bootstrap, **conf})
        producers.append(producer)
        return producer

    yield make
    for producer in producers:
        producer.flush(10)


@pytest.fixture
def make_consumer(kafka_bootstrap: str) -> Iterator[Callable[..., Consumer]]:
    """Factory of consumers (unique group, from the earliest offset); closed after the test."""
    consumers: list[Consumer] = []

    def make(**conf: object) -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": f"test-{uuid.uuid4().hex[:12]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                **conf,
            }
        )
        consumers.append(consumer)
        return consumer

    yield make
    for consumer in consumers:
        consumer.close()


@pytest.fixture(scope="session")
def redis_url(infra_settings: LocalInfraSettings) -> str:
    """URL of the live Redis; fails the test if it is down."""
    url = infra_settings.redis_url.get_secret_value()
    try:
        redis.Redis.from_url(url, socket_timeout=5).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {url} is not reachable ({exc}); run the tests with `make test`")
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on a freshly flushed database of the live Redis."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def key_prefix() -> str:
    """A unique Redis key prefix for one test."""
    return f"test-{uuid.uuid4().hex[:8]}:"
