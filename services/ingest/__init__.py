"""services/ingest: validates votes and score events and produces them to Kafka."""
