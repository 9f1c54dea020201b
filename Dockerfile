# bccd container: the README's install steps — the wheel plus the runtime set
# (requirements.lock, hashes checked), nothing from the test set — as a non-root service
# on a slim base.
#
#   docker build -t bccd .
#   docker run -d --name bccd -p 25:2525 -p 127.0.0.1:8025:8025 -v bccd-data:/var/lib/bccd bccd
#
# Configuration: BCCD_<SECTION>__<KEY> variables (-e BCCD_SMTP__BCC_DOMAIN=bcc.example.com), or a
# file: -v /etc/bccd/bccd.toml:/etc/bccd/bccd.toml:ro -e BCCD_CONFIG=/etc/bccd/bccd.toml.
# Commands: docker exec bccd bccd user list; on PostgreSQL run `docker run --rm … bccd db upgrade`
# with the new image before starting it.
# Data: /var/lib/bccd (database, blobs, secret key) is a volume, mode 0700, owned by the
# bccd user (uid 10025); a bind-mounted directory must belong to that uid. bccd runs with
# umask 0077, so whatever it writes there is readable by its own user only.
# Ports: SMTP 2525 and HTTP 8025 inside the container (an unprivileged user cannot bind 25;
# publish 25 on the host instead).

# --- build: the wheel, from this checkout
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --disable-pip-version-check 'build>=1.2'
COPY pyproject.toml README.md ./
COPY bccd ./bccd
RUN python -m build --wheel --outdir /dist .

# --- runtime: the runtime set and the wheel in a venv, as in conf/bccd.service's install steps
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/bccd/venv/bin:$PATH \
    BCCD_STORAGE__DATA_DIR=/var/lib/bccd \
    BCCD_SMTP__LISTEN=0.0.0.0:2525 \
    BCCD_HTTP__LISTEN=0.0.0.0:8025 \
    BCCD_LOG__FORMAT=json

RUN useradd --system --user-group --uid 10025 --home-dir /var/lib/bccd --no-create-home \
        --shell /usr/sbin/nologin bccd \
    && install -d -m 0700 -o bccd -g bccd /var/lib/bccd

COPY requirements.lock /tmp/bccd/requirements.lock
COPY --from=build /dist/ /tmp/bccd/dist/
RUN python -m venv /opt/bccd/venv \
    && /opt/bccd/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --require-hashes -r /tmp/bccd/requirements.lock \
    && /opt/bccd/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --no-deps /tmp/bccd/dist/bccd-*.whl \
    && rm -rf /tmp/bccd

USER bccd
WORKDIR /var/lib/bccd
VOLUME ["/var/lib/bccd"]
EXPOSE 2525 8025
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8025/healthz', timeout=4)"]
# umask 0077, then bccd itself (exec: it is PID 1 and receives SIGTERM, which drains);
# any bccd command works in place of CMD: docker run --rm bccd user list
ENTRYPOINT ["/bin/sh", "-c", "umask 0077 && exec bccd \"$@\"", "bccd"]
CMD ["serve"]
