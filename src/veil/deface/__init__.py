"""Defacing (PS3.15 Clean Recognizable Visual Features): head CT and MR series whose face is removed, in the same
run that de-identifies them. :mod:`~veil.deface.grid` (volumes in patient space), :mod:`~veil.deface.atlas` (the
shipped head atlas), :mod:`~veil.deface.method` (where the face is), :mod:`~veil.deface.series` (a series' files
as one volume and back), :mod:`~veil.deface.render` (the audit's frontal renderings) and
:mod:`~veil.deface.select` (which series a recipe defaces). Imported only by runs whose recipe has a ``deface:``
section; the names below load on first use."""
