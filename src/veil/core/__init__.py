"""The core: the native tag-stream rewriter (``veil.core._core``, Cython), the Plan it runs (:mod:`veil.core.plan`,
the specification of every action), the data dictionary and the pure-Python Part 10 reader
(:mod:`veil.core.part10`) that verify and the inventory use as an independent second reading."""
