# One image for every role: `shouli edge`, `shouli worker NAME`, `shouli migrate`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY channels channels
COPY router router
COPY store store
COPY workers workers
RUN pip install --no-cache-dir . && useradd --system --uid 1000 shouli && mkdir -p /var/lib/shouli && chown shouli /var/lib/shouli
COPY config.yaml /etc/shouli/config.yaml
USER shouli
ENV SHOULI_CONFIG=/etc/shouli/config.yaml
ENTRYPOINT ["shouli"]
