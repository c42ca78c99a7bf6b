"""The About tab: the method in formulas, what the score does and does not mean, and the selected backbone's card."""

from __future__ import annotations

import gradio as gr

from app.errors import user_errors
from app.models import backbone_card

METHOD_MD = r"""
## The method
ATTN-FIQA scores a face image **without any training**, from one forward pass of a face-recognition Vision
Transformer. For the final transformer block with $H$ heads over $N$ tokens, it takes the *pre-softmax* attention
logits and averages them:

$$A_h = \frac{Q_h K_h^\top}{\sqrt{d_\text{head}}}, \qquad \text{score} = \frac{1}{H N^2}\sum_{h=1}^{H}\sum_{i=1}^{N}\sum_{j=1}^{N} A_h[i, j]$$

The score is signed and unnormalised: on real face models it is negative, and **higher (less negative) = better**.
The map shows, for each patch $j$, the mean logit it receives, $m_j = \frac{1}{HN}\sum_{h,i} A_h[i, j]$; its mean
over patches is exactly the score, so the map is a spatial decomposition of the number. A per-head map fixes $h$.

## What the score does and does not mean
* It measures how strongly a **face-recognition** network's tokens attend to each other on this face: in the paper
  it tracks how useful the image is for recognition (low for blur, occlusion, bad light, extreme pose).
* It is **not** a beauty, aesthetics or identity score, and not a probability; compare scores only within one
  backbone and one set of options.
* On a backbone **not trained for faces** (the general timm ViTs), the same arithmetic runs but the score is
  **not** face quality. With **random weights** it only shows the mechanics.
* Other blocks, single heads, other aggregations and patch-only tokens are research and teaching options; the
  paper's score is the last block, all heads, mean, all tokens.
"""


@user_errors
def about(backbone: str) -> str:
    """The selected backbone's card."""
    return backbone_card(backbone)


def build(default_backbone: str) -> gr.Markdown:
    """The About tab (inside an open ``gr.Tab``); returns the backbone card, which a backbone change updates."""
    gr.Markdown(METHOD_MD, latex_delimiters=[{"left": "$$", "right": "$$", "display": True},
                                             {"left": "$", "right": "$", "display": False}])
    card = gr.Markdown(backbone_card(default_backbone), elem_id="card")
    gr.api(about, api_name="about")
    return card
