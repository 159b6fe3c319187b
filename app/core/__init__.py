"""The studio's domain core: what the web layer and the worker both build on.

- ``settings``, ``errors``, ``db``, ``models`` (the tables), ``upsert``, ``migrate``,
  ``startup``: configuration, the database and its schema;
- ``storage`` (paths under the storage root), ``users`` (accounts, passwords, tokens),
  ``evaluations`` (stored checkpoint evaluations);
- ``jobs``: the job state machine and its leases; ``submission``: the one way a job is
  built (``srpo.config.preset``) and queued; ``dispatch``: the task names and a
  sending-only Celery client; ``maintenance``: the loop that reaps leases and re-sends;
- ``outputs``: what training and rendering write (metrics, checkpoints, images);
  ``reads``: jobs, metrics, samples, logs and checkpoints as plain rows for API and UI;
- ``arena`` (campaigns, pairs, votes), ``arena_stats`` (pure statistics),
  ``arena_results`` (results and export from stored votes);
- ``model_refs``: ``base`` / ``checkpoint:ID`` references loaded through srpo's loader,
  and the model cache of the Reward Lab and arena scores.

The core imports only itself and ``srpo``: never ``app.web`` nor ``worker``.
"""
