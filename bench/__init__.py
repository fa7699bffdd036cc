"""nbserve's benchmark harness (issue 6).

``make bench`` -> ``bench/RESULTS.md`` + ``bench/results.png``.

Modules: ``config`` (paths, durations from the environment), ``prepare`` (exports the models and
writes the request bodies; runs with TensorFlow), ``loadgen`` (``wrk`` and the grpc.aio client),
``floor`` (in-process floors and the codec micro-benchmark), ``startup`` (start-up and warmup
timings), ``report`` (tables, targets, plot), ``run`` (the orchestrator). ``servers/`` holds the
peers and the floors served over the network. Nothing here is imported by nbserve.
"""
