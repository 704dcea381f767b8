"""Feature extraction: crops (pure), the feature cache (keys, layout, reader), the encoder worker
(Ray-free) and the Ray Data pipeline. Import ``partaware.extract.pipeline`` only where Ray is wanted."""
