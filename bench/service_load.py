"""2. Throughput and 3. a deadline burst, through the real service (API + Celery workers on Redis and
PostgreSQL, a fresh database created and dropped here).

    .venv/bin/python bench/service_load.py [--quick] [--concurrency N] [--only throughput|burst]

2: N trivial submissions uploaded at once (8 clients), then graded: submissions per minute from the
   first upload to the last score, and upload->score per submission (score time = finished_at).
3: M uploads from C concurrent clients (one student and one keep-alive connection each,
   bench/light_client.py), all started together, each sending again when answered (or, with --rate,
   each upload due at its own time): refusals, losses, upload latency percentiles, and the time until
   all are graded (--via form: through the web upload form, signed-in browsers' cookies and CSRF
   tokens, as its script sends it). First 40 uploads from 8 other students warm the API (--cold:
   none, as in bench/README.md sections 3-12); with --api-alone they are graded before the burst's
   (with --no-drain, nothing is graded: the upload path alone, for A/B runs).
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import light_client  # noqa: E402
from common import Report, median, percentile  # noqa: E402
from service_env import running_service  # noqa: E402

TARGET_PER_MINUTE = 100
TARGET_P99_UPLOAD_S = 0.300
WARM_UPLOADS = 40


def _upload_all(
    url: str, students: list, per_client: int, rate: float | None = None, form: bool = False
) -> tuple:
    """The uploads (light_client.upload_all's tuples) and the clients' CPU seconds."""
    cpu = time.process_time()
    uploads = asyncio.run(
        light_client.upload_all(
            url,
            students,
            per_client,
            slug="add-one",
            filename="hw.zip",
            data=common.passes_zip(),
            rate=rate,
            form=form,
        )
    )
    return uploads, time.process_time() - cpu


def _graded_report(report: Report, service, uploads, timeout_s: float) -> dict:
    ids = [sid for code, sid, _s, _l in uploads if sid]
    sent = {sid: at for _c, sid, at, _l in uploads if sid}
    progress_at = [time.monotonic()]

    def progress(n):
        if time.monotonic() - progress_at[0] > 15:
            report.note(f"... {n}/{len(ids)} graded")
            progress_at[0] = time.monotonic()

    done = service.wait_graded(ids, timeout_s, on_progress=progress)
    graded = [sid for sid, (status, score, _f) in done.items() if status == "graded" and score == 1]
    report.check(
        "all accepted uploads graded (score 1/1)", len(graded) == len(ids), f"{len(graded)}/{len(ids)}"
    )
    if done:
        first = min(sent.values())
        last = max(f for _s, _sc, f in done.values())
        latency = [done[sid][2] - sent[sid] for sid in done]
        return {"span": last - first, "count": len(done), "latency": latency}
    return {"span": float("nan"), "count": 0, "latency": [float("nan")]}


def _cpu_s(service) -> tuple[float, float, float]:
    """CPU seconds used so far: the whole machine, the API's processes, the workers' processes."""
    return common.machine_cpu_s(), service.api_cpu_s(), service.workers_cpu_s()


def throughput(service, count: int, timeout_s: float) -> Report:
    report = Report(
        f"2. throughput: {count} trivial submissions through API + worker "
        f"(--concurrency {service.concurrency}), Redis + PostgreSQL"
    )
    clients = 8  # students uploading at once; each stays under the course's submissions.max (50)
    tokens = service.tokens("tp", clients)
    cpu = _cpu_s(service)
    uploads, _clients_cpu = _upload_all(service.url, tokens, per_client=-(-count // clients))
    refused = [u for u in uploads if u[0] != 202]
    report.check("uploads accepted", not refused, f"{len(uploads) - len(refused)}/{len(uploads)}")
    result = _graded_report(report, service, uploads, timeout_s)
    machine, api, workers = (
        (now - then) / max(1, result["count"]) for now, then in zip(_cpu_s(service), cpu, strict=True)
    )
    per_minute = result["count"] / result["span"] * 60 if result["span"] else 0
    report.figure("first upload -> last score", result["span"], "s", fmt="{:.1f}")
    report.figure(
        "submissions graded per minute", per_minute, "/min", fmt="{:.0f}", at_least=TARGET_PER_MINUTE
    )
    report.figure("upload -> score, median", median(result["latency"]), "s", fmt="{:.1f}")
    report.figure("upload -> score, p95", percentile(result["latency"], 95), "s", fmt="{:.1f}")
    # What a submission costs: 150/min on 2 cores leaves 0.8 core-s each.
    report.figure("machine CPU per submission (all processes)", machine, "core-s", fmt="{:.2f}")
    report.figure("of which the API's / the workers' Python", api + workers, "core-s", fmt="{:.3f}")
    report.note(f"API {api * 1000:.0f} ms, workers {workers * 1000:.0f} ms per submission")
    return report


def burst(
    service,
    clients: int,
    per_client: int,
    timeout_s: float,
    *,
    api_alone: bool = False,
    rate: float | None = None,
    cold: bool = False,
    drain: bool = True,
    form: bool = False,
) -> Report:
    total = clients * per_client
    during = "workers grading meanwhile"
    if api_alone:
        during = "no worker running until the uploads are in" if drain else "no worker running"
    arrivals = f"arriving at {rate:g}/s" if rate else "each sent when the last was answered"
    warmed = "API just started" if cold else f"API warmed by {WARM_UPLOADS} uploads"
    via = "the upload form" if form else "the API"
    accepted = 201 if form else 202
    report = Report(
        f"3. deadline burst: {total} uploads through {via} from {clients} concurrent clients, {arrivals} "
        f"(--concurrency {service.concurrency}, {service.api_workers} API process(es); {during}; {warmed})"
    )
    if not cold:
        # A deadline finds the API up for days: its connections open, its statements compiled, its
        # imports done. Without this, each API process pays for those in the burst's first wave. The
        # burst's own students still use their tokens for the first time in it.
        warm = service.browsers("warm", 8) if form else service.tokens("warm", 8)
        warmed, _ = _upload_all(service.url, warm, per_client=WARM_UPLOADS // len(warm), form=form)
        refused = [code for code, *_ in warmed if code != accepted]
        report.check("warm-up uploads accepted", not refused, f"{len(warmed) - len(refused)}/{len(warmed)}")
    students = service.browsers("burst", clients) if form else service.tokens("burst", clients)
    started, api_cpu = time.perf_counter(), service.api_cpu_s()
    uploads, clients_cpu = _upload_all(service.url, students, per_client, rate, form=form)
    took, api_cpu = time.perf_counter() - started, service.api_cpu_s() - api_cpu
    if api_alone and drain:
        service.start_workers()
    codes: dict[int, int] = {}
    for code, *_ in uploads:
        codes[code] = codes.get(code, 0) + 1
    refused = total - codes.get(accepted, 0)
    report.figure("all uploads answered within", took, "s", fmt="{:.2f}")
    report.check(f"none refused (all {accepted})", refused == 0, f"{codes}")
    latency = [lat for *_, lat in uploads]
    report.figure("upload latency median", median(latency), "s")
    report.figure("upload latency p95", percentile(latency, 95), "s")
    # The target is for clients that send again as soon as they are answered: 50 / (uploads per second)
    # on average, whatever else. At a rate the service can keep up with, latency is its own time.
    p99 = percentile(latency, 99)
    if rate:
        report.figure("upload latency p99 (a rate: not the target's burst)", p99, "s")
    else:
        report.figure("upload latency p99", p99, "s", at_most=TARGET_P99_UPLOAD_S)
    report.figure("upload latency max", max(latency), "s")
    if not rate:
        # Every client's first upload goes at once, with a token or sign-in not yet used: the opening
        # wave, whose slowest answers were most of the p99 (bench/README.md sections 15, 16).
        by_sending = sorted(uploads, key=lambda upload: upload[2])
        wave, rest = by_sending[:clients], by_sending[clients:]
        report.figure("the opening wave (each client's first upload): slowest", max(u[3] for u in wave), "s")
        if rest:
            report.figure("after the opening wave: p99", percentile([u[3] for u in rest], 99), "s")
    # What one API process can take, whatever else shares the cores (the clients here, the workers).
    report.figure("API CPU per upload", api_cpu / total * 1000, "ms", fmt="{:.1f}")
    report.figure("uploads/s per API process at 100% of a core", total / api_cpu, "/s", fmt="{:.0f}")
    report.figure("the clients' CPU per upload", clients_cpu / total * 1000, "ms", fmt="{:.1f}")
    if not drain:
        report.note("not graded (--no-drain): whether each accepted upload is graded is not checked")
        return report
    result = _graded_report(report, service, uploads, timeout_s)
    report.check(
        f"none lost (every {accepted} has a row, graded)",
        result["count"] == codes.get(accepted, 0),
        f"{result['count']}/{codes.get(accepted, 0)}",
    )
    report.figure("first upload -> last score", result["span"], "s", fmt="{:.1f}")
    report.figure(
        "graded per minute during the drain", result["count"] / result["span"] * 60, "/min", fmt="{:.0f}"
    )
    report.figure("upload -> score, p95", percentile(result["latency"], 95), "s", fmt="{:.1f}")
    return report


def main(argv=None) -> list[Report]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 submissions, a burst of 150 from 50 clients")
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--count", type=int, default=None, help="throughput submissions (default 200)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=None, help="burst uploads per client (default 10)")
    parser.add_argument("--only", choices=["throughput", "burst"])
    parser.add_argument("--api-workers", type=int, default=1, help="API processes (grader api --workers)")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="burst: uploads due at this many per second (all clients), not sent when the last is answered",
    )
    parser.add_argument("--pool", type=int, default=0, help="warm pairs per worker (GRADER_POOL_SIZE)")
    parser.add_argument(
        "--upload-concurrency",
        type=int,
        default=None,
        help="GRADER_UPLOAD_CONCURRENCY (default: the setting's)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help=f"burst: on the API just started (sections 3-12), not after {WARM_UPLOADS} uploads",
    )
    parser.add_argument(
        "--api-alone",
        action="store_true",
        help="diagnostic: start the workers only after the burst's uploads (API capacity alone)",
    )
    parser.add_argument(
        "--via",
        choices=["api", "form"],
        default="api",
        help="burst: upload through the API (bearer tokens) or the web form as its script sends it",
    )
    parser.add_argument(
        "--no-drain",
        action="store_true",
        help="with --api-alone: stop after the burst, grading nothing (A/B runs of the upload path)",
    )
    args = parser.parse_args(argv)
    if args.no_drain and not args.api_alone:
        parser.error("--no-drain goes with --api-alone (otherwise workers grade during the burst)")
    count = args.count or (64 if args.quick else 200)
    per_client = args.per_client or (3 if args.quick else 10)
    reports = []
    if args.api_alone:
        args.only = "burst"
    with running_service(
        concurrency=args.concurrency,
        start_workers=not args.api_alone,
        api_workers=args.api_workers,
        pool=args.pool,
        settings={"upload_concurrency": str(args.upload_concurrency)} if args.upload_concurrency else None,
    ) as service:
        try:
            if args.only in (None, "throughput"):
                reports.append(throughput(service, count, timeout_s=max(300, count * 3)))
            if args.only in (None, "burst"):
                reports.append(
                    burst(
                        service,
                        args.clients,
                        per_client,
                        api_alone=args.api_alone,
                        rate=args.rate,
                        cold=args.cold,
                        drain=not args.no_drain,
                        form=args.via == "form",
                        timeout_s=max(300, args.clients * per_client * 3),
                    )
                )
        except Exception:
            print(service.logs(), file=sys.stderr)
            raise
    return reports


if __name__ == "__main__":
    main()
