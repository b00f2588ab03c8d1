"""The engine of ``veil run``: listing, shards, the driver and the executors (in this process, a local process
pool, Ray) behind one interface."""
