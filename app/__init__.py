"""ATTN-FIQA web app: a Gradio UI over attn_core (``attn-fiqa app`` or ``python -m app``)."""
