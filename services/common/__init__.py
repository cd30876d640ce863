"""Runtime plumbing the services share: how they run, not what they exchange (that contract is
``shared/``).

- ``redis_client.py`` — the Redis client (single node or cluster), ``registry.py`` — the model
  registry in Redis;
- ``http.py`` — the HTTP edge: body limits, error bodies, admission, JSON responses;
  ``uvicorn_internals.py`` — the one module using uvicorn's private API; ``fast_path.py`` —
  the base of the fast paths in front of a FastAPI app;
- ``health.py`` — readiness probes; ``metrics.py`` — the metrics base (per-app registry, HTTP
  metrics, request middleware; each service's own metrics are in its package);
- ``runtime.py`` and ``logcontext.py`` — logging, serving, garbage-collector settings.
"""
