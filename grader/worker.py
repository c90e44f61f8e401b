"""The Celery app. Tasks live in grader.tasks; the broker URL comes from the settings."""

from functools import lru_cache

from celery import Celery
from kombu import Queue

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
    return make_celery(broker_url)


# `celery -A grader.worker` and `grader worker` use this one; the env's GRADER_BROKER_URL picks the broker.
app = make_celery(get_settings().broker_url or "memory://")
