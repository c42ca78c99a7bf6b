"""The attention lab (docs/DESIGN.md 1b): q and k of every block of one face from one forward pass, the teaching
views derived from them (``attention``) and their figures (``figures``)."""

from attn_core.lab.attention import AttentionLab, HeadStats, capture_lab

__all__ = ["AttentionLab", "HeadStats", "capture_lab"]
