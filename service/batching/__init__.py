"""Dynamic batching: ``queue`` owns waiting requests, futures and deadlines; ``merge`` joins
request arrays into one batch and splits the outputs back."""

from service.batching.merge import merge_requests, split_outputs
from service.batching.queue import BatchObserver, BatchTiming, DynamicBatcher

__all__ = ["BatchObserver", "BatchTiming", "DynamicBatcher", "merge_requests", "split_outputs"]
