"""Compression jobs: requests and their validation, the queue in the database, the worker.

``request``, ``queue`` and ``stats`` are torch-free (the API uses them); ``worker`` runs the
compression pipeline and belongs to the worker process.
"""
