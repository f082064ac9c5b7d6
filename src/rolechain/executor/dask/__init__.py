"""The Dask engine (optional extra ``rolechain[dask]``, imported only when a run chooses it).

* :mod:`~rolechain.executor.dask.driver`: the process that iterates the run: prepares it
  on a worker, cuts it into batches, sends them, takes their records back (dedup), stops.
* :mod:`~rolechain.executor.dask.ledger`: the driver's books of batches and units.
* :mod:`~rolechain.executor.dask.cluster`: connecting to a scheduler, or starting a local
  cluster for the run.
* :mod:`~rolechain.executor.dask.worker`: what runs on the workers (referred to by name).
"""
