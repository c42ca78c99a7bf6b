"""Gradio components every tab builds the same way: output pictures, photo inputs, the example faces."""

from __future__ import annotations

import gradio as gr

from app.photos import example_paths


def image_out(label: str, buttons: tuple[str, ...] = ("download", "fullscreen"), **kwargs) -> gr.Image:
    """An output picture; small crops (112 px) are scaled up to fill their box. In a narrow box, fewer ``buttons``
    leave its label room (the buttons sit on the label's line)."""
    return gr.Image(label=label, format="png", interactive=False, buttons=list(buttons),
                    elem_classes=["fill-image"], **kwargs)


def examples(target: gr.Image, label: str = "Example faces (click one)") -> gr.Examples:
    return gr.Examples(examples=[[str(p)] for p in example_paths()], inputs=target, label=label,
                       examples_per_page=12)


def photo_input(label: str, elem_id: str) -> gr.Image:
    return gr.Image(label=label, type="filepath", sources=["upload", "webcam", "clipboard"],
                    webcam_options=gr.WebcamOptions(mirror=False), elem_id=elem_id, height=300)
