"""The studio's thin web layer: the FastAPI app (:mod:`.factory`), auth in front of every
route (:mod:`.auth`), the login pages (:mod:`.pages`), the REST API (:mod:`.api`, one module
per resource), the Gradio apps (:mod:`.ui`) and model cards (:mod:`.cards`).

It translates requests into calls of :mod:`app.core` and never imports the worker: work goes
to the broker through :mod:`app.core.dispatch`.
"""
