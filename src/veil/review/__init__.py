"""``veil review``: a local web UI over a run's audit, for a person to check what veil did before release.

Nothing here writes DICOM outputs: a reviewer's decisions go to the decision log
(:mod:`veil.review.decisions`), and a change becomes a recipe rule in a site layer
(:mod:`veil.review.proposals`) that the user reruns with, so the archive stays a function of SRC, recipe and key.
The server (:mod:`veil.review.app`) is Starlette, an optional extra (``veil[review]``); the model
(:mod:`veil.review.model`) reads DST through :mod:`veil.audit` only and never imports the engine.
"""
