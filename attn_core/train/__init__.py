"""Training ATTN-FIQA's own face-recognition ViT with a margin loss over identity folders.

``data``: which identities train and which stay held out, alignment once into a cached array of context crops, and
augmentation (geometry, colour and the project's own degradations). ``losses``: CosFace, ArcFace and AdaFace heads.
``trainer``: the resumable training loop with validity logging, and export to a loadable safetensors backbone.
The command line is ``attn-fiqa train prepare|run|export`` (``attn_core.cli.train``).
"""
