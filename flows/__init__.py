"""Prefect flows: each reads as the user's story and only orchestrates the job steps in `jobs/`."""
