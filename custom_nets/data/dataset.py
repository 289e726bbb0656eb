"""MONAI's ``CacheDataset`` with a cache fill that stops cleanly when an item fails.

MONAI fills the cache in a ``multiprocessing.pool.ThreadPool``. When an item's transform raises (a mask of
another size than its image, a file no reader decodes), leaving the pool's ``with`` block calls
``terminate()``, which does not join the worker threads: they are daemon threads and go on transforming
the next items while the error unwinds and the interpreter shuts down. A worker that is inside a torch
operation (the GIL released) when finalisation starts is stopped on its way back by ``pthread_exit``,
whose unwinding through a ``noexcept`` C++ frame calls ``std::terminate``: the process prints
``terminate called without an active exception`` and aborts (SIGABRT, exit 134) after the real error.

:class:`CacheDataset` fills the cache with a ``concurrent.futures.ThreadPoolExecutor`` instead: on the first
failure the pending items are cancelled and the running ones awaited, so no thread outlives the error and
the process ends with it (exit status 1 from ``python -m monai.bundle``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from monai.data import CacheDataset as _MonaiCacheDataset
from monai.utils import min_version, optional_import

tqdm, has_tqdm = optional_import("tqdm", "4.47.0", min_version, "tqdm")


class CacheDataset(_MonaiCacheDataset):
    """``monai.data.CacheDataset`` whose cache fill joins its threads before an item's error propagates.

    Arguments, caching and results are MONAI's (the same items, in the same order); only the thread pool
    differs, see the module docstring. Use it in configs as ``"_target_": "custom_nets.data.CacheDataset"``.
    """

    def _fill_cache(self, indices=None) -> list:
        if self.cache_num <= 0:
            return []
        if indices is None:
            indices = list(range(self.cache_num))
        executor = ThreadPoolExecutor(self.num_workers, thread_name_prefix="CacheDataset")
        try:
            results = executor.map(self._load_cache_item, indices)
            if self.progress and has_tqdm:
                results = tqdm(results, total=len(indices), desc="Loading dataset")
            cache = list(results)
        except BaseException:
            executor.shutdown(wait=True, cancel_futures=True)  # no worker may outlive the error
            raise
        executor.shutdown(wait=True)
        return cache
