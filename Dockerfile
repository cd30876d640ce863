# One image for the three Podium services; pick one with the command
# (python -m services.ingest | services.rating | services.api).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir -c constraints.txt . && useradd --system --uid 10001 podium
USER podium
EXPOSE 8000 8001 8002
CMD ["python", "-m", "services.api"]
