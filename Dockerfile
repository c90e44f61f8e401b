# The service's image (API and workers) for docker-compose.yml. Needs a registry to build; this
# project's CI cannot pull, so it is checked by tests/test_compose.py rather than built there.
# The sandbox images are separate: sandbox/Dockerfile and sandbox/Dockerfile.gpu.
FROM python:3.11-slim-bookworm
RUN useradd --create-home --uid 10001 grader
WORKDIR /app
COPY pyproject.toml README.md ./
COPY grader ./grader
COPY sandbox ./sandbox
COPY migrations ./migrations
COPY alembic.ini ./
# Installed in place: workers ship sandbox/harness/ into every sandbox from this checkout.
RUN pip install --no-cache-dir -e .
# Workers talk to the host's Docker engine through its socket (mounted in docker-compose.yml),
# which needs the socket's group; the API alone runs fine as this user.
USER grader
ENV GRADER_DATA_DIR=/var/lib/grader
CMD ["grader", "api", "--host", "0.0.0.0", "--port", "8000"]
