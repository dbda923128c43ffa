"""Runs that MLflow holds as RUNNING: which ones stopped sending heartbeats, and closing them."""
