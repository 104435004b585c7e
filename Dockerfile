# alertbot as a container: docker build -t alertbot . ; see README "Container".
FROM python:3.11-slim AS build

# A C compiler for the compiled core (mypyc and the C engine core); the runtime image has none.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --no-cache-dir --prefix=/install -r requirements.txt

COPY setup.py README.md ./
COPY alertbot ./alertbot
RUN pip install --no-cache-dir --no-deps --prefix=/install .


FROM python:3.11-slim

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin alertbot \
    && mkdir -p /data /rules /backups \
    && chown alertbot /data /backups
COPY --from=build /install /usr/local
COPY rules.example.yaml /rules/rules.yaml

# the bot's own daily copies of its database, in a volume of their own (README "Backups")
ENV ALERTBOT_DB=/data/alertbot.db \
    ALERTBOT_BACKUP_DIR=/backups \
    ALERTBOT_HTTP_PORT=8080 \
    PYTHONUNBUFFERED=1
VOLUME ["/data", "/backups"]
EXPOSE 8080
USER 10001
WORKDIR /data

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]

ENTRYPOINT ["alertbot"]
CMD ["run", "--rules", "/rules/rules.yaml"]
