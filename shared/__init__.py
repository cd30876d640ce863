"""The contract between Podium's services: what one service writes and another reads.

- ``events.py`` — every event on every topic (votes, scores, rank changes), pydantic models;
- ``standings.py`` — the standings documents the rating service writes and the api serves,
  and the history points;
- ``topics.py`` — topic names; ``keys.py`` — the Redis key layout; ``generations.py`` — which
  generation of the rating key space is live;
- ``settings/`` — every setting of every service, a module per service (``settings_doc.py``
  renders the table);
- ``kafka.py`` — topic creation as the contract has them; ``client.py`` — the Python client of
  the HTTP services.

Nothing here runs a service. The runtime plumbing the services share (Redis client, HTTP edge,
health, metrics base, logging) is ``services/common``; a service's own code is in its package.
"""
