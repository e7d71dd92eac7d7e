"""Prometheus counters and histograms for the server, in the text exposition format."""

import bisect
import itertools
import logging

log = logging.getLogger("keramic.serving")


# ------------------------------------------------------------------------------ metrics
class Metrics:
    """Prometheus counters and histograms, written in the text exposition format."""

    LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

    def __init__(self):
        self.requests = {}
        self.latency = {}
        self.batches = self._histogram(self.BATCH_BUCKETS)

    @staticmethod
    def _histogram(buckets):
        return {"buckets": buckets, "counts": [0] * len(buckets), "sum": 0.0, "count": 0}

    @staticmethod
    def _observe(histogram, value):
        index = bisect.bisect_left(histogram["buckets"], value)
        if index < len(histogram["buckets"]):
            histogram["counts"][index] += 1  # per bucket here; cumulated when rendered
        histogram["sum"] += value
        histogram["count"] += 1

    def request(self, model, api, status, seconds):
        key = (model, api, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get((model, api))
        if histogram is None:
            histogram = self.latency[(model, api)] = self._histogram(self.LATENCY_BUCKETS)
        self._observe(histogram, seconds)

    def batch(self, size):
        self._observe(self.batches, size)

    def render(self, manager, batcher):
        lines = [
            "# HELP keramic_serving_requests_total REST requests by model, API and HTTP status.",
            "# TYPE keramic_serving_requests_total counter",
        ]
        for (model, api, status), count in sorted(self.requests.items()):
            lines.append(f'keramic_serving_requests_total{{model="{_label(model)}",api="{api}",code="{status}"}} {count}')
        lines += [
            "# HELP keramic_serving_request_latency_seconds Time from a request's arrival to its answer.",
            "# TYPE keramic_serving_request_latency_seconds histogram",
        ]
        for (model, api), histogram in sorted(self.latency.items()):
            lines += _histogram_lines("keramic_serving_request_latency_seconds", f'model="{_label(model)}",api="{api}"', histogram)
        lines += [
            "# HELP keramic_serving_batch_size Samples per onnxruntime call made by the dynamic batcher.",
            "# TYPE keramic_serving_batch_size histogram",
        ]
        lines += _histogram_lines("keramic_serving_batch_size", "", self.batches)
        lines += [
            "# HELP keramic_serving_queued_samples Samples waiting in the batching queues.",
            "# TYPE keramic_serving_queued_samples gauge",
            f"keramic_serving_queued_samples {batcher.queued_samples if batcher else 0}",
            "# HELP keramic_serving_model_version_state 1 for each version's current state.",
            "# TYPE keramic_serving_model_version_state gauge",
        ]
        for version, state, _, _ in manager.status():
            lines.append(f'keramic_serving_model_version_state{{model="{_label(manager.name)}",version="{version}",state="{state}"}} 1')
        return ("\n".join(lines) + "\n").encode()


def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _histogram_lines(name, labels, histogram):
    prefix = f"{labels}," if labels else ""
    cumulative = itertools.accumulate(histogram["counts"])
    lines = [f'{name}_bucket{{{prefix}le="{bound}"}} {count}' for bound, count in zip(histogram["buckets"], cumulative)]
    lines.append(f'{name}_bucket{{{prefix}le="+Inf"}} {histogram["count"]}')
    suffix = f"{{{labels}}}" if labels else ""
    lines.append(f"{name}_sum{suffix} {histogram['sum']}")
    lines.append(f"{name}_count{suffix} {histogram['count']}")
    return lines
