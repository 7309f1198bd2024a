"""obt-eval: compare self-supervised speech encoders by the acoustic units and unit vocoders they give.

The library holds the science (audio, corpora, encoders, features, units, metrics, vocoder,
listening-test design and statistics); it never imports gradio or the `db` package.
"""

__version__ = "0.1.0"
