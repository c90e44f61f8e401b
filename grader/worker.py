"""The Celery app. Tasks live in grader.tasks; the broker URL comes from the settings."""

from functools import lru_cache

from celery import Celery
from kombu import Queue
from kombu.transport import redis as kombu_redis

from grader.config import get_settings

GRADE_TASK = "grader.grade"
QUEUES = ("cpu", "gpu")


def make_celery(broker_url: str) -> Celery:
    celery = Celery("grader", broker=broker_url, include=["grader.tasks"])
    celery.conf.update(
        # A task is acknowledged only when it finished, and given back when its worker dies mid-task;
        # one message at a time per process, so a slow grading does not hold others hostage.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # results live in the database
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="cpu",
        task_create_missing_queues=False,
        # For flower: the workers' events. Not task-sent: a second Redis publish on every upload, and
        # flower lists a task once a worker has received it.
        worker_send_task_events=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker outlives a Redis restart
        # Publishing from a request must fail fast when Redis is down: the sweeper sends it later.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        broker_transport_options={
            "socket_connect_timeout": 3,
            "socket_timeout": 10,
            # Redelivery of unacknowledged messages; grading checks leases, so a duplicate is harmless.
            "visibility_timeout": 2 * 3600,
        },
    )
    return celery


@lru_cache
def publisher(broker_url: str) -> Celery:
    """A Celery app used only to send tasks, per broker URL (the API's settings may differ from env)."""
    celery = make_celery(broker_url)
    if broker_url.startswith("redis://"):
        celery.conf.broker_transport = f"{__name__}:PublishingTransport"
    return celery


class PublishingChannel(kombu_redis.Channel):
    """kombu's Redis channel with one redis-py client for its commands, where kombu builds one per
    command: under cProfile, building the client was a third of `send_task` (bench/README.md section 15).
    A client is safe to share: each command takes a connection from the channel's pool."""

    _shared_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # the consumer's, which kombu builds once per channel anyway
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:  # a closed channel's pool is new
            client = self._shared_client = super()._create_client()
        return client


class PublishingTransport(kombu_redis.Transport):
    Channel = PublishingChannel


# `celery -A grader.worker` and `grader worker` use this one; the env's GRADER_BROKER_URL picks the broker.
app = make_celery(get_settings().broker_url or "memory://")
