"""guardlink: the shared contract (events, incidents, escalations, topics, site config) and the CLI."""

__version__ = "0.1.0"
