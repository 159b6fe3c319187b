"""Celery workers that run training jobs, A/B pairs and sample grids through srpo."""
