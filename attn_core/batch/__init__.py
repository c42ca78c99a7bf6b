"""Batch scoring of many files: streaming, resumable output (``output``) and the Ray scale-out engine
(``ray_engine``, optional: ``pip install -e ".[ray]"``; importing this package never imports Ray)."""
