# syntax=docker/dockerfile:1
# The app image of compose.yaml: every Python process of the pipeline (producers,
# dataflow, dashboard, topic and recovery bootstrap); compose picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
# The wheels (confluent-kafka with librdkafka, bytewax) are manylinux: no compiler needed.
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir -p config sources flows sinks dashapp infra \
    && pip install . \
    && pip uninstall -y realtime-dashboard

COPY config/ config/
COPY sources/ sources/
COPY flows/ flows/
COPY sinks/ sinks/
COPY dashapp/ dashapp/
COPY infra/ infra/
RUN --mount=type=cache,target=/root/.cache/pip pip install --no-deps .

# Run as an unprivileged user; /data/recovery is the dataflow's recovery volume.
RUN useradd --create-home --uid 10001 --user-group app \
    && mkdir -p /data/recovery \
    && chown app:app /data/recovery
USER app

# Logs as JSON lines on stderr (config/logging.py); compose sets the rest of PIPELINE_*.
ENV PIPELINE_LOG_FORMAT=json
EXPOSE 8050 9100 9101 9102
CMD ["python", "-m", "dashapp"]
