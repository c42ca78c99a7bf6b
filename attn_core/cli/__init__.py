"""The ``attn-fiqa`` command line: ``main`` (the parser and ``score``/``backbones``/``fetch``), ``options`` (the
options every command shares), ``eval`` (``eval``, ``sweep``) and ``train`` (``train prepare|run|export``).
The app's ``attn-fiqa app`` joins through the ``attn_fiqa.commands`` entry-point group, so the library never
imports the app."""
