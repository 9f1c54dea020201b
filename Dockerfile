# bccd container: the README's install steps, as a non-root service on a slim base.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BCCD_STORAGE__DATA_DIR=/var/lib/bccd \
    BCCD_SMTP__LISTEN=0.0.0.0:2525 \
    BCCD_HTTP__LISTEN=0.0.0.0:8025 \
    BCCD_LOG__FORMAT=json

RUN useradd --system --home-dir /var/lib/bccd --create-home --uid 10025 bccd

WORKDIR /opt/bccd
COPY pyproject.toml requirements.lock README.md ./
COPY bccd ./bccd
COPY migrations ./migrations
RUN pip install --no-cache-dir -r requirements.lock && pip install --no-cache-dir --no-deps -e .

USER bccd
VOLUME ["/var/lib/bccd"]
EXPOSE 2525 8025
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8025/healthz', timeout=4)"
ENTRYPOINT ["bccd"]
CMD ["serve"]
