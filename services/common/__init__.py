"""Web plumbing the HTTP services share (body limits, error bodies, logging, serving)."""
