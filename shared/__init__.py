"""What Podium's services share: event schemas, topic names, Redis key layout, settings."""
