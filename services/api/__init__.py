"""services/api: reads live standings from Redis and serves them (JSON and a web page)."""
