"""``scripts/bench``: the tracker's throughput, latency and memory beside their anchors.

One run generates (or reuses from ``run/bench/cache/``) a national-scale history, starts the
real production pipeline as subprocesses (``mappa run ingest|relay|project NAME|
publish-alerts``) on an isolated PostgreSQL schema and topic prefix, measures each stage, then
measures the anchors (raw psycopg ``COPY`` and batched ``INSERT``, raw kafka-python produce
and consume of messages of the same sizes, the ``eventsourcing`` library's own
``ProjectionRunner``) on the same machine in the same run, and writes ``BENCHMARKS.md`` and
``benchmarks.json``.

Modules: :mod:`.run` (the phases, in order), :mod:`.system` (subprocesses, peak memory and
CPU from ``/proc``, machine and versions), :mod:`.anchors`, :mod:`.peer`, :mod:`.history`
(the cached history and the keys of its lines), :mod:`.report` (figures, targets, the two
output files).
"""
