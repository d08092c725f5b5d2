FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker broker
COPY contact_points contact_points
COPY schemas schemas
COPY workers workers
RUN pip install --no-cache-dir . && useradd --system spoc && mkdir -p /var/lib/spoc && chown spoc /var/lib/spoc
USER spoc
EXPOSE 8000
