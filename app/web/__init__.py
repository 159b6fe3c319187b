"""The studio's web layer: FastAPI routes, auth, and the Gradio apps mounted beside them."""
