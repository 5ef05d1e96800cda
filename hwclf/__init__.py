"""hwclf: how much does image blur hurt handwriting recognition, for which network, and how sure are we?

The library (data, blur, models, one trial, aggregation) imports no Ray; the Ray Tune driver lives in
``sweep/``.
"""

__version__ = "0.1.0"
