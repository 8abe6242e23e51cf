"""Celery workers and the detection pipeline they run: media -> detectors -> results."""
