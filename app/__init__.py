"""The SRPO Studio: a domain core and a thin web layer around the srpo library.

- :mod:`app.core`: settings, database, tables, migrations glue, storage, users, jobs and
  their leases, job reads and writes, the arena, dispatch to the broker, the one
  submission path and the model cache. It imports only itself and ``srpo``.
- :mod:`app.web`: FastAPI routes (the REST API, one module per resource), auth, and the
  Gradio apps; imports ``app.core`` and ``srpo``, never ``worker``.
- :mod:`app.users_cli`: ``srpo users`` (core only).
- :mod:`app.studio`: ``srpo studio``, the one process that wires the web layer and the
  embedded worker together.
"""
