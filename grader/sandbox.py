"""Grade one submission in a sandbox: fresh containers, or a pair from the warm pool (grader.pool).

One sandbox is two containers. H runs the trusted harness and the hidden tests; S runs the student's
code. S joins H's network namespace, so the tests reach the student's code over loopback while neither
container has any other network. Files go in as a tar on stdin, never through bind mounts, so a worker
that itself runs in a container works. Both containers are removed whatever happens.
"""

import json
import time
import uuid

import docker
import requests

from grader import config, containers, images, sandbox_files, sandbox_result
from grader import pool as warm_pool
from grader.assignments import Assignment
from grader.config import Settings
from grader.engine import SandboxUnavailable, remove_later, remove_orphans  # noqa: F401 - grader.sandbox's interface too
from grader.engine import client as _client
from grader.engine import kill as _kill
from grader.results import GradeResult
from grader.sandbox_files import MAX_RESTARTS
from grader.sandbox_result import RESULT_PREFIX
from grader.uploads import Unpacked, module_names

# Seconds on top of timeout_s for the containers to start and unpack; the harness's own deadline is
# shorter (sandbox_files.DEADLINE_MARGIN_S) so that it normally reports a timeout itself before we kill it.
STARTUP_GRACE_S = 5.0
# H's stdout carries only harness lines; more than this means the harness is broken.
HARNESS_OUTPUT_LIMIT = 16 * 2**20


def grade(
    assignment: Assignment,
    unpacked: Unpacked,
    *,
    settings: Settings,
    labels: dict[str, str] | None = None,
    gpu_ids: list[str] | None = None,
    scramble_args: bool = False,
) -> GradeResult:
    """Run the assignment's tests against the submission in a fresh sandbox and return the result.

    The sandbox is a pair from this process's warm pool (grader.pool) when there is one for the
    assignment, else started now; either way its containers serve this submission only, and are removed
    after the result is read (in the background: grader.engine.remove_later).

    scramble_args (for checking a reference solution only): the student side spoils every array argument
    after each call, so that tests which read their arguments after the call fail.
    """
    started = time.monotonic()
    box = assignment.sandbox
    image = images.for_assignment(assignment, settings=settings)
    harness_dir = config.HARNESS_DIR  # read at call time so tests can point it at a stand-in
    labels = {"grader.submission": uuid.uuid4().hex, **(labels or {}), "grader.sandbox": uuid.uuid4().hex}
    client = _client(settings)
    api = client.api
    created: list[str] = []
    tests_out = containers.Stream(HARNESS_OUTPUT_LIMIT, stdout_only=True)
    student_out = containers.Stream(settings.output_limit_bytes)
    sinks = (tests_out, student_out)
    pool = warm_pool.active() if not box.gpu else None
    if pool is not None:
        pool.begin()  # no pair starts in this process while a grading runs here
    recipe = None
    try:
        try:
            tests_network = containers.tests_network(client.images.get(image).labels)
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailable(
                "image", f"sandbox image {image} is missing; build it with sandbox/build-offline.sh"
            ) from exc
        if pool is not None:
            recipe = warm_pool.Recipe.of(assignment, image=image, settings=settings, harness_dir=harness_dir)
        # A module of the upload named like a preloaded library would shadow it in a fresh sandbox only.
        pair = None
        if recipe is not None and not module_names(unpacked.files) & recipe.preloaded_tops:
            pair = pool.take(recipe.key, api)
        students: list[str] = []
        failures: list[BaseException] = []

        def start_student(generation: int) -> None:
            """A student container for H to connect to: the first, or a fresh one after a crash or hang."""
            if generation != len(students) or generation > MAX_RESTARTS:
                return  # one container per generation, and no more than the harness may ask for
            if students:
                _kill(api, students[-1])
            student_id = containers.create(
                api,
                image,
                box,
                settings=settings,
                role="student",
                entry=containers.student_entry(generation),
                workdir="/tmp/work",
                network_mode=f"container:{tests_id}",
                labels=labels,
                gpu_ids=gpu_ids,
            )
            created.append(student_id)
            students.append(student_id)
            try:
                containers.start(api, student_id, student_tar, student_out, gpu=box.gpu)
            except docker.errors.APIError:
                # S cannot join the network of an H that has already exited; H's own exit says why.
                if api.inspect_container(tests_id)["State"]["Running"]:
                    raise

        def on_line(line: bytes) -> None:
            if not line.startswith(RESULT_PREFIX.encode()) or b'"restart"' not in line:
                return
            try:
                event = json.loads(line[len(RESULT_PREFIX) :])
                if event.get("event") == "restart" and type(event.get("generation")) is int:
                    start_student(event["generation"])
            except (ValueError, AttributeError):
                return
            except Exception as exc:  # noqa: BLE001 - the engine failed: reported after the run, as ours
                failures.append(exc)

        tests_out.on_line = on_line
        student_tar = sandbox_files.student_tar(
            assignment, unpacked, harness_dir, scramble_args=scramble_args
        )
        spec = sandbox_files.spec_file(assignment, unpacked)
        if pair is not None:
            tests_id = pair.tests_id
            created += [pair.tests_id, pair.student_id]
            students.append(pair.student_id)
            # The submission's part only: the pair has the harness (and H the tests) already.
            close = not pair.parked
            containers.finish(
                pair.tests_sock,
                tests_out,
                containers.frame(sandbox_files.build_tar(spec, uid=1000)),
                close_stdin=close,
            )
            mine = sandbox_files.student_tar(assignment, unpacked, None, scramble_args=scramble_args)
            containers.finish(pair.student_sock, student_out, containers.frame(mine), close_stdin=close)
        else:
            tests_id = containers.create(
                api,
                image,
                box,
                settings=settings,
                role="tests",
                entry=containers.TESTS_ENTRY,
                workdir="/tmp/grade",
                network_mode=tests_network,
                labels=labels,
                gpu_ids=gpu_ids,
            )
            created.append(tests_id)
            tests_tar = sandbox_files.build_tar(
                sandbox_files.tests_files(assignment, harness_dir) | spec, uid=1000
            )
            containers.start(api, tests_id, tests_tar, tests_out, gpu=box.gpu)
            start_student(0)
        timed_out, pids_hit = containers.stop(
            api, tests_id, students, box.timeout_s + STARTUP_GRACE_S, box.pids
        )
        for sink in sinks:
            sink.close()
        if failures:
            raise SandboxUnavailable(
                "engine", f"the Docker engine failed to restart the student side: {failures[0]}"
            )
        # Only S's memory is the student's fault; H running out means the tests need a bigger limit.
        oom = any(api.inspect_container(student_id)["State"].get("OOMKilled") for student_id in students)
        tests_exit = sandbox_result.exit_description(api.inspect_container(tests_id)["State"])
        return sandbox_result.result(
            box,
            tests_out,
            student_out,
            timed_out=timed_out,
            oom=oom,
            pids_hit=pids_hit,
            tests_exit=tests_exit,
            duration_s=time.monotonic() - started,
        )
    except (docker.errors.APIError, requests.RequestException) as exc:
        raise SandboxUnavailable("engine", f"the Docker engine failed while grading: {exc}") from exc
    finally:
        # Off the result path; S first: it uses H's network namespace.
        remove_later(settings, list(reversed(created)))
        for sink in sinks:
            sink.close()
        client.close()
        if pool is not None:
            pool.end(recipe)  # the next pair for this assignment starts once no grading runs here
