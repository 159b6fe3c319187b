"""The SRPO Studio web app (Gradio on FastAPI), its settings and database. Arrives with issues 5-6."""
