"""The composition root: the command line, the process runner, the HTTP app, the root
settings and the runtime. The one place that imports channels and workers; nothing imports it."""
