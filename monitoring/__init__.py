"""Prometheus metrics for curation runs and the training loader, with one naming scheme.

* :mod:`winnow.monitoring.names`: every metric name and label (the dashboard queries only these).
* :mod:`winnow.monitoring.pipeline`: a finished run's ``stats.json`` as metric families, pushed
  to a Prometheus Pushgateway (``winnow run --pushgateway URL``).
* :mod:`winnow.monitoring.loader`: the loader's metrics snapshot (``StreamingDataset.metrics()``)
  as metric families, served on ``/metrics`` or pushed.

Imports nothing heavy (no Beam, no torch); ``prometheus_client`` is needed only to serve or push.
"""

from winnow.monitoring.names import LOADER, PIPELINE, metric_names

__all__ = ["LOADER", "PIPELINE", "metric_names"]
