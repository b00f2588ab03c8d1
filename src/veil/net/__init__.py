"""veil as a DICOM node: receive, de-identify, forward (``veil serve``), retrieve from a PACS and de-identify
(``veil pull``) and send a de-identified folder (``veil push``), over DIMSE (pynetdicom) and DICOMweb.

Layers: :mod:`veil.net.pynetdicom_fixes` (TCP_NODELAY, the reactor race, polling, the C-STORE response; applied
before any association), :mod:`veil.net.tls` (DICOM TLS contexts), :mod:`veil.net.config` (the node's YAML),
:mod:`veil.net.scp` (the Storage SCP serve and pull run), :mod:`veil.net.spool` (durable receive), :mod:`veil.net.queue` (per-destination persistent queues),
:mod:`veil.net.senders` (C-STORE, STOW-RS, folder), :mod:`veil.net.node` (the Storage SCP, the study pipeline,
the health endpoint), :mod:`veil.net.retrieve` and :mod:`veil.net.pull` (finding and retrieving studies, then
one run), :mod:`veil.net.push` (a DST to a destination). Nothing here logs a value from a dataset: studies and
instances are named by keyed digests.
"""
