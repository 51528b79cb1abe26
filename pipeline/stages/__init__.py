"""Stage PTransforms and their declarations; :mod:`winnow.pipeline.stages.registry` lists them."""
