"""Encoders: the registry of encoder specs, their checkpoint converters, weights resolution.

- ``specs``: ``EncoderSpec``/``WeightsSource`` (pydantic, no torch); ``registry``: registration, selection
  (``all``, ``family:<f>``, names), ``CONVERTERS``/``HEAD_BUILDERS``; ``base``: ``LoadedEncoder`` and taps;
  ``loading``: ``load_encoder``; ``weights``: cache, staging, downloads; ``convert``/``heads``: converter
  helpers and projection heads.
- One module per family (``deit``, ``mocov3``, ``dino``, ``beit``, ``mae``, ``cae``, ``ibot``, ``modern``)
  holds its spec rows and its converter. See docs/encoders.md.
"""
