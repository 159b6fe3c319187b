"""Celery workers that run training jobs through srpo's public functions. Arrives with issue 5."""
