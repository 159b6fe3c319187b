"""The worker: Celery tasks that run training jobs, render A/B pairs and sample grids.

It only runs work: claiming, leases and every database write go through :mod:`app.core`,
models load through srpo's one loader (via :mod:`app.core.model_refs`), and training is
``srpo.train.train``. The worker never imports the web layer.

- ``celery_app``: the Celery app from the settings; ``tasks``: the three tasks;
- ``supervisor``: claim a job, start its training process group, heartbeat, settle;
- ``run_job``: the training process (``python -m worker.run_job JOB_ID``);
- ``callback``: the trainer callback that reports to the database;
- ``rendering``: a campaign's pairs and a checkpoint's grid;
- ``embedded``: the in-process worker of the embedded mode; ``process``: process groups.
"""
