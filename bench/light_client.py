"""Students uploading at once, as cheaply for this machine as it can be done: one HTTP/1.1 keep-alive
connection per student on asyncio streams (opened again when the server ends it), the multipart body
built once.

The benchmarks run the clients on the cores the service uses, where in a real deadline burst they are
the students' own machines. httpx's AsyncClient cost 2.3-4.3 ms of this machine's CPU per upload (about
a fifth of what the API itself spends); this costs a fraction of a millisecond, so what the burst
measures is the service. The figures print the clients' CPU per upload either way.
"""

import asyncio
import json
import time
from urllib.parse import urlsplit

BOUNDARY = "bench-boundary-7d2f1c"


def multipart(fields: dict[str, str], filename: str, data: bytes) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class Connection:
    """One keep-alive connection; connects again after an error, or when the server ends it."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        try:
            status_and_headers = await self.reader.readuntil(b"\r\n\r\n")
            lines = status_and_headers.decode("latin-1").split("\r\n")
            code = int(lines[0].split(" ", 2)[1])
            lengths = [int(x.split(":", 1)[1]) for x in lines[1:] if x.lower().startswith("content-length:")]
            if not lengths:
                raise ValueError("an answer without Content-Length")
            answer = await self.reader.readexactly(lengths[0])
            if any(x.lower().replace(" ", "") == "connection:close" for x in lines[1:]):
                self.close()  # the server ends it (several API processes: config.py, api_processes)
            return code, answer
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def upload_all(
    url: str,
    students: list,
    per_client: int,
    *,
    slug: str,
    filename: str,
    data: bytes,
    rate: float | None = None,
    form: bool = False,
) -> list[tuple[int, str | None, float, float]]:
    """Each student's client uploads per_client times, all clients at once: back to back, or with `rate`
    (uploads per second, all clients together) each upload due at its own time, round robin over the
    clients. A student is a bearer token for the API (`POST /api/submissions`, 202), or with `form` a
    signed-in browser's (session cookie, CSRF token) for the upload form as its script sends it
    (`POST /assignments/{slug}/submit`, asking for JSON: 201). Returns (status code, id, sent at epoch,
    latency s) per upload; code 0 is a transport error. With a rate, latency counts from when the
    upload was due, so an answer that came late and held up that client's next upload counts against
    both."""
    parts = urlsplit(url)
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    path, accepted = (f"/assignments/{slug}/submit", 201) if form else ("/api/submissions", 202)
    api_body = multipart({"assignment": slug}, filename, data)
    results = []
    start = asyncio.Event()

    def request(student) -> tuple[dict[str, str], bytes]:
        if not form:
            return {"Authorization": f"Bearer {student}", "Content-Type": content_type}, api_body
        cookie, csrf = student
        headers = {
            "Cookie": f"grader_session={cookie}",
            "Accept": "application/json",
            "Content-Type": content_type,
        }
        return headers, multipart({"csrf_token": csrf}, filename, data)

    def submission_id(answer: bytes) -> str:
        body = json.loads(answer)
        return body["url"].rsplit("/", 1)[-1] if form else body["id"]

    async def one_client(index: int, student) -> None:
        connection = Connection(parts.hostname, parts.port)
        headers, body = request(student)
        await start.wait()
        began = time.perf_counter()
        for upload in range(per_client):
            if rate:
                due = began + (upload * len(students) + index) / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            sent, t0 = time.time(), time.perf_counter()
            if rate:
                sent, t0 = sent - (t0 - due), due
            try:
                code, answer = await connection.post(path, headers, body)
                sid = submission_id(answer) if code == accepted else None
            except (OSError, ValueError, KeyError, asyncio.IncompleteReadError):
                code, sid = 0, None
            results.append((code, sid, sent, time.perf_counter() - t0))
        connection.close()

    tasks = [asyncio.create_task(one_client(i, student)) for i, student in enumerate(students)]
    await asyncio.sleep(0.2)  # every task waiting on the event
    start.set()
    await asyncio.gather(*tasks)
    return results
