"""The demo corpus and the labelled evaluation sets: test and demo material, not product code.

- :mod:`winnow.demo.corpus` assembles the demo corpus (real text from this machine, drawn
  images, planted problems) that ``winnow demo``, the tests and the benchmarks run on.
- :mod:`winnow.demo.text` collects that text (pydoc topics, standard-library docstrings, man
  pages); :mod:`winnow.demo.images` draws and captions the images.
- :mod:`winnow.demo.domain` builds the demo's domain references and dictionary.
- :mod:`winnow.demo.pii_evalset` is a generated, labelled PII evaluation set.

Nothing under ``winnow.pipeline``, ``winnow.filters``, ``winnow.tokenizer`` or ``winnow.cache``
imports this package. It needs the ``pipeline`` extra (Pillow, phonenumbers, the filters).
"""
